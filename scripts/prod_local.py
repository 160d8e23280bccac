"""The production topology on one machine, supervised (`make prod-local`, `scripts/prod-local.sh`).

    nginx :HTTP  →  3 × `crm serve` (:API1..3)  →  PgBouncer (transaction pooling) :PGB  →  PostgreSQL
                                              ↘  Redis (private, :REDIS)  ←  2 Celery workers + beat

Every file (configuration, logs, pids, Redis data, the beat schedule, metrics) lives under
`PROD_LOCAL_DIR` (default `.run/prod-local/` of the checkout). A process that exits unexpectedly is
restarted with backoff; Ctrl-C or SIGTERM stops them all, in order (nginx first, Redis and PgBouncer
last). `state.json` there tells tools (the soak benchmark) where everything listens and which pid
each process has now.

Ports derive from `PROD_LOCAL_PORT_BASE` (default 8400): nginx +80, APIs +1..+3, PgBouncer +32,
Redis +79, worker metrics +91.. . PostgreSQL is the one of `DATABASE_URL` (environment, then
`.env`), with the database `PROD_LOCAL_DB` (default `crm_prodlocal`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the supervisor of `make run`, beside this file

from supervise import Program, kill_group, wait_groups_gone  # noqa: E402
from supervise import Supervisor as Restarter  # noqa: E402


def _dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
            if match:
                values[match.group(1)] = match.group(2).strip().strip("'\"")
    return values


@dataclass
class Config:
    run_dir: Path
    base: int
    http_port: int
    api_ports: list[int]
    pgbouncer_port: int
    redis_port: int
    worker_metrics_ports: list[int]
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    database: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        env = {**_dotenv(ROOT / ".env"), **(environ if environ is not None else os.environ)}
        base = int(env.get("PROD_LOCAL_PORT_BASE", "8400"))
        url = urlsplit(
            env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/crm").replace("+asyncpg", "")
        )
        apis = int(env.get("PROD_LOCAL_APIS", "3"))
        workers = int(env.get("PROD_LOCAL_WORKERS", "2"))
        return cls(
            run_dir=Path(env.get("PROD_LOCAL_DIR", str(ROOT / ".run" / "prod-local"))).resolve(),
            base=base,
            http_port=int(env.get("PROD_LOCAL_HTTP_PORT", base + 80)),
            api_ports=[base + 1 + i for i in range(apis)],
            pgbouncer_port=base + 32,
            redis_port=base + 79,
            worker_metrics_ports=[base + 91 + i for i in range(workers)],
            pg_host=url.hostname or "127.0.0.1",
            pg_port=url.port or 5432,
            pg_user=url.username or "postgres",
            pg_password=url.password or "",
            database=env.get("PROD_LOCAL_DB", "crm_prodlocal"),
            env=env,
        )

    # --- URLs --------------------------------------------------------------------------------------
    def _auth(self) -> str:
        return self.pg_user + (f":{self.pg_password}" if self.pg_password else "")

    @property
    def direct_url(self) -> str:
        return f"postgresql+asyncpg://{self._auth()}@{self.pg_host}:{self.pg_port}/{self.database}"

    @property
    def pgbouncer_url(self) -> str:
        return f"postgresql+asyncpg://{self._auth()}@127.0.0.1:{self.pgbouncer_port}/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def app_env(self) -> dict[str, str]:
        """The environment of every application process (API, worker, beat)."""
        keep = {k: v for k, v in self.env.items() if not k.startswith("PROMETHEUS_MULTIPROC_DIR")}
        return {
            **keep,
            "DATABASE_URL": self.pgbouncer_url,
            "DATABASE_PGBOUNCER": "true",
            "DATABASE_DIRECT_URL": self.direct_url,
            "DATABASE_POOL_SIZE": self.env.get("DATABASE_POOL_SIZE", "10"),
            "DATABASE_MAX_OVERFLOW": self.env.get("DATABASE_MAX_OVERFLOW", "10"),
            "HOT_READ_POOL_SIZE": self.env.get("HOT_READ_POOL_SIZE", "8"),
            "REDIS_URL": f"{self.redis_url}/0",
            "CELERY_BROKER_URL": f"{self.redis_url}/1",
            "TRUSTED_PROXIES": "127.0.0.1",
            "CELERY_BEAT_SCHEDULE": str(self.run_dir / "celerybeat-schedule"),
            "LOG_FORMAT": self.env.get("LOG_FORMAT", "json"),
            "PYTHONUNBUFFERED": "1",
        }


# --- configuration files ----------------------------------------------------------------------------
def render_pgbouncer(cfg: Config) -> str:
    """PgBouncer in transaction pooling mode in front of the one database."""
    password = f" password={cfg.pg_password}" if cfg.pg_password else ""
    pool = cfg.env.get("PGBOUNCER_POOL_SIZE", "12")
    return f"""\
;; Generated by scripts/prod_local.py: PgBouncer for `make prod-local`.
[databases]
{cfg.database} = host={cfg.pg_host} port={cfg.pg_port} dbname={cfg.database} user={cfg.pg_user}{password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {cfg.pgbouncer_port}
unix_socket_dir =
auth_type = trust
auth_file = {cfg.run_dir / "pgbouncer" / "users.txt"}
pool_mode = transaction
default_pool_size = {pool}
min_pool_size = 2
reserve_pool_size = 4
max_db_connections = {int(pool) + 4}
max_client_conn = 2000
server_reset_query =
server_check_delay = 10
server_login_retry = 1
query_wait_timeout = 30
ignore_startup_parameters = extra_float_digits,options
pidfile = {cfg.run_dir / "pgbouncer" / "pgbouncer.pid"}
admin_users = {cfg.pg_user}
stats_users = {cfg.pg_user}
"""


def render_nginx(cfg: Config, template: str | None = None) -> str:
    """The repository's `nginx/nginx.conf` with local ports, files and upstreams."""
    text = template if template is not None else (ROOT / "nginx" / "nginx.conf").read_text()
    run = cfg.run_dir
    upstream = "\n        ".join(
        f"server 127.0.0.1:{port} max_fails=3 fail_timeout=5s;" for port in cfg.api_ports
    )
    replacements = [
        (r"(?m)^\s*server api:8000;.*$", f"        {upstream}"),
        (r"listen 80 default_server;", f"listen 127.0.0.1:{cfg.http_port} default_server;"),
        (r"access_log /dev/stdout;", f"access_log {run / 'logs' / 'nginx-access.log'};"),
        (r"error_log /dev/stderr warn;", f"error_log {run / 'logs' / 'nginx-error.log'} warn;"),
        (
            r"(?m)^http \{",
            "http {\n"
            f"    client_body_temp_path {run / 'nginx' / 'body'};\n"
            f"    proxy_temp_path {run / 'nginx' / 'proxy'};\n"
            f"    fastcgi_temp_path {run / 'nginx' / 'fastcgi'};\n"
            f"    uwsgi_temp_path {run / 'nginx' / 'uwsgi'};\n"
            f"    scgi_temp_path {run / 'nginx' / 'scgi'};\n"
            "    # A replica that refuses a connection or dies mid-request: the next one answers.\n"
            "    proxy_next_upstream error timeout http_502 http_503;\n"
            "    proxy_next_upstream_tries 3;",
        ),
    ]
    for pattern, replacement in replacements:
        text, n = re.subn(pattern, replacement.replace("\\", "\\\\"), text, count=1)
        if n != 1:
            raise ValueError(f"nginx/nginx.conf has no {pattern!r} to adapt")
    head = (
        f"# Generated by scripts/prod_local.py from nginx/nginx.conf.\npid {run / 'nginx' / 'nginx.pid'};\n"
    )
    if os.geteuid() == 0:
        head += "user root;\n"  # the temp folders above are the checkout's, not www-data's
    text = text.replace("worker_processes auto;", "worker_processes 2;")
    return head + text


def write_configs(cfg: Config) -> None:
    run = cfg.run_dir
    for sub in ("logs", "pgbouncer", "nginx", "redis", "pids", "metrics"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run / "nginx" / sub).mkdir(exist_ok=True)
    (run / "pgbouncer" / "pgbouncer.ini").write_text(render_pgbouncer(cfg))
    (run / "pgbouncer" / "users.txt").write_text(f'"{cfg.pg_user}" "{cfg.pg_password}"\n')
    (run / "nginx" / "nginx.conf").write_text(render_nginx(cfg))


# --- processes --------------------------------------------------------------------------------------
@dataclass
class Proc(Program):
    """A supervised program (`scripts/supervise.py`) and the URL that answers 200 once it is up."""

    ready: str | None = None


def _python() -> str:
    return sys.executable


def processes(cfg: Config) -> list[Proc]:
    run = cfg.run_dir
    app = cfg.app_env()
    py = _python()
    redis_argv = [
        shutil.which("redis-server") or "redis-server",
        "--bind", "127.0.0.1", "--port", str(cfg.redis_port), "--dir", str(run / "redis"),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    pgbouncer_argv = [_binary("pgbouncer"), str(run / "pgbouncer" / "pgbouncer.ini")]
    if os.geteuid() == 0:
        pgbouncer_argv[1:1] = ["-u", cfg.env.get("PGBOUNCER_USER", "postgres")]

    def proc(name: str, argv: list[str], env: dict[str, str], ready: str | None = None) -> Proc:
        return Proc(
            name, argv, run / "pids", env=env, cwd=ROOT, log=run / "logs" / f"{name}.log", ready=ready
        )

    procs = [proc("redis", redis_argv, dict(os.environ)), proc("pgbouncer", pgbouncer_argv, dict(os.environ))]
    for i, port in enumerate(cfg.api_ports, 1):
        env = {**app, "PROMETHEUS_MULTIPROC_DIR": str(run / "metrics" / "api")}
        argv = [py, "-m", "crm.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        procs.append(proc(f"api{i}", argv, env, ready=f"http://127.0.0.1:{port}/health"))
    for i, port in enumerate(cfg.worker_metrics_ports, 1):
        env = {
            **app,
            "WORKER_METRICS_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(run / "metrics" / f"worker{i}"),
        }
        argv = [py, "-m", "celery", "-A", "crm.worker.app:celery_app", "worker", "-Q", "crm",
                "--concurrency", cfg.env.get("PROD_LOCAL_WORKER_CONCURRENCY", "2"),
                "--hostname", f"worker{i}@%h", "--loglevel", "INFO"]  # fmt: skip
        procs.append(proc(f"worker{i}", argv, env, ready=f"http://127.0.0.1:{port}/metrics"))
    procs.append(proc("beat", [py, "-m", "crm.cli", "beat"], app))
    nginx_argv = [_binary("nginx"), "-c", str(run / "nginx" / "nginx.conf"), "-p", str(run / "nginx"),
                  "-e", str(run / "logs" / "nginx-error.log"), "-g", "daemon off;"]  # fmt: skip
    procs.append(proc("nginx", nginx_argv, dict(os.environ), ready=f"{cfg.http_url}/health"))
    return procs


def _binary(name: str) -> str:
    for folder in ("", "/usr/sbin/", "/usr/local/sbin/"):
        found = (
            shutil.which(name) if not folder else (folder + name if Path(folder + name).exists() else None)
        )
        if found:
            return found
    raise SystemExit(f"{name} is not installed (scripts/prod-local.sh installs it on Debian as root)")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
            return bool(response.status == 200)
    except Exception:
        return False


def _wait_port_free(port: int) -> None:
    import socket

    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is taken: is another prod-local running? (PROD_LOCAL_PORT_BASE)")


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


class Supervisor:
    STOP_ORDER = ("nginx", "api", "beat", "worker", "pgbouncer", "redis")

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.procs = processes(cfg)
        self.stopping = False

    def write_state(self) -> None:
        state: dict[str, Any] = {
            "http_url": self.cfg.http_url,
            "api_ports": self.cfg.api_ports,
            "pgbouncer_port": self.cfg.pgbouncer_port,
            "redis_port": self.cfg.redis_port,
            "worker_metrics_ports": self.cfg.worker_metrics_ports,
            "direct_url": self.cfg.direct_url,
            "pgbouncer_url": self.cfg.pgbouncer_url,
            "supervisor_pid": os.getpid(),
            "pids": {p.name: p.process.pid for p in self.procs if p.process is not None},
            "restarts": {p.name: p.restarts for p in self.procs},
        }
        tmp = self.cfg.run_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.cfg.run_dir / "state.json")

    def start_all(self) -> None:
        cfg = self.cfg
        for port in [
            cfg.http_port,
            *cfg.api_ports,
            cfg.pgbouncer_port,
            cfg.redis_port,
            *cfg.worker_metrics_ports,
        ]:
            _wait_port_free(port)
        for folder in (cfg.run_dir / "metrics").iterdir():
            shutil.rmtree(folder)
        for proc in self.procs:
            if proc.name.startswith(("api", "worker")) and proc.env is not None:
                Path(proc.env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(cfg.run_dir / "pgbouncer", cfg.env.get("PGBOUNCER_USER", "postgres"))
        by_name = {p.name: p for p in self.procs}
        for name in ("redis", "pgbouncer"):
            by_name[name].start()
        self._wait(lambda: _redis_ping(cfg.redis_port), "redis")
        self._wait(lambda: _tcp(cfg.pgbouncer_port), "pgbouncer")
        _say(f"migrating {cfg.database} (directly on PostgreSQL)")
        subprocess.run(  # noqa: S603
            [_python(), "-m", "crm.cli", "migrate"],
            env={**cfg.app_env(), "DATABASE_URL": cfg.direct_url, "DATABASE_PGBOUNCER": "false"},
            cwd=ROOT,
            check=True,
        )
        if cfg.env.get("ADMIN_EMAIL") and cfg.env.get("ADMIN_PASSWORD"):
            subprocess.run(  # noqa: S603
                [_python(), "-m", "crm.cli", "create-admin"], env=cfg.app_env(), cwd=ROOT, check=False
            )
        for proc in self.procs:
            if not proc.alive:
                proc.start()
        for proc in self.procs:
            if proc.ready:
                url = proc.ready
                self._wait(lambda url=url: _answers(url), proc.name, timeout=90)  # type: ignore[misc]
        self.write_state()
        (cfg.run_dir / "ready").write_text(str(time.time()))

    def _wait(self, check: Any, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.stopping:
                raise SystemExit(1)
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not come up; see {self.cfg.run_dir / 'logs'}")
            time.sleep(0.2)

    def watch(self) -> None:
        """Restart what dies, with backoff (`scripts/supervise.py`: 1 s doubling to 30 s; back to
        1 s once it has run for a minute)."""
        restarter = Restarter(list(self.procs), stop_timeout=0, before_restart=_forget_metrics)
        while not self.stopping:
            if restarter.watch_once(stopping=self.stopping):
                self.write_state()
            time.sleep(0.25)

    def stop_all(self) -> None:
        self.stopping = True
        for prefix in self.STOP_ORDER:
            group = [p for p in self.procs if p.name.startswith(prefix) and p.alive]
            for proc in group:
                proc.signal_group(signal.SIGINT if prefix == "pgbouncer" else signal.SIGTERM)
            deadline = time.monotonic() + (60 if prefix == "worker" else 25)
            for proc in group:
                while proc.alive and time.monotonic() < deadline:
                    time.sleep(0.1)
                if proc.alive:
                    proc.signal_group(signal.SIGKILL)
                    if proc.process is not None:
                        proc.process.wait(5)
            # whatever those left in their process groups (pool children) goes too
            for proc in group:
                proc.signal_group(signal.SIGKILL)
        for proc in self.procs:
            for pgid in proc.pgids:
                kill_group(pgid, signal.SIGKILL)  # groups of earlier runs of a restarted program
        wait_groups_gone(list(self.procs))
        with contextlib.suppress(FileNotFoundError):
            (self.cfg.run_dir / "ready").unlink()
        _say("prod-local stopped")


def _forget_metrics(proc: Program) -> None:
    """Drop the gauges a dead process left in its metrics folder (live gauges would count them)."""
    folder = (proc.env or {}).get("PROMETHEUS_MULTIPROC_DIR")
    if not folder or proc.last_pid is None:
        return
    if proc.name.startswith("worker"):  # its pool processes died with it: start afresh
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(proc.last_pid, folder)  # type: ignore[no-untyped-call]


def _tcp(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _redis_ping(port: int) -> bool:
    from redis import Redis

    try:
        return bool(Redis(port=port, socket_timeout=1).ping())
    except Exception:
        return False


def main() -> int:
    cfg = Config.from_env()
    write_configs(cfg)
    if len(sys.argv) > 1 and sys.argv[1] == "render":  # configuration only (tests, `nginx -t`)
        print(cfg.run_dir)
        return 0
    supervisor = Supervisor(cfg)

    def on_signal(signum: int, _frame: Any) -> None:
        if not supervisor.stopping:
            supervisor.stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        _say(f"starting the production topology under {cfg.run_dir}")
        supervisor.start_all()
        _say(
            f"up: {cfg.http_url} (nginx) → APIs :{','.join(map(str, cfg.api_ports))} → PgBouncer "
            f":{cfg.pgbouncer_port} → PostgreSQL {cfg.pg_host}:{cfg.pg_port}/{cfg.database}; Redis "
            f":{cfg.redis_port}; worker metrics :{','.join(map(str, cfg.worker_metrics_ports))}."
            " Ctrl-C stops."
        )
        supervisor.watch()
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code not in (None, 0, 1):
            print(exc.code, file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

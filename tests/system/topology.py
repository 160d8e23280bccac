"""Real processes of the production topology for tests: PgBouncer in transaction pooling mode (the
configuration `make prod-local` writes) and API servers (`crm serve`) pointed at it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

# Ports of this test run (PROD_LOCAL_PORT_BASE + 40..59 stays clear of a running prod-local).
PORT_BASE = int(os.environ.get("TEST_TOPOLOGY_PORT_BASE", "18440"))


def prod_local() -> ModuleType:
    """`scripts/prod_local.py`, imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("prod_local", ROOT / "scripts" / "prod_local.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("prod_local", module)
    spec.loader.exec_module(module)
    return module


def binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/local/sbin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", name],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=False,
            capture_output=True,
        )
        for candidate in (shutil.which(name), f"/usr/sbin/{name}"):
            if candidate and Path(candidate).exists():
                return candidate
    pytest.skip(f"{name} is not installed and cannot be installed here")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def local_config(run_dir: Path, database_url: str, *, pgbouncer_port: int | None = None) -> object:
    """prod-local's `Config` for the test database, everything under `run_dir`."""
    module = prod_local()
    url = urlsplit(database_url.replace("+asyncpg", ""))
    cfg = module.Config.from_env(
        {
            "PROD_LOCAL_DIR": str(run_dir),
            "PROD_LOCAL_PORT_BASE": str(PORT_BASE),
            "DATABASE_URL": database_url,
            "PROD_LOCAL_DB": url.path.lstrip("/"),
        }
    )
    if pgbouncer_port is not None:
        cfg.pgbouncer_port = pgbouncer_port
    return cfg


@contextlib.contextmanager
def pgbouncer(run_dir: Path, database_url: str, port: int) -> Iterator[str]:
    """PgBouncer (transaction pooling) in front of `database_url`'s database; yields its URL."""
    exe = binary("pgbouncer")
    module = prod_local()
    cfg = local_config(run_dir, database_url, pgbouncer_port=port)
    module.write_configs(cfg)
    argv = [exe, str(run_dir / "pgbouncer" / "pgbouncer.ini")]
    if os.geteuid() == 0:
        shutil.chown(run_dir / "pgbouncer", "postgres")
        argv[1:1] = ["-u", "postgres"]
    log = (run_dir / "logs" / "pgbouncer.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not port_open(port):
            assert process.poll() is None, (run_dir / "logs" / "pgbouncer.log").read_text()
            assert time.monotonic() < deadline, "pgbouncer did not listen"
            time.sleep(0.1)
        yield cfg.pgbouncer_url  # type: ignore[attr-defined]
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


class ApiServer:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def api_server(port: int, env: dict[str, str], log_dir: Path) -> Iterator[ApiServer]:
    """`crm serve` on `port` with `env` on top of this process's environment; stopped after."""
    log_path = log_dir / f"api-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "LOG_LEVEL": "INFO", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ApiServer(process, port, log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, "the API exited:\n" + server.log()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the API did not start:\n" + server.log()
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(25)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

"""The production topology, for real: nginx's generated configuration passes `nginx -t`; two API
processes and a Celery worker run through PgBouncer in transaction pooling mode (prepared statements
included), and what must be shared between API processes (rate limits, revocation, idempotency,
cached totals) is."""

from __future__ import annotations

import asyncio
import configparser
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from sqlalchemy import func, select, text

from crm.config import Settings
from crm.models import Base, Contact, Product, SyncJob
from tests.fakes.plugins import installed_provider
from tests.sync.conftest import TOY, make_integration
from tests.system.topology import PORT_BASE, ROOT, api_server, binary, local_config, pgbouncer, prod_local
from tests.workers import Worker, celery_worker

PASSWORD = "Topology-Passw0rd!"


# --- generated configuration -------------------------------------------------------------------------
def test_generated_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = binary("nginx")
    module = prod_local()
    cfg = local_config(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:5432/crm_x")
    module.write_configs(cfg)
    conf = tmp_path / "nginx" / "nginx.conf"
    text_ = conf.read_text()
    # the repository's file, with three local upstreams and a local port
    assert "upstream crm_api" in text_
    assert re.findall(r"server 127\.0\.0\.1:(\d+)", text_) == [str(p) for p in cfg.api_ports]  # type: ignore[attr-defined]
    assert f"listen 127.0.0.1:{cfg.http_port}" in text_  # type: ignore[attr-defined]
    assert "location = /metrics" in text_
    assert "proxy_buffering off" in text_
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path / "nginx"), "-e", str(tmp_path / "logs" / "e.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    assert "test is successful" in result.stderr


def test_the_repository_nginx_conf_is_what_is_templated() -> None:
    module = prod_local()
    with pytest.raises(ValueError, match="has no"):
        module.render_nginx(local_config(Path("/tmp/x"), "postgresql://p@h/d"), "events {}\nhttp {}\n")  # noqa: S108


def test_pgbouncer_config_pools_transactions(tmp_path: Path) -> None:
    module = prod_local()
    cfg = local_config(tmp_path, "postgresql+asyncpg://crm:s3cret@10.0.0.5:6543/crm_prod")
    module.write_configs(cfg)
    parser = configparser.ConfigParser()
    parser.read(tmp_path / "pgbouncer" / "pgbouncer.ini")
    assert parser["pgbouncer"]["pool_mode"] == "transaction"
    assert parser["pgbouncer"]["listen_addr"] == "127.0.0.1"
    assert (
        parser["databases"]["crm_prod"] == "host=10.0.0.5 port=6543 dbname=crm_prod user=crm password=s3cret"
    )
    env = cfg.app_env()  # type: ignore[attr-defined]
    assert env["DATABASE_PGBOUNCER"] == "true"
    assert env["DATABASE_URL"].endswith(f"127.0.0.1:{cfg.pgbouncer_port}/crm_prod")  # type: ignore[attr-defined]
    assert env["DATABASE_DIRECT_URL"] == "postgresql+asyncpg://crm:s3cret@10.0.0.5:6543/crm_prod"
    # every variable handed to the application is a setting
    known = {name.upper() for name in Settings.model_fields} | {"JWT_SECRET_KEY", "PYTHONUNBUFFERED"}
    ours = {k for k in env if k.startswith(("DATABASE_", "REDIS_", "CELERY_", "HOT_", "TRUSTED_", "LOG_"))}
    assert ours <= known | {"CELERY_BEAT_SCHEDULE"}


def test_workers_connect_directly_when_a_direct_url_is_set() -> None:
    through = Settings(database_url="postgresql://u@pgbouncer:6432/d", database_pgbouncer=True)
    assert through.worker_database_url == "postgresql+asyncpg://u@pgbouncer:6432/d"
    split = through.model_copy(update={"database_direct_url": "postgresql+asyncpg://u@db:5432/d"})
    assert split.worker_database_url == "postgresql+asyncpg://u@db:5432/d"
    assert Settings(database_direct_url="postgres://u@db:5432/d").database_direct_url == (
        "postgresql+asyncpg://u@db:5432/d"
    )
    assert Settings(database_direct_url="").database_direct_url is None


# --- the live topology ---------------------------------------------------------------------------------
@dataclass
class Topology:
    a: str
    b: str
    pgbouncer_port: int
    worker: Worker
    worker_metrics: str
    run_dir: Path


@pytest.fixture(scope="module")
def topology(database: str, settings: Settings) -> Iterator[Topology]:
    # PgBouncer runs as `postgres` when we are root: its folder must be reachable for that user,
    # which pytest's own (0700) temporary folders are not.
    run = Path(tempfile.mkdtemp(prefix="crm-topology-"))
    run.chmod(0o755)
    try:
        yield from _topology(run, database, settings)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def _topology(run: Path, database: str, settings: Settings) -> Iterator[Topology]:
    port = PORT_BASE + 2
    # The tables start empty (ids from 1), so must Redis: a session id revoked by an earlier run
    # would otherwise revoke this run's session of the same id.
    Redis.from_url(settings.redis_url).flushdb()
    with (
        installed_provider("toy", TOY, run / "plugin") as toy,
        pgbouncer(run, database, port) as pgb_url,
        pytest.MonkeyPatch.context() as mp,
    ):
        api_metrics = run / "metrics-api"
        api_metrics.mkdir()
        env = {
            "DATABASE_URL": pgb_url,
            "DATABASE_PGBOUNCER": "true",
            "DATABASE_DIRECT_URL": database,
            "DATABASE_POOL_SIZE": "3",
            "DATABASE_MAX_OVERFLOW": "3",
            "HOT_READ_POOL_SIZE": "2",
            "REDIS_URL": settings.redis_url,
            "CELERY_BROKER_URL": settings.celery_broker_url,
            "RATE_LIMIT_LOGIN_PER_ACCOUNT": "3/minute",
            "PROMETHEUS_MULTIPROC_DIR": str(api_metrics),
            "PYTHONPATH": f"{toy}:{Path(__file__).resolve().parents[2]}",
        }
        # The worker: through PgBouncer, with its job locks on a direct connection.
        for name, value in {
            "DATABASE_PGBOUNCER": "true",
            "DATABASE_DIRECT_URL": database,
            "WORKER_METRICS_PORT": str(PORT_BASE + 5),
            "PROMETHEUS_MULTIPROC_DIR": str(run / "metrics-worker"),
        }.items():
            mp.setenv(name, value)
        (run / "metrics-worker").mkdir()
        worker_settings = settings.model_copy(update={"database_url": pgb_url})
        with (
            api_server(PORT_BASE + 3, env, run) as a,
            api_server(PORT_BASE + 4, env, run) as b,
            celery_worker(worker_settings, run, name="topology", pythonpath=[toy]) as worker,
        ):
            worker.wait_ready()  # its metrics endpoint and queue consumer are up
            try:
                yield Topology(a.url, b.url, port, worker, f"http://127.0.0.1:{PORT_BASE + 5}/metrics", run)
            finally:
                asyncio.run(_empty_tables(database))


async def _empty_tables(database: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


def _pgbouncer_show(port: int, what: str) -> list[list[str]]:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is needed to read PgBouncer's console")
    result = subprocess.run(
        [
            psql,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-At",
            "-F",
            "|",
            "-c",
            f"SHOW {what}",
            "pgbouncer",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split("|") for line in result.stdout.splitlines()]


async def _user(client: httpx.AsyncClient, base: str) -> tuple[str, str]:
    email = f"topo-{uuid.uuid4().hex[:10]}@example.com"
    r = await client.post(
        f"{base}/api/v1/auth/register", json={"email": email, "password": PASSWORD, "full_name": "Topo User"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["email"] == email
    return email, r.json()["id"]


async def _login(client: httpx.AsyncClient, base: str, email: str) -> dict[str, Any]:
    r = await client.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _metric(text_: str, name: str, **labels: str) -> float:
    total = 0.0
    found = False
    for line in text_.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"{name}{labels} not exported"
    return total


async def test_key_flows_through_pgbouncer_transaction_pooling(app: Any, topology: Topology) -> None:
    a, b = topology.a, topology.b
    async with httpx.AsyncClient(timeout=30) as client:
        email, _ = await _user(client, a)
        tokens = await _login(client, b, email)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        r = await client.post(f"{a}/api/v1/organizations", json={"name": "Topology Org"}, headers=auth)
        assert r.status_code == 201, r.text
        org = r.json()["id"]
        headers = {**auth, "X-Organization-ID": str(org)}

        r = await client.post(
            f"{b}/api/v1/contacts",
            json={"full_name": "Через PgBouncer", "email": "pgb@example.com"},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        contact = r.json()
        before = _metric((await client.get(f"{a}/metrics")).text, "crm_hot_reads_total")
        first = await client.get(f"{a}/api/v1/contacts/{contact['id']}", headers=headers)
        second = await client.get(f"{a}/api/v1/contacts/{contact['id']}", headers=headers)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() == contact
        # both answered by the hot path: its prepared statement ran through PgBouncer
        after = _metric((await client.get(f"{a}/metrics")).text, "crm_hot_reads_total")
        assert after - before == 2

        # a plain create is answered by the fast create path, its statement through PgBouncer too
        created_before = _metric((await client.get(f"{b}/metrics")).text, "crm_fast_creates_total")
        r = await client.post(
            f"{b}/api/v1/contacts", json={"full_name": "Быстро", "email": "fast@example.com"}, headers=headers
        )
        assert r.status_code == 201, r.text
        fast = r.json()
        created_after = _metric((await client.get(f"{b}/metrics")).text, "crm_fast_creates_total")
        assert created_after - created_before == 1

        listing = await client.get(f"{b}/api/v1/contacts", headers=headers)
        assert listing.status_code == 200
        assert [c["id"] for c in listing.json()["items"]] == [fast["id"], contact["id"]]
        assert listing.json()["total"] == 2

        # a sync job, started through one API, run by a real worker through PgBouncer
        async with app.state.sessionmaker() as session:
            integration = await make_integration(
                session, org, settings={"products": 30, "stores": 2, "page_size": 10}
            )
            integration_id = integration.id
            await session.commit()
        started = await client.post(
            f"{a}/api/v1/admin/sync/start", json={"integration_id": integration_id}, headers=headers
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        deadline = time.monotonic() + 120
        while True:
            job = (await client.get(f"{b}/api/v1/admin/sync/jobs/{job_id}", headers=headers)).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            assert topology.worker.process.poll() is None, topology.worker.log()
            assert time.monotonic() < deadline, topology.worker.log()
            await asyncio.sleep(0.5)
        assert job["status"] == "succeeded", (job, topology.worker.log())
        assert job["counts"]["products"]["created"] == 30

    async with app.state.sessionmaker() as session:
        stored = await session.get(Contact, contact["id"])
        assert stored is not None
        assert stored.full_name == "Через PgBouncer"
        assert stored.organization_id == org
        products = await session.scalar(
            select(func.count()).select_from(Product).where(Product.organization_id == org)
        )
        assert products == 30
        sync_job = await session.get(SyncJob, job_id)
        assert sync_job is not None
        assert sync_job.status == "succeeded"

    # all of it went through PgBouncer, pooling transactions
    pools = _pgbouncer_show(topology.pgbouncer_port, "POOLS")
    assert any(row[-1] == "transaction" for row in pools), pools
    stats = {row[0]: row for row in _pgbouncer_show(topology.pgbouncer_port, "STATS")}
    database = next(name for name in stats if name.startswith("crm_test_"))
    assert int(stats[database][1]) > 20  # total_xact_count


async def test_state_is_shared_between_api_processes(app: Any, topology: Topology) -> None:
    a, b = topology.a, topology.b
    async with httpx.AsyncClient(timeout=30) as client:
        email, _ = await _user(client, b)

        # rate limit per account (3/minute here): counted across processes
        codes = []
        for base in (a, b, a, b):
            r = await client.post(
                f"{base}/api/v1/auth/login", json={"email": email, "password": "Wrong-Passw0rd!"}
            )
            codes.append(r.status_code)
        assert codes == [401, 401, 401, 429], codes
        await asyncio.sleep(0)

    # the limit is per account: another user logs in; revocation on one process holds on the other
    async with httpx.AsyncClient(timeout=30) as client:
        email2, _ = await _user(client, a)
        tokens = await _login(client, a, email2)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.get(f"{b}/api/v1/auth/me", headers=auth)).status_code == 200
        assert (await client.post(f"{a}/api/v1/auth/logout", headers=auth)).status_code == 204
        me = await client.get(f"{b}/api/v1/auth/me", headers=auth)
        assert me.status_code == 401
        assert me.headers["content-type"].startswith("application/problem+json")

        tokens = await _login(client, b, email2)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        r = await client.post(f"{b}/api/v1/organizations", json={"name": "Shared Org"}, headers=auth)
        assert r.status_code == 201, r.text
        org = r.json()["id"]
        headers = {**auth, "X-Organization-ID": str(org)}

        # idempotency: a retry that lands on the other process replays the first answer
        key = uuid.uuid4().hex
        body = {"full_name": "Once Only"}
        first = await client.post(
            f"{a}/api/v1/contacts", json=body, headers={**headers, "Idempotency-Key": key}
        )
        again = await client.post(
            f"{b}/api/v1/contacts", json=body, headers={**headers, "Idempotency-Key": key}
        )
        assert first.status_code == 201, first.text
        assert again.status_code == 201
        assert again.json() == first.json()

        # cached list totals: a write on one process is seen by the other's next read
        total_a = (await client.get(f"{a}/api/v1/contacts", headers=headers)).json()["total"]
        assert total_a == 1
        r = await client.post(f"{b}/api/v1/contacts", json={"full_name": "Second"}, headers=headers)
        assert r.status_code == 201
        assert (await client.get(f"{a}/api/v1/contacts", headers=headers)).json()["total"] == 2

    async with app.state.sessionmaker() as session:
        names = (
            await session.scalars(
                select(Contact.full_name).where(Contact.organization_id == org).order_by(Contact.id)
            )
        ).all()
    assert names == ["Once Only", "Second"]


async def test_metrics_of_processes_and_worker(topology: Topology) -> None:
    """The API's /metrics adds up both processes (PROMETHEUS_MULTIPROC_DIR); the worker serves its
    own endpoint with the tasks its pool process ran."""
    from crm.auth.jobs import purge_expired_sessions

    purge_expired_sessions.delay()
    task = "auth.purge_expired_sessions"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            try:
                worker = (await client.get(topology.worker_metrics)).text
            except httpx.ConnectError:  # not serving yet
                worker = ""
            if f'task="{task}"' in worker and "crm_celery_tasks_total" in worker:
                break
            assert time.monotonic() < deadline, topology.worker.log()
            await asyncio.sleep(0.3)
        for base in (topology.a, topology.b):
            assert (await client.get(f"{base}/health")).status_code == 200
        scraped = (await client.get(f"{topology.a}/metrics")).text
        assert _metric(scraped, "crm_http_requests_total", route="/health") >= 2
        assert _metric(scraped, "crm_db_pool_size", pool="main") == 6  # 3 per process, two processes
        assert _metric(scraped, "crm_db_pool_checkouts_total", pool="main") > 0
        assert _metric(scraped, "crm_celery_queue_length", queue="crm") >= 0
    assert _metric(worker, "crm_celery_tasks_total", task=task, outcome="succeeded") >= 1
    assert _metric(worker, "crm_celery_task_duration_seconds_count", task=task) >= 1
    assert _metric(worker, "crm_celery_tasks_running", task=task) == 0
    assert _metric(worker, "crm_celery_queue_length", queue="crm") >= 0


# --- the same shape in Docker: compose and the image, checked statically ----------------------------------
def _compose() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    return data


def test_compose_describes_the_topology() -> None:
    services = _compose()["services"]
    assert {"api", "worker", "beat", "nginx", "pgbouncer", "postgres", "redis"} <= set(services)
    env = services["api"]["environment"]
    # the API through PgBouncer in transaction pooling mode, workers and migrations direct
    assert "@pgbouncer:6432/" in env["DATABASE_URL"]
    assert env["DATABASE_PGBOUNCER"] == "true"
    assert "@postgres:5432/" in env["DATABASE_DIRECT_URL"]
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    assert "@postgres:5432/" in services["migrate"]["environment"]["DATABASE_URL"]
    assert services["migrate"]["environment"]["DATABASE_PGBOUNCER"] == "false"
    assert services["api"]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    assert services["worker"]["environment"]["WORKER_METRICS_PORT"] == "9100"
    prometheus = yaml_file("deploy/prometheus.yml")
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["crm-worker"]["dns_sd_configs"][0] == {"names": ["worker"], "type": "A", "port": 9100}


def yaml_file(path: str) -> Any:
    import yaml

    return yaml.safe_load((ROOT / path).read_text())


def test_compose_environment_is_settings() -> None:
    """Every variable the app services get is a field of `Settings` (no typo goes unnoticed), and
    every value that is not a `${...}` reference is valid for it."""
    known = {name.upper() for name in Settings.model_fields} | {"JWT_SECRET_KEY", "PROMETHEUS_MULTIPROC_DIR"}
    services = _compose()["services"]
    for name in ("api", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        assert not set(env) - known, (name, set(env) - known)
        literal = {
            k.lower(): v for k, v in env.items() if "${" not in str(v) and k.lower() in Settings.model_fields
        }
        Settings(**{**literal, "environment": "development"})


def test_dockerfile_builds_locked_non_root_with_healthcheck() -> None:
    text_ = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen" in text_
    users = re.findall(r"^USER (\S+)", text_, flags=re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text_, flags=re.MULTILINE)
    assert re.search(r"^EXPOSE 8000", text_, flags=re.MULTILINE)

"""The `crm` command line (cli.py) run as a real subprocess against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpx import AsyncClient
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.config import Settings
from crm.models import Membership, Organization, User

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Sturdy-Admin-Passw0rd-77"


def crm(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "CREATE_ADMIN_ON_STARTUP": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "crm.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def admin_identity(app: object) -> AsyncIterator[tuple[str, str]]:
    """A unique email and organization name; whatever the CLI committed for them is deleted after."""
    tag = uuid.uuid4().hex[:10]
    email, org_name = f"cli-admin-{tag}@example.com", f"CLI Org {tag}"
    yield email, org_name
    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.execute(delete(Organization).where(Organization.name == org_name))
        await conn.execute(delete(User).where(User.email == email))


class TestCreateAdmin:
    async def test_idempotent(self, app: object, settings: Settings, admin_identity: tuple[str, str]) -> None:
        email, org_name = admin_identity
        args = ("create-admin", "-e", email, "-p", PASSWORD, "-n", "Chief Admin", "-o", org_name)
        for _ in range(2):
            result = crm(settings, *args)
            assert result.returncode == 0, result.stdout + result.stderr
            assert email in result.stdout

        engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            users = (await conn.execute(select(User).where(User.email == email))).all()
            assert len(users) == 1
            user = users[0]
            assert user.is_superuser
            assert user.is_active
            assert user.full_name == "Chief Admin"
            orgs = (await conn.execute(select(Organization).where(Organization.name == org_name))).all()
            assert len(orgs) == 1
            memberships = (await conn.execute(select(Membership).where(Membership.user_id == user.id))).all()
            assert [(m.organization_id, m.role) for m in memberships] == [(orgs[0].id, "owner")]

    async def test_admin_can_log_in(
        self, settings: Settings, admin_identity: tuple[str, str], client: AsyncClient
    ) -> None:
        email, org_name = admin_identity
        result = crm(settings, "create-admin", "-e", email, "-p", PASSWORD, "-o", org_name)
        assert result.returncode == 0, result.stdout + result.stderr
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text

    def test_weak_password_refused(self, settings: Settings) -> None:
        result = crm(settings, "create-admin", "-e", "weak@example.com", "-p", "password")
        assert result.returncode == 2
        assert "common" in result.stdout.lower() or "short" in result.stdout.lower()

    async def test_refused_password_writes_nothing(self, app: object, settings: Settings) -> None:
        crm(settings, "create-admin", "-e", "weak2@example.com", "-p", "123456")
        engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).select_from(User).where(User.email == "weak2@example.com")
            )
        assert count == 0


def test_help_lists_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crm.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for command in ("serve", "worker", "beat", "migrate", "create-admin"):
        assert command in result.stdout


def test_beat_keeps_its_schedule_in_the_checkouts_run_dir(settings: Settings, tmp_path: Path) -> None:
    """`crm beat` on its own keeps its schedule under `.run/` of the directory it runs in, so two
    checkouts on one machine never share one."""
    env = {
        key: value for key, value in os.environ.items() if key not in ("CRM_RUN_DIR", "CELERY_BEAT_SCHEDULE")
    }
    env |= {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "PYTHONPATH": str(ROOT / "src"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "crm.cli", "beat"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        run_dir = tmp_path / ".run"
        while not (
            run_dir.is_dir() and any(p.name.startswith("celerybeat-schedule") for p in run_dir.iterdir())
        ):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "beat wrote no schedule under .run/"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(("senders", "pool"), [("1", "2"), ("3", "4")])
def test_the_worker_keeps_a_pool_process_beside_its_webhook_senders(
    settings: Settings, tmp_path: Path, senders: str, pool: str
) -> None:
    """`crm worker` runs two pool processes, or one more than `WEBHOOK_SENDER_PROCESSES` (each
    sender is busy while deliveries flow), unless `--concurrency` says otherwise."""
    env = os.environ | {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "PYTHONPATH": str(ROOT / "src"),
        "WEBHOOK_SENDER_PROCESSES": senders,
        "WORKER_METRICS_PORT": "0",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm.cli", "worker", "--loglevel", "WARNING"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "concurrency:" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert f"concurrency: {pool} (prefork)" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.committing
async def test_demo_data_fills_an_organization_and_reports_each_kind(
    app: object, settings: Settings, committing_client: AsyncClient
) -> None:
    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        org_id = await conn.scalar(
            Organization.__table__.insert()
            .values(name="Demo", slug=f"demo-{uuid.uuid4().hex[:8]}")
            .returning(Organization.__table__.c.id)
        )

    result = crm(settings, "demo-data", "--org", str(org_id), "--contacts", "40", "--deals", "10")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "'companies': 2, 'contacts': 40, 'deals': 10, 'tasks': 5" in result.stdout

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from crm.admin import heartbeat
from crm.admin.health import broker_ok
from crm.models import SyncJob
from tests.admin.conftest import create_integration, stored
from tests.factories import Factory, assert_problem

HEALTH = "/api/v1/admin/health"


@pytest.mark.usefixtures("probe")
class TestHealth:
    async def test_shape_without_workers(self, client: AsyncClient, factory: Factory, redis: Redis) -> None:
        admin = await factory.actor("admin")
        response = await client.get(HEALTH, headers=admin.headers)
        assert response.status_code == 200
        assert response.json() == {
            "database": "ok",
            "redis": "ok",
            "broker": "ok",
            "workers": [],
            "integrations": [],
        }

    async def test_workers_and_integrations(
        self, client: AsyncClient, factory: Factory, redis: Redis, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        first = await create_integration(client, admin, name="Synced")
        second = await create_integration(client, admin, name="Busy")
        row = await stored(db, first["id"])
        row.last_sync_at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
        row.last_sync_status = "succeeded"
        job = SyncJob(organization_id=admin.org_id, integration_id=second["id"], status="running")
        db.add(job)
        await db.flush()
        other = await factory.actor("owner")
        await create_integration(client, other, name="Not mine")

        now = datetime.now(UTC)
        await redis.set(heartbeat.worker_key("celery@live"), heartbeat.heartbeat_value("celery@live"), ex=90)
        stale = heartbeat.heartbeat_value("celery@stale", now - timedelta(seconds=75))
        await redis.set(heartbeat.worker_key("celery@stale"), stale, ex=90)
        await redis.set(heartbeat.worker_key("celery@garbage"), "not json", ex=90)

        response = await client.get(HEALTH, headers=admin.headers)

        assert response.status_code == 200
        body = response.json()
        assert [w["name"] for w in body["workers"]] == ["celery@live"]
        assert datetime.fromisoformat(body["workers"][0]["last_seen"]) >= now - timedelta(seconds=5)
        assert body["integrations"] == [
            {
                "id": first["id"],
                "name": "Synced",
                "provider": "probe",
                "enabled": True,
                "last_sync_at": "2026-11-01T12:00:00Z",
                "last_sync_status": "succeeded",
                "running_job_id": None,
            },
            {
                "id": second["id"],
                "name": "Busy",
                "provider": "probe",
                "enabled": True,
                "last_sync_at": None,
                "last_sync_status": None,
                "running_job_id": job.id,
            },
        ]

    async def test_heartbeat_written_by_worker_step(
        self, client: AsyncClient, factory: Factory, redis: Redis
    ) -> None:
        heartbeat.beat_once("celery@unit")
        assert await redis.ttl(heartbeat.worker_key("celery@unit")) > 60
        admin = await factory.actor("admin")
        body = (await client.get(HEALTH, headers=admin.headers)).json()
        assert [w["name"] for w in body["workers"]] == ["celery@unit"]

    async def test_redis_down(self, redis_down_client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        response = await redis_down_client.get(HEALTH, headers=admin.headers)
        assert response.status_code == 200
        assert response.json()["redis"] == "down"
        assert response.json()["workers"] == []

    async def test_member_forbidden(self, client: AsyncClient, factory: Factory) -> None:
        member = await factory.actor("member")
        assert_problem(await client.get(HEALTH, headers=member.headers), 403, "permission_denied")


async def test_broker_down_answers_quickly() -> None:
    started = datetime.now(UTC)
    assert await broker_ok("redis://127.0.0.1:1/0") is False
    assert await broker_ok("amqp://guest:guest@127.0.0.1:1//") is False
    assert datetime.now(UTC) - started < timedelta(seconds=10)


def test_heartbeat_step_is_installed() -> None:
    import crm.worker.jobs_index  # noqa: F401
    from crm.worker.app import celery_app

    assert heartbeat.Heartbeat in celery_app.steps["worker"]


def test_heartbeat_step_runs_on_a_timer() -> None:
    class Timer:
        def __init__(self) -> None:
            self.calls: list[tuple[float, Any, Any]] = []

        def call_repeatedly(self, secs: float, fun: Any, args: Any, priority: int = 0) -> Any:
            self.calls.append((secs, fun, args))

            class Entry:
                cancelled = False

                def cancel(self) -> None:
                    self.cancelled = True

            return Entry()

    class Worker:
        hostname = "celery@step"
        timer = Timer()

    step = heartbeat.Heartbeat(Worker())
    step.start(Worker())
    assert Worker.timer.calls[0][0] == heartbeat.INTERVAL
    client = heartbeat._client()
    try:
        assert client.get(heartbeat.worker_key("celery@step"))
        step.stop(Worker())
        assert client.get(heartbeat.worker_key("celery@step")) is None
    finally:
        client.close()

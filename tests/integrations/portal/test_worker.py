"""The corporate portal's directory synced into members by a real worker process: new people become
inactive users without a password, known ones are linked by e-mail, changes follow, people gone lose
their membership (not their user), and a re-run changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from crm.config import Settings
from crm.models import Membership, User
from tests.factories import make_user
from tests.fakes.portal import FakePortal, running
from tests.integrations.bitrix24.test_worker import admin_session, run_job
from tests.workers import Worker, celery_worker

INTEGRATIONS = "/api/v1/admin/integrations"


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with running(FakePortal(users=60)) as server:
        yield server


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with celery_worker(settings, tmp_path, name="portal-test") as process:
        yield process


async def members(app: Any, org_id: int) -> dict[str, tuple[Membership, User]]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.organization_id == org_id, Membership.source == "portal")
        )
        return {m.external_id: (m, u) for m, u in rows.tuples()}


async def test_portal_directory_becomes_members(
    app: Any, committing_client: AsyncClient, worker: Worker, portal: FakePortal
) -> None:
    client = committing_client
    admin = await admin_session(app, client)
    async with app.state.sessionmaker() as session:
        known = await make_user(session, email="a.volkov@tehnomir.ru", full_name="Алексей Волков")
        await session.commit()
    created = await client.post(
        INTEGRATIONS,
        json={
            "provider": "portal",
            "name": "Corporate portal",
            "base_url": portal.base_url,
            "credentials": {"api_key": portal.api_key},
            "settings": {"page_size": 25, "backoff_seconds": 0.05},
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    assert portal.api_key not in created.text
    integration_id = created.json()["id"]

    portal.force_429(2, retry_after=0.3)
    first = await run_job(app, client, worker, admin, integration_id)
    assert first.status == "succeeded", (first.error, worker.log())
    assert first.counts["users"] == {"fetched": 60, "created": 60, "updated": 0, "unchanged": 0, "failed": 0}
    assert portal.early_requests == 0
    found = await members(app, admin.org_id)
    assert set(found) == {str(n) for n in range(1, 61)}
    for external_id, (membership, user) in found.items():
        remote = portal.users[int(external_id)]
        assert (user.full_name, user.email) == (remote["name"], remote["email"])
        assert membership.role == "member"
        if user.id != known.id:
            assert user.is_active is False  # until an admin activates them
            assert user.password_hash == "!"  # no password
    membership, user = found["3"]
    assert user.id == known.id  # matched by e-mail, not duplicated
    assert user.is_active is True
    assert user.password_hash == known.password_hash

    rerun = await run_job(app, client, worker, admin, integration_id)
    assert rerun.status == "succeeded", rerun.error
    assert rerun.counts["users"]["created"] == 0
    assert rerun.counts["users"]["updated"] == 0

    portal.users[2] = {"id": 2, "name": "Мария Петрова", "email": "m.petrova@tehnomir.ru"}
    del portal.users[5]
    portal.users[61] = {"id": 61, "name": "Новый Сотрудник", "email": "new61@tehnomir.ru"}
    changed = await run_job(app, client, worker, admin, integration_id)
    assert changed.status == "succeeded", changed.error
    assert changed.counts["users"]["created"] == 1
    assert changed.counts["users"]["updated"] == 1
    found = await members(app, admin.org_id)
    assert "5" not in found
    assert found["2"][1].full_name == "Мария Петрова"
    assert found["2"][1].email == "m.petrova@tehnomir.ru"
    assert found["61"][1].is_active is False
    async with app.state.sessionmaker() as session:
        gone = await session.scalar(select(User).where(User.email == "employee5@tehnomir.ru"))
        assert gone is not None  # the person keeps their user (and history); only the membership went
        assert (
            await session.scalar(
                select(Membership).where(
                    Membership.user_id == gone.id, Membership.organization_id == admin.org_id
                )
            )
            is None
        )

    # A wrong key: a failed job that says so, without the key.
    portal.api_key = "rotated-key"
    failed = await run_job(app, client, worker, admin, integration_id)
    assert failed.status == "failed"
    assert failed.error == "the portal rejected the API key (401)"
    assert len(await members(app, admin.org_id)) == 60

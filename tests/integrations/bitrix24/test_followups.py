"""Bitrix24 kept current while things change around it, through a real worker against the fake portal:
an event that comes while another job runs gets a job of its own when that job ends, and new
credentials (the application token of outbound events) keep the pipeline the first sync made."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, update

from crm.config import Settings
from crm.integrations import hooks as integration_hooks
from crm.integrations.engine import run_finish_hooks
from crm.models import Deal, Integration, Pipeline, SyncJob
from tests.fakes.bitrix24 import FakeBitrix24, FakeConfig, running
from tests.integrations.bitrix24.test_worker import admin_session, connect, live, run_job, wait_job
from tests.workers import Worker, celery_worker

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# The worker registers the integrations' finish hooks on import; so does this module for its own calls.
assert integration_hooks.follow_up_hook is not None
pytestmark = pytest.mark.committing


@pytest.fixture
def fake() -> Iterator[FakeBitrix24]:
    with running(FakeBitrix24(FakeConfig(contacts=20, companies=5, deals=10, min_gap=0.5))) as server:
        yield server


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with celery_worker(settings, tmp_path, name="bitrix-followups") as process:
        yield process


async def synced(app: Any, client: AsyncClient, worker: Worker, fake: FakeBitrix24) -> tuple[Any, int]:
    """An admin and their integration with the portal, after a first full sync."""
    admin = await admin_session(app, client)
    integration_id = await connect(client, admin, fake)
    first = await run_job(app, client, worker, admin, integration_id)
    assert first.status == "succeeded", (first.error, worker.log())
    return admin, integration_id


async def test_a_deal_event_during_a_contacts_job_is_read_when_that_job_ends(
    app: Any, committing_client: AsyncClient, worker: Worker, fake: FakeBitrix24
) -> None:
    client = committing_client
    admin, integration_id = await synced(app, client, worker, fake)

    # A contacts job is running (as after a contact event) when the portal reports a deal change.
    async with app.state.sessionmaker() as session:
        contacts_job = SyncJob(
            organization_id=admin.org_id,
            integration_id=integration_id,
            status="running",
            trigger="webhook",
            entities=["contacts"],
        )
        session.add(contacts_job)
        await session.commit()
        contacts_job_id = contacts_job.id
    fake.touch("deal", 3, TITLE="Закрыта в портале", OPPORTUNITY="321.00")
    response = await client.post(
        f"/api/v1/integrations/{integration_id}/webhook",
        content=fake.event_body("ONCRMDEALUPDATE", 3, ts=7),
        headers=FORM,
    )
    assert response.status_code == 202, response.text
    assert response.json()["queued"] is False
    assert response.json()["job_id"] == contacts_job_id
    assert response.json()["entities"] == ["deals"]
    assert (await live(app, Deal, admin.org_id))["3"].title != "Закрыта в портале"

    # That job ends: its finish hooks start a deals job for the waiting record, and a worker runs it.
    async with app.state.sessionmaker() as session:
        await session.execute(update(SyncJob).where(SyncJob.id == contacts_job_id).values(status="succeeded"))
        await session.commit()
    assert "follow_up_hook" in await run_finish_hooks(app.state.sessionmaker, contacts_job_id)
    async with app.state.sessionmaker() as session:
        follow_up = await session.scalar(
            select(SyncJob).where(SyncJob.integration_id == integration_id, SyncJob.id > contacts_job_id)
        )
    assert follow_up is not None
    assert follow_up.entities == ["deals"]
    assert follow_up.trigger == "webhook"
    assert follow_up.full is False
    done = await wait_job(app, worker, follow_up.id)
    assert done.status == "succeeded", (done.error, worker.log())
    assert done.counts["deals"]["updated"] == 1
    deal = (await live(app, Deal, admin.org_id))["3"]
    assert deal.title == "Закрыта в портале"
    assert deal.amount == Decimal("321.00")

    # The deals job read what was waiting: its own end starts nothing more.
    await run_finish_hooks(app.state.sessionmaker, done.id)
    async with app.state.sessionmaker() as session:
        jobs = await session.scalar(
            select(func.count()).select_from(SyncJob).where(SyncJob.integration_id == integration_id)
        )
    assert jobs == 3


async def test_new_credentials_keep_the_pipeline_a_new_portal_address_does_not(
    app: Any, committing_client: AsyncClient, worker: Worker, fake: FakeBitrix24
) -> None:
    client = committing_client
    admin, integration_id = await synced(app, client, worker, fake)

    async def state() -> dict[str, Any]:
        async with app.state.sessionmaker() as session:
            integration = await session.get(Integration, integration_id)
            assert integration is not None
            return dict(integration.settings.get("_state") or {})

    async def pipelines() -> list[int]:
        async with app.state.sessionmaker() as session:
            return list(
                await session.scalars(
                    select(Pipeline.id).where(
                        Pipeline.organization_id == admin.org_id, Pipeline.name.like("Bitrix24 %")
                    )
                )
            )

    made = await pipelines()
    assert len(made) == 1
    assert (await state())["stages"]["pipeline_id"] == made[0]
    deals_before = {
        key: (deal.pipeline_id, deal.stage) for key, deal in (await live(app, Deal, admin.org_id)).items()
    }

    # The admin adds the application token of outbound events (docs: Bitrix24, step 5).
    current = await client.get(f"/api/v1/admin/integrations/{integration_id}", headers=admin.headers)
    patched = await client.patch(
        f"/api/v1/admin/integrations/{integration_id}",
        json={
            "credentials": {
                "webhook_user_id": "***",
                "webhook_secret": "***",
                "application_token": "new-token",
            }
        },
        headers={**admin.headers, "If-Match": current.headers["etag"]},
    )
    assert patched.status_code == 200, patched.text
    assert (await state())["stages"]["pipeline_id"] == made[0]

    again = await run_job(app, client, worker, admin, integration_id, full=True)
    assert again.status == "succeeded", (again.error, worker.log())
    assert await pipelines() == made
    assert again.counts["deals"]["updated"] == 0
    deals_after = {
        key: (deal.pipeline_id, deal.stage) for key, deal in (await live(app, Deal, admin.org_id)).items()
    }
    assert deals_after == deals_before

    # Another portal address is another account: nothing of the old one's state is kept.
    current = await client.get(f"/api/v1/admin/integrations/{integration_id}", headers=admin.headers)
    moved = await client.patch(
        f"/api/v1/admin/integrations/{integration_id}",
        json={"base_url": fake.base_url.replace("127.0.0.1", "localhost")},
        headers={**admin.headers, "If-Match": current.headers["etag"]},
    )
    assert moved.status_code == 200, moved.text
    assert await state() == {}

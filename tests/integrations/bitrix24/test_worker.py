"""A Bitrix24 integration set up through the admin API and synced by a real Celery worker process
against the fake portal: a first sync equal to the portal's data, a re-run creating nothing, an
incremental run through a 503 storm, a full run soft-deleting what the portal lost, and an expired
webhook failing the job with a clear message and an alert."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from crm.config import Settings
from crm.models import Alert, Company, Contact, Deal, PipelineStage, SyncJob
from tests.factories import add_member, login, make_org, make_user
from tests.fakes.bitrix24 import FakeBitrix24, FakeConfig, running
from tests.workers import Worker, celery_worker

INTEGRATIONS = "/api/v1/admin/integrations"
SYNC = "/api/v1/admin/sync"
CONFIG = FakeConfig(contacts=120, companies=30, deals=60, min_gap=0.5)


@pytest.fixture
def fake() -> Iterator[FakeBitrix24]:
    with running(FakeBitrix24(FakeConfig(**vars(CONFIG)))) as server:
        yield server


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with celery_worker(settings, tmp_path, name="bitrix-test") as process:
        yield process


async def admin_session(app: Any, client: AsyncClient) -> Any:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "admin")
        await session.commit()
    return await login(client, user, org_id=org.id)


async def connect(client: AsyncClient, admin: Any, fake: FakeBitrix24, **settings: Any) -> int:
    created = await client.post(
        INTEGRATIONS,
        json={
            "provider": "bitrix24",
            "name": "Portal",
            "base_url": fake.base_url,
            "credentials": {
                "webhook_user_id": fake.config.user_id,
                "webhook_secret": fake.config.secret,
                "application_token": fake.config.application_token,
            },
            "settings": {"backoff_seconds": 0.6, **settings},
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    assert fake.config.secret not in created.text
    assert created.json()["credentials"]["webhook_secret"] == "***"
    return int(created.json()["id"])


async def run_job(
    app: Any, client: AsyncClient, worker: Worker, admin: Any, integration_id: int, **body: Any
) -> SyncJob:
    started = await client.post(
        f"{SYNC}/start", json={"integration_id": integration_id, **body}, headers=admin.headers
    )
    assert started.status_code == 202, started.text
    return await wait_job(app, worker, started.json()["id"])


async def wait_job(app: Any, worker: Worker, job_id: int, seconds: float = 90) -> SyncJob:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, worker.log()
        async with app.state.sessionmaker() as session:
            job = await session.get(SyncJob, job_id)
        assert job is not None
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(worker.log())


async def live(app: Any, model: Any, org_id: int) -> dict[str, Any]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(model).where(model.organization_id == org_id, model.deleted_at.is_(None))
        )
        return {row.external_id: row for row in rows}


async def test_bitrix24_sync_through_a_worker(
    app: Any, committing_client: AsyncClient, worker: Worker, fake: FakeBitrix24
) -> None:
    client = committing_client
    admin = await admin_session(app, client)
    integration_id = await connect(client, admin, fake)

    first = await run_job(app, client, worker, admin, integration_id)
    assert first.status == "succeeded", (first.error, worker.log())
    assert first.counts["companies"]["created"] == 30
    assert first.counts["contacts"]["created"] == 120
    assert first.counts["deals"]["created"] == 60
    assert first.errors == []

    contacts = await live(app, Contact, admin.org_id)
    companies = await live(app, Company, admin.org_id)
    deals = await live(app, Deal, admin.org_id)
    assert set(contacts) == {str(i) for i in fake.live_ids("contact")}
    assert set(companies) == {str(i) for i in fake.live_ids("company")}
    assert set(deals) == {str(i) for i in fake.live_ids("deal")}
    for external_id, contact in contacts.items():
        remote = fake.row("contact", int(external_id))
        assert remote is not None
        assert contact.source == "bitrix24"
        assert contact.full_name == f"{remote['NAME']} {remote['LAST_NAME']}"
        work_email = next(e["VALUE"] for e in remote["EMAIL"] if e["VALUE_TYPE"] == "WORK")
        assert contact.email == work_email
        work_phone = next((p["VALUE"] for p in remote["PHONE"] if p["VALUE_TYPE"] == "WORK"), None)
        assert contact.phone_raw == work_phone
        kept = contact.custom_fields["bitrix24"]
        assert [e["value"] for e in kept["emails"]] == [e["VALUE"] for e in remote["EMAIL"]]
        assert [p["value"] for p in kept.get("phones", [])] == [p["VALUE"] for p in remote["PHONE"]]
        company = remote["COMPANY_ID"]
        assert contact.company_id == (companies[company].id if company else None)
    # Contact 20: a HOME e-mail and a MOBILE phone first, the WORK ones win; the rest is kept.
    assert contacts["20"].email == "c20@work.example"
    assert contacts["20"].phone == "+79160000020"
    assert contacts["20"].custom_fields["bitrix24"]["emails"][0] == {
        "type": "HOME",
        "value": "c20@home.example",
    }
    assert contacts["21"].phone is None  # no phones at all
    # Requisites: even companies carry INN/KPP/OGRN, odd ones none.
    assert companies["2"].inn == fake.requisite(2)["RQ_INN"]  # type: ignore[index]
    assert companies["2"].kpp == "770101001"
    assert companies["2"].sync_warnings == []
    assert companies["3"].inn is None

    # The stage map: a pipeline made from the portal's stages; won/lost from their semantics.
    pipeline_ids = {deal.pipeline_id for deal in deals.values()}
    assert len(pipeline_ids) == 1
    async with app.state.sessionmaker() as session:
        stages = list(
            await session.scalars(
                select(PipelineStage)
                .where(PipelineStage.pipeline_id == pipeline_ids.pop())
                .order_by(PipelineStage.position)
            )
        )
    assert [s.key for s in stages] == [
        "new",
        "preparation",
        "prepayment_invoice",
        "executing",
        "final_invoice",
        "won",
        "lose",
        "apology",
    ]
    for external_id, deal in deals.items():
        remote = fake.row("deal", int(external_id))
        assert remote is not None
        assert deal.stage == remote["STAGE_ID"].lower()
        assert deal.amount == Decimal(remote["OPPORTUNITY"])
        assert deal.currency == remote["CURRENCY_ID"]
        assert deal.contact_id == contacts[remote["CONTACT_ID"]].id
        company = remote["COMPANY_ID"]
        assert deal.company_id == (companies[company].id if company != "0" else None)
        expected = {"S": "won", "F": "lost"}.get(remote["STAGE_SEMANTIC_ID"])
        expected = expected or ("new" if remote["STAGE_ID"] == "NEW" else "in_progress")
        assert deal.status == expected, external_id
    assert deals["6"].lost_reason == "Сделка провалена"
    assert deals["5"].closed_at is not None

    # A second run creates and changes nothing.
    rerun = await run_job(app, client, worker, admin, integration_id)
    assert rerun.status == "succeeded", rerun.error
    assert sum(c["created"] + c["updated"] for c in rerun.counts.values()) == 0

    # Incremental: two changes and a new contact, through a 503 storm the client waits out.
    fake.touch(
        "contact", 7, NAME="Пётр", EMAIL=[{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": "p7@new.example"}]
    )
    fake.touch("deal", 1, STAGE_ID="WON", STAGE_SEMANTIC_ID="S")
    added = fake.add("contact", NAME="Новый", LAST_NAME="Контакт")
    fake.force_503(3)
    requests_before = fake.http_requests
    incremental = await run_job(app, client, worker, admin, integration_id)
    assert incremental.status == "succeeded", (incremental.error, worker.log())
    assert incremental.counts["contacts"]["updated"] == 1
    assert incremental.counts["contacts"]["created"] == 1
    assert incremental.counts["deals"]["updated"] == 1
    assert incremental.counts["companies"]["created"] == 0
    assert fake.limited >= 3
    assert fake.early_requests == 0
    assert fake.http_requests - requests_before < 20  # incremental, not a re-read of everything
    contacts = await live(app, Contact, admin.org_id)
    assert contacts["7"].email == "p7@new.example"
    assert contacts["7"].full_name.startswith("Пётр")
    assert contacts[str(added)].full_name == "Новый Контакт"
    deals = await live(app, Deal, admin.org_id)
    assert (deals["1"].stage, deals["1"].status) == ("won", "won")

    # Deletions at the portal: a full run soft-deletes the rows it no longer sees.
    fake.delete("contact", 9)
    fake.delete("deal", 2)
    full = await run_job(app, client, worker, admin, integration_id, full=True)
    assert full.status == "succeeded", full.error
    contacts = await live(app, Contact, admin.org_id)
    assert "9" not in contacts
    assert len(contacts) == 120
    assert "2" not in await live(app, Deal, admin.org_id)
    async with app.state.sessionmaker() as session:
        gone = await session.scalar(
            select(Contact).where(Contact.organization_id == admin.org_id, Contact.external_id == "9")
        )
        assert gone is not None  # soft: the row and its history stay
        assert gone.deleted_at is not None

    # An expired webhook: a failed job with a clear message (no secret in it) and an alert.
    fake.expired = True
    failed = await run_job(app, client, worker, admin, integration_id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert "expired_token" in failed.error
    assert fake.config.secret not in failed.error
    assert fake.config.secret not in worker.log()
    # The alert comes from the finish hooks, which run right after the job's terminal status is stored.
    deadline = time.monotonic() + 30
    while True:
        async with app.state.sessionmaker() as session:
            alerts = await session.scalar(
                select(func.count()).select_from(Alert).where(Alert.organization_id == admin.org_id)
            )
        if alerts or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert alerts == 1
    shown = await client.get(f"{SYNC}/jobs/{failed.id}", headers=admin.headers)
    assert shown.status_code == 200
    assert fake.config.secret not in shown.text


async def test_bitrix24_events_become_targeted_syncs(
    app: Any, committing_client: AsyncClient, worker: Worker, fake: FakeBitrix24
) -> None:
    client = committing_client
    admin = await admin_session(app, client)
    integration_id = await connect(client, admin, fake)
    first = await run_job(app, client, worker, admin, integration_id)
    assert first.status == "succeeded", (first.error, worker.log())
    hook = f"/api/v1/integrations/{integration_id}/webhook"
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    # A forged event (wrong application token) is refused and queues nothing.
    forged = await client.post(
        hook, content=fake.event_body("ONCRMCONTACTDELETE", 4, token="forged"), headers=form
    )
    assert forged.status_code == 401
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(SyncJob)) == 1

    # The portal deletes contact 4 and tells us: the job reads exactly that record and soft-deletes it.
    fake.delete("contact", 4)
    started = time.monotonic()
    response = await client.post(hook, content=fake.event_body("ONCRMCONTACTDELETE", 4, ts=1), headers=form)
    assert time.monotonic() - started < 1.0
    assert response.status_code == 202, response.text
    assert response.json()["queued"] is True
    assert response.json()["entities"] == ["contacts"]
    job = await wait_job(app, worker, response.json()["job_id"])
    assert job.status == "succeeded", job.error
    assert job.trigger == "webhook"
    assert job.counts["contacts"]["fetched"] == 1
    contacts = await live(app, Contact, admin.org_id)
    assert "4" not in contacts
    assert len(contacts) == 119

    # A replay of the same event is acknowledged and queues nothing.
    replay = await client.post(hook, content=fake.event_body("ONCRMCONTACTDELETE", 4, ts=1), headers=form)
    assert replay.status_code == 202
    assert replay.json()["duplicate"] is True
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(SyncJob)) == 2

    # An update event: the deal is read and updated.
    fake.touch("deal", 3, TITLE="Изменена в портале", OPPORTUNITY="777.00")
    response = await client.post(hook, content=fake.event_body("ONCRMDEALUPDATE", 3, ts=2), headers=form)
    assert response.status_code == 202
    job = await wait_job(app, worker, response.json()["job_id"])
    assert job.status == "succeeded", job.error
    assert job.counts["deals"]["updated"] == 1
    assert job.counts["deals"]["created"] == 0
    deals = await live(app, Deal, admin.org_id)
    assert deals["3"].title == "Изменена в портале"
    assert deals["3"].amount == Decimal("777.00")
    assert fake.early_requests == 0

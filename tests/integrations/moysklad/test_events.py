"""MoySklad `DELETE` webhook events: the counterparty's local row is soft-deleted as the event is
received (no sync has to run), replays are harmless, and a later sync that sees it again restores it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.models import Company, Contact, Integration, SyncJob
from tests.factories import make_org
from tests.fakes.moysklad import FakeConfig, FakeMoySklad
from tests.integrations.moysklad.test_sync import moysklad
from tests.sync.conftest import Syncer

BASE = "https://api.moysklad.ru/api/remap/1.2/entity"


@pytest.fixture
def syncer(db: AsyncSession, test_maker: async_sessionmaker[AsyncSession], app: Any) -> Syncer:
    return Syncer(db, test_maker, app.state.redis)


def event(action: str, kind: str, remote_id: str) -> dict[str, Any]:
    return {
        "meta": {"type": kind, "href": f"{BASE}/{kind}/{remote_id}"},
        "action": action,
        "accountId": "1f3c4a52-0b7e-11ef-0a80-0d5b00000001",
    }


def body(*events: dict[str, Any]) -> bytes:
    audit = {"meta": {"type": "audit", "href": f"{BASE}/../audit/x"}, "moment": "2024-05-24 11:01:58"}
    return orjson.dumps({"auditContext": audit, "events": list(events)})


async def post(client: AsyncClient, hook: tuple[int, str], content: bytes, request_id: str) -> Any:
    response = await client.post(
        f"/api/v1/integrations/{hook[0]}/webhook",
        params={"token": hook[1], "requestId": request_id},
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def deleted(db: AsyncSession, model: Any, org_id: int) -> dict[str, Any]:
    """The organization's synced rows: external id → `deleted_at`."""
    rows = await db.execute(
        select(model.external_id, model.deleted_at).where(
            model.organization_id == org_id, model.source == "moysklad"
        )
    )
    return dict(rows.tuples().all())


@pytest.mark.parametrize(
    "fake",
    [FakeConfig(products=0, services=0, folders=0, stores=0, counterparties=6, documents=0)],
    indirect=True,
)
async def test_delete_events_soft_delete_counterparties_at_once(
    db: AsyncSession, client: AsyncClient, syncer: Syncer, fake: FakeMoySklad
) -> None:
    org_id = (await make_org(db)).id
    other_org = (await make_org(db)).id
    integration = await moysklad(db, fake, org_id)
    other = await moysklad(db, fake, other_org)
    hook = (integration.id, integration.webhook_secret)
    for each in (integration, other):
        synced = await syncer.sync(each, entities=["counterparties"])
        assert synced.status == "succeeded", synced.error
    companies, contacts = await deleted(db, Company, org_id), await deleted(db, Contact, org_id)
    assert companies
    assert contacts
    company_id, contact_id = sorted(companies)[0], sorted(contacts)[0]
    kept_company = sorted(companies)[-1]
    jobs_before = len((await db.scalars(select(SyncJob).where(SyncJob.integration_id == hook[0]))).all())

    answer = await post(
        client,
        hook,
        body(
            event("DELETE", "counterparty", company_id),
            event("DELETE", "counterparty", contact_id),
            event("UPDATE", "counterparty", kept_company),
            event("DELETE", "counterparty", "00000000-0000-0000-0000-000000000000"),  # never synced
        ),
        "delivery-1",
    )

    assert answer["entities"] == ["counterparties"]
    assert answer["queued"] is True  # the sync still runs for the update
    companies, contacts = await deleted(db, Company, org_id), await deleted(db, Contact, org_id)
    assert companies[company_id] is not None
    assert contacts[contact_id] is not None
    assert companies[kept_company] is None
    assert all(at is None for key, at in companies.items() if key != company_id)
    assert all(at is None for key, at in contacts.items() if key != contact_id)
    # The other organization's copy of the same MoySklad account is its own integration's business.
    assert all(at is None for at in (await deleted(db, Company, other_org)).values())
    jobs = (await db.scalars(select(SyncJob).where(SyncJob.integration_id == hook[0]))).all()
    assert len(jobs) == jobs_before + 1

    # MoySklad's retry of that delivery changes nothing and queues nothing.
    deleted_at = companies[company_id]
    again = await post(client, hook, body(event("DELETE", "counterparty", company_id)), "delivery-1")
    assert again["duplicate"] is True
    assert (await deleted(db, Company, org_id))[company_id] == deleted_at

    # A sync that still sees the counterparty (it came back at MoySklad) restores it.
    await db.execute(update(SyncJob).where(SyncJob.integration_id == hook[0]).values(status="cancelled"))
    await db.commit()
    current = await db.get(Integration, hook[0])
    assert current is not None
    restored = await syncer.sync(current, entities=["counterparties"], full=True)
    assert restored.status == "succeeded", restored.error
    assert (await deleted(db, Company, org_id))[company_id] is None
    assert (await deleted(db, Contact, org_id))[contact_id] is None

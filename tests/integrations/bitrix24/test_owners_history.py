"""Bitrix24 owners and deal history, synced by a real Celery worker from the fake portal: a record
assigned to a portal user whose e-mail belongs to one of our members gets that member as owner (others
keep theirs), and synced deals' stage and status changes show in `GET /deals/{id}/history` as changes
through the API do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from crm.config import Settings
from crm.models import Company, Contact, Deal, DealHistory, Organization, User
from tests.factories import add_member, make_user
from tests.fakes.bitrix24 import USERS, FakeBitrix24, FakeConfig, running
from tests.integrations.bitrix24.test_worker import admin_session, connect, live, run_job
from tests.workers import Worker, celery_worker

CONFIG = FakeConfig(contacts=30, companies=9, deals=24, min_gap=0.5)


@pytest.fixture
def fake() -> Iterator[FakeBitrix24]:
    with running(FakeBitrix24(FakeConfig(**vars(CONFIG)))) as server:
        yield server


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with celery_worker(settings, tmp_path, name="bitrix-owners") as process:
        yield process


async def member_with_email(app: Any, org_id: int, email: str) -> int:
    """A member of the organization whose e-mail is `email` (in other letter case)."""
    async with app.state.sessionmaker() as session:
        user = await session.scalar(select(User).where(func.lower(User.email) == email.lower()))
        if user is None:
            user = await make_user(session, email=email.upper())
        org = await session.get(Organization, org_id)
        assert org is not None
        await add_member(session, org, user, "manager")
        await session.commit()
        return user.id


async def history(client: AsyncClient, admin: Any, deal_id: int) -> list[dict[str, Any]]:
    answer = await client.get(f"/api/v1/deals/{deal_id}/history", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["items"]
    return sorted(rows, key=lambda row: (row["created_at"], row["id"]))


async def test_assigned_portal_users_become_owners_and_deal_moves_are_history(
    app: Any, committing_client: AsyncClient, worker: Worker, fake: FakeBitrix24
) -> None:
    client = committing_client
    admin = await admin_session(app, client)
    portal_user = next(u for u in USERS if u["ID"] == "7")
    member_id = await member_with_email(app, admin.org_id, portal_user["EMAIL"])
    integration_id = await connect(client, admin, fake)

    first = await run_job(app, client, worker, admin, integration_id)
    assert first.status == "succeeded", (first.error, worker.log())
    assert "user.get" in fake.methods

    # Owners: portal user 7 is our member (by e-mail); users 1 and 9 are not, so no owner is set.
    for model, entity in ((Contact, "contact"), (Company, "company"), (Deal, "deal")):
        rows = await live(app, model, admin.org_id)
        assert len(rows) == len(fake.live_ids(entity))
        for external_id, row in rows.items():
            remote = fake.row(entity, int(external_id))
            assert remote is not None
            expected = member_id if remote["ASSIGNED_BY_ID"] == "7" else None
            assert row.owner_id == expected, (entity, external_id)
            assert row.custom_fields["bitrix24"]["assigned_by_id"] == remote["ASSIGNED_BY_ID"]
    deals = await live(app, Deal, admin.org_id)
    assert any(d.owner_id == member_id for d in deals.values())
    assert any(d.owner_id is None for d in deals.values())

    # History of a synced deal: created in its stage, like a deal created through the API.
    deal = deals["1"]
    assert (deal.stage, deal.status) == ("preparation", "in_progress")
    rows = await history(client, admin, deal.id)
    assert [(r["field"], r["from_value"], r["to_value"]) for r in rows] == [("stage", None, "preparation")]

    # A move at the portal: the stay ends, the new stage and the new status are recorded.
    fake.touch("deal", 1, STAGE_ID="WON", STAGE_SEMANTIC_ID="S")
    # A change that moves nothing writes no history.
    fake.touch("deal", 3, TITLE="Renamed")
    second = await run_job(app, client, worker, admin, integration_id)
    assert second.status == "succeeded", (second.error, worker.log())
    assert second.counts["deals"]["updated"] == 2
    rows = await history(client, admin, deal.id)
    assert [(r["field"], r["from_value"], r["to_value"]) for r in rows] == [
        ("stage", None, "preparation"),
        ("stage", "preparation", "won"),
        ("status", "in_progress", "won"),
    ]
    assert rows[1]["created_at"] == rows[2]["created_at"]
    untouched = await history(client, admin, deals["3"].id)
    assert [(r["field"], r["from_value"]) for r in untouched] == [("stage", None)]

    # The funnel's bookkeeping follows: the stay in `preparation` is closed, both stages entered.
    async with app.state.sessionmaker() as session:
        entered = await session.scalar(select(Deal.entered_stages).where(Deal.id == deal.id))
        stays = (
            await session.execute(
                select(DealHistory.to_value, DealHistory.left_at)
                .where(DealHistory.deal_id == deal.id, DealHistory.field == "stage")
                .order_by(DealHistory.id)
            )
        ).all()
    assert set(entered or []) == {"preparation", "won"}
    assert stays[0].left_at is not None
    assert stays[0].left_at.isoformat().replace("+00:00", "Z")[:19] == rows[1]["created_at"][:19]
    assert stays[1].left_at is None

    # A re-run with nothing changed adds nothing.
    third = await run_job(app, client, worker, admin, integration_id)
    assert third.status == "succeeded", third.error
    assert len(await history(client, admin, deal.id)) == 3

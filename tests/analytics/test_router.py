"""`/api/v1/analytics`: deals summary, funnel and dashboard, cached per organization (SPEC §7, §18, §19.4,
§19.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient, Response
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.analytics.repository import AnalyticsRepository
from crm.models import Deal, DealHistory, Organization
from tests.analytics.support import (
    SalesPipeline,
    make_deal,
    make_pipeline,
    make_task,
    move,
    set_status,
)
from tests.factories import (
    Actor,
    Factory,
    add_member,
    assert_problem,
    join_another_org,
    login,
    make_api_key,
    make_org,
    make_user,
)

SUMMARY = "/api/v1/analytics/deals/summary"
FUNNEL = "/api/v1/analytics/deals/funnel"
DASHBOARD = "/api/v1/analytics/dashboard"
HOUR = timedelta(hours=1)


async def get(client: AsyncClient, actor: Actor, url: str, **params: Any) -> Response:
    response = await client.get(url, params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response


# Deals summary ----------------------------------------------------------------------------------


async def summary_fixture(db: AsyncSession, org_id: int) -> None:
    """RUB organization: 7 live deals (2 new, 1 in progress, 3 won, 1 lost), 2 of them in other
    currencies, 3 created 60 days ago; plus a deleted won deal and another organization's deal."""
    pipeline = await make_pipeline(db, org_id)
    old = datetime.now(UTC) - timedelta(days=60)
    await make_deal(db, org_id, pipeline, amount="100.00", status="new")
    await make_deal(db, org_id, pipeline, amount="50.50", status="new", created_at=old)
    await make_deal(db, org_id, pipeline, amount="1000", status="in_progress", currency="USD")
    await make_deal(db, org_id, pipeline, amount="100.00", status="won", created_at=old)
    await make_deal(db, org_id, pipeline, amount="200.01", status="won")
    await make_deal(db, org_id, pipeline, amount="999", status="won", currency="EUR", created_at=old)
    await make_deal(db, org_id, pipeline, amount="10", status="lost")
    await make_deal(db, org_id, pipeline, amount="5000", status="won", deleted_at=datetime.now(UTC))
    other = await make_org(db)
    await make_deal(db, other.id, await make_pipeline(db, other.id), amount="777", status="won")


EXPECTED_SUMMARY = {
    "total_deals": 7,
    "by_status": {
        "new": {"count": 2, "amount": "150.50"},
        "in_progress": {"count": 1, "amount": "0.00"},
        "won": {"count": 3, "amount": "300.01"},
        "lost": {"count": 1, "amount": "10.00"},
    },
    "won_amount": "300.01",
    "average_won_amount": "150.01",  # 300.01 / 2 won deals in RUB = 150.005, half-up
    "win_rate": 0.75,
    "new_last_30_days": 4,
    "currency": "RUB",
}


class TestDealsSummary:
    async def test_figures(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        await summary_fixture(db, actor.org_id)

        response = await get(client, actor, SUMMARY)

        assert response.json() == EXPECTED_SUMMARY

    async def test_amounts_follow_the_organization_currency(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await summary_fixture(db, actor.org_id)
        await db.execute(update(Organization).where(Organization.id == actor.org_id).values(currency="USD"))

        body = (await get(client, actor, SUMMARY)).json()

        assert body["currency"] == "USD"
        assert body["by_status"]["in_progress"] == {"count": 1, "amount": "1000.00"}
        assert body["by_status"]["won"] == {"count": 3, "amount": "0.00"}
        assert (body["won_amount"], body["average_won_amount"], body["win_rate"]) == ("0.00", "0.00", 0.75)

    async def test_win_rate_is_unrounded(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        pipeline = await make_pipeline(db, actor.org_id)
        await make_deal(db, actor.org_id, pipeline, amount="1", status="won")
        for _ in range(2):
            await make_deal(db, actor.org_id, pipeline, amount="1", status="lost")

        body = (await get(client, actor, SUMMARY)).json()

        assert body["win_rate"] == 1 / 3
        assert body["average_won_amount"] == "1.00"

    async def test_empty_organization(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await get(client, actor, SUMMARY)

        zero = {"count": 0, "amount": "0.00"}
        assert response.json() == {
            "total_deals": 0,
            "by_status": {"new": zero, "in_progress": zero, "won": zero, "lost": zero},
            "won_amount": "0.00",
            "average_won_amount": "0.00",
            "win_rate": 0,
            "new_last_30_days": 0,
            "currency": "RUB",
        }

    async def test_without_organization_header_is_400(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")
        await join_another_org(factory.db, actor.user)

        response = await client.get(SUMMARY, headers=actor.auth)

        assert_problem(response, 400, "organization_required")

    async def test_not_a_member_is_403(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        other = await make_org(db)

        response = await client.get(SUMMARY, headers={**actor.auth, "X-Organization-ID": str(other.id)})

        assert_problem(response, 403, "not_a_member")

    async def test_api_key_without_analytics_scope_is_403(
        self, client: AsyncClient, db: AsyncSession
    ) -> None:
        org = await make_org(db)
        _, raw = await make_api_key(db, org, ["deals:read"])

        response = await client.get(SUMMARY, headers={"X-API-Key": raw})

        assert_problem(response, 403, "permission_denied")


# Funnel ----------------------------------------------------------------------------------------

DAY1 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def funnel_fixture(db: AsyncSession, org_id: int) -> SalesPipeline:
    """Deals of the default pipeline `lead → qualification → proposal → negotiation`, one created
    each day from 1 March 2025 (stays in hours):

    D1 (1 Mar)  lead 1h → qualification 2h → proposal 4h → negotiation (open; won later: a status
                row, which ends no stay). Amount 1000.
    D2 (2 Mar)  lead 2h → qualification (open). Amount 500.
    D3 (3 Mar)  lead 3h → qualification 1h → proposal 2h → back to qualification 4h → proposal (open).
                Amount 300 USD: counted, not summed.
    D4 (4 Mar, 23:30)  lead (open). Amount 200.
    D5 (5 Mar, 00:00)  lead 4h → proposal (skipped qualification; open). Amount 100.
    Deleted, in another pipeline or in another organization (never counted): D6 (2 Mar, lead 100h →
    qualification 100h → negotiation), D7, D8.
    """
    pipeline = await make_pipeline(db, org_id)

    d1 = await make_deal(db, org_id, pipeline, amount="1000", created_at=DAY1)
    await move(db, d1, "qualification", DAY1 + 1 * HOUR)
    await move(db, d1, "proposal", DAY1 + 3 * HOUR)
    await move(db, d1, "negotiation", DAY1 + 7 * HOUR)
    await set_status(db, d1, "won", DAY1 + 8 * HOUR)

    t2 = DAY1 + timedelta(days=1)
    d2 = await make_deal(db, org_id, pipeline, amount="500", created_at=t2)
    await move(db, d2, "qualification", t2 + 2 * HOUR)

    t3 = DAY1 + timedelta(days=2)
    d3 = await make_deal(db, org_id, pipeline, amount="300", currency="USD", created_at=t3)
    await move(db, d3, "qualification", t3 + 3 * HOUR)
    await move(db, d3, "proposal", t3 + 4 * HOUR)
    await move(db, d3, "qualification", t3 + 6 * HOUR)
    await move(db, d3, "proposal", t3 + 10 * HOUR)

    await make_deal(db, org_id, pipeline, amount="200", created_at=datetime(2025, 3, 4, 23, 30, tzinfo=UTC))

    t5 = datetime(2025, 3, 5, tzinfo=UTC)
    d5 = await make_deal(db, org_id, pipeline, amount="100", created_at=t5)
    await move(db, d5, "proposal", t5 + 4 * HOUR)

    d6 = await make_deal(db, org_id, pipeline, amount="9000", created_at=t2, deleted_at=datetime.now(UTC))
    await move(db, d6, "qualification", t2 + 100 * HOUR)
    await move(db, d6, "negotiation", t2 + 200 * HOUR)

    other_pipeline = await make_pipeline(db, org_id, is_default=False, name="Partners")
    d7 = await make_deal(db, org_id, other_pipeline, amount="70", created_at=t2)
    await move(db, d7, "negotiation", t2 + 50 * HOUR)

    other = await make_org(db)
    foreign = await make_pipeline(db, other.id)
    d8 = await make_deal(db, other.id, foreign, amount="80", created_at=t2)
    await move(db, d8, "negotiation", t2 + 50 * HOUR)
    return pipeline


def stage(
    key: str, count: int, amount: str, reached: int, conversion: float | None, median: float | None
) -> dict[str, Any]:
    return {
        "stage": key,
        "name": key.capitalize(),
        "count": count,
        "amount": amount,
        "reached": reached,
        "conversion": conversion,
        "median_seconds_in_stage": median,
    }


class TestDealsFunnel:
    async def test_hand_computed_funnel(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        pipeline = await funnel_fixture(db, actor.org_id)

        response = await get(client, actor, FUNNEL)

        # reached: lead D1–D5; qualification D1, D2, D3 and D5 (went past it); proposal D1, D3, D5;
        # negotiation D1. Completed stays: lead 1h, 2h, 3h, 4h → 2.5h; qualification 2h (D1), 1h and
        # 4h (D3) → 2h; proposal 4h (D1), 2h (D3) → 3h; negotiation none.
        assert response.json() == {
            "pipeline_id": pipeline.id,
            "date_from": None,
            "date_to": None,
            "currency": "RUB",
            "stages": [
                stage("lead", 1, "200.00", 5, None, 9000.0),
                stage("qualification", 1, "500.00", 4, 0.8, 7200.0),
                stage("proposal", 2, "100.00", 3, 0.75, 10800.0),
                stage("negotiation", 1, "1000.00", 1, 1 / 3, None),
            ],
        }

    @pytest.mark.committing
    async def test_medians_read_beside_the_grouped_pass_are_the_same(
        self, app: Any, committing_client: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async with app.state.sessionmaker() as session:
            user, org = await make_user(session), await make_org(session)
            await add_member(session, org, user, "member")
            pipeline = await funnel_fixture(session, org.id)
            await session.commit()
        actor = await login(committing_client, user, org_id=org.id)
        beside: list[int] = []
        read_beside = AnalyticsRepository._medians_on_own_connection

        async def spy(self: AnalyticsRepository, pipeline_id: int, keys: Any) -> list[float | None]:
            beside.append(pipeline_id)
            return await read_beside(self, pipeline_id, keys)

        monkeypatch.setattr(AnalyticsRepository, "_medians_on_own_connection", spy)

        response = await get(committing_client, actor, FUNNEL)

        assert beside == [pipeline.id]  # committed data: the medians came from a connection of their own
        stages = response.json()["stages"]
        assert [s["median_seconds_in_stage"] for s in stages] == [9000.0, 7200.0, 10800.0, None]
        assert [s["reached"] for s in stages] == [5, 4, 3, 1]

    async def test_deleting_and_restoring_a_deal_takes_its_stays_out_and_back(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)
        org = await db.get(Organization, actor.org_id)
        admin = await factory.actor("admin", org=org)
        d1 = await db.scalar(select(Deal.id).where(Deal.organization_id == actor.org_id, Deal.amount == 1000))
        before = (await get(client, actor, FUNNEL)).json()["stages"]

        deleted = await client.delete(f"/api/v1/deals/{d1}", headers=admin.headers)
        after_delete = (await get(client, actor, FUNNEL)).json()["stages"]
        restored = await client.post(f"/api/v1/deals/{d1}/restore", headers=admin.headers)
        after_restore = (await get(client, actor, FUNNEL)).json()["stages"]

        assert (deleted.status_code, restored.status_code) == (204, 200)
        # Without D1: lead stays 2h, 3h, 4h; qualification 1h, 4h (D3); proposal 2h (D3).
        assert after_delete == [
            stage("lead", 1, "200.00", 4, None, 10800.0),
            stage("qualification", 1, "500.00", 3, 0.75, 9000.0),
            stage("proposal", 2, "100.00", 2, 2 / 3, 7200.0),
            stage("negotiation", 0, "0.00", 0, 0.0, None),
        ]
        assert after_restore == before
        assert (
            await db.scalar(
                select(func.count()).where(DealHistory.deal_id == d1, DealHistory.deal_deleted.is_(True))
            )
            == 0
        )

    async def test_stages_entered_through_the_api_are_reached(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        actor = await factory.actor("manager")
        created = await client.post("/api/v1/deals", json={"title": "Fast track"}, headers=actor.headers)
        deal_id = created.json()["id"]
        stages = [s["stage"] for s in (await get(client, actor, FUNNEL)).json()["stages"]]
        moved = await client.patch(
            f"/api/v1/deals/{deal_id}/stage", json={"stage": stages[2]}, headers=actor.headers
        )

        body = (await get(client, actor, FUNNEL)).json()

        assert (created.status_code, moved.status_code) == (201, 200)
        assert [s["reached"] for s in body["stages"]][:3] == [1, 1, 1]
        assert body["stages"][0]["median_seconds_in_stage"] is not None

    async def test_date_filter_is_inclusive_on_created_at(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)

        response = await get(client, actor, FUNNEL, date_from="2025-03-02", date_to="2025-03-04")

        # D2, D3 and D4 (created 4 March 23:30); D1 is a day early, D5 a moment late.
        body = response.json()
        assert (body["date_from"], body["date_to"]) == ("2025-03-02", "2025-03-04")
        assert body["stages"] == [
            stage("lead", 1, "200.00", 3, None, 9000.0),
            stage("qualification", 1, "500.00", 2, 2 / 3, 9000.0),
            stage("proposal", 1, "0.00", 1, 0.5, 7200.0),
            stage("negotiation", 0, "0.00", 0, 0.0, None),
        ]

    async def test_date_from_alone(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)

        body = (await get(client, actor, FUNNEL, date_from="2025-03-05")).json()

        assert body["stages"] == [
            stage("lead", 0, "0.00", 1, None, 14400.0),
            stage("qualification", 0, "0.00", 1, 1.0, None),
            stage("proposal", 1, "100.00", 1, 1.0, None),
            stage("negotiation", 0, "0.00", 0, 0.0, None),
        ]

    async def test_conversion_is_null_after_a_stage_nobody_reached(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)

        body = (await get(client, actor, FUNNEL, date_to="2025-02-28")).json()

        assert [(s["reached"], s["conversion"], s["count"]) for s in body["stages"]] == [(0, None, 0)] * 4

    async def test_another_pipeline_by_id(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)
        partners = await make_pipeline(db, actor.org_id, ("intro", "contract"), is_default=False)
        deal = await make_deal(db, actor.org_id, partners, amount="10", created_at=DAY1)
        await move(db, deal, "contract", DAY1 + 5 * HOUR)

        body = (await get(client, actor, FUNNEL, pipeline_id=partners.id)).json()

        assert body["pipeline_id"] == partners.id
        assert body["stages"] == [
            stage("intro", 0, "0.00", 1, None, 18000.0),
            stage("contract", 1, "10.00", 1, 1.0, None),
        ]

    async def test_archived_stages_are_left_out_but_still_order_moves(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        pipeline = await make_pipeline(db, actor.org_id, ("lead", "demo", "contract"), archived=("demo",))
        deal = await make_deal(db, actor.org_id, pipeline, created_at=DAY1)
        await move(db, deal, "demo", DAY1 + HOUR)

        body = (await get(client, actor, FUNNEL)).json()

        assert body["stages"] == [
            stage("lead", 0, "0.00", 1, None, 3600.0),
            stage("contract", 0, "0.00", 0, 0.0, None),
        ]

    async def test_pipeline_of_another_organization_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await make_pipeline(db, actor.org_id)
        other = await make_org(db)
        foreign = await make_pipeline(db, other.id)

        response = await client.get(FUNNEL, params={"pipeline_id": foreign.id}, headers=actor.headers)

        assert_problem(response, 404, "not_found")

    async def test_no_default_pipeline_is_404(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await client.get(FUNNEL, headers=actor.headers)

        assert_problem(response, 404, "not_found")

    async def test_dates_out_of_order_are_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await client.get(
            FUNNEL, params={"date_from": "2025-03-05", "date_to": "2025-03-01"}, headers=actor.headers
        )

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["query", "date_from"]

    async def test_dates_at_the_calendar_limits(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)

        body = (await get(client, actor, FUNNEL, date_from="0001-01-01", date_to="9999-12-31")).json()

        assert [s["reached"] for s in body["stages"]] == [5, 4, 3, 1]

    async def test_invalid_date_is_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await client.get(FUNNEL, params={"date_from": "yesterday"}, headers=actor.headers)

        assert_problem(response, 422, "validation_error")


# Dashboard -------------------------------------------------------------------------------------


class TestDashboard:
    async def test_crm_figures_and_empty_sales(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        org_id = actor.org_id
        pipeline = await make_pipeline(db, org_id)
        now = datetime.now(UTC)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        await make_deal(db, org_id, pipeline, amount="100.00", status="new")
        await make_deal(db, org_id, pipeline, amount="50.50", status="in_progress")
        await make_deal(db, org_id, pipeline, amount="70", status="in_progress", currency="USD")
        await make_deal(db, org_id, pipeline, amount="5", status="new", deleted_at=now)
        await make_deal(db, org_id, pipeline, amount="300", status="won", closed_at=now)
        await make_deal(db, org_id, pipeline, amount="40", status="won", closed_at=now, currency="EUR")
        await make_deal(db, org_id, pipeline, amount="900", status="won", closed_at=month_start - HOUR)
        await make_deal(db, org_id, pipeline, amount="20", status="lost", closed_at=now)
        for status in ("open", "in_progress", "done", "cancelled"):
            await make_task(db, org_id, due_date=now - HOUR, status=status)
        await make_task(db, org_id, due_date=now + HOUR)
        await make_task(db, org_id, due_date=None)
        other = await make_org(db)
        await make_task(db, other.id, due_date=now - HOUR)
        await make_deal(db, other.id, await make_pipeline(db, other.id), amount="1", status="new")

        response = await get(client, actor, DASHBOARD)

        first = month_start.date()
        last = ((month_start + timedelta(days=32)).replace(day=1) - timedelta(days=1)).date()
        assert response.json() == {
            "crm": {
                "open_deals": 3,
                "pipeline_value": "150.50",
                "won_this_month": {"count": 2, "amount": "300.00"},
                "overdue_tasks": 2,
                "currency": "RUB",
            },
            "sales": {
                "available": False,
                "date_from": first.isoformat(),
                "date_to": last.isoformat(),
                "revenue": "0.00",
                "orders": 0,
                "average_check": "0.00",
                "top_products": [],
                "low_stock_count": 0,
                "currency": "RUB",
            },
        }

    async def test_sales_period_from_the_query(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        body = (await get(client, actor, DASHBOARD, date_from="2025-01-01", date_to="2025-03-31")).json()

        assert (body["sales"]["date_from"], body["sales"]["date_to"]) == ("2025-01-01", "2025-03-31")

    async def test_sales_period_out_of_order_is_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await client.get(
            DASHBOARD, params={"date_from": "2025-03-02", "date_to": "2025-03-01"}, headers=actor.headers
        )

        assert_problem(response, 422, "validation_error")


# Cache -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [SUMMARY, FUNNEL, DASHBOARD])
class TestCache:
    async def test_miss_then_hit_with_the_same_body(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, url: str
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)

        first = await get(client, actor, url)
        second = await get(client, actor, url)

        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        assert second.content == first.content

    async def test_a_record_write_invalidates_at_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, url: str
    ) -> None:
        actor = await factory.actor("manager")
        pipeline = await funnel_fixture(db, actor.org_id)
        before = (await get(client, actor, url)).json()
        # A deal stored behind the API's back is not seen while the cached answer stands...
        await make_deal(db, actor.org_id, pipeline, amount="1", status="new", created_at=DAY1)
        assert (await get(client, actor, url)).headers["x-cache"] == "HIT"

        # ...and any write through the API drops the organization's cached answers at once.
        created = await client.post("/api/v1/contacts", json={"full_name": "Новый"}, headers=actor.headers)
        assert created.status_code == 201, created.text
        after = await get(client, actor, url)

        assert after.headers["x-cache"] == "MISS"
        assert after.json() != before

    async def test_organizations_do_not_share_answers(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, url: str
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)
        stranger = await factory.actor("member")
        await make_pipeline(db, stranger.org_id)
        await get(client, actor, url)

        response = await get(client, stranger, url)

        assert response.headers["x-cache"] == "MISS"
        assert response.content != (await get(client, actor, url)).content

    async def test_redis_down_still_answers_from_the_database(
        self,
        client: AsyncClient,
        redis_down_client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        url: str,
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)
        expected = (await get(client, actor, url)).json()

        first = await get(redis_down_client, actor, url)
        second = await get(redis_down_client, actor, url)

        assert first.json() == second.json() == expected
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "MISS")


class TestCacheKeys:
    async def test_each_parameter_set_is_cached_apart(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await funnel_fixture(db, actor.org_id)
        whole = await get(client, actor, FUNNEL)

        filtered = await get(client, actor, FUNNEL, date_from="2025-03-05")

        assert filtered.headers["x-cache"] == "MISS"
        assert filtered.json()["stages"] != whole.json()["stages"]
        assert (await get(client, actor, FUNNEL, date_from="2025-03-05")).headers["x-cache"] == "HIT"

    async def test_generation_lives_in_redis(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Redis
    ) -> None:
        actor = await factory.actor("manager")
        await get(client, actor, SUMMARY)
        generation = await redis.get(f"gen:{actor.org_id}")

        created = await client.post("/api/v1/contacts", json={"full_name": "Кто-то"}, headers=actor.headers)
        assert created.status_code == 201, created.text

        assert int(await redis.get(f"gen:{actor.org_id}") or 0) == int(generation or 0) + 1
        assert (await get(client, actor, SUMMARY)).headers["x-cache"] == "MISS"

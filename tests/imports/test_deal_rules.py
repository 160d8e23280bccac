"""A deals import applies the deals' own status rules (`deals/transitions.py`), as the API does: the same
rows are refused with the same code and message, and closing and reopening stamp and clear the same
fields."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.models import Deal
from tests.deals.support import DEALS, create_deal, stored_deal
from tests.factories import Actor, Factory
from tests.imports.support import csv_bytes, import_file


async def deals_of(db: AsyncSession, actor: Actor) -> list[Deal]:
    db.expunge_all()
    return list((await db.scalars(select(Deal).where(Deal.organization_id == actor.org_id))).all())


async def refused_row(
    client: AsyncClient,
    app: Any,
    maker: async_sessionmaker[AsyncSession],
    actor: Actor,
    rows: list[list[Any]],
) -> dict[str, Any]:
    """Import the rows (a header and one row) and return the single row error."""
    body = await import_file(client, app, maker, actor, csv_bytes(rows), "deals")
    assert (body["created"], body["updated"], body["failed"]) == (0, 0, 1), body
    (error,) = body["errors"]
    assert error["row"] == 2
    return dict(error)


class TestRefusedLikeTheApi:
    async def test_a_new_deal_won_with_amount_zero(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        api = await client.post(
            DEALS, json={"title": "W", "amount": "0", "status": "won"}, headers=actor.headers
        )
        assert api.status_code == 409

        error = await refused_row(
            client, app, test_maker, actor, [["title", "amount", "status"], ["W", "0", "won"]]
        )

        problem = api.json()
        assert (problem["code"], problem["detail"]) == (
            "deal_amount_zero",
            "A deal cannot be won with amount 0; set its amount first",
        )
        assert error == {"row": 2, "column": "amount", "message": problem["detail"], "code": problem["code"]}
        assert await deals_of(db, actor) == []

    async def test_a_stored_deal_won_with_amount_zero(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        deal = await create_deal(client, actor, amount="0")
        api = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "won"}, headers=actor.headers
        )
        assert api.status_code == 409

        error = await refused_row(client, app, test_maker, actor, [["id", "status"], [deal["id"], "won"]])

        assert (error["code"], error["message"]) == (api.json()["code"], api.json()["detail"])
        stored = await stored_deal(db, deal["id"])
        assert (stored.status, stored.version, stored.closed_at) == ("new", 1, None)

    async def test_lost_without_a_reason(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        api = await client.post(DEALS, json={"title": "L", "status": "lost"}, headers=actor.headers)
        assert api.status_code == 422

        error = await refused_row(client, app, test_maker, actor, [["title", "status"], ["L", "lost"]])

        (detail,) = api.json()["errors"]
        assert detail["loc"] == ["body", "lost_reason"]
        assert error == {
            "row": 2,
            "column": "lost_reason",
            "message": detail["msg"],
            "code": api.json()["code"],
        }

    async def test_a_reason_on_a_deal_that_is_not_lost(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        deal = await create_deal(client, actor, amount="5")
        api = await client.patch(
            f"{DEALS}/{deal['id']}/status",
            json={"status": "won", "lost_reason": "Price"},
            headers=actor.headers,
        )
        assert api.status_code == 422

        error = await refused_row(
            client,
            app,
            test_maker,
            actor,
            [["id", "status", "lost_reason"], [deal["id"], "won", "Price"]],
        )

        assert (error["column"], error["message"], error["code"]) == (
            "lost_reason",
            api.json()["errors"][0]["msg"],
            api.json()["code"],
        )


class TestStampsLikeTheApi:
    async def test_closing_stamps_closed_at_and_reopening_clears_it_with_the_reason(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        created = await import_file(
            client,
            app,
            test_maker,
            actor,
            csv_bytes([["title", "amount", "status", "lost_reason"], ["L", "5", "lost", "Budget"]]),
            "deals",
        )
        assert created["created"] == 1, created
        (deal,) = await deals_of(db, actor)
        assert (deal.status, deal.lost_reason) == ("lost", "Budget")
        assert deal.closed_at is not None

        reopened = await import_file(
            client, app, test_maker, actor, csv_bytes([["id", "status"], [deal.id, "in_progress"]]), "deals"
        )

        assert reopened["updated"] == 1, reopened
        stored = await stored_deal(db, deal.id)
        assert (stored.status, stored.closed_at, stored.lost_reason, stored.version) == (
            "in_progress",
            None,
            None,
            2,
        )

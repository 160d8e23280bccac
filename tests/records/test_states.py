"""The status models run by the state machine (`records/states.py`), every declared move through the
HTTP API, allowed or refused with its code: deal statuses and stage moves, support measures (decisions
and `provided`). The project table is walked move by move in `tests/projects/test_transitions.py`.

The expected outcomes are written out here from the documented rules, not read from the tables."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from crm.deals.transitions import DEAL_STAGES, DEAL_STATUSES
from crm.models import SupportMeasure
from crm.support.transitions import SUPPORT_STATUSES
from tests.deals.support import (
    DEALS,
    DEFAULT_KEYS,
    assert_invalid,
    assert_problem,
    create_deal,
    history_rows,
    stored_deal,
)
from tests.factories import Factory
from tests.support.helpers import make_measure, make_project, org_of

STATUSES = ["new", "in_progress", "won", "lost"]
CLOSED = {"won", "lost"}
MEASURE_STATUSES = ["requested", "approved", "rejected", "provided"]
STATUS_BY_RESULT = {"approved": "approved", "rejected": "rejected", "rework": "requested"}


def _reason(status: str, reason: str = "Budget") -> dict[str, Any]:
    return {"lost_reason": reason} if status == "lost" else {}


def test_the_tables_declare_the_documented_states() -> None:
    assert DEAL_STATUSES.names == tuple(STATUSES)
    assert DEAL_STATUSES.finals == frozenset()
    assert SUPPORT_STATUSES.names == tuple(MEASURE_STATUSES)
    assert SUPPORT_STATUSES.finals == {"provided"}
    assert DEAL_STAGES.names == ()  # a pipeline's stages are its data


class TestDealStatus:
    @pytest.mark.parametrize("target", STATUSES)
    @pytest.mark.parametrize("source", STATUSES)
    async def test_every_move_is_allowed_with_what_it_needs(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, source: str, target: str
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=5, status=source, **_reason(source))

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status",
            json={"status": target, **_reason(target, "Too late")},
            headers=manager.headers,
        )

        assert response.status_code == 200, response.text
        stored = await stored_deal(db, deal["id"])
        assert stored.status == target
        assert (stored.closed_at is not None) == (target in CLOSED)
        if source == target != "lost":  # a lost deal's new reason is a change, its status is not
            assert response.json() == deal
        expected_reason = None if target != "lost" else "Too late"
        assert stored.lost_reason == expected_reason
        moved = [("status", source, target)] if source != target else []
        assert await history_rows(db, deal["id"]) == [("stage", None, "lead"), *moved]

    @pytest.mark.parametrize("source", ["new", "in_progress", "lost"])
    async def test_won_with_amount_zero_is_409_from_every_status(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, source: str
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=0, status=source, **_reason(source))

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "won"}, headers=manager.headers
        )

        body = assert_problem(response, 409, "deal_amount_zero")
        assert body["detail"] == "A deal cannot be won with amount 0; set its amount first"
        assert (await stored_deal(db, deal["id"])).status == source

    async def test_a_won_deal_may_not_lose_its_amount(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=5, status="won")

        response = await client.patch(f"{DEALS}/{deal['id']}", json={"amount": 0}, headers=manager.headers)

        assert_problem(response, 409, "deal_amount_zero")

    @pytest.mark.parametrize("source", ["new", "in_progress", "won"])
    async def test_lost_without_a_reason_is_422_from_every_status(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, source: str
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=5, status=source)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "lost"}, headers=manager.headers
        )

        body = assert_invalid(response, "validation_error", "body", "lost_reason")
        assert body["errors"][0]["msg"] == "required when the status is lost"
        assert (await stored_deal(db, deal["id"])).status == source

    @pytest.mark.parametrize("target", ["new", "in_progress", "won"])
    async def test_a_reason_for_another_status_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, target: str
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=5, status="lost", lost_reason="Budget")

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status",
            json={"status": target, "lost_reason": "Why"},
            headers=manager.headers,
        )

        body = assert_invalid(response, "validation_error", "body", "lost_reason")
        assert body["errors"][0]["msg"] == "only a lost deal has a lost_reason"
        assert (await stored_deal(db, deal["id"])).status == "lost"

    async def test_a_member_may_not_move(self, client: AsyncClient, factory: Factory) -> None:
        org = await factory.org()
        manager = await factory.actor("manager", org=org)
        member = await factory.actor("member", org=org)
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "in_progress"}, headers=member.headers
        )

        assert_problem(response, 403, "permission_denied")


STAGE_MOVES = [(a, b) for a in DEFAULT_KEYS for b in DEFAULT_KEYS if a != b]


class TestDealStage:
    @pytest.mark.parametrize(("source", "target"), STAGE_MOVES)
    @pytest.mark.parametrize("role", ["manager", "admin"])
    async def test_back_needs_move_back_forward_does_not(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str, source: str, target: str
    ) -> None:
        org = await factory.org()
        owner = await factory.actor("owner", org=org)
        actor = await factory.actor(role, org=org)
        deal = await create_deal(client, owner, stage=source)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": target}, headers=actor.headers
        )

        backward = DEFAULT_KEYS.index(target) < DEFAULT_KEYS.index(source)
        if backward and role == "manager":
            body = assert_problem(response, 403, "permission_denied")
            assert "deals:move_back" in body["detail"]
            assert (await stored_deal(db, deal["id"])).stage == source
            assert await history_rows(db, deal["id"]) == [("stage", None, source)]
        else:
            assert response.status_code == 200, response.text
            assert (await stored_deal(db, deal["id"])).stage == target
            assert await history_rows(db, deal["id"]) == [("stage", None, source), ("stage", source, target)]


class TestSupportStatus:
    @pytest.mark.parametrize("result", list(STATUS_BY_RESULT))
    @pytest.mark.parametrize("source", MEASURE_STATUSES)
    async def test_a_decision_moves_the_measure_unless_provided(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, source: str, result: str
    ) -> None:
        manager = await factory.actor("manager")
        project = await make_project(db, org_of(manager))
        measure = await make_measure(db, project, status=source)
        await db.commit()

        response = await client.post(
            f"/api/v1/projects/{project.id}/support/{measure.id}/decisions",
            json={"decision_type": "expert_group", "decision_date": "2026-03-15", "result": result},
            headers=manager.headers,
        )

        db.expunge_all()
        stored = await db.get(SupportMeasure, measure.id)
        assert stored is not None
        if source == "provided":
            body = assert_problem(response, 409, "support_already_provided")
            assert body["detail"] == "The support was already provided; it takes no more decisions"
            assert stored.status == "provided"
        else:
            assert response.status_code == 201, response.text
            assert stored.status == STATUS_BY_RESULT[result]
            assert stored.version == (1 if source == STATUS_BY_RESULT[result] else 2)

    @pytest.mark.parametrize("source", MEASURE_STATUSES)
    async def test_provided_only_from_approved(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, source: str
    ) -> None:
        manager = await factory.actor("manager")
        project = await make_project(db, org_of(manager))
        measure = await make_measure(db, project, status=source)
        await db.commit()

        response = await client.patch(
            f"/api/v1/projects/{project.id}/support/{measure.id}",
            json={"status": "provided"},
            headers=manager.headers,
        )

        db.expunge_all()
        stored = await db.get(SupportMeasure, measure.id)
        assert stored is not None
        if source in ("approved", "provided"):
            assert response.status_code == 200, response.text
            assert stored.status == "provided"
        else:
            body = assert_problem(response, 409, "support_not_approved")
            assert body["detail"] == f"Only an approved measure can be provided; this one is {source}"
            assert stored.status == source

"""`/api/v1/deals`: deals moving through pipeline stages (SPEC §6, §18, §19.4, §19.6)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, Company, Contact, CustomField, Deal, DealHistory
from tests.deals.support import (
    DEALS,
    PIPELINES,
    activities,
    assert_invalid,
    assert_problem,
    create_deal,
    create_pipeline,
    deal_count,
    default_pipeline,
    history_rows,
    org_of,
    stored_deal,
)
from tests.factories import Actor, Factory, add_member, login, make_org, make_user


async def team(factory: Factory, *roles: str, **org_fields: Any) -> dict[str, Actor]:
    """One actor per role, all in one fresh organization."""
    org = await factory.org(**org_fields)
    return {role: await factory.actor(role, org=org) for role in roles}


async def make_contact(db: AsyncSession, actor: Actor, **fields: Any) -> Contact:
    contact = Contact(organization_id=org_of(actor), full_name="Ivan Petrov", **fields)
    db.add(contact)
    await db.flush()
    await db.commit()
    return contact


async def make_company(db: AsyncSession, actor: Actor, **fields: Any) -> Company:
    company = Company(organization_id=org_of(actor), name="Romashka", **fields)
    db.add(company)
    await db.flush()
    await db.commit()
    return company


async def make_field(db: AsyncSession, actor: Actor, key: str, type_: str, **fields: Any) -> None:
    db.add(
        CustomField(organization_id=org_of(actor), entity="deal", key=key, label=key, type=type_, **fields)
    )
    await db.commit()


def if_match(actor: Actor, version: int) -> dict[str, str]:
    return {**actor.headers, "If-Match": f'"{version}"'}


class TestCreateDeal:
    async def test_defaults_to_the_default_pipelines_first_stage_new_and_the_org_currency(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = (await team(factory, "manager", currency="EUR"))["manager"]

        response = await client.post(DEALS, json={"title": "Supply"}, headers=manager.headers)

        assert response.status_code == 201, response.text
        deal = response.json()
        assert response.headers["location"] == f"{DEALS}/{deal['id']}"
        assert response.headers["etag"] == '"1"'
        default = await default_pipeline(client, manager)
        assert deal["pipeline_id"] == default["id"]
        assert deal["stage"] == "lead"
        assert deal["status"] == "new"
        assert deal["currency"] == "EUR"
        assert deal["amount"] == "0.00"
        assert deal["closed_at"] is None
        assert deal["lost_reason"] is None
        assert deal["version"] == 1
        stored = await stored_deal(db, deal["id"])
        assert (stored.organization_id, stored.source, stored.stage) == (org_of(manager), "manual", "lead")

    async def test_writes_the_first_stage_history_row_and_a_created_activity(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")

        deal = await create_deal(client, manager, title="Supply", stage="proposal")

        (row,) = (await db.execute(select(DealHistory).where(DealHistory.deal_id == deal["id"]))).scalars()
        assert (row.field, row.from_value, row.to_value) == ("stage", None, "proposal")
        assert row.actor_id == manager.user.id
        assert row.pipeline_id == deal["pipeline_id"]
        assert row.created_at.isoformat().replace("+00:00", "Z") == deal["created_at"]
        (activity,) = await activities(db, "deal", deal["id"])
        assert activity.action == "created"
        assert activity.changes["title"] == [None, "Supply"]
        assert activity.changes["stage"] == [None, "proposal"]

    @pytest.mark.parametrize(
        ("sent", "shown"), [(150000, "150000.00"), ("150000.5", "150000.50"), ("0", "0.00")]
    )
    async def test_amount_is_a_decimal_with_two_places_shown_as_a_string(
        self, client: AsyncClient, factory: Factory, sent: object, shown: str
    ) -> None:
        manager = await factory.actor("manager")

        deal = await create_deal(client, manager, amount=sent)

        assert deal["amount"] == shown

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"title": "X", "amount": -1}, "amount"),
            ({"title": "X", "amount": "1.234"}, "amount"),
            ({"title": "X", "amount": "lots"}, "amount"),
            ({"title": "X", "currency": "XXY"}, "currency"),
            ({"title": "X", "currency": "RU"}, "currency"),
            ({"title": ""}, "title"),
            ({"amount": 5}, "title"),
            ({"title": "X", "status": "closed"}, "status"),
            ({"title": "X", "expected_close_date": "someday"}, "expected_close_date"),
            ({"title": "X", "version": 3}, "version"),
            ({"title": "X", "closed_at": "2026-01-01T00:00:00Z"}, "closed_at"),
            ({"title": "X", "source": "bitrix24"}, "source"),
        ],
    )
    async def test_invalid_input_is_422_and_nothing_is_stored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any], loc: str
    ) -> None:
        manager = await factory.actor("manager")

        response = await client.post(DEALS, json=body, headers=manager.headers)

        assert_invalid(response, "validation_error", "body", loc)
        assert await deal_count(db, org_of(manager)) == 0

    async def test_currency_is_stored_in_upper_case(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")

        deal = await create_deal(client, manager, currency="usd")

        assert deal["currency"] == "USD"

    async def test_a_given_pipeline_and_stage_are_used(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "admin", "manager")
        pipeline = await create_pipeline(client, actors["admin"], "brief", "build")

        deal = await create_deal(client, actors["manager"], pipeline_id=pipeline["id"], stage="build")

        assert (deal["pipeline_id"], deal["stage"]) == (pipeline["id"], "build")

    async def test_a_stage_of_another_pipeline_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "admin", "manager")
        pipeline = await create_pipeline(client, actors["admin"], "brief")

        response = await client.post(
            DEALS,
            json={"title": "X", "pipeline_id": pipeline["id"], "stage": "lead"},
            headers=actors["manager"].headers,
        )

        assert_invalid(response, "invalid_stage", "body", "stage")
        assert await deal_count(db, org_of(actors["manager"])) == 0

    async def test_an_archived_stage_is_422(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "admin", "manager")
        default = await default_pipeline(client, actors["admin"])
        await client.patch(
            f"{PIPELINES}/{default['id']}/stages/lead",
            json={"is_archived": True},
            headers=actors["admin"].headers,
        )

        archived = await client.post(
            DEALS, json={"title": "X", "stage": "lead"}, headers=actors["manager"].headers
        )
        defaulted = await create_deal(client, actors["manager"])

        assert_invalid(archived, "invalid_stage", "body", "stage")
        assert defaulted["stage"] == "qualification"  # the first stage that is not archived

    async def test_a_pipeline_without_active_stages_is_409(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        actors = await team(factory, "admin", "manager")
        empty = await create_pipeline(client, actors["admin"])

        response = await client.post(
            DEALS, json={"title": "X", "pipeline_id": empty["id"]}, headers=actors["manager"].headers
        )

        assert_problem(response, 409, "pipeline_has_no_stages")

    async def test_another_organizations_pipeline_is_an_invalid_reference(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        mine, theirs = await factory.actor("manager"), await factory.actor("owner")
        foreign = await default_pipeline(client, theirs)

        response = await client.post(
            DEALS, json={"title": "X", "pipeline_id": foreign["id"]}, headers=mine.headers
        )

        assert_invalid(response, "invalid_reference", "body", "pipeline_id")
        assert await deal_count(db, org_of(mine)) == 0

    @pytest.mark.parametrize("field", ["contact_id", "company_id"])
    async def test_a_contact_or_company_of_another_organization_is_an_invalid_reference(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, field: str
    ) -> None:
        mine, theirs = await factory.actor("manager"), await factory.actor("owner")
        foreign = await (make_contact if field == "contact_id" else make_company)(db, theirs)

        response = await client.post(DEALS, json={"title": "X", field: foreign.id}, headers=mine.headers)

        assert_invalid(response, "invalid_reference", "body", field)
        assert await deal_count(db, org_of(mine)) == 0

    async def test_a_deleted_contact_is_an_invalid_reference(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        contact = await make_contact(db, manager, deleted_at=datetime.now(UTC))

        response = await client.post(
            DEALS, json={"title": "X", "contact_id": contact.id}, headers=manager.headers
        )

        assert_invalid(response, "invalid_reference", "body", "contact_id")

    async def test_an_owner_who_is_not_a_member_is_an_invalid_reference(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        manager, outsider = await factory.actor("manager"), await factory.actor("manager")

        response = await client.post(
            DEALS, json={"title": "X", "owner_id": outsider.user.id}, headers=manager.headers
        )

        assert_invalid(response, "invalid_reference", "body", "owner_id")

    async def test_links_its_contact_company_and_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "manager", "member")
        manager = actors["manager"]
        contact, company = await make_contact(db, manager), await make_company(db, manager)

        deal = await create_deal(
            client,
            manager,
            contact_id=contact.id,
            company_id=company.id,
            owner_id=actors["member"].user.id,
            expected_close_date="2027-03-01",
            notes="call back",
        )

        assert (deal["contact_id"], deal["company_id"]) == (contact.id, company.id)
        assert deal["owner_id"] == actors["member"].user.id
        assert deal["expected_close_date"] == "2027-03-01"
        assert deal["notes"] == "call back"

    async def test_won_with_amount_zero_is_409_and_nothing_is_stored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")

        response = await client.post(DEALS, json={"title": "X", "status": "won"}, headers=manager.headers)

        assert_problem(response, 409, "deal_amount_zero")
        assert await deal_count(db, org_of(manager)) == 0

    async def test_created_won_is_closed_at_once(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")

        deal = await create_deal(client, manager, amount=10, status="won")

        assert deal["status"] == "won"
        closed = datetime.fromisoformat(deal["closed_at"])
        assert abs(closed - datetime.now(UTC)) < timedelta(minutes=1)

    async def test_lost_without_a_reason_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")

        response = await client.post(DEALS, json={"title": "X", "status": "lost"}, headers=manager.headers)

        assert_invalid(response, "validation_error", "body", "lost_reason")
        assert await deal_count(db, org_of(manager)) == 0

    async def test_a_lost_reason_on_an_open_deal_is_422(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")

        response = await client.post(
            DEALS, json={"title": "X", "lost_reason": "price"}, headers=manager.headers
        )

        assert_invalid(response, "validation_error", "body", "lost_reason")

    async def test_custom_fields_are_checked_against_their_definitions(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        await make_field(db, manager, "region", "select", options=["north", "south"])

        good = await client.post(
            DEALS, json={"title": "X", "custom_fields": {"region": "north"}}, headers=manager.headers
        )
        unknown = await client.post(
            DEALS, json={"title": "X", "custom_fields": {"color": "red"}}, headers=manager.headers
        )
        wrong = await client.post(
            DEALS, json={"title": "X", "custom_fields": {"region": "west"}}, headers=manager.headers
        )

        assert good.status_code == 201, good.text
        assert good.json()["custom_fields"] == {"region": "north"}
        assert_problem(unknown, 422, "custom_field_invalid")
        assert_problem(wrong, 422, "custom_field_invalid")
        assert await deal_count(db, org_of(manager)) == 1

    async def test_a_member_is_403(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        member = await factory.actor("member")

        response = await client.post(DEALS, json={"title": "X"}, headers=member.headers)

        assert_problem(response, 403, "permission_denied")
        assert await deal_count(db, org_of(member)) == 0

    async def test_a_repeated_idempotency_key_replays_the_first_answer(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        headers = {**manager.headers, "Idempotency-Key": "deal-1"}

        first = await client.post(DEALS, json={"title": "Once", "amount": 5}, headers=headers)
        second = await client.post(DEALS, json={"title": "Once", "amount": 5}, headers=headers)
        other = await client.post(DEALS, json={"title": "Other"}, headers=headers)

        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["location"] == first.headers["location"]
        assert_problem(other, 422, "idempotency_key_reused")
        assert await deal_count(db, org_of(manager)) == 1


class TestListDeals:
    async def test_newest_first_in_the_page_envelope(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        ids = [(await create_deal(client, manager, title=f"D{i}"))["id"] for i in range(3)]

        response = await client.get(DEALS, params={"limit": 2}, headers=manager.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 2, 0)
        assert [d["id"] for d in body["items"]] == ids[::-1][:2]

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"stage": "proposal"}, ["B"]),
            ({"status": "won"}, ["C"]),
            ({"amount_min": "100"}, ["B", "C"]),
            ({"amount_max": "100.00"}, ["A", "B"]),
            ({"amount_min": 50, "amount_max": 150}, ["B"]),
            ({"q": "alp"}, ["A"]),
            ({"q": "%"}, []),
        ],
    )
    async def test_filters(
        self, client: AsyncClient, factory: Factory, params: dict[str, Any], expected: list[str]
    ) -> None:
        manager = await factory.actor("manager")
        await create_deal(client, manager, title="Alpha A", amount=10)
        await create_deal(client, manager, title="B", amount=100, stage="proposal")
        await create_deal(client, manager, title="C", amount=500, status="won")

        response = await client.get(DEALS, params=params, headers=manager.headers)

        assert response.status_code == 200, response.text
        assert sorted(d["title"].split()[-1] for d in response.json()["items"]) == expected

    async def test_filters_by_pipeline_owner_contact_and_company(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "admin", "manager")
        admin, manager = actors["admin"], actors["manager"]
        pipeline = await create_pipeline(client, admin, "a")
        contact, company = await make_contact(db, admin), await make_company(db, admin)
        plain = await create_deal(client, admin)
        in_pipeline = await create_deal(client, admin, pipeline_id=pipeline["id"])
        owned = await create_deal(client, admin, owner_id=manager.user.id)
        with_contact = await create_deal(client, admin, contact_id=contact.id)
        with_company = await create_deal(client, admin, company_id=company.id)

        async def ids(**params: Any) -> list[int]:
            response = await client.get(DEALS, params=params, headers=manager.headers)
            assert response.status_code == 200, response.text
            return [d["id"] for d in response.json()["items"]]

        assert await ids(pipeline_id=pipeline["id"]) == [in_pipeline["id"]]
        assert plain["id"] in await ids(pipeline_id=plain["pipeline_id"])
        assert await ids(owner_id=manager.user.id) == [owned["id"]]
        assert await ids(contact_id=contact.id) == [with_contact["id"]]
        assert await ids(company_id=company.id) == [with_company["id"]]

    async def test_filters_by_creation_time(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        old = await create_deal(client, manager, title="Old")
        new = await create_deal(client, manager, title="New")
        stored = await stored_deal(db, old["id"])
        stored.created_at = datetime(2020, 1, 1, tzinfo=UTC)
        await db.commit()

        before = await client.get(
            DEALS, params={"created_to": "2021-01-01T00:00:00Z"}, headers=manager.headers
        )
        after = await client.get(
            DEALS, params={"created_from": "2021-01-01T00:00:00Z"}, headers=manager.headers
        )

        assert [d["id"] for d in before.json()["items"]] == [old["id"]]
        assert [d["id"] for d in after.json()["items"]] == [new["id"]]

    async def test_filters_by_custom_field(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        await make_field(db, manager, "priority", "number")
        wanted = await create_deal(client, manager, custom_fields={"priority": 1})
        await create_deal(client, manager, custom_fields={"priority": 2})

        response = await client.get(DEALS, params={"cf.priority": "1"}, headers=manager.headers)

        assert [d["id"] for d in response.json()["items"]] == [wanted["id"]]

    @pytest.mark.parametrize(
        ("sort", "expected"),
        [
            ("amount", ["small", "big", "mid"]),
            ("-amount", ["mid", "big", "small"]),
            ("expected_close_date", ["mid", "small", "big"]),
            ("-expected_close_date", ["small", "mid", "big"]),
            ("created_at", ["small", "mid", "big"]),
        ],
    )
    async def test_sorts(self, client: AsyncClient, factory: Factory, sort: str, expected: list[str]) -> None:
        manager = await factory.actor("manager")
        await create_deal(client, manager, title="small", amount=1, expected_close_date="2027-02-01")
        await create_deal(client, manager, title="mid", amount=300, expected_close_date="2027-01-01")
        await create_deal(client, manager, title="big", amount=200)

        response = await client.get(DEALS, params={"sort": sort}, headers=manager.headers)

        assert [d["title"] for d in response.json()["items"]] == expected

    @pytest.mark.parametrize(
        "params",
        [
            {"sort": "title"},
            {"status": "closed"},
            {"amount_min": "-5"},
            {"amount_max": "many"},
            {"pipeline_id": "x"},
            {"cf.unknown": "1"},
            {"limit": 0},
        ],
    )
    async def test_unknown_filter_or_sort_values_are_422(
        self, client: AsyncClient, factory: Factory, params: dict[str, Any]
    ) -> None:
        manager = await factory.actor("manager")

        response = await client.get(DEALS, params=params, headers=manager.headers)

        assert response.status_code == 422, response.text

    async def test_deleted_deals_and_another_organizations_deals_are_not_listed(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        mine, theirs = await factory.actor("manager"), await factory.actor("manager")
        kept = await create_deal(client, mine)
        gone = await create_deal(client, mine)
        await create_deal(client, theirs)
        await client.delete(f"{DEALS}/{gone['id']}", headers=mine.headers)

        response = await client.get(DEALS, headers=mine.headers)

        assert [d["id"] for d in response.json()["items"]] == [kept["id"]]

    async def test_a_member_may_read(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "manager", "member")
        await create_deal(client, actors["manager"])

        response = await client.get(DEALS, headers=actors["member"].headers)

        assert response.json()["total"] == 1


class TestGetDeal:
    async def test_returns_the_deal_with_its_etag(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "manager", "member")
        deal = await create_deal(client, actors["manager"], amount="150000")

        response = await client.get(f"{DEALS}/{deal['id']}", headers=actors["member"].headers)

        assert response.status_code == 200, response.text
        assert response.json() == deal
        assert response.json()["amount"] == "150000.00"
        assert response.headers["etag"] == '"1"'

    async def test_a_deleted_deal_is_404(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)
        await client.delete(f"{DEALS}/{deal['id']}", headers=manager.headers)

        response = await client.get(f"{DEALS}/{deal['id']}", headers=manager.headers)

        assert_problem(response, 404, "not_found")


class TestReplaceDeal:
    async def test_replaces_the_editable_fields_and_clears_omitted_ones(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=5, notes="old", expected_close_date="2027-01-01")

        response = await client.put(
            f"{DEALS}/{deal['id']}", json={"title": "New title", "amount": 7}, headers=if_match(manager, 1)
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["title"], body["amount"], body["notes"], body["expected_close_date"]) == (
            "New title",
            "7.00",
            None,
            None,
        )
        assert (body["stage"], body["status"], body["pipeline_id"]) == ("lead", "new", deal["pipeline_id"])
        assert body["version"] == 2
        assert response.headers["etag"] == '"2"'
        stored = await stored_deal(db, deal["id"])
        assert (stored.title, stored.notes) == ("New title", None)
        assert (await activities(db, "deal", deal["id"]))[-1].action == "updated"
        assert await history_rows(db, deal["id"]) == [("stage", None, "lead")]

    async def test_moves_stage_and_status_under_the_same_rules(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=5)

        response = await client.put(
            f"{DEALS}/{deal['id']}",
            json={"title": "Deal", "amount": 5, "stage": "proposal", "status": "won"},
            headers=manager.headers,
        )

        assert response.status_code == 200, response.text
        assert response.json()["closed_at"] is not None
        assert await history_rows(db, deal["id"]) == [
            ("stage", None, "lead"),
            ("stage", "lead", "proposal"),
            ("status", "new", "won"),
        ]

    async def test_a_manager_moving_back_is_403(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, stage="proposal")

        response = await client.put(
            f"{DEALS}/{deal['id']}", json={"title": "T", "stage": "lead"}, headers=manager.headers
        )

        assert_problem(response, 403, "permission_denied")
        assert (await stored_deal(db, deal["id"])).title == "Deal"

    async def test_a_stale_if_match_is_412(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)
        await client.patch(f"{DEALS}/{deal['id']}", json={"title": "Second"}, headers=manager.headers)

        response = await client.put(
            f"{DEALS}/{deal['id']}", json={"title": "Third"}, headers=if_match(manager, 1)
        )

        assert_problem(response, 412, "version_mismatch")
        assert (await stored_deal(db, deal["id"])).title == "Second"


class TestUpdateDeal:
    async def test_changes_only_the_fields_sent(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=5, notes="keep")

        response = await client.patch(
            f"{DEALS}/{deal['id']}", json={"amount": "12.5"}, headers=if_match(manager, 1)
        )

        assert response.status_code == 200, response.text
        assert (response.json()["amount"], response.json()["notes"], response.json()["version"]) == (
            "12.50",
            "keep",
            2,
        )
        activity = (await activities(db, "deal", deal["id"]))[-1]
        assert (activity.action, activity.changes) == ("updated", {"amount": ["5.00", "12.50"]})

    async def test_a_stage_change_writes_history_and_a_stage_changed_activity(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}",
            json={"stage": "qualification", "title": "Moved"},
            headers=manager.headers,
        )

        assert response.status_code == 200, response.text
        assert await history_rows(db, deal["id"]) == [
            ("stage", None, "lead"),
            ("stage", "lead", "qualification"),
        ]
        activity = (await activities(db, "deal", deal["id"]))[-1]
        assert activity.action == "stage_changed"
        assert activity.changes["stage"] == ["lead", "qualification"]
        assert activity.changes["title"] == ["Deal", "Moved"]

    async def test_a_new_pipeline_puts_the_deal_on_its_first_stage(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "admin", "manager")
        pipeline = await create_pipeline(client, actors["admin"], "brief", "build")
        deal = await create_deal(client, actors["manager"], stage="negotiation")

        response = await client.patch(
            f"{DEALS}/{deal['id']}", json={"pipeline_id": pipeline["id"]}, headers=actors["manager"].headers
        )

        assert response.status_code == 200, response.text
        assert (response.json()["pipeline_id"], response.json()["stage"]) == (pipeline["id"], "brief")
        row = (
            await db.execute(
                select(DealHistory)
                .where(DealHistory.deal_id == deal["id"])
                .order_by(DealHistory.id.desc())
                .limit(1)
            )
        ).scalar_one()
        assert (row.from_value, row.to_value, row.pipeline_id) == ("negotiation", "brief", pipeline["id"])

    async def test_amount_zero_on_a_won_deal_is_409(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=10, status="won")

        response = await client.patch(f"{DEALS}/{deal['id']}", json={"amount": 0}, headers=manager.headers)

        assert_problem(response, 409, "deal_amount_zero")
        assert (await stored_deal(db, deal["id"])).amount == 10

    @pytest.mark.parametrize("field", ["title", "amount", "currency", "pipeline_id", "stage", "status"])
    async def test_null_for_a_required_field_is_422(
        self, client: AsyncClient, factory: Factory, field: str
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(f"{DEALS}/{deal['id']}", json={field: None}, headers=manager.headers)

        assert_invalid(response, "validation_error", "body", field)

    async def test_custom_fields_are_merged(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        await make_field(db, manager, "a", "text")
        await make_field(db, manager, "b", "text")
        deal = await create_deal(client, manager, custom_fields={"a": "1"})

        response = await client.patch(
            f"{DEALS}/{deal['id']}", json={"custom_fields": {"b": "2"}}, headers=manager.headers
        )

        assert response.json()["custom_fields"] == {"a": "1", "b": "2"}

    async def test_a_member_is_403(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actors = await team(factory, "manager", "member")
        deal = await create_deal(client, actors["manager"])

        response = await client.patch(
            f"{DEALS}/{deal['id']}", json={"title": "Mine"}, headers=actors["member"].headers
        )

        assert_problem(response, 403, "permission_denied")
        assert (await stored_deal(db, deal["id"])).title == "Deal"

    async def test_a_write_bumps_the_organizations_cache_generation(
        self, client: AsyncClient, factory: Factory, redis: Redis
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)
        before = int(await redis.get(f"gen:{manager.org_id}") or 0)

        await client.patch(f"{DEALS}/{deal['id']}/stage", json={"stage": "proposal"}, headers=manager.headers)

        assert int(await redis.get(f"gen:{manager.org_id}") or 0) == before + 1

    @pytest.mark.committing
    async def test_ten_concurrent_patches_with_one_etag_let_one_through(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        async with app.state.sessionmaker() as session:
            org = await make_org(session)
            user = await make_user(session)
            await add_member(session, org, user, "manager")
            await session.commit()
        manager = await login(committing_client, user, org_id=org.id)
        created = await committing_client.post(
            DEALS, json={"title": "Race", "amount": 1}, headers=manager.headers
        )
        deal_id = created.json()["id"]

        responses = await asyncio.gather(
            *(
                committing_client.patch(
                    f"{DEALS}/{deal_id}",
                    json={"title": f"Writer {i}", "stage": "proposal"},
                    headers=if_match(manager, 1),
                )
                for i in range(10)
            )
        )

        codes = sorted(r.status_code for r in responses)
        assert codes == [200] + [412] * 9, [r.text for r in responses]
        winner = next(r.json() for r in responses if r.status_code == 200)
        async with app.state.sessionmaker() as session:
            stored = (await session.execute(select(Deal).where(Deal.id == deal_id))).scalar_one()
            assert (stored.version, stored.title) == (2, winner["title"])
            assert await history_rows(session, deal_id) == [
                ("stage", None, "lead"),
                ("stage", "lead", "proposal"),
            ]
            actions = (
                (
                    await session.execute(
                        select(Activity.action).where(Activity.entity_id == deal_id).order_by(Activity.id)
                    )
                )
                .scalars()
                .all()
            )
            assert actions == ["created", "stage_changed"]


class TestMoveDealStage:
    async def test_moving_forward_writes_history_and_an_activity(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "negotiation"}, headers=if_match(manager, 1)
        )

        assert response.status_code == 200, response.text
        assert (response.json()["stage"], response.json()["version"]) == ("negotiation", 2)
        assert response.headers["etag"] == '"2"'
        rows = (
            (
                await db.execute(
                    select(DealHistory).where(DealHistory.deal_id == deal["id"]).order_by(DealHistory.id)
                )
            )
            .scalars()
            .all()
        )
        assert [(r.field, r.from_value, r.to_value, r.actor_id) for r in rows] == [
            ("stage", None, "lead", manager.user.id),
            ("stage", "lead", "negotiation", manager.user.id),
        ]
        assert rows[1].created_at > rows[0].created_at
        activity = (await activities(db, "deal", deal["id"]))[-1]
        assert (activity.action, activity.changes) == ("stage_changed", {"stage": ["lead", "negotiation"]})

    async def test_a_manager_moving_back_is_403_and_nothing_is_written(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, stage="proposal")

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "lead"}, headers=manager.headers
        )

        assert_problem(response, 403, "permission_denied")
        stored = await stored_deal(db, deal["id"])
        assert (stored.stage, stored.version) == ("proposal", 1)
        assert await history_rows(db, deal["id"]) == [("stage", None, "proposal")]
        assert [a.action for a in await activities(db, "deal", deal["id"])] == ["created"]

    @pytest.mark.parametrize("role", ["admin", "owner"])
    async def test_an_admin_or_owner_may_move_back(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        actor = await factory.actor(role)
        deal = await create_deal(client, actor, stage="proposal")

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "qualification"}, headers=actor.headers
        )

        assert response.status_code == 200, response.text
        assert await history_rows(db, deal["id"]) == [
            ("stage", None, "proposal"),
            ("stage", "proposal", "qualification"),
        ]

    async def test_backwards_follows_the_stage_order_not_the_keys(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        actors = await team(factory, "admin", "manager")
        default = await default_pipeline(client, actors["admin"])
        deal = await create_deal(client, actors["manager"], stage="qualification")
        await client.patch(
            f"{PIPELINES}/{default['id']}/stages/negotiation",
            json={"position": 0},
            headers=actors["admin"].headers,
        )

        back = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "negotiation"}, headers=actors["manager"].headers
        )
        forward = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "proposal"}, headers=actors["manager"].headers
        )

        assert_problem(back, 403, "permission_denied")
        assert forward.status_code == 200, forward.text

    async def test_the_same_stage_is_a_no_op(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "lead"}, headers=manager.headers
        )

        assert response.status_code == 200, response.text
        assert response.json() == deal
        assert await history_rows(db, deal["id"]) == [("stage", None, "lead")]
        assert [a.action for a in await activities(db, "deal", deal["id"])] == ["created"]

    @pytest.mark.parametrize("stage", ["nope", "LEAD"])
    async def test_a_stage_the_pipeline_does_not_have_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, stage: str
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": stage}, headers=manager.headers
        )

        assert_invalid(response, "invalid_stage", "body", "stage")
        assert (await stored_deal(db, deal["id"])).stage == "lead"

    async def test_an_archived_stage_is_422(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "admin", "manager")
        default = await default_pipeline(client, actors["admin"])
        deal = await create_deal(client, actors["manager"])
        await client.patch(
            f"{PIPELINES}/{default['id']}/stages/proposal",
            json={"is_archived": True},
            headers=actors["admin"].headers,
        )

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "proposal"}, headers=actors["manager"].headers
        )

        assert_invalid(response, "invalid_stage", "body", "stage")

    async def test_a_stale_if_match_is_412(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "proposal"}, headers=if_match(manager, 9)
        )

        assert_problem(response, 412, "version_mismatch")
        assert await history_rows(db, deal["id"]) == [("stage", None, "lead")]

    async def test_a_member_is_403(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "manager", "member")
        deal = await create_deal(client, actors["manager"])

        response = await client.patch(
            f"{DEALS}/{deal['id']}/stage", json={"stage": "proposal"}, headers=actors["member"].headers
        )

        assert_problem(response, 403, "permission_denied")


class TestSetDealStatus:
    async def test_won_closes_the_deal_and_writes_history_and_an_activity(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=100)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "won"}, headers=manager.headers
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "won"
        assert body["closed_at"] is not None
        assert body["version"] == 2
        assert await history_rows(db, deal["id"]) == [("stage", None, "lead"), ("status", "new", "won")]
        activity = (await activities(db, "deal", deal["id"]))[-1]
        assert activity.action == "status_changed"
        assert activity.changes["status"] == ["new", "won"]

    async def test_won_with_amount_zero_is_409_and_nothing_is_written(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "won"}, headers=manager.headers
        )

        assert_problem(response, 409, "deal_amount_zero")
        stored = await stored_deal(db, deal["id"])
        assert (stored.status, stored.closed_at, stored.version) == ("new", None, 1)
        assert await history_rows(db, deal["id"]) == [("stage", None, "lead")]

    async def test_lost_without_a_reason_is_422_and_nothing_is_written(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "lost"}, headers=manager.headers
        )

        assert_invalid(response, "validation_error", "body", "lost_reason")
        assert (await stored_deal(db, deal["id"])).status == "new"

    async def test_lost_with_a_reason_keeps_it(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status",
            json={"status": "lost", "lost_reason": "Too expensive"},
            headers=manager.headers,
        )

        assert response.status_code == 200, response.text
        assert (response.json()["lost_reason"], response.json()["status"]) == ("Too expensive", "lost")
        stored = await stored_deal(db, deal["id"])
        assert stored.closed_at is not None
        assert stored.lost_reason == "Too expensive"

    @pytest.mark.parametrize("reopened", ["new", "in_progress"])
    async def test_reopening_clears_closed_at_and_lost_reason(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, reopened: str
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, status="lost", lost_reason="Budget")

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": reopened}, headers=manager.headers
        )

        assert response.status_code == 200, response.text
        assert (response.json()["closed_at"], response.json()["lost_reason"]) == (None, None)
        stored = await stored_deal(db, deal["id"])
        assert (stored.status, stored.closed_at, stored.lost_reason) == (reopened, None, None)
        assert await history_rows(db, deal["id"]) == [("stage", None, "lead"), ("status", "lost", reopened)]

    async def test_won_after_lost_drops_the_reason_and_closes_again(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=3, status="lost", lost_reason="Budget")

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "won"}, headers=manager.headers
        )

        assert response.status_code == 200, response.text
        assert response.json()["lost_reason"] is None
        assert response.json()["closed_at"] >= deal["closed_at"]

    async def test_the_same_status_is_a_no_op(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=3, status="won")

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "won"}, headers=manager.headers
        )

        assert response.status_code == 200, response.text
        assert response.json() == deal
        assert await history_rows(db, deal["id"]) == [("stage", None, "lead")]
        assert [a.action for a in await activities(db, "deal", deal["id"])] == ["created"]

    async def test_a_reason_for_a_status_other_than_lost_is_422(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager, amount=3)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status",
            json={"status": "won", "lost_reason": "?"},
            headers=manager.headers,
        )

        assert_invalid(response, "validation_error", "body", "lost_reason")

    async def test_an_unknown_status_is_422(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "done"}, headers=manager.headers
        )

        assert_invalid(response, "validation_error", "body", "status")

    async def test_a_member_is_403(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "manager", "member")
        deal = await create_deal(client, actors["manager"], amount=1)

        response = await client.patch(
            f"{DEALS}/{deal['id']}/status", json={"status": "won"}, headers=actors["member"].headers
        )

        assert_problem(response, 403, "permission_denied")


class TestDealHistory:
    async def test_newest_first_and_paged(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "manager", "member")
        manager = actors["manager"]
        deal = await create_deal(client, manager, amount=5)
        await client.patch(f"{DEALS}/{deal['id']}/stage", json={"stage": "proposal"}, headers=manager.headers)
        await client.patch(f"{DEALS}/{deal['id']}/status", json={"status": "won"}, headers=manager.headers)

        response = await client.get(f"{DEALS}/{deal['id']}/history", headers=actors["member"].headers)
        page = await client.get(
            f"{DEALS}/{deal['id']}/history", params={"limit": 1, "offset": 2}, headers=manager.headers
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 3
        assert [(h["field"], h["from_value"], h["to_value"]) for h in body["items"]] == [
            ("status", "new", "won"),
            ("stage", "lead", "proposal"),
            ("stage", None, "lead"),
        ]
        assert set(body["items"][0]) == {"id", "field", "from_value", "to_value", "actor_id", "created_at"}
        assert body["items"][0]["actor_id"] == manager.user.id
        assert body["items"][0]["created_at"].endswith("Z")
        assert [h["to_value"] for h in page.json()["items"]] == ["lead"]

    async def test_a_deleted_deal_is_404(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)
        await client.delete(f"{DEALS}/{deal['id']}", headers=manager.headers)

        response = await client.get(f"{DEALS}/{deal['id']}/history", headers=manager.headers)

        assert_problem(response, 404, "not_found")


class TestDeleteDeal:
    async def test_a_manager_soft_deletes(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)

        response = await client.delete(f"{DEALS}/{deal['id']}", headers=manager.headers)

        assert response.status_code == 204, response.text
        stored = await stored_deal(db, deal["id"])
        assert stored.deleted_at is not None
        assert (await activities(db, "deal", deal["id"]))[-1].action == "deleted"

    async def test_a_member_is_403(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actors = await team(factory, "manager", "member")
        deal = await create_deal(client, actors["manager"])

        response = await client.delete(f"{DEALS}/{deal['id']}", headers=actors["member"].headers)

        assert_problem(response, 403, "permission_denied")
        assert (await stored_deal(db, deal["id"])).deleted_at is None

    async def test_deleting_twice_is_404(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)
        await client.delete(f"{DEALS}/{deal['id']}", headers=manager.headers)

        response = await client.delete(f"{DEALS}/{deal['id']}", headers=manager.headers)

        assert_problem(response, 404, "not_found")


class TestRestoreDeal:
    @pytest.mark.parametrize("role", ["admin", "owner"])
    async def test_an_admin_or_owner_restores(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        actor = await factory.actor(role)
        deal = await create_deal(client, actor)
        await client.delete(f"{DEALS}/{deal['id']}", headers=actor.headers)

        response = await client.post(f"{DEALS}/{deal['id']}/restore", headers=actor.headers)

        assert response.status_code == 200, response.text
        assert response.json()["version"] == 3
        assert (await stored_deal(db, deal["id"])).deleted_at is None
        assert (await client.get(f"{DEALS}/{deal['id']}", headers=actor.headers)).status_code == 200

    async def test_a_manager_is_403(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        manager = await factory.actor("manager")
        deal = await create_deal(client, manager)
        await client.delete(f"{DEALS}/{deal['id']}", headers=manager.headers)

        response = await client.post(f"{DEALS}/{deal['id']}/restore", headers=manager.headers)

        assert_problem(response, 403, "permission_denied")
        assert (await stored_deal(db, deal["id"])).deleted_at is not None

    async def test_a_live_deal_is_404(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        deal = await create_deal(client, admin)

        response = await client.post(f"{DEALS}/{deal['id']}/restore", headers=admin.headers)

        assert_problem(response, 404, "not_found")


class TestDealTimeline:
    async def test_a_member_comments_and_reads_the_timeline(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        actors = await team(factory, "manager", "member")
        deal = await create_deal(client, actors["manager"])

        comment = await client.post(
            f"{DEALS}/{deal['id']}/comments", json={"text": "Called them"}, headers=actors["member"].headers
        )
        timeline = await client.get(f"{DEALS}/{deal['id']}/activities", headers=actors["member"].headers)

        assert comment.status_code == 201, comment.text
        assert [a["action"] for a in timeline.json()["items"]] == ["comment", "created"]
        assert timeline.json()["items"][0]["payload"] == {"text": "Called them"}


class TestAnotherOrganizationsDeal:
    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("PUT", "", {"title": "Mine now"}),
            ("PATCH", "", {"title": "Mine now"}),
            ("PATCH", "/stage", {"stage": "proposal"}),
            ("PATCH", "/status", {"status": "won"}),
            ("DELETE", "", None),
            ("POST", "/restore", None),
            ("GET", "/history", None),
            ("GET", "/activities", None),
            ("POST", "/comments", {"text": "hi"}),
        ],
    )
    async def test_is_404_for_every_verb_and_nothing_changes(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, method: str, suffix: str, body: Any
    ) -> None:
        mine, theirs = await factory.actor("owner"), await factory.actor("owner")
        foreign = await create_deal(client, theirs, amount=5)
        if suffix == "/restore":
            await client.delete(f"{DEALS}/{foreign['id']}", headers=theirs.headers)

        response = await client.request(
            method, f"{DEALS}/{foreign['id']}{suffix}", json=body, headers=mine.headers
        )

        assert_problem(response, 404, "not_found")
        stored = await stored_deal(db, foreign["id"])
        assert (stored.title, stored.stage, stored.status) == ("Deal", "lead", "new")
        assert stored.version == (2 if suffix == "/restore" else 1)
        assert [a.actor_id for a in await activities(db, "deal", foreign["id"])] == [theirs.user.id] * (
            2 if suffix == "/restore" else 1
        )

"""`/api/v1/tasks` (SPEC §6 Tasks, §18): CRUD, filters, sorts, member's own tasks, real deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, Contact, Deal, Organization, Pipeline, Task
from tests.auth.support import assert_problem, assert_validation_error
from tests.factories import Actor, Factory, add_member, make_api_key, make_org

BASE = "/api/v1/tasks"
MSK = timezone(timedelta(hours=3))


def at(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def z(value: datetime | None) -> str | None:
    """A timestamp as the API writes it (UTC, `Z`)."""
    return None if value is None else iso(value.astimezone(UTC))


async def create(client: AsyncClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    body = {"title": "Call the client", **fields}
    response = await client.post(BASE, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def stored(db: AsyncSession, task_id: int) -> Task | None:
    db.expunge_all()
    return (await db.execute(select(Task).where(Task.id == task_id))).scalar_one_or_none()


async def task_count(db: AsyncSession) -> int:
    db.expunge_all()
    return int(await db.scalar(select(func.count()).select_from(Task)) or 0)


async def activities(db: AsyncSession, task_id: int) -> list[Activity]:
    db.expunge_all()
    result = await db.execute(
        select(Activity)
        .where(Activity.entity_type == "task", Activity.entity_id == task_id)
        .order_by(Activity.id)
    )
    return list(result.scalars().all())


async def generation(redis: Redis, org_id: int) -> int:
    return int(await redis.get(f"gen:{org_id}") or 0)


async def make_contact(db: AsyncSession, org_id: int, **fields: Any) -> Contact:
    contact = Contact(organization_id=org_id, full_name="Иван Иванов", **fields)
    db.add(contact)
    await db.flush()
    return contact


async def make_deal(db: AsyncSession, org_id: int, **fields: Any) -> Deal:
    pipeline = Pipeline(organization_id=org_id, name="Sales")
    db.add(pipeline)
    await db.flush()
    deal = Deal(organization_id=org_id, title="Supply", pipeline_id=pipeline.id, stage="lead", **fields)
    db.add(deal)
    await db.flush()
    return deal


class Team:
    """One organization with a manager and two members."""

    def __init__(self, org: Organization, manager: Actor, member: Actor, other_member: Actor) -> None:
        self.org = org
        self.manager = manager
        self.member = member
        self.other_member = other_member


@pytest.fixture
async def team(factory: Factory) -> Team:
    org = await factory.org()
    return Team(
        org,
        await factory.actor("manager", org=org),
        await factory.actor("member", org=org),
        await factory.actor("member", org=org),
    )


class TestCreateTask:
    async def test_defaults_and_server_set_fields(
        self, client: AsyncClient, team: Team, db: AsyncSession, redis: Redis
    ) -> None:
        response = await client.post(BASE, json={"title": "Call the client"}, headers=team.manager.headers)

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["title"] == "Call the client"
        assert (body["priority"], body["status"]) == ("normal", "open")
        assert body["created_by_id"] == team.manager.user.id
        assert body["completed_at"] is None
        assert body["description"] is body["due_date"] is body["assignee_id"] is None
        assert body["version"] == 1
        assert body["created_at"].endswith("Z")
        assert response.headers["location"] == f"{BASE}/{body['id']}"
        assert response.headers["etag"] == '"1"'
        task = await stored(db, body["id"])
        assert task is not None
        assert (task.organization_id, task.title, task.created_by_id) == (
            team.org.id,
            "Call the client",
            team.manager.user.id,
        )
        [activity] = await activities(db, body["id"])
        assert (activity.action, activity.actor_id) == ("created", team.manager.user.id)
        assert activity.changes["title"] == [None, "Call the client"]
        assert await generation(redis, team.org.id) == 1

    async def test_all_fields(self, client: AsyncClient, team: Team, db: AsyncSession) -> None:
        contact = await make_contact(db, team.org.id)
        deal = await make_deal(db, team.org.id)
        due = at(days=3).replace(microsecond=0)

        body = await create(
            client,
            team.manager,
            title="Send the offer",
            description="PDF, with prices",
            contact_id=contact.id,
            deal_id=deal.id,
            assignee_id=team.member.user.id,
            due_date=due.astimezone(MSK).isoformat(),
            priority="high",
            status="in_progress",
        )

        assert body["contact_id"] == contact.id
        assert body["deal_id"] == deal.id
        assert body["assignee_id"] == team.member.user.id
        assert body["due_date"] == z(due)
        assert (body["priority"], body["status"], body["description"]) == (
            "high",
            "in_progress",
            "PDF, with prices",
        )
        task = await stored(db, body["id"])
        assert task is not None
        assert (task.contact_id, task.deal_id, task.assignee_id, task.due_date) == (
            contact.id,
            deal.id,
            team.member.user.id,
            due,
        )

    async def test_due_date_without_offset_is_utc(self, client: AsyncClient, team: Team) -> None:
        due = at(days=2).replace(microsecond=0)

        body = await create(client, team.manager, due_date=due.replace(tzinfo=None).isoformat())

        assert body["due_date"] == z(due)

    async def test_due_date_in_the_past_is_422(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        response = await client.post(
            BASE, json={"title": "Late", "due_date": iso(at(minutes=-1))}, headers=team.manager.headers
        )

        assert_validation_error(response, "body", "due_date")
        assert await task_count(db) == 0

    async def test_created_done_has_completed_at(self, client: AsyncClient, team: Team) -> None:
        before = at()

        body = await create(client, team.manager, status="done")

        assert body["completed_at"] is not None
        assert datetime.fromisoformat(body["completed_at"]) >= before

    async def test_title_of_300_characters_is_accepted(self, client: AsyncClient, team: Team) -> None:
        body = await create(client, team.manager, title="я" * 300)

        assert body["title"] == "я" * 300

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({}, ("body", "title")),
            ({"title": ""}, ("body", "title")),
            ({"title": "   "}, ("body", "title")),
            ({"title": "x" * 301}, ("body", "title")),
            ({"title": "x", "priority": "urgent"}, ("body", "priority")),
            ({"title": "x", "status": "closed"}, ("body", "status")),
            ({"title": "x", "due_date": "tomorrow"}, ("body", "due_date")),
            ({"title": "x", "assignee_id": 0}, ("body", "assignee_id")),
            ({"title": "x", "created_by_id": 1}, ("body", "created_by_id")),
            ({"title": "x", "completed_at": "2030-01-01T00:00:00Z"}, ("body", "completed_at")),
        ],
    )
    async def test_invalid_body_is_422(
        self, client: AsyncClient, team: Team, db: AsyncSession, body: dict[str, Any], loc: tuple[str, ...]
    ) -> None:
        response = await client.post(BASE, json=body, headers=team.manager.headers)

        assert_validation_error(response, *loc)
        assert await task_count(db) == 0

    async def test_contact_of_another_organization_is_invalid_reference(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        foreign = await make_contact(db, (await factory.org()).id)

        response = await client.post(
            BASE, json={"title": "x", "contact_id": foreign.id}, headers=team.manager.headers
        )

        body = assert_problem(response, 422, "invalid_reference")
        assert body["errors"][0]["loc"] == ["body", "contact_id"]
        assert await task_count(db) == 0

    async def test_deleted_contact_is_invalid_reference(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        contact = await make_contact(db, team.org.id, deleted_at=at(hours=-1))

        response = await client.post(
            BASE, json={"title": "x", "contact_id": contact.id}, headers=team.manager.headers
        )

        assert_problem(response, 422, "invalid_reference")

    async def test_deal_of_another_organization_is_invalid_reference(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        foreign = await make_deal(db, (await factory.org()).id)

        response = await client.post(
            BASE, json={"title": "x", "deal_id": foreign.id}, headers=team.manager.headers
        )

        body = assert_problem(response, 422, "invalid_reference")
        assert body["errors"][0]["loc"] == ["body", "deal_id"]

    async def test_missing_deal_is_invalid_reference(self, client: AsyncClient, team: Team) -> None:
        response = await client.post(
            BASE, json={"title": "x", "deal_id": 987654}, headers=team.manager.headers
        )

        assert_problem(response, 422, "invalid_reference")

    async def test_assignee_outside_the_organization_is_invalid_reference(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        stranger = await factory.user()

        response = await client.post(
            BASE, json={"title": "x", "assignee_id": stranger.id}, headers=team.manager.headers
        )

        body = assert_problem(response, 422, "invalid_reference")
        assert body["errors"][0]["loc"] == ["body", "assignee_id"]
        assert await task_count(db) == 0

    async def test_project_id_is_refused_until_projects_exist(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        response = await client.post(BASE, json={"title": "x", "project_id": 1}, headers=team.manager.headers)

        body = assert_problem(response, 422, "invalid_reference")
        assert body["errors"][0]["loc"] == ["body", "project_id"]
        assert await task_count(db) == 0

    async def test_member_is_403(self, client: AsyncClient, team: Team, db: AsyncSession) -> None:
        response = await client.post(
            BASE, json={"title": "x", "assignee_id": team.member.user.id}, headers=team.member.headers
        )

        assert_problem(response, 403, "permission_denied")
        assert await task_count(db) == 0

    async def test_without_organization_header_is_400(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        """A member of several organizations must name one (§20.1)."""
        await add_member(db, await make_org(db), team.manager.user, "manager")
        await db.commit()

        response = await client.post(BASE, json={"title": "x"}, headers=team.manager.auth)

        assert_problem(response, 400, "organization_required")

    async def test_idempotency_key_replays_the_first_response(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        headers = {**team.manager.headers, "Idempotency-Key": "task-1"}

        first = await client.post(BASE, json={"title": "Once"}, headers=headers)
        second = await client.post(BASE, json={"title": "Once"}, headers=headers)

        assert first.status_code == second.status_code == 201, second.text
        assert second.json() == first.json()
        assert second.headers["location"] == first.headers["location"]
        assert await task_count(db) == 1
        assert len(await activities(db, first.json()["id"])) == 1

    async def test_idempotency_key_with_another_body_is_422(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        headers = {**team.manager.headers, "Idempotency-Key": "task-2"}
        await client.post(BASE, json={"title": "Once"}, headers=headers)

        response = await client.post(BASE, json={"title": "Twice"}, headers=headers)

        assert_problem(response, 422, "idempotency_key_reused")
        assert await task_count(db) == 1


class TestListTasks:
    async def test_envelope_newest_first(self, client: AsyncClient, team: Team) -> None:
        first = await create(client, team.manager, title="first")
        second = await create(client, team.manager, title="second")

        response = await client.get(BASE, headers=team.member.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert [t["id"] for t in body["items"]] == [second["id"], first["id"]]
        assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)

    async def test_pages(self, client: AsyncClient, team: Team) -> None:
        ids = [(await create(client, team.manager, title=f"t{i}"))["id"] for i in range(3)]

        response = await client.get(BASE, params={"limit": 1, "offset": 1}, headers=team.manager.headers)

        body = response.json()
        assert [t["id"] for t in body["items"]] == [ids[1]]
        assert (body["total"], body["limit"], body["offset"]) == (3, 1, 1)

    async def test_other_organizations_tasks_are_not_listed(
        self, client: AsyncClient, team: Team, factory: Factory
    ) -> None:
        outsider = await factory.actor("manager")
        await create(client, outsider)
        mine = await create(client, team.manager)

        response = await client.get(BASE, headers=team.manager.headers)

        assert [t["id"] for t in response.json()["items"]] == [mine["id"]]

    @pytest.mark.parametrize(("name", "value"), [("status", "in_progress"), ("priority", "high")])
    async def test_filter_by_value(self, client: AsyncClient, team: Team, name: str, value: str) -> None:
        wanted = await create(client, team.manager, **{name: value})
        await create(client, team.manager)

        response = await client.get(BASE, params={name: value}, headers=team.manager.headers)

        assert [t["id"] for t in response.json()["items"]] == [wanted["id"]]

    async def test_filter_by_assignee(self, client: AsyncClient, team: Team) -> None:
        wanted = await create(client, team.manager, assignee_id=team.member.user.id)
        await create(client, team.manager, assignee_id=team.other_member.user.id)
        await create(client, team.manager)

        response = await client.get(
            BASE, params={"assignee_id": team.member.user.id}, headers=team.manager.headers
        )

        assert [t["id"] for t in response.json()["items"]] == [wanted["id"]]

    async def test_filter_by_deal_and_contact(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        deal = await make_deal(db, team.org.id)
        contact = await make_contact(db, team.org.id)
        on_deal = await create(client, team.manager, deal_id=deal.id)
        on_contact = await create(client, team.manager, contact_id=contact.id)
        await create(client, team.manager)

        by_deal = await client.get(BASE, params={"deal_id": deal.id}, headers=team.manager.headers)
        by_contact = await client.get(BASE, params={"contact_id": contact.id}, headers=team.manager.headers)

        assert [t["id"] for t in by_deal.json()["items"]] == [on_deal["id"]]
        assert [t["id"] for t in by_contact.json()["items"]] == [on_contact["id"]]

    async def test_filter_by_due_window_is_inclusive(self, client: AsyncClient, team: Team) -> None:
        day = at(days=10).replace(microsecond=0)
        early = await create(client, team.manager, due_date=iso(day - timedelta(days=1)))
        exact = await create(client, team.manager, due_date=iso(day))
        late = await create(client, team.manager, due_date=iso(day + timedelta(days=1)))
        await create(client, team.manager)

        before = await client.get(BASE, params={"due_before": iso(day)}, headers=team.manager.headers)
        after = await client.get(BASE, params={"due_after": iso(day)}, headers=team.manager.headers)
        window = await client.get(
            BASE, params={"due_after": iso(day), "due_before": iso(day)}, headers=team.manager.headers
        )

        assert {t["id"] for t in before.json()["items"]} == {early["id"], exact["id"]}
        assert {t["id"] for t in after.json()["items"]} == {exact["id"], late["id"]}
        assert [t["id"] for t in window.json()["items"]] == [exact["id"]]

    async def test_overdue_is_past_due_and_still_active(self, client: AsyncClient, team: Team) -> None:
        overdue_open = await create(client, team.manager, due_date=iso(at(days=1)))
        overdue_started = await create(client, team.manager, due_date=iso(at(days=1)), status="in_progress")
        past_done = await create(client, team.manager, due_date=iso(at(days=1)))
        past_cancelled = await create(client, team.manager, due_date=iso(at(days=1)))
        await create(client, team.manager, due_date=iso(at(days=1)))  # not due yet
        await create(client, team.manager)  # no due date
        for task, status in [
            (overdue_open, "open"),
            (overdue_started, "in_progress"),
            (past_done, "done"),
            (past_cancelled, "cancelled"),
        ]:
            response = await client.patch(
                f"{BASE}/{task['id']}",
                json={"due_date": iso(at(hours=-1)), "status": status},
                headers=team.manager.headers,
            )
            assert response.status_code == 200, response.text

        response = await client.get(BASE, params={"overdue": "true"}, headers=team.manager.headers)

        assert {t["id"] for t in response.json()["items"]} == {overdue_open["id"], overdue_started["id"]}
        assert response.json()["total"] == 2

    async def test_overdue_false_does_not_filter(self, client: AsyncClient, team: Team) -> None:
        await create(client, team.manager)

        response = await client.get(BASE, params={"overdue": "false"}, headers=team.manager.headers)

        assert response.json()["total"] == 1

    async def test_mine_is_assigned_to_the_caller(self, client: AsyncClient, team: Team) -> None:
        mine = await create(client, team.manager, assignee_id=team.member.user.id)
        await create(client, team.manager, assignee_id=team.other_member.user.id)
        await create(client, team.manager)

        response = await client.get(BASE, params={"mine": "true"}, headers=team.member.headers)

        assert [t["id"] for t in response.json()["items"]] == [mine["id"]]

    async def test_mine_for_an_api_key_is_empty(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        await create(client, team.manager, assignee_id=team.member.user.id)
        _, raw = await make_api_key(db, team.org, ["tasks:read"])

        response = await client.get(BASE, params={"mine": "true"}, headers={"X-API-Key": raw})

        assert response.status_code == 200, response.text
        assert response.json()["total"] == 0

    async def test_filters_combine(self, client: AsyncClient, team: Team) -> None:
        wanted = await create(client, team.manager, assignee_id=team.member.user.id, priority="high")
        await create(client, team.manager, assignee_id=team.member.user.id)
        await create(client, team.manager, priority="high")

        response = await client.get(
            BASE, params={"mine": "true", "priority": "high"}, headers=team.member.headers
        )

        assert [t["id"] for t in response.json()["items"]] == [wanted["id"]]

    async def test_sort_by_due_date_puts_undated_last(self, client: AsyncClient, team: Team) -> None:
        undated = await create(client, team.manager)
        later = await create(client, team.manager, due_date=iso(at(days=5)))
        sooner = await create(client, team.manager, due_date=iso(at(days=1)))

        ascending = await client.get(BASE, params={"sort": "due_date"}, headers=team.manager.headers)
        descending = await client.get(BASE, params={"sort": "-due_date"}, headers=team.manager.headers)

        assert [t["id"] for t in ascending.json()["items"]] == [sooner["id"], later["id"], undated["id"]]
        assert [t["id"] for t in descending.json()["items"]] == [later["id"], sooner["id"], undated["id"]]

    async def test_sort_by_priority_is_by_weight(self, client: AsyncClient, team: Team) -> None:
        normal = await create(client, team.manager, priority="normal")
        high = await create(client, team.manager, priority="high")
        low = await create(client, team.manager, priority="low")

        ascending = await client.get(BASE, params={"sort": "priority"}, headers=team.manager.headers)
        descending = await client.get(BASE, params={"sort": "-priority"}, headers=team.manager.headers)

        assert [t["id"] for t in ascending.json()["items"]] == [low["id"], normal["id"], high["id"]]
        assert [t["id"] for t in descending.json()["items"]] == [high["id"], normal["id"], low["id"]]

    async def test_sort_by_created_at_ascending(self, client: AsyncClient, team: Team) -> None:
        first = await create(client, team.manager)
        second = await create(client, team.manager)

        response = await client.get(BASE, params={"sort": "created_at"}, headers=team.manager.headers)

        assert [t["id"] for t in response.json()["items"]] == [first["id"], second["id"]]

    @pytest.mark.parametrize(
        ("params", "loc"),
        [
            ({"sort": "title"}, ("query", "sort")),
            ({"status": "closed"}, ("query", "status")),
            ({"priority": "urgent"}, ("query", "priority")),
            ({"overdue": "maybe"}, ("query", "overdue")),
            ({"mine": "perhaps"}, ("query", "mine")),
            ({"assignee_id": "0"}, ("query", "assignee_id")),
            ({"due_before": "soon"}, ("query", "due_before")),
            ({"limit": "201"}, ("query", "limit")),
        ],
    )
    async def test_unknown_filter_or_sort_is_422(
        self, client: AsyncClient, team: Team, params: dict[str, str], loc: tuple[str, ...]
    ) -> None:
        response = await client.get(BASE, params=params, headers=team.manager.headers)

        assert_validation_error(response, *loc)

    async def test_due_window_out_of_order_is_422(self, client: AsyncClient, team: Team) -> None:
        response = await client.get(
            BASE,
            params={"due_after": iso(at(days=2)), "due_before": iso(at(days=1))},
            headers=team.manager.headers,
        )

        assert_validation_error(response, "query", "due_after")


class TestGetTask:
    async def test_member_reads_with_etag(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager, description="details")

        response = await client.get(f"{BASE}/{task['id']}", headers=team.member.headers)

        assert response.status_code == 200, response.text
        assert response.json() == task
        assert response.headers["etag"] == '"1"'

    async def test_another_organizations_task_is_404(
        self, client: AsyncClient, team: Team, factory: Factory
    ) -> None:
        task = await create(client, team.manager)
        outsider = await factory.actor("owner")

        response = await client.get(f"{BASE}/{task['id']}", headers=outsider.headers)

        assert_problem(response, 404, "not_found")

    async def test_missing_is_404(self, client: AsyncClient, team: Team) -> None:
        response = await client.get(f"{BASE}/987654", headers=team.manager.headers)

        assert_problem(response, 404, "not_found")

    async def test_out_of_range_id_is_422(self, client: AsyncClient, team: Team) -> None:
        response = await client.get(f"{BASE}/{2**63}", headers=team.manager.headers)

        assert_validation_error(response, "path", "task_id")


class TestUpdateTask:
    async def test_manager_changes_fields(
        self, client: AsyncClient, team: Team, db: AsyncSession, redis: Redis
    ) -> None:
        task = await create(client, team.manager)
        before = await generation(redis, team.org.id)

        response = await client.patch(
            f"{BASE}/{task['id']}",
            json={"title": "Call again", "priority": "low"},
            headers={**team.manager.headers, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["title"], body["priority"], body["version"]) == ("Call again", "low", 2)
        assert response.headers["etag"] == '"2"'
        row = await stored(db, task["id"])
        assert row is not None
        assert (row.title, row.priority, row.version) == ("Call again", "low", 2)
        updated = (await activities(db, task["id"]))[-1]
        assert (updated.action, updated.actor_id) == ("updated", team.manager.user.id)
        assert updated.changes == {"title": ["Call the client", "Call again"], "priority": ["normal", "low"]}
        assert await generation(redis, team.org.id) == before + 1

    async def test_done_sets_completed_at_and_reopening_clears_it(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager)
        url = f"{BASE}/{task['id']}"

        done = await client.patch(url, json={"status": "done"}, headers=team.manager.headers)
        still_done = await client.patch(url, json={"title": "Renamed"}, headers=team.manager.headers)
        reopened = await client.patch(url, json={"status": "open"}, headers=team.manager.headers)

        assert done.json()["completed_at"] is not None
        assert still_done.json()["completed_at"] == done.json()["completed_at"]
        assert reopened.json()["completed_at"] is None
        row = await stored(db, task["id"])
        assert row is not None
        assert (row.status, row.completed_at) == ("open", None)
        changes = [a.changes for a in await activities(db, task["id"])]
        assert changes[1]["status"] == ["open", "done"]
        assert changes[1]["completed_at"][0] is None
        assert changes[3]["completed_at"] == [done.json()["completed_at"], None]

    async def test_cancelling_a_done_task_clears_completed_at(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager, status="done")

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"status": "cancelled"}, headers=team.manager.headers
        )

        assert (response.json()["status"], response.json()["completed_at"]) == ("cancelled", None)

    async def test_due_date_may_be_moved_into_the_past(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager, due_date=iso(at(days=1)))
        past = at(days=-3).replace(microsecond=0)

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"due_date": iso(past)}, headers=team.manager.headers
        )

        assert response.status_code == 200, response.text
        assert response.json()["due_date"] == z(past)

    async def test_stale_if_match_is_412_and_writes_nothing(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager)
        await client.patch(f"{BASE}/{task['id']}", json={"title": "v2"}, headers=team.manager.headers)

        response = await client.patch(
            f"{BASE}/{task['id']}",
            json={"title": "stale"},
            headers={**team.manager.headers, "If-Match": '"1"'},
        )

        assert_problem(response, 412, "version_mismatch")
        row = await stored(db, task["id"])
        assert row is not None
        assert (row.title, row.version) == ("v2", 2)
        assert len(await activities(db, task["id"])) == 2

    async def test_nothing_changed_keeps_the_version(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager)

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"title": task["title"]}, headers=team.manager.headers
        )

        assert response.json()["version"] == 1
        assert len(await activities(db, task["id"])) == 1

    @pytest.mark.parametrize("field", ["title", "priority", "status"])
    async def test_required_field_set_to_null_is_422(
        self, client: AsyncClient, team: Team, db: AsyncSession, field: str
    ) -> None:
        task = await create(client, team.manager)

        response = await client.patch(
            f"{BASE}/{task['id']}", json={field: None}, headers=team.manager.headers
        )

        assert_validation_error(response, "body", field)
        row = await stored(db, task["id"])
        assert row is not None
        assert row.version == 1

    async def test_clearing_optional_fields(self, client: AsyncClient, team: Team, db: AsyncSession) -> None:
        contact = await make_contact(db, team.org.id)
        task = await create(
            client, team.manager, contact_id=contact.id, assignee_id=team.member.user.id, description="d"
        )

        response = await client.patch(
            f"{BASE}/{task['id']}",
            json={"contact_id": None, "assignee_id": None, "description": None},
            headers=team.manager.headers,
        )

        body = response.json()
        assert body["contact_id"] is body["assignee_id"] is body["description"] is None

    async def test_foreign_contact_is_invalid_reference(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager)
        foreign = await make_contact(db, (await factory.org()).id)

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"contact_id": foreign.id}, headers=team.manager.headers
        )

        assert_problem(response, 422, "invalid_reference")
        row = await stored(db, task["id"])
        assert row is not None
        assert row.contact_id is None

    async def test_a_reference_already_held_is_not_rechecked(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        contact = await make_contact(db, team.org.id)
        task = await create(client, team.manager, contact_id=contact.id)
        contact.deleted_at = at()
        await db.flush()

        response = await client.patch(
            f"{BASE}/{task['id']}",
            json={"title": "Still fine", "contact_id": contact.id},
            headers=team.manager.headers,
        )

        assert response.status_code == 200, response.text

    async def test_member_edits_a_task_assigned_to_them(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager, assignee_id=team.member.user.id)

        response = await client.patch(
            f"{BASE}/{task['id']}",
            json={"status": "done", "assignee_id": team.member.user.id},
            headers=team.member.headers,
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "done"
        updated = (await activities(db, task["id"]))[-1]
        assert updated.actor_id == team.member.user.id

    async def test_member_cannot_edit_someone_elses_task(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager, assignee_id=team.other_member.user.id)

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"status": "done"}, headers=team.member.headers
        )

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, task["id"])
        assert row is not None
        assert (row.status, row.version) == ("open", 1)

    async def test_member_cannot_edit_an_unassigned_task(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager)

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"title": "Mine now"}, headers=team.member.headers
        )

        assert_problem(response, 403, "permission_denied")

    @pytest.mark.parametrize("reassign_to", ["other", None])
    async def test_member_cannot_reassign_their_task(
        self, client: AsyncClient, team: Team, db: AsyncSession, reassign_to: str | None
    ) -> None:
        task = await create(client, team.manager, assignee_id=team.member.user.id)
        target = team.other_member.user.id if reassign_to else None

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"assignee_id": target}, headers=team.member.headers
        )

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, task["id"])
        assert row is not None
        assert row.assignee_id == team.member.user.id

    async def test_manager_reassigns(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager, assignee_id=team.member.user.id)

        response = await client.patch(
            f"{BASE}/{task['id']}",
            json={"assignee_id": team.other_member.user.id},
            headers=team.manager.headers,
        )

        assert response.json()["assignee_id"] == team.other_member.user.id

    async def test_another_organizations_task_is_404(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager)
        outsider = await factory.actor("owner")

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"title": "Hijack"}, headers=outsider.headers
        )

        assert_problem(response, 404, "not_found")
        row = await stored(db, task["id"])
        assert row is not None
        assert row.title == "Call the client"

    async def test_unknown_field_is_422(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager)

        response = await client.patch(
            f"{BASE}/{task['id']}", json={"version": 7}, headers=team.manager.headers
        )

        assert_validation_error(response, "body", "version")


class TestReplaceTask:
    async def test_replaces_every_field(self, client: AsyncClient, team: Team, db: AsyncSession) -> None:
        task = await create(
            client,
            team.manager,
            description="old",
            priority="high",
            assignee_id=team.member.user.id,
            due_date=iso(at(days=1)),
        )

        response = await client.put(
            f"{BASE}/{task['id']}",
            json={"title": "Replaced"},
            headers={**team.manager.headers, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["title"] == "Replaced"
        assert body["description"] is body["assignee_id"] is body["due_date"] is None
        assert (body["priority"], body["status"], body["version"]) == ("normal", "open", 2)
        assert body["created_by_id"] == team.manager.user.id
        row = await stored(db, task["id"])
        assert row is not None
        assert (row.title, row.description, row.priority) == ("Replaced", None, "normal")

    async def test_status_is_kept_when_omitted(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager, status="done")

        response = await client.put(
            f"{BASE}/{task['id']}", json={"title": "Renamed"}, headers=team.manager.headers
        )

        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["completed_at"]) == ("done", task["completed_at"])
        row = await stored(db, task["id"])
        assert row is not None
        assert row.status == "done"

    async def test_status_sent_is_applied(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager, status="done")

        response = await client.put(
            f"{BASE}/{task['id']}", json={"title": "Again", "status": "open"}, headers=team.manager.headers
        )

        assert (response.json()["status"], response.json()["completed_at"]) == ("open", None)

    async def test_a_past_due_date_is_allowed(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager)

        response = await client.put(
            f"{BASE}/{task['id']}",
            json={"title": "x", "due_date": iso(at(days=-1))},
            headers=team.manager.headers,
        )

        assert response.status_code == 200, response.text

    async def test_stale_if_match_is_412(self, client: AsyncClient, team: Team, db: AsyncSession) -> None:
        task = await create(client, team.manager)

        response = await client.put(
            f"{BASE}/{task['id']}", json={"title": "x"}, headers={**team.manager.headers, "If-Match": '"5"'}
        )

        assert_problem(response, 412, "version_mismatch")
        row = await stored(db, task["id"])
        assert row is not None
        assert row.title == "Call the client"

    async def test_member_replaces_their_task_keeping_it(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager, assignee_id=team.member.user.id)

        response = await client.put(
            f"{BASE}/{task['id']}",
            json={"title": "Mine", "assignee_id": team.member.user.id, "status": "done"},
            headers=team.member.headers,
        )

        assert response.status_code == 200, response.text
        assert response.json()["completed_at"] is not None

    async def test_member_replace_dropping_the_assignee_is_403(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager, assignee_id=team.member.user.id)

        response = await client.put(
            f"{BASE}/{task['id']}", json={"title": "Mine"}, headers=team.member.headers
        )

        assert_problem(response, 403, "permission_denied")

    async def test_missing_title_is_422(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager)

        response = await client.put(
            f"{BASE}/{task['id']}", json={"priority": "low"}, headers=team.manager.headers
        )

        assert_validation_error(response, "body", "title")

    async def test_another_organizations_task_is_404(
        self, client: AsyncClient, team: Team, factory: Factory
    ) -> None:
        task = await create(client, team.manager)
        outsider = await factory.actor("manager")

        response = await client.put(f"{BASE}/{task['id']}", json={"title": "x"}, headers=outsider.headers)

        assert_problem(response, 404, "not_found")


class TestDeleteTask:
    async def test_manager_deletes_for_real(
        self, client: AsyncClient, team: Team, db: AsyncSession, redis: Redis
    ) -> None:
        task = await create(client, team.manager, priority="high")
        before = await generation(redis, team.org.id)

        response = await client.delete(f"{BASE}/{task['id']}", headers=team.manager.headers)

        assert response.status_code == 204, response.text
        assert response.content == b""
        assert await stored(db, task["id"]) is None
        deleted = (await activities(db, task["id"]))[-1]
        assert (deleted.action, deleted.actor_id) == ("deleted", team.manager.user.id)
        assert deleted.changes["title"] == ["Call the client", None]
        assert deleted.changes["priority"] == ["high", None]
        assert await generation(redis, team.org.id) == before + 1
        again = await client.get(f"{BASE}/{task['id']}", headers=team.manager.headers)
        assert_problem(again, 404, "not_found")

    async def test_twice_is_404(self, client: AsyncClient, team: Team) -> None:
        task = await create(client, team.manager)
        await client.delete(f"{BASE}/{task['id']}", headers=team.manager.headers)

        response = await client.delete(f"{BASE}/{task['id']}", headers=team.manager.headers)

        assert_problem(response, 404, "not_found")

    async def test_member_is_403_even_for_their_own_task(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager, assignee_id=team.member.user.id)

        response = await client.delete(f"{BASE}/{task['id']}", headers=team.member.headers)

        assert_problem(response, 403, "permission_denied")
        assert await stored(db, task["id"]) is not None

    async def test_another_organizations_task_is_404(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        task = await create(client, team.manager)
        outsider = await factory.actor("owner")

        response = await client.delete(f"{BASE}/{task['id']}", headers=outsider.headers)

        assert_problem(response, 404, "not_found")
        assert await stored(db, task["id"]) is not None

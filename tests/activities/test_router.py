"""`/api/v1/activities` and the record timelines (SPEC §6 Activities, §19.7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, Contact, Organization
from tests.auth.support import assert_problem, assert_validation_error
from tests.factories import Actor, Factory, join_another_org

BASE = "/api/v1/activities"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def log(db: AsyncSession, org: Organization | int, **fields: Any) -> Activity:
    """An activity row as a write would have stored it."""
    values: dict[str, Any] = {
        "organization_id": org if isinstance(org, int) else org.id,
        "entity_type": "contact",
        "entity_id": 1,
        "action": "updated",
        "actor_id": None,
        "changes": {},
        "payload": {},
        "created_at": T0,
    }
    values.update(fields)
    activity = Activity(**values)
    db.add(activity)
    await db.flush()
    return activity


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [a["id"] for a in response.json()["items"]]


@pytest.fixture
async def owner(factory: Factory) -> Actor:
    return await factory.actor("owner")


async def org_of(db: AsyncSession, actor: Actor) -> Organization:
    assert actor.org_id is not None
    org = await db.get(Organization, actor.org_id)
    assert org is not None
    return org


class TestListActivities:
    async def test_envelope_newest_first(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        org = await org_of(db, owner)
        old = await log(db, org, created_at=T0)
        new = await log(db, org, created_at=T0 + timedelta(hours=1))
        same_time = await log(db, org, created_at=T0 + timedelta(hours=1))

        response = await client.get(BASE, headers=owner.headers)

        assert ids(response) == [same_time.id, new.id, old.id]
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 50, 0)
        first = body["items"][0]
        assert set(first) == {
            "id",
            "entity_type",
            "entity_id",
            "action",
            "actor_id",
            "changes",
            "payload",
            "created_at",
        }
        assert first["created_at"] == "2026-03-01T13:00:00Z"

    async def test_pages(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        org = await org_of(db, owner)
        rows = [await log(db, org, created_at=T0 + timedelta(minutes=n)) for n in range(3)]

        response = await client.get(BASE, params={"limit": 1, "offset": 1}, headers=owner.headers)

        assert ids(response) == [rows[1].id]
        assert response.json()["total"] == 3

    async def test_filter_by_entity_type(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        org = await org_of(db, owner)
        task = await log(db, org, entity_type="task")
        await log(db, org, entity_type="contact")

        response = await client.get(BASE, params={"entity_type": "task"}, headers=owner.headers)

        assert ids(response) == [task.id]

    async def test_filter_by_entity_id(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        org = await org_of(db, owner)
        wanted = await log(db, org, entity_id=42)
        await log(db, org, entity_id=43)

        response = await client.get(BASE, params={"entity_id": 42}, headers=owner.headers)

        assert ids(response) == [wanted.id]

    async def test_filter_by_actor(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        org = await org_of(db, owner)
        mine = await log(db, org, actor_id=owner.user.id)
        await log(db, org, actor_id=None)

        response = await client.get(BASE, params={"actor_id": owner.user.id}, headers=owner.headers)

        assert ids(response) == [mine.id]

    async def test_filter_by_action(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        org = await org_of(db, owner)
        comment = await log(db, org, action="comment", payload={"text": "hi"})
        await log(db, org, action="updated")

        response = await client.get(BASE, params={"action": "comment"}, headers=owner.headers)

        assert ids(response) == [comment.id]
        assert response.json()["items"][0]["payload"] == {"text": "hi"}

    async def test_filter_by_time_window_is_inclusive(
        self, client: AsyncClient, owner: Actor, db: AsyncSession
    ) -> None:
        org = await org_of(db, owner)
        before = await log(db, org, created_at=T0 - timedelta(seconds=1))
        start = await log(db, org, created_at=T0)
        end = await log(db, org, created_at=T0 + timedelta(hours=1))
        after = await log(db, org, created_at=T0 + timedelta(hours=1, seconds=1))
        window = {"from": iso(T0), "to": iso(T0 + timedelta(hours=1))}

        inside = await client.get(BASE, params=window, headers=owner.headers)
        since = await client.get(BASE, params={"from": iso(T0)}, headers=owner.headers)
        until = await client.get(BASE, params={"to": iso(T0)}, headers=owner.headers)

        assert ids(inside) == [end.id, start.id]
        assert ids(since) == [after.id, end.id, start.id]
        assert ids(until) == [start.id, before.id]

    async def test_time_with_an_offset_or_none(
        self, client: AsyncClient, owner: Actor, db: AsyncSession
    ) -> None:
        org = await org_of(db, owner)
        row = await log(db, org, created_at=T0)
        await log(db, org, created_at=T0 - timedelta(hours=1))

        moscow = await client.get(BASE, params={"from": "2026-03-01T15:00:00+03:00"}, headers=owner.headers)
        naive = await client.get(BASE, params={"from": "2026-03-01T12:00:00"}, headers=owner.headers)

        assert ids(moscow) == ids(naive) == [row.id]

    async def test_filters_combine(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        org = await org_of(db, owner)
        wanted = await log(
            db, org, entity_type="deal", entity_id=7, action="stage_changed", actor_id=owner.user.id
        )
        await log(db, org, entity_type="deal", entity_id=7, action="updated", actor_id=owner.user.id)
        await log(db, org, entity_type="deal", entity_id=8, action="stage_changed", actor_id=owner.user.id)
        await log(db, org, entity_type="contact", entity_id=7, action="stage_changed", actor_id=owner.user.id)

        response = await client.get(
            BASE,
            params={
                "entity_type": "deal",
                "entity_id": 7,
                "action": "stage_changed",
                "actor_id": owner.user.id,
            },
            headers=owner.headers,
        )

        assert ids(response) == [wanted.id]

    async def test_other_organizations_activities_are_not_listed(
        self, client: AsyncClient, owner: Actor, factory: Factory, db: AsyncSession
    ) -> None:
        mine = await log(db, await org_of(db, owner))
        await log(db, await factory.org())

        response = await client.get(BASE, headers=owner.headers)

        assert ids(response) == [mine.id]

    async def test_member_reads_the_log(
        self, client: AsyncClient, owner: Actor, factory: Factory, db: AsyncSession
    ) -> None:
        org = await org_of(db, owner)
        row = await log(db, org)
        member = await factory.actor("member", org=org)

        response = await client.get(BASE, headers=member.headers)

        assert ids(response) == [row.id]

    async def test_an_api_write_is_logged_with_its_actor(
        self, client: AsyncClient, owner: Actor, db: AsyncSession
    ) -> None:
        created = await client.post("/api/v1/contacts", json={"full_name": "Анна"}, headers=owner.headers)
        contact_id = created.json()["id"]

        response = await client.get(
            BASE, params={"entity_type": "contact", "entity_id": contact_id}, headers=owner.headers
        )

        [item] = response.json()["items"]
        assert (item["action"], item["actor_id"]) == ("created", owner.user.id)
        assert item["changes"]["full_name"] == [None, "Анна"]

    @pytest.mark.parametrize(
        ("params", "loc"),
        [
            ({"entity_type": "widget"}, ("query", "entity_type")),
            ({"entity_type": "contacts"}, ("query", "entity_type")),
            ({"action": "exploded"}, ("query", "action")),
            ({"entity_id": "0"}, ("query", "entity_id")),
            ({"entity_id": str(2**63)}, ("query", "entity_id")),
            ({"actor_id": "me"}, ("query", "actor_id")),
            ({"from": "yesterday"}, ("query", "from")),
            ({"to": "2026-13-01"}, ("query", "to")),
            ({"limit": "0"}, ("query", "limit")),
            ({"offset": "-1"}, ("query", "offset")),
        ],
    )
    async def test_unknown_filter_value_is_422(
        self, client: AsyncClient, owner: Actor, params: dict[str, str], loc: tuple[str, ...]
    ) -> None:
        response = await client.get(BASE, params=params, headers=owner.headers)

        assert_validation_error(response, *loc)

    async def test_window_out_of_order_is_422(self, client: AsyncClient, owner: Actor) -> None:
        response = await client.get(
            BASE, params={"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00"}, headers=owner.headers
        )

        assert_validation_error(response, "query", "from")

    async def test_without_organization_header_is_400(
        self, client: AsyncClient, owner: Actor, db: AsyncSession
    ) -> None:
        await join_another_org(db, owner.user)
        response = await client.get(BASE, headers=owner.auth)

        assert_problem(response, 400, "organization_required")

    async def test_not_a_member_is_403(self, client: AsyncClient, owner: Actor, factory: Factory) -> None:
        other = await factory.org()

        response = await client.get(BASE, headers={**owner.auth, "X-Organization-ID": str(other.id)})

        assert_problem(response, 403, "not_a_member")

    async def test_without_credentials_is_401(self, client: AsyncClient) -> None:
        response = await client.get(BASE, headers={"X-Organization-ID": "1"})

        assert response.status_code == 401, response.text


class TestGetActivity:
    async def test_returns_the_activity(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        row = await log(
            db,
            await org_of(db, owner),
            entity_type="task",
            entity_id=5,
            action="status_changed",
            actor_id=owner.user.id,
            changes={"status": ["open", "done"]},
            payload={"note": "ok"},
        )

        response = await client.get(f"{BASE}/{row.id}", headers=owner.headers)

        assert response.status_code == 200, response.text
        assert response.json() == {
            "id": row.id,
            "entity_type": "task",
            "entity_id": 5,
            "action": "status_changed",
            "actor_id": owner.user.id,
            "changes": {"status": ["open", "done"]},
            "payload": {"note": "ok"},
            "created_at": "2026-03-01T12:00:00Z",
        }

    async def test_another_organizations_activity_is_404(
        self, client: AsyncClient, owner: Actor, factory: Factory, db: AsyncSession
    ) -> None:
        foreign = await log(db, await factory.org(), payload={"secret": "x"})

        response = await client.get(f"{BASE}/{foreign.id}", headers=owner.headers)

        body = assert_problem(response, 404, "not_found")
        assert "secret" not in response.text
        assert body["detail"] == "Activity not found"

    async def test_missing_is_404(self, client: AsyncClient, owner: Actor) -> None:
        response = await client.get(f"{BASE}/987654", headers=owner.headers)

        assert_problem(response, 404, "not_found")

    async def test_zero_id_is_422(self, client: AsyncClient, owner: Actor) -> None:
        response = await client.get(f"{BASE}/0", headers=owner.headers)

        assert_validation_error(response, "path", "activity_id")


async def make_contact(db: AsyncSession, org_id: int, **fields: Any) -> Contact:
    contact = Contact(organization_id=org_id, full_name="Иван Иванов", **fields)
    db.add(contact)
    await db.flush()
    return contact


class TestComment:
    """`POST /{record}/{id}/comments`, added to each record's router by `add_timeline_routes`."""

    async def test_member_comments(
        self, client: AsyncClient, owner: Actor, factory: Factory, db: AsyncSession
    ) -> None:
        contact = await make_contact(db, owner.org_id or 0)
        member = await factory.actor("member", org=await org_of(db, owner))

        response = await client.post(
            f"/api/v1/contacts/{contact.id}/comments",
            json={"text": "Звонил, перезвонит"},
            headers=member.headers,
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["entity_type"], body["entity_id"], body["action"]) == ("contact", contact.id, "comment")
        assert (body["actor_id"], body["payload"]) == (member.user.id, {"text": "Звонил, перезвонит"})
        assert response.headers["location"] == f"{BASE}/{body['id']}"
        db.expunge_all()
        stored = await db.get(Activity, body["id"])
        assert stored is not None
        assert (stored.organization_id, stored.payload) == (owner.org_id, {"text": "Звонил, перезвонит"})

    @pytest.mark.parametrize(
        "body", [{}, {"text": ""}, {"text": "   "}, {"text": "x" * 10_001}, {"text": "a", "x": 1}]
    )
    async def test_invalid_text_is_422(
        self, client: AsyncClient, owner: Actor, db: AsyncSession, body: dict[str, Any]
    ) -> None:
        contact = await make_contact(db, owner.org_id or 0)

        response = await client.post(
            f"/api/v1/contacts/{contact.id}/comments", json=body, headers=owner.headers
        )

        assert_problem(response, 422, "validation_error")
        count = await db.scalar(
            select(func.count()).select_from(Activity).where(Activity.action == "comment")
        )
        assert count == 0

    async def test_another_organizations_record_is_404(
        self, client: AsyncClient, owner: Actor, factory: Factory, db: AsyncSession
    ) -> None:
        foreign = await make_contact(db, (await factory.org()).id)

        response = await client.post(
            f"/api/v1/contacts/{foreign.id}/comments", json={"text": "hi"}, headers=owner.headers
        )

        assert_problem(response, 404, "not_found")

    async def test_deleted_record_is_404(self, client: AsyncClient, owner: Actor, db: AsyncSession) -> None:
        contact = await make_contact(db, owner.org_id or 0, deleted_at=T0)

        response = await client.post(
            f"/api/v1/contacts/{contact.id}/comments", json={"text": "hi"}, headers=owner.headers
        )

        assert_problem(response, 404, "not_found")


class TestTimeline:
    async def test_lists_the_records_activities_newest_first(
        self, client: AsyncClient, owner: Actor, db: AsyncSession
    ) -> None:
        org = await org_of(db, owner)
        contact = await make_contact(db, org.id)
        first = await log(db, org, entity_id=contact.id, action="created", created_at=T0)
        second = await log(
            db, org, entity_id=contact.id, action="comment", created_at=T0 + timedelta(hours=1)
        )
        await log(db, org, entity_type="deal", entity_id=contact.id)  # same id, another kind of record
        await log(db, org, entity_id=contact.id + 1)

        response = await client.get(f"/api/v1/contacts/{contact.id}/activities", headers=owner.headers)

        assert ids(response) == [second.id, first.id]
        assert response.json()["total"] == 2

    async def test_another_organizations_record_is_404(
        self, client: AsyncClient, owner: Actor, factory: Factory, db: AsyncSession
    ) -> None:
        other = await factory.org()
        foreign = await make_contact(db, other.id)
        await log(db, other, entity_id=foreign.id)

        response = await client.get(f"/api/v1/contacts/{foreign.id}/activities", headers=owner.headers)

        assert_problem(response, 404, "not_found")

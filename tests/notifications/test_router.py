"""`/notifications`: my notifications only, the unread filter, marking read one or all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Notification, Organization
from tests.factories import Actor, Factory, add_member, assert_problem, join_another_org, make_api_key

URL = "/api/v1/notifications"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def note(
    db: AsyncSession, user_id: int, organization_id: int | None, n: int, **fields: Any
) -> Notification:
    row = Notification(
        user_id=user_id,
        organization_id=organization_id,
        kind="task_assigned",
        title=f"Note {n}",
        created_at=T0 + timedelta(minutes=n),
        **fields,
    )
    db.add(row)
    await db.flush()
    return row


async def read_at(db: AsyncSession, notification_id: int) -> datetime | None:
    db.expunge_all()
    return await db.scalar(select(Notification.read_at).where(Notification.id == notification_id))


class World:
    def __init__(self, me: Actor, other: Actor, org_id: int, other_org_id: int) -> None:
        self.me, self.other, self.org_id, self.other_org_id = me, other, org_id, other_org_id


async def world(factory: Factory, db: AsyncSession) -> World:
    me = await factory.actor("member")
    assert me.org_id is not None
    org = await db.get(Organization, me.org_id)
    other = await factory.actor("member", org=org)
    second_org = await factory.org()
    await add_member(db, second_org, me.user, "member")
    await db.commit()
    return World(me, other, me.org_id, second_org.id)


class TestList:
    async def test_only_mine_in_this_organization_newest_first(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        w = await world(factory, db)
        first = await note(db, w.me.user.id, w.org_id, 1, entity_type="project", entity_id=7, data={"a": 1})
        system = await note(db, w.me.user.id, None, 2)
        latest = await note(db, w.me.user.id, w.org_id, 3, read_at=T0)
        await note(db, w.other.user.id, w.org_id, 4)
        await note(db, w.me.user.id, w.other_org_id, 5)
        await db.commit()
        response = await client.get(URL, headers=w.me.headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 50, 0)
        assert [i["id"] for i in body["items"]] == [latest.id, system.id, first.id]
        item = body["items"][2]
        assert item == {
            "id": first.id,
            "organization_id": w.org_id,
            "kind": "task_assigned",
            "title": "Note 1",
            "body": None,
            "entity_type": "project",
            "entity_id": 7,
            "data": {"a": 1},
            "read_at": None,
            "created_at": "2026-11-01T12:01:00Z",
        }

    async def test_unread_filter(self, client: AsyncClient, db: AsyncSession, factory: Factory) -> None:
        w = await world(factory, db)
        unread = await note(db, w.me.user.id, w.org_id, 1)
        read = await note(db, w.me.user.id, w.org_id, 2, read_at=T0)
        await db.commit()
        only_unread = await client.get(URL, params={"unread": "true"}, headers=w.me.headers)
        assert [i["id"] for i in only_unread.json()["items"]] == [unread.id]
        assert only_unread.json()["total"] == 1
        only_read = await client.get(URL, params={"unread": "false"}, headers=w.me.headers)
        assert [i["id"] for i in only_read.json()["items"]] == [read.id]
        assert_problem(
            await client.get(URL, params={"unread": "maybe"}, headers=w.me.headers), 422, "validation_error"
        )

    async def test_an_api_key_has_no_notifications(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        w = await world(factory, db)
        org = await db.get(Organization, w.org_id)
        assert org is not None
        _, raw = await make_api_key(db, org, ["notifications:read"])
        await db.commit()
        assert_problem(await client.get(URL, headers={"X-API-Key": raw}), 403, "permission_denied")


class TestRead:
    async def test_marks_one_read_once(self, client: AsyncClient, db: AsyncSession, factory: Factory) -> None:
        w = await world(factory, db)
        mine = await note(db, w.me.user.id, w.org_id, 1)
        untouched = await note(db, w.me.user.id, w.org_id, 2)
        await db.commit()
        response = await client.post(f"{URL}/{mine.id}/read", headers=w.me.headers)
        assert response.status_code == 204
        assert response.content == b""
        first = await read_at(db, mine.id)
        assert first is not None
        again = await client.post(f"{URL}/{mine.id}/read", headers=w.me.headers)
        assert again.status_code == 204
        assert await read_at(db, mine.id) == first
        assert await read_at(db, untouched.id) is None

    async def test_someone_elses_or_another_organizations_is_404(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        w = await world(factory, db)
        theirs = await note(db, w.other.user.id, w.org_id, 1)
        mine_elsewhere = await note(db, w.me.user.id, w.other_org_id, 2)
        await db.commit()
        assert_problem(await client.post(f"{URL}/{theirs.id}/read", headers=w.me.headers), 404, "not_found")
        assert_problem(
            await client.post(f"{URL}/{mine_elsewhere.id}/read", headers=w.me.headers), 404, "not_found"
        )
        assert_problem(await client.post(f"{URL}/{10**12}/read", headers=w.me.headers), 404, "not_found")
        assert await read_at(db, theirs.id) is None
        assert await read_at(db, mine_elsewhere.id) is None

    async def test_read_all_marks_only_mine_in_this_organization(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        w = await world(factory, db)
        a = await note(db, w.me.user.id, w.org_id, 1)
        b = await note(db, w.me.user.id, None, 2)
        earlier = T0 - timedelta(days=1)
        c = await note(db, w.me.user.id, w.org_id, 3, read_at=earlier)
        theirs = await note(db, w.other.user.id, w.org_id, 4)
        elsewhere = await note(db, w.me.user.id, w.other_org_id, 5)
        await db.commit()
        response = await client.post(f"{URL}/read-all", headers=w.me.headers)
        assert response.status_code == 204
        assert await read_at(db, a.id) is not None
        assert await read_at(db, b.id) is not None
        assert await read_at(db, c.id) == earlier
        assert await read_at(db, theirs.id) is None
        assert await read_at(db, elsewhere.id) is None
        listed = await client.get(URL, params={"unread": "true"}, headers=w.me.headers)
        assert listed.json()["total"] == 0

    async def test_needs_an_organization(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        w = await world(factory, db)
        await join_another_org(db, w.me.user)
        assert_problem(await client.get(URL, headers=w.me.auth), 400, "organization_required")
        assert_problem(await client.post(f"{URL}/read-all", headers=w.me.auth), 400, "organization_required")

"""How many round trips to PostgreSQL a record write takes through the routers (warm caches): each
write is one statement (the row, its activity and its events) between BEGIN and COMMIT. The fast
create path, one statement without BEGIN and COMMIT, is switched off here (its own tests are in
`test_fast_create.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from crm.models import Activity, Contact, OutboxEvent
from tests.factories import Actor, add_member, login, make_org, make_user
from tests.records.support import RedisTrips, RoundTrips, framework_only

CONTACTS = "/api/v1/contacts"
pytestmark = pytest.mark.committing


@pytest.fixture(autouse=True)
def routers_only(app: Any) -> Iterator[None]:
    with framework_only(app):
        yield


async def owner(app: Any, client: AsyncClient) -> Actor:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "owner")
        await session.commit()
    return await login(client, user, org_id=org.id)


async def post_contact(client: AsyncClient, actor: Actor, n: int, **headers: str) -> dict[str, Any]:
    response = await client.post(
        CONTACTS,
        json={"full_name": f"Контакт {n}", "email": f"c{n}@example.com", "phone": "+7 921 345-19-48"},
        headers={**actor.headers, **headers},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestCreate:
    async def test_a_contact_is_one_statement(self, app: Any, committing_client: AsyncClient) -> None:
        actor = await owner(app, committing_client)
        await post_contact(committing_client, actor, 0)  # warms the access and definition caches

        with RoundTrips(app.state.engine) as trips:
            created = await post_contact(committing_client, actor, 1)

        assert trips.log == ["BEGIN", "WITH record_write AS", "COMMIT"], trips.log
        async with app.state.sessionmaker() as session:
            contact = await session.get(Contact, created["id"])
            assert contact is not None
            assert contact.email == "c1@example.com"
            activity = (
                await session.execute(select(Activity).where(Activity.entity_id == created["id"]))
            ).scalar_one()
            assert (activity.entity_type, activity.action) == ("contact", "created")
            assert activity.changes["email"] == [None, "c1@example.com"]
            event = (
                await session.execute(select(OutboxEvent).where(OutboxEvent.entity_id == created["id"]))
            ).scalar_one()
            assert event.event_type == "contact.created"
            assert event.payload["id"] == created["id"]
            assert event.payload["object"]["id"] == created["id"]
            assert event.payload["object"]["email"] == "c1@example.com"
            assert event.payload["object"]["created_at"] == created["created_at"]
            assert "search_vector" not in event.payload["object"]

    async def test_a_contact_asks_redis_twice(self, app: Any, committing_client: AsyncClient) -> None:
        actor = await owner(app, committing_client)
        await post_contact(committing_client, actor, 0)

        with RedisTrips(app.state.redis) as redis_trips:
            created = await post_contact(committing_client, actor, 1)

        # The session, the caller's access and the custom-field generation in one MGET; the
        # organization's cache generation bumped after commit.
        assert redis_trips.log == ["mget", "incr"], redis_trips.log
        assert created["email"] == "c1@example.com"

    async def test_a_new_custom_field_is_enforced_on_the_next_create(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        actor = await owner(app, committing_client)
        await post_contact(committing_client, actor, 0)  # caches the (empty) definitions
        defined = await committing_client.post(
            "/api/v1/custom-fields",
            json={"entity": "contact", "key": "tier", "label": "Tier", "type": "number"},
            headers=actor.headers,
        )
        assert defined.status_code == 201, defined.text

        response = await committing_client.post(
            CONTACTS,
            json={"full_name": "Контакт 1", "custom_fields": {"tier": "gold"}},
            headers=actor.headers,
        )

        assert response.status_code == 422, response.text
        assert "tier" in response.text

    async def test_with_an_idempotency_key_two_more(self, app: Any, committing_client: AsyncClient) -> None:
        actor = await owner(app, committing_client)
        await post_contact(committing_client, actor, 0)

        with RoundTrips(app.state.engine) as trips:
            first = await post_contact(committing_client, actor, 1, **{"Idempotency-Key": "k-1"})
        with RoundTrips(app.state.engine) as replay_trips:
            replay = await committing_client.post(
                CONTACTS,
                json={"full_name": "Контакт 1", "email": "c1@example.com", "phone": "+7 921 345-19-48"},
                headers={**actor.headers, "Idempotency-Key": "k-1"},
            )

        # The claim, the record, the stored response.
        assert trips.count <= 5, trips.log
        assert replay.status_code == 201
        assert replay.json() == first
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay_trips.count <= 4, replay_trips.log

    async def test_a_taken_email_is_a_409_in_one_statement(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        actor = await owner(app, committing_client)
        await post_contact(committing_client, actor, 0)

        with RoundTrips(app.state.engine) as trips:
            response = await committing_client.post(
                CONTACTS, json={"full_name": "Другой", "email": "C0@example.com"}, headers=actor.headers
            )

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "contact_email_taken"
        assert trips.log == ["BEGIN", "WITH record_write AS", "ROLLBACK"], trips.log
        async with app.state.sessionmaker() as session:
            contacts = (await session.execute(select(Contact.email))).scalars().all()
            assert contacts == ["c0@example.com"]


class TestUpdate:
    async def test_a_patch_reads_the_row_then_writes_once(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        actor = await owner(app, committing_client)
        created = await post_contact(committing_client, actor, 0)

        with RoundTrips(app.state.engine) as trips:
            response = await committing_client.patch(
                f"{CONTACTS}/{created['id']}", json={"job_title": "CEO"}, headers=actor.headers
            )

        assert response.status_code == 200, response.text
        assert response.json()["version"] == 2
        assert trips.log == [
            "BEGIN",
            "SELECT contact.full_name, contact.email,",
            "WITH record_write AS",
            "COMMIT",
        ]
        async with app.state.sessionmaker() as session:
            actions = (
                (
                    await session.execute(
                        select(Activity.action)
                        .where(Activity.entity_id == created["id"])
                        .order_by(Activity.id)
                    )
                )
                .scalars()
                .all()
            )
            assert actions == ["created", "updated"]
            events = (
                await session.execute(
                    select(OutboxEvent.event_type, OutboxEvent.payload)
                    .where(OutboxEvent.entity_id == created["id"])
                    .order_by(OutboxEvent.id)
                )
            ).all()
            assert [name for name, _ in events] == ["contact.created", "contact.updated"]
            assert events[1][1]["changes"] == {"job_title": [None, "CEO"]}
            assert events[1][1]["object"]["version"] == 2

    async def test_delete_and_restore(self, app: Any, committing_client: AsyncClient) -> None:
        actor = await owner(app, committing_client)
        created = await post_contact(committing_client, actor, 0)

        deleted = await committing_client.delete(f"{CONTACTS}/{created['id']}", headers=actor.headers)
        gone = await committing_client.get(f"{CONTACTS}/{created['id']}", headers=actor.headers)
        restored = await committing_client.post(f"{CONTACTS}/{created['id']}/restore", headers=actor.headers)

        assert deleted.status_code == 204, deleted.text
        assert gone.status_code == 404
        assert restored.status_code == 200, restored.text
        assert restored.json()["version"] == 3
        async with app.state.sessionmaker() as session:
            names = (
                (
                    await session.execute(
                        select(OutboxEvent.event_type)
                        .where(OutboxEvent.entity_id == created["id"])
                        .order_by(OutboxEvent.id)
                    )
                )
                .scalars()
                .all()
            )
            assert names == ["contact.created", "contact.deleted", "contact.restored"]

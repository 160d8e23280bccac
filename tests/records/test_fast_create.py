"""Record creates through the fast create path (`crm.records.fast_write`).

A `POST /contacts` whose body needs only the organization's rules checked in PostgreSQL is answered
there, with the routers' body and headers and the same rows stored (the contact, its `created`
activity, its `contact.created` event); every other case goes to the routers with its body. The
fast path commits on its own pool, so these tests commit (`committing_client`). Each one checks
both what was answered and who answered it (the `crm_fast_creates_total` counter).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import select, text, update

from crm.models import Activity, Contact, Membership, Organization, OrganizationRole, OutboxEvent
from crm.records import fast_write
from tests.contacts.support import make_company, make_custom_field
from tests.factories import make_api_key, make_org, make_user
from tests.records.support import Org, RedisTrips, RoundTrips, framework_only
from tests.records.test_fast_read import assert_problem

CONTACTS = "/api/v1/contacts"
pytestmark = pytest.mark.committing


def served() -> float:
    return REGISTRY.get_sample_value("crm_fast_creates_total", {"route": CONTACTS}) or 0.0


def statements_run() -> float:
    """Statements the fast create path has sent (each answers one or more requests)."""
    return REGISTRY.get_sample_value("crm_fast_create_batch_size_count") or 0.0


def body(n: int, **more: Any) -> dict[str, Any]:
    return {"full_name": f"Контакт {n}", "email": f"c{n}@example.com", "phone": "8 (921) 345-19-48", **more}


async def stored(app: Any, contact_id: int) -> tuple[Contact, Activity, OutboxEvent]:
    async with app.state.sessionmaker() as session:
        contact = await session.get(Contact, contact_id)
        activity = (
            await session.execute(
                select(Activity).where(Activity.entity_type == "contact", Activity.entity_id == contact_id)
            )
        ).scalar_one()
        event = (
            await session.execute(select(OutboxEvent).where(OutboxEvent.entity_id == contact_id))
        ).scalar_one()
    assert contact is not None
    return contact, activity, event


HEADERS = ("content-type", "location", "etag", "vary", "cache-control", "x-content-type-options")


class TestAnswers:
    async def test_body_headers_and_rows_are_the_routers(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        before = served()
        with RoundTrips(app.state.engine) as trips:
            fast = await committing_client.post(
                CONTACTS, json=body(1, tags=["vip"]), headers=org.owner.headers
            )
        with framework_only(app):
            routed = await committing_client.post(
                CONTACTS, json=body(2, tags=["vip"]), headers=org.owner.headers
            )
            read = await committing_client.get(f"{CONTACTS}/{fast.json()['id']}", headers=org.owner.headers)

        assert fast.status_code == routed.status_code == 201, fast.text
        assert served() == before + 1
        assert trips.log == []  # nothing went through the routers' sessions
        # The answer is the record as the routers write it, byte for byte.
        assert fast.content == read.content
        assert fast.headers["location"] == f"{CONTACTS}/{fast.json()['id']}"
        assert fast.headers["etag"] == read.headers["etag"] == '"1"'
        assert {h: fast.headers.get(h) for h in HEADERS if h not in ("location",)} == {
            h: routed.headers.get(h) for h in HEADERS if h not in ("location",)
        }
        mine, theirs = fast.json(), routed.json()
        for field in ("id", "full_name", "email", "created_at", "updated_at"):
            mine.pop(field), theirs.pop(field)
        assert mine == theirs
        assert mine["phone"] == "+79213451948"
        assert mine["phone_raw"] == "8 (921) 345-19-48"

        fast_rows, routed_rows = await stored(app, fast.json()["id"]), await stored(app, routed.json()["id"])
        contact, activity, event = fast_rows
        assert (contact.organization_id, contact.source, contact.tags) == (org.id, "manual", ["vip"])
        assert (activity.action, activity.actor_id) == ("created", org.owner.user.id)
        assert activity.changes["email"] == [None, "c1@example.com"]
        assert set(activity.changes) == set(routed_rows[1].changes)
        assert event.event_type == "contact.created"
        assert event.payload["object"]["id"] == contact.id
        assert event.payload["object"]["created_at"] == fast.json()["created_at"]
        assert set(event.payload["object"]) == set(routed_rows[2].payload["object"])
        assert set(event.payload) == set(routed_rows[2].payload)

    async def test_one_statement_and_the_cache_generation_bumped(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        listed = await committing_client.get(CONTACTS, headers=org.owner.headers)
        assert listed.json()["total"] == 0

        with RedisTrips(app.state.redis) as redis_trips:
            created = await committing_client.post(CONTACTS, json=body(1), headers=org.owner.headers)

        assert created.status_code == 201, created.text
        assert redis_trips.log == ["incr"], redis_trips.log
        listed = await committing_client.get(CONTACTS, headers=org.owner.headers)
        assert listed.json()["total"] == 1
        assert listed.json()["items"][0]["id"] == created.json()["id"]

    async def test_a_custom_role_with_the_write_permission_is_served(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        async with app.state.sessionmaker() as session:
            session.add(
                OrganizationRole(organization_id=org.id, name="writer", permissions=["contacts:write"])
            )
            await session.execute(
                update(Membership)
                .where(Membership.organization_id == org.id, Membership.user_id == org.member.user.id)
                .values(role="writer")
            )
            await session.commit()
        before = served()

        created = await committing_client.post(CONTACTS, json=body(1), headers=org.member.headers)

        assert created.status_code == 201, created.text
        assert served() == before + 1

    async def test_references_of_the_organization_are_taken(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        async with app.state.sessionmaker() as session:
            company = await make_company(session, org.id, name="ООО Ромашка")
            await session.commit()
        before = served()

        created = await committing_client.post(
            CONTACTS,
            json=body(1, company_id=company.id, owner_id=org.member.user.id),
            headers=org.owner.headers,
        )

        assert created.status_code == 201, created.text
        assert (created.json()["company_id"], created.json()["owner_id"]) == (company.id, org.member.user.id)
        assert served() == before + 1


def one_runner(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One statement at a time per fast route: requests sent together wait and are batched."""
    for batcher in app.state.hot_read_pool.batchers:
        monkeypatch.setattr(batcher, "runners", 1)


def batched() -> tuple[float, float]:
    """Statements of the fast create path so far, and how many of them wrote one request."""
    count = REGISTRY.get_sample_value("crm_fast_create_batch_size_count") or 0.0
    alone = REGISTRY.get_sample_value("crm_fast_create_batch_size_bucket", {"le": "1.0"}) or 0.0
    return count, alone


class TestBatches:
    """Creates arriving while the path's writers are busy are written by one statement; each request
    still gets its own row, activity and event, and what the statement refuses goes to the routers."""

    async def test_concurrent_creates_each_get_their_own_row(
        self, app: Any, committing_client: AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        one_runner(app, monkeypatch)  # one writer: the others wait and are batched
        async with app.state.sessionmaker() as session:
            stranger = await make_org(session)
            foreign = await make_company(session, stranger.id)
            await session.commit()
        bodies = [body(n, tags=[f"t{n}"]) for n in range(1, 11)]
        bodies += [body(20, email="same@example.com"), body(21, email="same@example.com")]
        bodies.append(body(30, company_id=foreign.id))
        before, (statements, alone) = served(), batched()

        answers = await asyncio.gather(
            *(committing_client.post(CONTACTS, json=b, headers=org.owner.headers) for b in bodies)
        )

        codes = [a.status_code for a in answers]
        assert codes[:10] == [201] * 10, [a.text for a in answers]
        assert sorted(codes[10:12]) == [201, 409]  # the second of one e-mail: the routers' 409
        assert_problem(answers[12], 422, "invalid_reference")
        assert served() == before + 11
        count, single = batched()
        assert count - statements < 11, "no two creates were written by one statement"
        assert count - statements > single - alone
        with framework_only(app):
            for sent, answer in zip(bodies, answers, strict=True):
                if answer.status_code != 201:
                    continue
                # Each answer is its own request's record, byte for byte as the routers read it.
                read = await committing_client.get(answer.headers["location"], headers=org.owner.headers)
                assert answer.content == read.content
                assert answer.headers["etag"] == read.headers["etag"] == '"1"'
                assert (answer.json()["full_name"], answer.json()["email"]) == (
                    sent["full_name"],
                    sent["email"],
                )
                contact, activity, event = await stored(app, answer.json()["id"])
                assert contact.tags == sent.get("tags", [])
                assert activity.changes["full_name"] == [None, sent["full_name"]]
                assert activity.actor_id == org.owner.user.id
                assert event.event_type == "contact.created"
                assert event.payload["object"]["id"] == contact.id
                assert event.payload["object"]["full_name"] == sent["full_name"]
                assert event.payload["changes"]["email"] == [None, sent["email"]]
        async with app.state.sessionmaker() as session:
            rows = (
                await session.execute(select(Contact.email).where(Contact.organization_id == org.id))
            ).all()
        assert len(rows) == 11

    async def test_a_batch_that_fails_sends_each_request_to_the_routers(
        self, app: Any, committing_client: AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        one_runner(app, monkeypatch)

        def broken(self: Any, requests: Any) -> list[list[Any]]:
            raise RuntimeError("the batch statement could not be built")

        monkeypatch.setattr(fast_write.CreateRoute, "batch_arguments", broken)
        before = served()

        answers = await asyncio.gather(
            *(committing_client.post(CONTACTS, json=body(n), headers=org.owner.headers) for n in range(1, 9))
        )

        assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
        assert served() - before < 8  # some were written alone, the batched ones by the routers
        async with app.state.sessionmaker() as session:
            emails = sorted(
                (await session.scalars(select(Contact.email).where(Contact.organization_id == org.id))).all()
            )
        assert emails == sorted(f"c{n}@example.com" for n in range(1, 9))


class TestEverythingElseGoesToTheRouters:
    """The statement writes nothing unless every rule holds; the routers then answer the error."""

    async def test_a_taken_email_is_the_routers_409(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        first = await committing_client.post(CONTACTS, json=body(1), headers=org.owner.headers)
        before = served()

        again = await committing_client.post(
            CONTACTS, json=body(1, email="C1@Example.com"), headers=org.owner.headers
        )

        assert first.status_code == 201
        assert_problem(again, 409, "contact_email_taken")
        assert served() == before
        async with app.state.sessionmaker() as session:
            emails = (
                await session.execute(select(Contact.email).where(Contact.organization_id == org.id))
            ).all()
        assert emails == [("c1@example.com",)]

    async def test_references_outside_the_organization_are_the_routers_422(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        async with app.state.sessionmaker() as session:
            other = await make_org(session)
            company = await make_company(session, other.id, name="Чужая")
            stranger = await make_user(session)
            await session.commit()
        before = served()

        foreign_company = await committing_client.post(
            CONTACTS, json=body(1, company_id=company.id), headers=org.owner.headers
        )
        not_a_member = await committing_client.post(
            CONTACTS, json=body(2, owner_id=stranger.id), headers=org.owner.headers
        )

        assert_problem(foreign_company, 422, "invalid_reference")
        assert_problem(not_a_member, 422, "invalid_reference")
        assert served() == before
        async with app.state.sessionmaker() as session:
            assert (
                await session.execute(select(Contact).where(Contact.organization_id == org.id))
            ).all() == []

    async def test_custom_fields_are_checked_by_the_routers(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        async with app.state.sessionmaker() as session:
            await make_custom_field(session, org.id, "contact", "tier", "number", required=True)
            await session.commit()
        before, statements = served(), statements_run()

        missing = await committing_client.post(CONTACTS, json=body(1), headers=org.owner.headers)
        given = await committing_client.post(
            CONTACTS, json=body(2, custom_fields={"tier": 3}), headers=org.owner.headers
        )

        assert_problem(missing, 422, "custom_field_invalid")
        assert given.status_code == 201, given.text
        assert given.json()["custom_fields"] == {"tier": 3}
        assert served() == before
        # The first create ran the statement (which wrote nothing); once the routers have cached
        # the organization's definitions, creates go to them without it.
        assert statements_run() == statements + 1
        async with app.state.sessionmaker() as session:
            rows = (await session.scalars(select(Contact).where(Contact.organization_id == org.id))).all()
        assert [c.custom_fields for c in rows] == [{"tier": 3}]

    async def test_roles_sessions_and_bodies_the_statement_refuses(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(Membership)
                .where(Membership.organization_id == org.id, Membership.user_id == org.member.user.id)
                .values(role="auditor")
            )
            await session.commit()
        await app.state.redis.run(lambda r: r.incr(f"accgen:{org.id}"))
        before = served()

        refused = await committing_client.post(CONTACTS, json=body(1), headers=org.member.headers)
        invalid = await committing_client.post(CONTACTS, json={"email": "x"}, headers=org.owner.headers)
        bad_phone = await committing_client.post(
            CONTACTS, json=body(3, phone="12"), headers=org.owner.headers
        )

        assert_problem(refused, 403, "permission_denied")
        assert_problem(invalid, 422, "validation_error")
        assert_problem(bad_phone, 422, "validation_error")
        assert served() == before

    async def test_a_logged_out_session_is_refused_at_once(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        logout = await committing_client.post("/api/v1/auth/logout", headers=org.owner.headers)
        assert logout.status_code in (200, 204), logout.text
        before = served()

        response = await committing_client.post(CONTACTS, json=body(1), headers=org.owner.headers)

        assert_problem(response, 401, "invalid_token")
        assert served() == before
        async with app.state.sessionmaker() as session:
            assert (
                await session.execute(select(Contact).where(Contact.organization_id == org.id))
            ).all() == []

    async def test_requests_the_fast_path_leaves_alone(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        async with app.state.sessionmaker() as session:
            organization = await session.get(Organization, org.id)
            assert organization is not None
            _, raw = await make_api_key(session, organization, ["contacts:write"])
            await session.commit()
        before = served()
        headers = org.owner.headers

        keyed = await committing_client.post(CONTACTS, json=body(1), headers={"X-API-Key": raw})
        first = await committing_client.post(
            CONTACTS, json=body(2), headers={**headers, "Idempotency-Key": "k"}
        )
        replay = await committing_client.post(
            CONTACTS, json=body(2), headers={**headers, "Idempotency-Key": "k"}
        )
        queried = await committing_client.post(CONTACTS, params={"x": "1"}, json=body(3), headers=headers)
        as_text = await committing_client.post(
            CONTACTS, content=b'{"full_name": "A"}', headers={**headers, "Content-Type": "text/plain"}
        )
        cors = await committing_client.post(
            CONTACTS, json=body(4), headers={**headers, "Origin": "http://localhost:3000"}
        )

        assert keyed.status_code == 201, keyed.text
        assert first.status_code == replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()
        assert_problem(queried, 422, "unknown_parameter")
        assert_problem(as_text, 415, "unsupported_media_type")
        assert cors.status_code == 201, cors.text
        assert cors.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert served() == before


class TestLostConnection:
    async def test_a_create_whose_connection_is_lost_mid_write_is_503_and_not_written_again(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        """A statement lost in the middle may have committed: the routers would write the record a
        second time, so the client gets a 503 that says so (and decides) instead."""
        before = served()
        async with app.state.sessionmaker() as holder, app.state.engine.connect() as watcher:
            # An uncommitted contact holds the e-mail: the fast statement waits on it.
            holder.add(Contact(organization_id=org.id, full_name="Holder", email="lost@example.com"))
            await holder.flush()
            create = asyncio.create_task(
                committing_client.post(
                    CONTACTS,
                    json=body(1, email="lost@example.com"),
                    headers={**org.owner.headers, "Accept-Language": "ru"},
                )
            )
            waiting = None
            for _ in range(200):
                waiting = await watcher.scalar(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = 'crm-hot'"
                        " AND datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                if waiting is not None:
                    break
                await asyncio.sleep(0.02)
            assert waiting is not None, "the fast statement never waited on the held e-mail"
            await watcher.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": waiting})
            lost = await asyncio.wait_for(create, 10)
            await holder.rollback()

        assert_problem(lost, 503, "outcome_unknown")
        assert lost.headers["retry-after"] == "1"
        assert "могла быть создана" in lost.json()["detail"]
        assert served() == before
        async with app.state.sessionmaker() as session:
            stored = (await session.scalars(select(Contact).where(Contact.organization_id == org.id))).all()
        assert stored == []  # the killed statement wrote nothing, and nothing wrote it again
        # The pool replaced the connection: the same create now succeeds on the fast path.
        again = await committing_client.post(
            CONTACTS, json=body(1, email="lost@example.com"), headers=org.owner.headers
        )
        assert again.status_code == 201, again.text
        assert served() == before + 1

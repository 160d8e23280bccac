"""`GET /api/v1/contacts/{id}` through the hot-read path (`crm.core.hot_reads`).

The hot path reads only committed rows, so these tests commit (`committing_client`). Each one checks
both what was answered and who answered it (the `crm_hot_reads_total` counter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import update

from crm.models import Membership, Organization
from tests.contacts.support import make_company, make_contact, make_custom_field
from tests.factories import Actor, add_member, login, make_api_key, make_org, make_user

pytestmark = pytest.mark.committing

BASE = "/api/v1/contacts"
ROUTE = "/api/v1/contacts/{contact_id}"


def served() -> float:
    return REGISTRY.get_sample_value("crm_hot_reads_total", {"route": ROUTE}) or 0.0


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


class Org:
    def __init__(self, org_id: int, owner: Actor, member: Actor) -> None:
        self.id, self.owner, self.member = org_id, owner, member


@pytest.fixture
async def org(app: Any, committing_client: AsyncClient) -> Org:
    async with app.state.sessionmaker() as session:
        org = await make_org(session)
        owner, member = await make_user(session), await make_user(session)
        await add_member(session, org, owner, "owner")
        await add_member(session, org, member, "member")
        await session.commit()
    return Org(
        org.id,
        await login(committing_client, owner, org_id=org.id),
        await login(committing_client, member, org_id=org.id),
    )


@contextlib.contextmanager
def framework_only(app: Any) -> Iterator[None]:
    """The hot path switched off: every request goes to the routers."""
    pool = app.state.hot_read_pool
    size, pool.size = pool.size, 0
    try:
        yield
    finally:
        pool.size = size


async def committed_contact(app: Any, org_id: int, **values: Any) -> int:
    async with app.state.sessionmaker() as session:
        contact = await make_contact(session, org_id, **values)
        await session.commit()
        return contact.id


class TestAnswers:
    async def test_body_and_headers_are_the_routers_byte_for_byte(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        async with app.state.sessionmaker() as session:
            company = await make_company(session, org.id)
            await make_custom_field(session, org.id, "contact", "budget", "number")
            await session.commit()
        rich = await committed_contact(
            app,
            org.id,
            full_name='Иванов Иван «Ромашка» \\ "q"',
            email="ivanov@example.com",
            phone="+79213451948",
            phone_raw="8 (921) 345-19-48",
            company_id=company.id,
            age=41,
            tags=["vip", "б2б"],
            custom_fields={"budget": 1500.25, "nested": {"ключ": [1, None, True]}},
            notes="line\nbreak",
            sync_warnings=["phone_invalid"],
            created_at=datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC),
            updated_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
        bare = await committed_contact(app, org.id, full_name="X")

        for contact_id in (rich, bare):
            before = served()
            hot = await committing_client.get(f"{BASE}/{contact_id}", headers=org.member.headers)
            assert served() == before + 1
            with framework_only(app):
                framework = await committing_client.get(f"{BASE}/{contact_id}", headers=org.member.headers)
            assert served() == before + 1

            assert hot.status_code == framework.status_code == 200
            assert hot.content == framework.content
            for header in (
                "content-type",
                "content-length",
                "etag",
                "vary",
                "x-content-type-options",
                "cache-control",
            ):
                assert hot.headers[header] == framework.headers[header], header
            assert hot.headers["cache-control"] == "no-store"
            # Nothing more, nothing less (the request id differs by design).
            assert sorted(k for k, _ in hot.headers.multi_items() if k != "x-request-id") == sorted(
                k for k, _ in framework.headers.multi_items() if k != "x-request-id"
            )
            assert hot.headers["x-request-id"]
        body = (await committing_client.get(f"{BASE}/{rich}", headers=org.owner.headers)).json()
        assert body["custom_fields"] == {"budget": 1500.25, "nested": {"ключ": [1, None, True]}}
        assert body["created_at"] == "2024-02-29T23:59:59.123456Z"

    async def test_a_change_is_seen_at_once_with_its_new_etag(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed_contact(app, org.id, full_name="Before")
        first = await committing_client.get(f"{BASE}/{contact_id}", headers=org.owner.headers)
        assert first.headers["etag"] == '"1"'

        patched = await committing_client.patch(
            f"{BASE}/{contact_id}",
            json={"full_name": "After"},
            headers={**org.owner.headers, "If-Match": '"1"'},
        )
        assert patched.status_code == 200, patched.text

        before = served()
        second = await committing_client.get(f"{BASE}/{contact_id}", headers=org.owner.headers)
        assert served() == before + 1
        assert second.status_code == 200
        assert (second.json()["full_name"], second.headers["etag"]) == ("After", '"2"')


class TestEverythingElseGoesToTheRouters:
    """Each case is answered exactly as the routers answer it, and the hot path did not answer."""

    async def test_deleted_other_organizations_and_missing_records_are_404(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        deleted = await committed_contact(app, org.id, deleted_at=datetime(2024, 1, 1, tzinfo=UTC))
        other_org = await make_other_org(app)
        foreign = await committed_contact(app, other_org)
        before = served()

        for contact_id in (deleted, foreign, 9_000_000_000):
            response = await committing_client.get(f"{BASE}/{contact_id}", headers=org.owner.headers)
            assert_problem(response, 404, "not_found")
        assert served() == before

    async def test_a_logged_out_session_is_refused_at_once(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed_contact(app, org.id)
        assert (
            await committing_client.get(f"{BASE}/{contact_id}", headers=org.member.headers)
        ).status_code == 200

        logout = await committing_client.post(
            "/api/v1/auth/logout",
            json={"refresh_token": org.member.refresh_token},
            headers=org.member.headers,
        )
        assert logout.status_code == 204, logout.text
        before = served()

        response = await committing_client.get(f"{BASE}/{contact_id}", headers=org.member.headers)

        assert_problem(response, 401, "invalid_token")
        assert served() == before

    async def test_a_role_without_the_read_permission_is_refused(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed_contact(app, org.id)
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(Membership)
                .where(Membership.organization_id == org.id, Membership.user_id == org.member.user.id)
                .values(role="auditor")
            )
            await session.commit()
        await app.state.redis.run(lambda r: r.incr(f"accgen:{org.id}"))
        before = served()

        response = await committing_client.get(f"{BASE}/{contact_id}", headers=org.member.headers)

        assert_problem(response, 403, "permission_denied")
        assert served() == before

    async def test_bad_token_header_and_query_string_cases(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed_contact(app, org.id)
        url = f"{BASE}/{contact_id}"
        before = served()

        no_org = await committing_client.get(url, headers=org.owner.auth)
        bad_org = await committing_client.get(url, headers={**org.owner.auth, "X-Organization-ID": "abc"})
        bad_token = await committing_client.get(
            url, headers={"Authorization": "Bearer x.y.z", "X-Organization-ID": str(org.id)}
        )
        with_query = await committing_client.get(url, params={"x": "1"}, headers=org.owner.headers)
        repeated = await committing_client.get(
            url,
            headers=[
                ("Authorization", f"Bearer {org.owner.access_token}"),
                ("X-Organization-ID", str(org.id)),
                ("X-Organization-ID", "999999"),
            ],
        )

        assert no_org.status_code == 200, no_org.text  # §20.1: the owner's only organization
        assert no_org.json()["id"] == contact_id
        assert_problem(bad_org, 422, "validation_error")
        assert_problem(bad_token, 401, "invalid_token")
        assert_problem(with_query, 422, "unknown_parameter")  # §20.16
        assert repeated.status_code == 200, repeated.text  # the routers read the first one
        assert served() == before

    async def test_api_keys_and_cross_origin_requests_get_the_full_treatment(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed_contact(app, org.id, full_name="Keyed")
        async with app.state.sessionmaker() as session:
            organization = await session.get(Organization, org.id)
            assert organization is not None
            _, raw = await make_api_key(session, organization, ["contacts:read"])
            await session.commit()
        before = served()

        keyed = await committing_client.get(f"{BASE}/{contact_id}", headers={"X-API-Key": raw})
        cors = await committing_client.get(
            f"{BASE}/{contact_id}", headers={**org.owner.headers, "Origin": "http://localhost:3000"}
        )

        assert keyed.status_code == 200, keyed.text
        assert keyed.json()["full_name"] == "Keyed"
        assert cors.status_code == 200, cors.text
        assert cors.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "ETag" in cors.headers["access-control-expose-headers"]
        assert served() == before

    async def test_postgresql_unreachable_for_the_hot_path_falls_back_to_the_routers(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed_contact(app, org.id, full_name="Fallback")
        pool = app.state.hot_read_pool
        await pool.close()
        dsn, pool.dsn = pool.dsn, "postgresql://postgres@127.0.0.1:1/crm"
        try:
            before = served()
            response = await committing_client.get(f"{BASE}/{contact_id}", headers=org.owner.headers)
        finally:
            pool.dsn = dsn
        assert response.status_code == 200, response.text
        assert response.json()["full_name"] == "Fallback"
        assert served() == before
        assert pool.enabled


async def make_other_org(app: Any) -> int:
    async with app.state.sessionmaker() as session:
        other = await make_org(session)
        await session.commit()
        return other.id

"""Record reads through the fast read path (`crm.records.fast_read`).

Every `GET .../{id}` marked `@fast_read` — contacts, companies, deals, projects — is answered there
when the answer is a 200, with the router's exact body and headers; every other case goes to the
router. The fast path reads only committed rows, so these tests commit (`committing_client`). Each
one checks both what was answered and who answered it (the `crm_hot_reads_total` counter).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from httpx import ASGITransport, AsyncClient
from prometheus_client import REGISTRY
from pydantic import BaseModel, computed_field
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import Settings
from crm.contacts.schemas import ContactRead
from crm.contacts.service import ContactService
from crm.core.concurrency import set_etag
from crm.core.db import SessionDep
from crm.core.responses import ApiJSONResponse
from crm.core.schemas import Id
from crm.main import create_app
from crm.models import Contact, District, Industry, Membership, Organization
from crm.organizations.dependencies import Tenant, require
from crm.records.fast_read import FastReadError, discover, fast_read
from tests.contacts.support import make_company, make_contact, make_custom_field, make_deal
from tests.factories import add_member, make_api_key, make_org, make_user
from tests.records.support import Org, framework_only
from tests.support.helpers import make_project

pytestmark = pytest.mark.committing

#: JSON numbers a plain JSON writer and a fast one spell differently (`1e+16` / `1e16`).
NUMBERS = {"big": 1e16, "tiny": 1e-7, "budget": 1500.25, "nested": {"ключ": [1, None, True]}}
STAMP = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)


def served(route: str) -> float:
    return REGISTRY.get_sample_value("crm_hot_reads_total", {"route": route}) or 0.0


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


# Record types -------------------------------------------------------------------------------------

#: (session, organization id, a member's user id) → a stored row.
Maker = Callable[[AsyncSession, int, int], Awaitable[Any]]


async def rich_contact(db: AsyncSession, org_id: int, user_id: int) -> Any:
    company = await make_company(db, org_id)
    await make_custom_field(db, org_id, "contact", "budget", "number")
    return await make_contact(
        db,
        org_id,
        full_name='Иванов Иван «Ромашка» \\ "q"',
        email="ivanov@example.com",
        phone="+79213451948",
        phone_raw="8 (921) 345-19-48",
        company_id=company.id,
        age=41,
        tags=["vip", "б2б"],
        custom_fields=NUMBERS,
        notes="line\nbreak",
        sync_warnings=["phone_invalid"],
        created_at=STAMP,
        updated_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


async def rich_company(db: AsyncSession, org_id: int, user_id: int) -> Any:
    return await make_company(
        db,
        org_id,
        name='ООО «Ромашка» \\ "q"',
        kind="legal_entity",
        inn="7707083893",
        kpp="773601001",
        ogrn="1027700132195",
        website="https://romashka.example.com",
        industry="Производство",
        email="info@romashka.example.com",
        phone="+74951234567",
        address="Москва, ул. Тверская, 1",
        notes="line\nbreak\u2028",
        tags=["vip", "б2б"],
        owner_id=user_id,
        custom_fields=NUMBERS,
        external_id="ext-1",
        sync_warnings=["inn_invalid"],
        created_at=STAMP,
    )


async def rich_deal(db: AsyncSession, org_id: int, user_id: int) -> Any:
    company = await make_company(db, org_id)
    contact = await make_contact(db, org_id, company_id=company.id)
    return await make_deal(
        db,
        org_id,
        title='Поставка «Б2Б» \\ "q"',
        amount=Decimal("9999999999999999.99"),
        currency="USD",
        contact_id=contact.id,
        company_id=company.id,
        owner_id=user_id,
        status="lost",
        expected_close_date=date(2024, 2, 29),
        closed_at=STAMP,
        lost_reason="цена",
        custom_fields=NUMBERS,
        notes="line\nbreak",
        external_id="ext-1",
        sync_warnings=["amount_rounded"],
        created_at=STAMP,
    )


async def rich_project(db: AsyncSession, org_id: int, user_id: int) -> Any:
    client = await make_company(db, org_id)
    industry = Industry(organization_id=org_id, name="Промышленность")
    district = District(organization_id=org_id, name="Центральный")
    db.add_all([industry, district])
    await db.flush()
    return await make_project(
        db,
        org_id,
        name='Завод «Север» \\ "q"',
        description="line\nbreak",
        client_id=client.id,
        industry_id=industry.id,
        district_id=district.id,
        city="Санкт-Петербург",
        address="Невский пр., 1",
        own_funds_amount=Decimal("1500000.50"),
        requested_support_amount=Decimal("0.01"),
        jobs_count=120,
        tax_revenue_amount=Decimal("9999999999999999.99"),
        status="frozen",
        frozen_from="in_committee",
        external_code="ИП-001",
        curator_id=user_id,
        custom_fields=NUMBERS,
        created_at=STAMP,
    )


async def bare_contact(db: AsyncSession, org_id: int, user_id: int) -> Any:
    return await make_contact(db, org_id, full_name="X")


async def bare_company(db: AsyncSession, org_id: int, user_id: int) -> Any:
    return await make_company(db, org_id, name="X")


async def bare_deal(db: AsyncSession, org_id: int, user_id: int) -> Any:
    return await make_deal(db, org_id, title="X", amount=Decimal("0"))


async def bare_project(db: AsyncSession, org_id: int, user_id: int) -> Any:
    return await make_project(db, org_id, name="X")


@dataclass(frozen=True)
class Kind:
    name: str
    route: str
    rich: Maker
    bare: Maker
    #: Values the rich row's body carries (money as strings with two places, dates as ISO).
    rich_values: dict[str, Any]
    #: A PATCH changing one field, and that field's value afterwards.
    patch: dict[str, Any]
    patched: tuple[str, Any]
    bare_values: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.route.rpartition("/")[0]

    def __str__(self) -> str:
        return self.name


KINDS = [
    Kind(
        "contacts",
        "/api/v1/contacts/{contact_id}",
        rich_contact,
        bare_contact,
        {"custom_fields": NUMBERS, "created_at": "2024-02-29T23:59:59.123456Z", "age": 41},
        {"full_name": "After"},
        ("full_name", "After"),
    ),
    Kind(
        "companies",
        "/api/v1/companies/{company_id}",
        rich_company,
        bare_company,
        {"custom_fields": NUMBERS, "inn": "7707083893", "notes": "line\nbreak\u2028"},
        {"name": "После"},
        ("name", "После"),
    ),
    Kind(
        "deals",
        "/api/v1/deals/{deal_id}",
        rich_deal,
        bare_deal,
        {
            "amount": "9999999999999999.99",
            "expected_close_date": "2024-02-29",
            "closed_at": "2024-02-29T23:59:59.123456Z",
            "custom_fields": NUMBERS,
        },
        {"amount": 12.5},
        ("amount", "12.50"),
        {"amount": "0.00", "expected_close_date": None, "closed_at": None},
    ),
    Kind(
        "projects",
        "/api/v1/projects/{project_id}",
        rich_project,
        bare_project,
        {
            "own_funds_amount": "1500000.50",
            "requested_support_amount": "0.01",
            "tax_revenue_amount": "9999999999999999.99",
            "frozen_from": "in_committee",
            "custom_fields": NUMBERS,
        },
        {"name": "После"},
        ("name", "После"),
        {"own_funds_amount": None, "tax_revenue_amount": None, "frozen_from": None},
    ),
]
CONTACTS = KINDS[0]


async def committed(app: Any, org: Org, make: Maker, **values: Any) -> int:
    async with app.state.sessionmaker() as session:
        row = await make(session, org.id, org.owner.user.id)
        for name, value in values.items():
            setattr(row, name, value)
        await session.commit()
        return int(row.id)


async def foreign(app: Any, make: Maker) -> int:
    """A row of another organization."""
    async with app.state.sessionmaker() as session:
        other = await make_org(session)
        owner = await make_user(session)
        await add_member(session, other, owner, "owner")
        row = await make(session, other.id, owner.id)
        await session.commit()
        return int(row.id)


HEADERS = ("content-type", "content-length", "etag", "vary", "x-content-type-options", "cache-control")


@pytest.mark.parametrize("kind", KINDS, ids=str)
class TestAnswers:
    async def test_body_and_headers_are_the_routers_byte_for_byte(
        self, app: Any, committing_client: AsyncClient, org: Org, kind: Kind
    ) -> None:
        rich = await committed(app, org, kind.rich)
        bare = await committed(app, org, kind.bare)

        for record_id in (rich, bare):
            before = served(kind.route)
            fast = await committing_client.get(f"{kind.base}/{record_id}", headers=org.member.headers)
            assert served(kind.route) == before + 1
            with framework_only(app):
                framework = await committing_client.get(
                    f"{kind.base}/{record_id}", headers=org.member.headers
                )
            assert served(kind.route) == before + 1

            assert fast.status_code == framework.status_code == 200
            assert fast.content == framework.content
            for header in HEADERS:
                assert fast.headers[header] == framework.headers[header], header
            assert fast.headers["cache-control"] == "no-store"
            assert fast.headers["etag"] == '"1"'
            # Nothing more, nothing less (the request id differs by design).
            assert sorted(k for k, _ in fast.headers.multi_items() if k != "x-request-id") == sorted(
                k for k, _ in framework.headers.multi_items() if k != "x-request-id"
            )
            assert fast.headers["x-request-id"]

        rich_body = (await committing_client.get(f"{kind.base}/{rich}", headers=org.owner.headers)).json()
        assert {name: rich_body[name] for name in kind.rich_values} == kind.rich_values
        bare_body = (await committing_client.get(f"{kind.base}/{bare}", headers=org.owner.headers)).json()
        assert {name: bare_body[name] for name in kind.bare_values} == kind.bare_values
        assert (rich_body["id"], bare_body["id"]) == (rich, bare)

    async def test_a_change_is_seen_at_once_with_its_new_etag(
        self, app: Any, committing_client: AsyncClient, org: Org, kind: Kind
    ) -> None:
        record_id = await committed(app, org, kind.bare)
        first = await committing_client.get(f"{kind.base}/{record_id}", headers=org.owner.headers)
        assert first.headers["etag"] == '"1"'

        patched = await committing_client.patch(
            f"{kind.base}/{record_id}", json=kind.patch, headers={**org.owner.headers, "If-Match": '"1"'}
        )
        assert patched.status_code == 200, patched.text

        before = served(kind.route)
        second = await committing_client.get(f"{kind.base}/{record_id}", headers=org.owner.headers)
        assert served(kind.route) == before + 1
        assert second.status_code == 200
        name, value = kind.patched
        assert (second.json()[name], second.headers["etag"]) == (value, '"2"')
        assert second.content == patched.content


def batched() -> tuple[float, float]:
    """Statements of the fast read path so far, and how many of them read one request."""
    count = REGISTRY.get_sample_value("crm_fast_read_batch_size_count") or 0.0
    alone = REGISTRY.get_sample_value("crm_fast_read_batch_size_bucket", {"le": "1.0"}) or 0.0
    return count, alone


@pytest.mark.parametrize("kind", KINDS, ids=str)
class TestBatches:
    async def test_reads_sent_together_each_get_their_own_answer(
        self, app: Any, committing_client: AsyncClient, org: Org, kind: Kind, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for batcher in app.state.hot_read_pool.batchers:
            monkeypatch.setattr(batcher, "runners", 1)  # the others wait and are read together
        mine = [
            await committed(app, org, kind.rich),
            *[await committed(app, org, kind.bare) for _ in range(6)],
        ]
        deleted = await committed(app, org, kind.bare, deleted_at=datetime(2024, 1, 1, tzinfo=UTC))
        other = await foreign(app, kind.bare)
        # Two callers (owner, member), a deleted row and another organization's, all at once.
        asks = [(record_id, org.owner if n % 2 else org.member) for n, record_id in enumerate(mine)]
        asks += [(deleted, org.owner), (other, org.member)]
        before, (statements, alone) = served(kind.route), batched()

        answers = await asyncio.gather(
            *(
                committing_client.get(f"{kind.base}/{record_id}", headers=who.headers)
                for record_id, who in asks
            )
        )

        count, single = batched()
        assert count - statements < len(asks), "no two reads were answered by one statement"
        assert count - statements > single - alone
        assert served(kind.route) == before + len(mine)
        with framework_only(app):
            for (record_id, who), answer in zip(asks[: len(mine)], answers, strict=False):
                framework = await committing_client.get(f"{kind.base}/{record_id}", headers=who.headers)
                assert answer.status_code == 200, answer.text
                assert answer.json()["id"] == record_id
                assert answer.content == framework.content
                assert answer.headers["etag"] == framework.headers["etag"]
        assert_problem(answers[-2], 404, "not_found")
        assert_problem(answers[-1], 404, "not_found")


@pytest.mark.parametrize("kind", KINDS, ids=str)
class TestEverythingElseGoesToTheRouters:
    """Each case is answered exactly as the routers answer it, and the fast path did not answer."""

    async def test_deleted_other_organizations_and_missing_records_are_404(
        self, app: Any, committing_client: AsyncClient, org: Org, kind: Kind
    ) -> None:
        deleted = await committed(app, org, kind.bare, deleted_at=datetime(2024, 1, 1, tzinfo=UTC))
        other = await foreign(app, kind.bare)
        before = served(kind.route)

        for record_id in (deleted, other, 9_000_000_000):
            response = await committing_client.get(f"{kind.base}/{record_id}", headers=org.owner.headers)
            assert_problem(response, 404, "not_found")
        assert served(kind.route) == before

    async def test_a_logged_out_session_is_refused_at_once(
        self, app: Any, committing_client: AsyncClient, org: Org, kind: Kind
    ) -> None:
        record_id = await committed(app, org, kind.bare)
        before = served(kind.route)
        assert (
            await committing_client.get(f"{kind.base}/{record_id}", headers=org.member.headers)
        ).status_code == 200
        assert served(kind.route) == before + 1

        logout = await committing_client.post(
            "/api/v1/auth/logout",
            json={"refresh_token": org.member.refresh_token},
            headers=org.member.headers,
        )
        assert logout.status_code == 204, logout.text

        response = await committing_client.get(f"{kind.base}/{record_id}", headers=org.member.headers)

        assert_problem(response, 401, "invalid_token")
        assert served(kind.route) == before + 1

    async def test_a_role_without_the_read_permission_is_refused(
        self, app: Any, committing_client: AsyncClient, org: Org, kind: Kind
    ) -> None:
        record_id = await committed(app, org, kind.bare)
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(Membership)
                .where(Membership.organization_id == org.id, Membership.user_id == org.member.user.id)
                .values(role="auditor")
            )
            await session.commit()
        await app.state.redis.run(lambda r: r.incr(f"accgen:{org.id}"))
        before = served(kind.route)

        response = await committing_client.get(f"{kind.base}/{record_id}", headers=org.member.headers)

        assert_problem(response, 403, "permission_denied")
        assert served(kind.route) == before


class TestRequestsTheFastPathLeavesAlone:
    """Headers and transports the fast path does not handle (contacts stand for every record type:
    the decision is made before the record type matters)."""

    async def test_bad_token_header_and_query_string_cases(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed(app, org, bare_contact)
        url = f"{CONTACTS.base}/{contact_id}"
        before = served(CONTACTS.route)

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

        assert no_org.status_code == 200, no_org.text  # the owner's only organization
        assert no_org.json()["id"] == contact_id
        assert_problem(bad_org, 422, "validation_error")
        assert_problem(bad_token, 401, "invalid_token")
        assert_problem(with_query, 422, "unknown_parameter")
        assert repeated.status_code == 200, repeated.text  # the routers read the first one
        assert served(CONTACTS.route) == before

    async def test_api_keys_and_cross_origin_requests_get_the_full_treatment(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed(app, org, bare_contact, full_name="Keyed")
        async with app.state.sessionmaker() as session:
            organization = await session.get(Organization, org.id)
            assert organization is not None
            _, raw = await make_api_key(session, organization, ["contacts:read"])
            await session.commit()
        before = served(CONTACTS.route)

        keyed = await committing_client.get(f"{CONTACTS.base}/{contact_id}", headers={"X-API-Key": raw})
        cors = await committing_client.get(
            f"{CONTACTS.base}/{contact_id}", headers={**org.owner.headers, "Origin": "http://localhost:3000"}
        )

        assert keyed.status_code == 200, keyed.text
        assert keyed.json()["full_name"] == "Keyed"
        assert cors.status_code == 200, cors.text
        assert cors.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "ETag" in cors.headers["access-control-expose-headers"]
        assert cors.headers["cache-control"] == "no-store"
        assert served(CONTACTS.route) == before

    async def test_postgresql_unreachable_for_the_fast_path_falls_back_to_the_routers(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed(app, org, bare_contact, full_name="Fallback")
        pool = app.state.hot_read_pool
        await pool.close()
        dsn, pool.dsn = pool.dsn, "postgresql://postgres@127.0.0.1:1/crm"
        backoff, pool.backoff_seconds = pool.backoff_seconds, 0.3
        url = f"{CONTACTS.base}/{contact_id}"
        try:
            before = served(CONTACTS.route)
            response = await committing_client.get(url, headers=org.owner.headers)
            # For a while the fast paths step aside without trying: the next request goes straight on.
            assert not pool.enabled
            again = await committing_client.get(url, headers=org.owner.headers)
        finally:
            pool.dsn = dsn
        try:
            assert response.status_code == again.status_code == 200, response.text
            assert response.json()["full_name"] == again.json()["full_name"] == "Fallback"
            assert served(CONTACTS.route) == before
            # Once PostgreSQL answers again, so does the fast path.
            await asyncio.sleep(0.35)
            assert pool.enabled
            served_again = await committing_client.get(url, headers=org.owner.headers)
        finally:
            pool.backoff_seconds = backoff
        assert served_again.status_code == 200
        assert served(CONTACTS.route) == before + 1

    async def test_a_terminated_connection_is_replaced(
        self, app: Any, committing_client: AsyncClient, org: Org
    ) -> None:
        contact_id = await committed(app, org, bare_contact, full_name="Survivor")
        url = f"{CONTACTS.base}/{contact_id}"
        warm = await committing_client.get(url, headers=org.owner.headers)
        async with app.state.engine.connect() as conn:
            killed = (
                await conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'crm-hot' AND datname = current_database()"
                    )
                )
            ).scalar_one()
        before = served(CONTACTS.route)

        answers = [await committing_client.get(url, headers=org.owner.headers) for _ in range(killed + 1)]

        assert warm.status_code == 200
        assert killed >= 1
        assert [a.status_code for a in answers] == [200] * (killed + 1)
        assert {a.json()["full_name"] for a in answers} == {"Survivor"}
        # Each dead connection costs one request its fast answer (the routers answer it); then a new
        # connection serves again.
        assert served(CONTACTS.route) >= before + 1
        assert app.state.hot_read_pool.enabled


# Discovery: the routes come from the app ----------------------------------------------------------


class TestDiscovery:
    def test_every_marked_route_of_the_app_is_found_with_its_own_path(self, app: Any) -> None:
        found = {route.path_format: route.permission for route in discover(app.routes)}

        assert found == {kind.route: f"{kind.name}:read" for kind in KINDS}

    async def test_a_route_marked_anywhere_is_answered_under_the_path_it_was_included_at(
        self, app: Any, committing_client: AsyncClient, org: Org, settings: Settings
    ) -> None:
        router = APIRouter(prefix="/people")

        @router.get("/{person_id}", response_model=ContactRead)
        @fast_read(Contact, "contacts:read", ContactRead)
        async def get_person(
            person_id: Id,
            request: Request,
            tenant: Annotated[Tenant, Depends(require("contacts:read"))],
            db: SessionDep,
            response: Response,
        ) -> object:
            contact = await ContactService(db, tenant, request.app.state.redis).get(person_id)
            set_etag(response, contact.version)
            return contact

        other = create_app(settings)
        other.include_router(router, prefix="/api/v1/directory")
        # The same endpoint declared on the app itself, not through a router.
        other.add_api_route("/api/v1/staff/{person_id}", get_person, response_model=ContactRead)
        contact_id = await committed(app, org, rich_contact)
        contact = await committing_client.get(f"{CONTACTS.base}/{contact_id}", headers=org.owner.headers)

        async with (
            other.router.lifespan_context(other),
            AsyncClient(transport=ASGITransport(app=other), base_url="http://testserver") as client,
        ):
            assert {route.path_format for route in discover(other.routes)} == {
                *(kind.route for kind in KINDS),
                "/api/v1/directory/people/{person_id}",
                "/api/v1/staff/{person_id}",
            }
            answers = {}
            for route in ("/api/v1/directory/people/{person_id}", "/api/v1/staff/{person_id}"):
                url = route.replace("{person_id}", str(contact_id))
                before = served(route)
                fast = await client.get(url, headers=org.owner.headers)
                assert served(route) == before + 1
                with framework_only(other):
                    framework = await client.get(url, headers=org.owner.headers)
                assert served(route) == before + 1
                assert fast.status_code == framework.status_code == 200
                assert fast.content == framework.content
                assert fast.headers["etag"] == framework.headers["etag"] == '"1"'
                assert sorted(k for k, _ in fast.headers.multi_items() if k != "x-request-id") == sorted(
                    k for k, _ in framework.headers.multi_items() if k != "x-request-id"
                )
                for header in HEADERS:
                    assert fast.headers[header] == framework.headers[header], header
                answers[route] = fast

        assert answers["/api/v1/directory/people/{person_id}"].content == contact.content
        assert answers["/api/v1/staff/{person_id}"].json() == contact.json()

    @pytest.mark.parametrize("response_class", [None, ApiJSONResponse], ids=["framework-json", "app-class"])
    async def test_a_row_is_written_as_the_framework_writes_the_routes_answer(
        self, response_class: type[ApiJSONResponse] | None
    ) -> None:
        """Without a response class of its own the framework writes the model's JSON in one step
        (`1e-7`); through a JSON response class it writes a standard JSON document (`1e-07`)."""
        row = {
            "id": 7,
            "full_name": 'Иванов «Ромашка» \\ "q"\u2028\x00\x7f',
            "email": None,
            "phone": None,
            "phone_raw": None,
            "company_id": None,
            "job_title": None,
            "age": 41,
            "gender": None,
            "country": None,
            "address": None,
            "source": "manual",
            "tags": ["б2б"],
            "owner_id": None,
            "custom_fields": NUMBERS,
            "notes": None,
            "external_id": None,
            "sync_warnings": [],
            "version": 3,
            "created_at": STAMP,
            "updated_at": STAMP,
        }
        documents = [
            row,
            # Without floats (the common case) the fast path writes the document with orjson.
            {**row, "custom_fields": {"budget": 1500, "nested": {"ключ": [1, None, True, "\x1f"]}}},
            # An integer beyond 64 bits is no JSON orjson writes: the response class writes it.
            {**row, "custom_fields": {"huge": 2**70, "list": [-(2**63)]}},
        ]
        answer: dict[str, Any] = {}
        app = FastAPI() if response_class is None else FastAPI(default_response_class=response_class)
        router = APIRouter()

        @router.get("/things/{thing_id}", response_model=ContactRead)
        @fast_read(Contact, "contacts:read", ContactRead)
        async def endpoint(thing_id: int) -> object:
            return answer["row"]

        app.include_router(router)
        (route,) = discover(app.routes)
        written = []
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as client:
            for document in documents:
                answer["row"] = document
                framework = await client.get("/things/7")
                assert framework.status_code == 200
                written.append(route.renderer.render(dict(document)))
                assert written[-1] == framework.content
                assert route.renderer.content_type.decode() == framework.headers["content-type"]

        assert (b'"tiny":1e-7,' if response_class is None else b'"tiny":1e-07,') in written[0]
        assert b'"huge":1180591620717411303424' in written[2]

    async def test_computed_fields_are_written_as_the_router_writes_them(self) -> None:
        class Scored(ContactRead):
            @computed_field
            def score(self) -> float:
                return (self.age or 0) * 1e-9

            @computed_field
            def label(self) -> str:
                return f"{self.full_name} ({self.age})"

        row = dict.fromkeys(ContactRead.model_fields) | {
            "id": 1,
            "full_name": "Иван",
            "age": 41,
            "source": "manual",
            "tags": [],
            "custom_fields": {},
            "sync_warnings": [],
            "version": 1,
            "created_at": STAMP,
            "updated_at": STAMP,
        }
        app = FastAPI(default_response_class=ApiJSONResponse)
        router = APIRouter()

        @router.get("/things/{thing_id}", response_model=Scored)
        @fast_read(Contact, "contacts:read", Scored)
        async def endpoint(thing_id: int) -> object:
            return row

        app.include_router(router)
        (route,) = discover(app.routes)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as client:
            framework = await client.get("/things/1")

        assert route.renderer.render(dict(row)) == framework.content
        assert framework.json()["label"] == "Иван (41)"
        assert b'"score":4.1e-08' in framework.content

    @pytest.mark.parametrize(
        ("declare", "reason"),
        [
            (lambda r: r.post("/things/{thing_id}", response_model=ContactRead), "only a GET"),
            (lambda r: r.get("/things/{thing_id}/more", response_model=ContactRead), "its one parameter"),
            (lambda r: r.get("/things/{thing_id}", response_model=Other), "answers"),
            (
                lambda r: r.get("/things/{thing_id}", response_model=ContactRead, status_code=203),
                "answer 200",
            ),
            (
                lambda r: r.get(
                    "/things/{thing_id}", response_model=ContactRead, response_model_exclude_none=True
                ),
                "serialized whole",
            ),
        ],
        ids=["post", "nested", "other-model", "status", "exclude-none"],
    )
    def test_a_route_the_fast_path_could_not_answer_exactly_is_refused(
        self, declare: Callable[[APIRouter], Callable[[Any], Any]], reason: str
    ) -> None:
        router = APIRouter()

        @declare(router)
        @fast_read(Contact, "contacts:read", ContactRead)
        async def endpoint(thing_id: int) -> object:
            return None

        with pytest.raises(FastReadError, match=reason):
            discover(mounted(router))

    def test_a_read_model_field_that_is_no_column_is_refused(self) -> None:
        class Derived(ContactRead):
            display_name: str

        router = APIRouter()

        @router.get("/things/{thing_id}", response_model=Derived)
        @fast_read(Contact, "contacts:read", Derived)
        async def endpoint(thing_id: int) -> object:
            return None

        with pytest.raises(FastReadError, match="display_name is not a column of contact"):
            discover(mounted(router))

    def test_a_route_matched_before_the_marked_one_is_refused(self) -> None:
        router = APIRouter()

        @router.get("/things/{anything:path}")
        async def catch_all(anything: str) -> object:
            return None

        @router.get("/things/{thing_id}", response_model=ContactRead)
        @fast_read(Contact, "contacts:read", ContactRead)
        async def endpoint(thing_id: int) -> object:
            return None

        with pytest.raises(FastReadError, match="is matched first"):
            discover(mounted(router))

    def test_a_route_marked_after_its_siblings_of_other_methods_is_found(self) -> None:
        router = APIRouter()

        @router.put("/things/{thing_id}")
        async def replace(thing_id: int) -> object:
            return None

        @router.get("/things/{thing_id}", response_model=ContactRead)
        @fast_read(Contact, "contacts:read", ContactRead)
        async def endpoint(thing_id: int) -> object:
            return None

        assert [route.path_format for route in discover(mounted(router))] == ["/api/things/{thing_id}"]


class Other(BaseModel):
    id: int


def mounted(router: APIRouter) -> list[Any]:
    app = FastAPI()
    app.include_router(router, prefix="/api")
    return list(app.routes)

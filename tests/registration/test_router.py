"""`POST /register`: the online shop's customer sign-up (SPEC §11, §18, §19.13)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.db import session_scope
from crm.models import Activity, Contact, Organization
from tests.auth.support import assert_problem, assert_validation_error
from tests.factories import Factory

URL = "/register"
#: The request of the shop's README.
SIGN_UP = {
    "name": "Ivan Ivanov",
    "email": "ivan.ivanov@example.ru",
    "age": 33,
    "gender": "Male",
    "country": "Russia",
    "address": "Russia, Orsk, Molodezhnaya St., 18 apartment 6",
    "phone": "+7(921)345-19-48",
}


@pytest.fixture
async def shop(factory: Factory, override_settings: Callable[..., None]) -> Organization:
    """The organization sign-ups go to, named by `REGISTRATION_ORGANIZATION` (restored afterwards)."""
    org = await factory.org(name="Bionic Shop", slug="bionic-shop")
    override_settings(registration_organization=org.slug, admin_organization=None)
    return org


async def contacts_of(db: AsyncSession, org_id: int) -> list[Contact]:
    db.expunge_all()
    result = await db.execute(select(Contact).where(Contact.organization_id == org_id).order_by(Contact.id))
    return list(result.scalars().all())


async def contact_count(db: AsyncSession) -> int:
    db.expunge_all()
    return int(await db.scalar(select(func.count()).select_from(Contact)) or 0)


class TestRegister:
    async def test_creates_a_registration_contact(
        self, client: AsyncClient, shop: Organization, db: AsyncSession, redis: Redis
    ) -> None:
        before = datetime.now(UTC)

        response = await client.post(URL, json=SIGN_UP)

        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {
            "id",
            "name",
            "email",
            "age",
            "gender",
            "country",
            "address",
            "phone",
            "registered_at",
        }
        assert {k: v for k, v in body.items() if k not in ("id", "registered_at")} == SIGN_UP
        assert body["registered_at"].endswith("Z")
        assert datetime.fromisoformat(body["registered_at"]) >= before
        assert response.headers["location"] == f"/api/v1/contacts/{body['id']}"
        assert response.headers["cache-control"] == "no-store"
        [contact] = await contacts_of(db, shop.id)
        assert contact.id == body["id"]
        assert (contact.full_name, contact.email, contact.source) == (
            "Ivan Ivanov",
            "ivan.ivanov@example.ru",
            "registration",
        )
        assert (contact.phone, contact.phone_raw) == ("+79213451948", "+7(921)345-19-48")
        assert (contact.age, contact.gender, contact.country) == (33, "Male", "Russia")
        assert contact.address == SIGN_UP["address"]
        activity = (
            await db.execute(
                select(Activity).where(Activity.entity_type == "contact", Activity.entity_id == contact.id)
            )
        ).scalar_one()
        assert (activity.action, activity.actor_id, activity.organization_id) == ("created", None, shop.id)
        assert activity.changes["source"] == [None, "registration"]
        assert await redis.get(f"gen:{shop.id}") == "1"

    async def test_only_the_required_fields(self, client: AsyncClient, shop: Organization) -> None:
        response = await client.post(URL, json={"name": "Alban Ceray", "email": "alban.ceray@example.fr"})

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["name"], body["email"]) == ("Alban Ceray", "alban.ceray@example.fr")
        assert body["age"] is body["gender"] is body["country"] is body["address"] is body["phone"] is None

    async def test_email_is_stored_in_lower_case(
        self, client: AsyncClient, shop: Organization, db: AsyncSession
    ) -> None:
        response = await client.post(URL, json={"name": "Ivan", "email": "Ivan.Ivanov@Example.RU"})

        assert response.json()["email"] == "ivan.ivanov@example.ru"
        [contact] = await contacts_of(db, shop.id)
        assert contact.email == "ivan.ivanov@example.ru"

    async def test_a_phone_that_does_not_parse_is_kept_as_typed(
        self, client: AsyncClient, shop: Organization, db: AsyncSession
    ) -> None:
        response = await client.post(
            URL, json={"name": "Ivan", "email": "i@example.ru", "phone": "ask the courier"}
        )

        assert response.status_code == 201, response.text
        assert response.json()["phone"] == "ask the courier"
        [contact] = await contacts_of(db, shop.id)
        assert (contact.phone, contact.phone_raw) == (None, "ask the courier")

    async def test_unknown_fields_are_ignored(
        self, client: AsyncClient, shop: Organization, db: AsyncSession
    ) -> None:
        body = {**SIGN_UP, "id": 777, "source": "manual", "password": "secret", "organization_id": 1}

        response = await client.post(URL, json=body)

        assert response.status_code == 201, response.text
        assert response.json()["id"] != 777
        [contact] = await contacts_of(db, shop.id)
        assert contact.source == "registration"

    async def test_longest_values_are_accepted(self, client: AsyncClient, shop: Organization) -> None:
        email = "a" * 64 + "@" + "b" * 31 + ".ru"  # 100 characters
        body = {
            "name": "n" * 100,
            "email": email,
            "gender": "g" * 10,
            "country": "c" * 100,
            "address": "a" * 255,
            "phone": "8 (921) 345-19-48 доб 12"[:25],
            "age": 150,
        }

        response = await client.post(URL, json=body)

        assert response.status_code == 201, response.text
        assert response.json()["email"] == email

    async def test_organization_named_by_id(
        self,
        client: AsyncClient,
        shop: Organization,
        override_settings: Callable[..., None],
        db: AsyncSession,
    ) -> None:
        override_settings(registration_organization=str(shop.id))

        response = await client.post(URL, json=SIGN_UP)

        assert response.status_code == 201, response.text
        assert len(await contacts_of(db, shop.id)) == 1

    @pytest.mark.parametrize("admin_organization", ["Bionic Shop", "bionic-shop"])
    async def test_falls_back_to_the_admins_organization(
        self,
        client: AsyncClient,
        shop: Organization,
        override_settings: Callable[..., None],
        db: AsyncSession,
        admin_organization: str,
    ) -> None:
        override_settings(registration_organization=None, admin_organization=admin_organization)

        response = await client.post(URL, json=SIGN_UP)

        assert response.status_code == 201, response.text
        assert len(await contacts_of(db, shop.id)) == 1

    @pytest.mark.parametrize("registration_organization", [None, "no-such-shop", "987654"])
    async def test_not_configured_is_503(
        self,
        client: AsyncClient,
        override_settings: Callable[..., None],
        db: AsyncSession,
        registration_organization: str | None,
    ) -> None:
        override_settings(registration_organization=registration_organization, admin_organization=None)

        response = await client.post(URL, json=SIGN_UP)

        body = assert_problem(response, 503, "registration_not_configured")
        assert "not configured" in body["detail"]
        assert await contact_count(db) == 0

    async def test_deleted_organization_is_503(
        self, client: AsyncClient, shop: Organization, db: AsyncSession
    ) -> None:
        shop.deleted_at = datetime.now(UTC)
        await db.flush()

        response = await client.post(URL, json=SIGN_UP)

        assert_problem(response, 503, "registration_not_configured")

    async def test_email_already_registered_is_400(
        self, client: AsyncClient, shop: Organization, db: AsyncSession
    ) -> None:
        await client.post(URL, json=SIGN_UP)

        response = await client.post(
            URL, json={**SIGN_UP, "name": "Another", "email": "IVAN.IVANOV@example.ru"}
        )

        assert_problem(response, 400, "email_already_registered")
        assert len(await contacts_of(db, shop.id)) == 1

    async def test_email_of_a_manual_contact_is_400(
        self, client: AsyncClient, shop: Organization, db: AsyncSession
    ) -> None:
        db.add(Contact(organization_id=shop.id, full_name="Ivan", email="ivan.ivanov@example.ru"))
        await db.flush()

        response = await client.post(URL, json=SIGN_UP)

        assert_problem(response, 400, "email_already_registered")
        assert len(await contacts_of(db, shop.id)) == 1

    @pytest.mark.parametrize(
        "existing",
        [
            {"source": "moysklad", "external_id": "ms-1"},  # synced rows are outside the unique index
            {"deleted_at": datetime(2025, 1, 1, tzinfo=UTC)},  # only live contacts count
        ],
    )
    async def test_email_of_a_synced_or_deleted_contact_is_free(
        self, client: AsyncClient, shop: Organization, db: AsyncSession, existing: dict[str, Any]
    ) -> None:
        db.add(Contact(organization_id=shop.id, full_name="Ivan", email="ivan.ivanov@example.ru", **existing))
        await db.flush()

        response = await client.post(URL, json=SIGN_UP)

        assert response.status_code == 201, response.text

    async def test_email_registered_in_another_organization_is_free(
        self, client: AsyncClient, shop: Organization, factory: Factory, db: AsyncSession
    ) -> None:
        other = await factory.org()
        db.add(Contact(organization_id=other.id, full_name="Ivan", email="ivan.ivanov@example.ru"))
        await db.flush()

        response = await client.post(URL, json=SIGN_UP)

        assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"email": "i@example.ru"}, ("body", "name")),
            ({"name": "Ivan"}, ("body", "email")),
            ({"name": "   ", "email": "i@example.ru"}, ("body", "name")),
            ({"name": "n" * 101, "email": "i@example.ru"}, ("body", "name")),
            ({"name": "Ivan", "email": "not-an-email"}, ("body", "email")),
            ({"name": "Ivan", "email": "a" * 90 + "@example.ru"}, ("body", "email")),
            ({"name": "Ivan", "email": "i@example.ru", "age": -1}, ("body", "age")),
            ({"name": "Ivan", "email": "i@example.ru", "age": "old"}, ("body", "age")),
            ({"name": "Ivan", "email": "i@example.ru", "gender": "g" * 11}, ("body", "gender")),
            ({"name": "Ivan", "email": "i@example.ru", "country": "c" * 101}, ("body", "country")),
            ({"name": "Ivan", "email": "i@example.ru", "address": "a" * 256}, ("body", "address")),
            ({"name": "Ivan", "email": "i@example.ru", "phone": "1" * 26}, ("body", "phone")),
        ],
    )
    async def test_invalid_body_is_422(
        self,
        client: AsyncClient,
        shop: Organization,
        db: AsyncSession,
        body: dict[str, Any],
        loc: tuple[str, ...],
    ) -> None:
        response = await client.post(URL, json=body)

        assert_validation_error(response, *loc)
        assert await contact_count(db) == 0

    async def test_not_json_is_422(self, client: AsyncClient, shop: Organization) -> None:
        response = await client.post(URL, content=b"name=Ivan", headers={"Content-Type": "text/plain"})

        assert_problem(response, 422, "validation_error")

    async def test_rate_limited_per_ip(
        self,
        client: AsyncClient,
        shop: Organization,
        override_settings: Callable[..., None],
        db: AsyncSession,
    ) -> None:
        override_settings(rate_limit_public_register_per_ip="2/minute")
        for n in range(2):
            ok = await client.post(URL, json={"name": "Ivan", "email": f"i{n}@example.ru"})
            assert ok.status_code == 201, ok.text
            assert ok.headers["ratelimit-policy"] == '"public_register";q=2;w=60'

        response = await client.post(URL, json={"name": "Ivan", "email": "i3@example.ru"})

        assert_problem(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["ratelimit"].startswith('"public_register";r=0;')
        assert len(await contacts_of(db, shop.id)) == 2

    async def test_rate_limit_counts_each_client_address_apart(
        self, client: AsyncClient, shop: Organization, override_settings: Callable[..., None]
    ) -> None:
        override_settings(rate_limit_public_register_per_ip="1/minute", trusted_proxies="127.0.0.1")

        first = await client.post(URL, json=SIGN_UP, headers={"X-Forwarded-For": "203.0.113.7"})
        second = await client.post(
            URL, json={**SIGN_UP, "email": "other@example.ru"}, headers={"X-Forwarded-For": "203.0.113.8"}
        )

        assert first.status_code == second.status_code == 201, second.text


@pytest.mark.committing
class TestRegisterConcurrently:
    async def test_ten_sign_ups_with_one_email_create_one_contact(
        self, app: Any, committing_client: AsyncClient, override_settings: Callable[..., None]
    ) -> None:
        async with session_scope(app.state.sessionmaker) as session:
            org = Organization(name="Race Shop", slug="race-shop")
            session.add(org)
        override_settings(registration_organization="race-shop")

        responses = await asyncio.gather(
            *(committing_client.post(URL, json={**SIGN_UP, "name": f"Ivan {n}"}) for n in range(10))
        )

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [400] * 9, [r.text for r in responses]
        for response in responses:
            if response.status_code == 400:
                assert_problem(response, 400, "email_already_registered")
        async with session_scope(app.state.sessionmaker) as session:
            emails = (
                (await session.execute(select(Contact.email).where(Contact.organization_id == org.id)))
                .scalars()
                .all()
            )
        assert emails == ["ivan.ivanov@example.ru"]

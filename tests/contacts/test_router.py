"""`/api/v1/contacts` (SPEC §3, §6 Contacts, §8 custom fields, §18, §19.1, §19.9, §19.13)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, Contact, IdempotencyKey
from tests.contacts.support import (
    activities,
    assert_problem,
    at,
    count,
    error_locs,
    make_company,
    make_contact,
    make_custom_field,
    make_deal,
    stored,
    team,
)
from tests.factories import Actor, Factory, add_member, login, make_org, make_user

BASE = "/api/v1/contacts"

FULL = {
    "full_name": "Иванов Иван Петрович",
    "email": "Ivan.Ivanov@Example.COM",
    "phone": "+7 (921) 345-19-48",
    "job_title": "Директор",
    "age": 42,
    "gender": "male",
    "country": "Россия",
    "address": "Санкт-Петербург, Невский пр., 1",
    "tags": ["vip", "b2b"],
    "notes": "Звонить после обеда",
}


async def create(client: AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("full_name", "Test Contact")
    response = await client.post(BASE, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def ids(client: AsyncClient, actor: Actor, query: str) -> list[int]:
    response = await client.get(f"{BASE}?{query}", headers=actor.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


class TestCreateContact:
    async def test_every_field_is_stored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "manager", "member")
        manager, member = actors["manager"], actors["member"]
        company = await make_company(db, org.id, name="ООО Ромашка")
        await make_custom_field(db, org.id, "contact", "budget", "number")

        body = {
            **FULL,
            "company_id": company.id,
            "owner_id": member.user.id,
            "custom_fields": {"budget": 1500},
        }
        response = await client.post(BASE, json=body, headers=manager.headers)

        assert response.status_code == 201, response.text
        data = response.json()
        assert response.headers["location"] == f"{BASE}/{data['id']}"
        assert response.headers["etag"] == '"1"'
        assert data == {
            **FULL,
            "id": data["id"],
            "email": "ivan.ivanov@example.com",
            "phone": "+79213451948",
            "phone_raw": "+7 (921) 345-19-48",
            "company_id": company.id,
            "owner_id": member.user.id,
            "custom_fields": {"budget": 1500},
            "source": "manual",
            "external_id": None,
            "sync_warnings": [],
            "version": 1,
            "created_at": data["created_at"],
            "updated_at": data["updated_at"],
        }
        assert data["created_at"].endswith("Z")
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.organization_id, row.email, row.phone, row.phone_raw) == (
            org.id,
            "ivan.ivanov@example.com",
            "+79213451948",
            "+7 (921) 345-19-48",
        )
        assert (row.tags, row.custom_fields, row.deleted_at) == (["vip", "b2b"], {"budget": 1500}, None)
        [activity] = await activities(db, "contact", data["id"])
        assert (activity.action, activity.actor_id) == ("created", manager.user.id)
        assert activity.changes["full_name"] == [None, FULL["full_name"]]
        assert activity.changes["phone"] == [None, "+79213451948"]

    async def test_only_the_name_is_required(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, full_name="Пётр")

        assert (data["email"], data["phone"], data["phone_raw"]) == (None, None, None)
        assert (data["tags"], data["custom_fields"]) == ([], {})

    @pytest.mark.parametrize(
        ("typed", "e164"),
        [
            ("+7 (921) 345-19-48", "+79213451948"),
            ("8 921 345 19 48", "+79213451948"),
            ("8(921)3451948", "+79213451948"),
            ("9213451948", "+79213451948"),
            ("+79213451948", "+79213451948"),
            ("8-800-555-35-35", "+78005553535"),
            ("+1 202-555-0143", "+12025550143"),
            ("+44 20 7946 0958", "+442079460958"),
        ],
    )
    async def test_phone_is_stored_as_e164_and_typed(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, typed: str, e164: str
    ) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, phone=typed)

        assert (data["phone"], data["phone_raw"]) == (e164, typed)
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.phone, row.phone_raw) == (e164, typed)

    @pytest.mark.parametrize("phone", ["123", "not a phone", "+7 12", "+999 123"])
    async def test_impossible_phone_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, phone: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json={"full_name": "X", "phone": phone}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert ["body", "phone"] in error_locs(response)
        assert await count(db, Contact, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize(("field", "value"), [("age", True), ("age", False), ("company_id", True)])
    async def test_a_boolean_is_not_a_number(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, field: str, value: bool
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json={"full_name": "X", field: value}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        errors = response.json()["errors"]
        assert [(e["loc"], e["type"]) for e in errors] == [(["body", field], "int_type")]
        assert await count(db, Contact, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize(
        ("typed", "expected"),
        [
            ("Ivan@Example.COM", "ivan@example.com"),
            ("user@localhost", "user@localhost"),
            ("Admin@Mail.Local", "admin@mail.local"),
            ("qa@shop.test", "qa@shop.test"),
            ("ivan@пример.рф", "ivan@пример.рф"),
        ],
    )
    async def test_email_is_checked_and_lower_cased(
        self, client: AsyncClient, factory: Factory, typed: str, expected: str
    ) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, email=typed)

        assert data["email"] == expected

    @pytest.mark.parametrize("email", ["not-an-email", "ivan@", "@example.com", "iv an@example.com", "a@b"])
    async def test_bad_email_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, email: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json={"full_name": "X", "email": email}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert ["body", "email"] in error_locs(response)
        assert await count(db, Contact, organization_id=owner.org_id) == 0

    async def test_email_taken_case_insensitively(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        await create(client, owner, email="ivan@example.com")

        response = await client.post(
            BASE, json={"full_name": "Dup", "email": "IVAN@Example.com"}, headers=owner.headers
        )

        assert_problem(response, 409, "contact_email_taken")
        assert await count(db, Contact, organization_id=owner.org_id) == 1

    async def test_email_is_free_again_once_the_holder_is_deleted(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")
        first = await create(client, owner, email="ivan@example.com")
        assert (await client.delete(f"{BASE}/{first['id']}", headers=owner.headers)).status_code == 204

        second = await create(client, owner, email="Ivan@example.com")

        assert second["email"] == "ivan@example.com"

    async def test_same_email_in_another_organization(self, client: AsyncClient, factory: Factory) -> None:
        a = await factory.actor("owner")
        b = await factory.actor("owner")
        await create(client, a, email="ivan@example.com")

        data = await create(client, b, email="ivan@example.com")

        assert data["email"] == "ivan@example.com"

    async def test_synced_contact_does_not_hold_the_email(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_contact(db, owner.org_id, email="ivan@example.com", source="moysklad", external_id="ms-1")

        data = await create(client, owner, email="ivan@example.com")

        assert data["source"] == "manual"

    async def test_owner_must_be_a_member(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        stranger = await factory.actor("owner")

        response = await client.post(
            BASE, json={"full_name": "X", "owner_id": stranger.user.id}, headers=owner.headers
        )

        assert_problem(response, 422, "invalid_reference")
        assert ["body", "owner_id"] in error_locs(response)
        assert await count(db, Contact, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize("case", ["other_org", "deleted", "missing"])
    async def test_company_must_be_a_live_company_of_the_organization(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, case: str
    ) -> None:
        owner = await factory.actor("owner")
        other = await factory.org()
        assert owner.org_id is not None
        company_id = {
            "other_org": (await make_company(db, other.id)).id,
            "deleted": (await make_company(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00+00:00"))).id,
            "missing": 987_654_321,
        }[case]

        response = await client.post(
            BASE, json={"full_name": "X", "company_id": company_id}, headers=owner.headers
        )

        assert_problem(response, 422, "invalid_reference")
        assert ["body", "company_id"] in error_locs(response)
        assert await count(db, Contact, organization_id=owner.org_id) == 0

    async def test_member_may_not_create(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        member = await factory.actor("member")

        response = await client.post(BASE, json={"full_name": "X"}, headers=member.headers)

        assert_problem(response, 403, "permission_denied")
        assert await count(db, Contact, organization_id=member.org_id) == 0

    async def test_organization_header_is_required_with_several_memberships(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")
        second = await factory.org()
        await add_member(factory.db, second, owner.user, "owner")
        await factory.db.commit()

        response = await client.post(BASE, json={"full_name": "X"}, headers=owner.auth)

        assert_problem(response, 400, "organization_required")
        assert await factory.db.scalar(select(func.count()).select_from(Contact)) == 0

    async def test_non_member_is_refused(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        other = await factory.org()

        response = await client.post(
            BASE, json={"full_name": "X"}, headers={**owner.auth, "X-Organization-ID": str(other.id)}
        )

        assert_problem(response, 403, "not_a_member")

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"full_name": ""},
            {"full_name": "X", "source": "moysklad"},
            {"full_name": "X", "id": 1},
            {"full_name": "X", "version": 7},
            {"full_name": "X", "organization_id": 1},
            {"full_name": "X", "created_at": "2020-01-01T00:00:00Z"},
            {"full_name": "X", "favourite_colour": "green"},
            {"full_name": "X", "age": -1},
            {"full_name": "X", "tags": "vip"},
            {"full_name": "Nul\u0000"},
            {"full_name": "X", "tags": ["\u0000"]},
            {"full_name": "X", "custom_fields": {"k\u0000": 1}},
        ],
    )
    async def test_invalid_body_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any]
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json=body, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert response.json()["errors"]
        assert await count(db, Contact, organization_id=owner.org_id) == 0

    async def test_unpaired_surrogate_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(
            BASE,
            content=b'{"full_name": "\\ud800"}',
            headers={**owner.headers, "Content-Type": "application/json"},
        )

        assert_problem(response, 422, "validation_error")
        assert await count(db, Contact, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize(
        ("custom_fields", "loc"),
        [
            ({"nickname": "Ваня"}, "nickname"),
            ({"budget": "a lot"}, "budget"),
            ({"budget": True}, "budget"),
            ({"budget": 1, "level": "platinum"}, "level"),
            ({}, "region"),
        ],
        ids=["unknown_key", "text_for_number", "bool_for_number", "not_an_option", "required_missing"],
    )
    async def test_custom_fields_are_validated(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, custom_fields: dict[str, Any], loc: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_custom_field(db, owner.org_id, "contact", "budget", "number")
        await make_custom_field(db, owner.org_id, "contact", "level", "select", options=["gold", "silver"])
        await make_custom_field(db, owner.org_id, "contact", "region", "text", required=True)
        if loc != "region":
            custom_fields = {**custom_fields, "region": "СЗФО"}

        response = await client.post(
            BASE, json={"full_name": "X", "custom_fields": custom_fields}, headers=owner.headers
        )

        assert response.status_code == 422, response.text
        assert ["body", "custom_fields", loc] in error_locs(response)
        assert await count(db, Contact, organization_id=owner.org_id) == 0

    async def test_custom_fields_of_another_entity_are_unknown(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_custom_field(db, owner.org_id, "company", "budget", "number")

        response = await client.post(
            BASE, json={"full_name": "X", "custom_fields": {"budget": 1}}, headers=owner.headers
        )

        assert response.status_code == 422, response.text

    async def test_idempotent_repeat_returns_the_first_response(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        headers = {**owner.headers, "Idempotency-Key": "create-ivan"}
        first = await client.post(BASE, json={"full_name": "Иван"}, headers=headers)

        repeat = await client.post(BASE, json={"full_name": "Иван"}, headers=headers)

        assert first.status_code == repeat.status_code == 201
        assert repeat.json() == first.json()
        assert repeat.headers["location"] == first.headers["location"]
        assert repeat.headers["etag"] == '"1"'
        assert repeat.headers["idempotent-replayed"] == "true"
        assert await count(db, Contact, organization_id=owner.org_id) == 1
        assert len(await activities(db, "contact", first.json()["id"])) == 1

    async def test_idempotency_key_with_another_body_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        headers = {**owner.headers, "Idempotency-Key": "k-1"}
        await client.post(BASE, json={"full_name": "Иван"}, headers=headers)

        response = await client.post(BASE, json={"full_name": "Пётр"}, headers=headers)

        assert response.status_code == 422, response.text
        assert await count(db, Contact, organization_id=owner.org_id) == 1

    async def test_idempotency_key_belongs_to_its_user(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "manager")
        for actor in actors.values():
            response = await client.post(
                BASE, json={"full_name": "Иван"}, headers={**actor.headers, "Idempotency-Key": "same"}
            )
            assert response.status_code == 201, response.text

        assert await count(db, Contact, organization_id=org.id) == 2

    async def test_failed_create_does_not_spend_the_key(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        await create(client, owner, email="ivan@example.com")
        headers = {**owner.headers, "Idempotency-Key": "k-2"}
        refused = await client.post(
            BASE, json={"full_name": "X", "email": "ivan@example.com"}, headers=headers
        )
        assert_problem(refused, 409, "contact_email_taken")

        response = await client.post(
            BASE, json={"full_name": "X", "email": "ivan@example.com"}, headers=headers
        )

        assert_problem(response, 409, "contact_email_taken")
        assert await count(db, IdempotencyKey, key="k-2") == 0


class TestListContacts:
    async def test_envelope_newest_first(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        first = await create(client, owner, full_name="Первый")
        second = await create(client, owner, full_name="Второй")

        response = await client.get(BASE, headers=owner.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)
        assert [c["id"] for c in body["items"]] == [second["id"], first["id"]]
        assert body["items"][0]["full_name"] == "Второй"

    async def test_paging(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        made = [
            await make_contact(db, owner.org_id, created_at=at(f"2024-01-0{i}T00:00:00+00:00"))
            for i in range(1, 6)
        ]

        response = await client.get(f"{BASE}?limit=2&offset=1", headers=owner.headers)

        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (5, 2, 1)
        assert [c["id"] for c in body["items"]] == [made[3].id, made[2].id]

    @pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "limit=abc"])
    async def test_paging_bounds(self, client: AsyncClient, factory: Factory, query: str) -> None:
        owner = await factory.actor("owner")

        response = await client.get(f"{BASE}?{query}", headers=owner.headers)

        assert_problem(response, 422, "validation_error")

    async def test_limit_200_is_allowed(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        response = await client.get(f"{BASE}?limit=200", headers=owner.headers)

        assert response.status_code == 200
        assert response.json()["limit"] == 200

    async def test_deleted_and_foreign_contacts_are_hidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        other = await factory.org()
        assert owner.org_id is not None
        live = await make_contact(db, owner.org_id)
        await make_contact(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00+00:00"))
        await make_contact(db, other.id)

        assert await ids(client, owner, "") == [live.id]

    async def test_member_may_read(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        org, actors = await team(factory, "owner", "member")
        contact = await make_contact(db, org.id)

        assert await ids(client, actors["member"], "") == [contact.id]

    @pytest.mark.parametrize(
        "q",
        [
            "иванов",
            "ИВАНОВ",
            "Иван",
            "ёлкин",
            "ivan.ivanov@",
            "EXAMPLE.ORG",
            "921 345",
            "89213451948",
            "+7 (921) 345-19-48",
            "ромашк",
            "РОМАШКА",
        ],
    )
    async def test_q_searches_name_email_phone_and_company(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, q: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id, name="ООО Ромашка")
        match = await make_contact(
            db,
            owner.org_id,
            full_name="Иванов Иван Ёлкин",
            email="ivan.ivanov@example.org",
            phone="+79213451948",
            phone_raw="8 (921) 345-19-48",
            company_id=company.id,
        )
        await make_contact(
            db, owner.org_id, full_name="Петров Пётр", email="petr@mail.ru", phone="+79110000000"
        )

        assert await ids(client, owner, f"q={q}") == [match.id]

    async def test_q_treats_wildcards_literally(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_contact(db, owner.org_id, full_name="Ivan")
        percent = await make_contact(db, owner.org_id, full_name="100% Ivan")

        assert await ids(client, owner, "q=%25") == [percent.id]
        assert await ids(client, owner, "q=_") == []

    async def test_q_ignores_deleted_companies(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(
            db, owner.org_id, name="Ромашка", deleted_at=at("2024-01-01T00:00:00+00:00")
        )
        await make_contact(db, owner.org_id, full_name="Иван", company_id=company.id)

        assert await ids(client, owner, "q=ромашка") == []

    async def test_filter_email_is_exact_and_case_insensitive(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        match = await make_contact(db, owner.org_id, email="ivan@example.com")
        await make_contact(db, owner.org_id, email="ivan@example.com.ru")

        assert await ids(client, owner, "email=IVAN@example.com") == [match.id]

    async def test_filter_tag(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        match = await make_contact(db, owner.org_id, tags=["vip", "b2b"])
        await make_contact(db, owner.org_id, tags=["b2c"])

        assert await ids(client, owner, "tag=vip") == [match.id]

    async def test_filter_owner_id(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        org, actors = await team(factory, "owner", "manager")
        match = await make_contact(db, org.id, owner_id=actors["manager"].user.id)
        await make_contact(db, org.id, owner_id=actors["owner"].user.id)
        await make_contact(db, org.id)

        assert await ids(client, actors["owner"], f"owner_id={actors['manager'].user.id}") == [match.id]

    async def test_filter_company_id(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id)
        match = await make_contact(db, owner.org_id, company_id=company.id)
        await make_contact(db, owner.org_id)

        assert await ids(client, owner, f"company_id={company.id}") == [match.id]

    async def test_filter_source(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        match = await make_contact(db, owner.org_id, source="bitrix24", external_id="b-1")
        await make_contact(db, owner.org_id)

        assert await ids(client, owner, "source=bitrix24") == [match.id]
        assert await ids(client, owner, "source=manual") != []
        assert await ids(client, owner, "source=portal") == []

    async def test_filter_source_unknown_is_named_in_russian(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.get(
            f"{BASE}?source=excel", headers={**owner.headers, "Accept-Language": "ru"}
        )

        body = assert_problem(response, 422, "validation_error")
        assert body["detail"] == "Неизвестный источник: excel"
        assert body["errors"][0]["loc"] == ["query", "source"]
        assert "bitrix24" in body["errors"][0]["msg"]
        assert body["errors"][0]["msg"].startswith(
            "неизвестный источник; известны: manual, registration, import"
        )

    async def test_filter_created_from_and_to_are_inclusive(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        made = {
            day: await make_contact(db, owner.org_id, created_at=at(f"2024-03-{day:02d}T12:00:00+00:00"))
            for day in (1, 10, 20)
        }

        found = await ids(client, owner, "created_from=2024-03-10T12:00:00Z&created_to=2024-03-20T12:00:00Z")
        assert found == [made[20].id, made[10].id]
        assert await ids(client, owner, "created_to=2024-03-05T00:00:00Z") == [made[1].id]

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("cf.nickname=Ваня", "a"),
            ("cf.budget=1500", "a"),
            ("cf.budget=1500.0", "a"),
            ("cf.vip=true", "a"),
            ("cf.vip=false", "b"),
            ("cf.level=silver", "b"),
            ("cf.budget=1500&cf.vip=true", "a"),
            ("cf.budget=1500&cf.vip=false", None),
        ],
    )
    async def test_filter_custom_fields(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, query: str, expected: str | None
    ) -> None:
        owner = await factory.actor("owner")
        org_id = owner.org_id
        assert org_id is not None
        await make_custom_field(db, org_id, "contact", "nickname", "text")
        await make_custom_field(db, org_id, "contact", "budget", "number")
        await make_custom_field(db, org_id, "contact", "vip", "boolean")
        await make_custom_field(db, org_id, "contact", "level", "select", options=["gold", "silver"])
        made = {
            "a": await make_contact(
                db, org_id, custom_fields={"nickname": "Ваня", "budget": 1500, "vip": True, "level": "gold"}
            ),
            "b": await make_contact(
                db, org_id, custom_fields={"budget": 20, "vip": False, "level": "silver"}
            ),
        }

        assert await ids(client, owner, query) == ([made[expected].id] if expected else [])

    @pytest.mark.parametrize(
        "query", ["cf.unknown=1", "cf.budget=lots", "cf.vip=yes", "cf.level=platinum", "cf.region=x"]
    )
    async def test_bad_custom_field_filter_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, query: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_custom_field(db, owner.org_id, "contact", "budget", "number")
        await make_custom_field(db, owner.org_id, "contact", "vip", "boolean")
        await make_custom_field(db, owner.org_id, "contact", "level", "select", options=["gold", "silver"])
        await make_custom_field(db, owner.org_id, "company", "region", "text")

        response = await client.get(f"{BASE}?{query}", headers=owner.headers)

        assert response.status_code == 422, response.text
        assert ["query", query.split("=")[0]] in error_locs(response)

    @pytest.mark.parametrize(
        "query",
        [
            "source=excel",
            "owner_id=abc",
            "owner_id=0",
            "company_id=-1",
            "created_from=yesterday",
            "q=%00",
            "email=a%00b",
            "tag=%00",
            "created_from=2024-02-01T00:00:00Z&created_to=2024-01-31T23:59:59Z",
        ],
    )
    async def test_bad_filter_value_is_refused(
        self, client: AsyncClient, factory: Factory, query: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.get(f"{BASE}?{query}", headers=owner.headers)

        assert_problem(response, 422, "validation_error")

    @pytest.mark.parametrize(
        ("sort", "order"),
        [
            ("created_at", ["b", "c", "a"]),
            ("-created_at", ["a", "c", "b"]),
            ("updated_at", ["c", "a", "b"]),
            ("-updated_at", ["b", "a", "c"]),
            ("full_name", ["a", "b", "c"]),
            ("-full_name", ["c", "b", "a"]),
        ],
    )
    async def test_sort(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, sort: str, order: list[str]
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        rows = {
            "a": await make_contact(
                db,
                owner.org_id,
                full_name="Алексей",
                created_at=at("2024-01-03T00:00:00Z"),
                updated_at=at("2024-02-02T00:00:00Z"),
            ),
            "b": await make_contact(
                db,
                owner.org_id,
                full_name="Борис",
                created_at=at("2024-01-01T00:00:00Z"),
                updated_at=at("2024-02-03T00:00:00Z"),
            ),
            "c": await make_contact(
                db,
                owner.org_id,
                full_name="Виктор",
                created_at=at("2024-01-02T00:00:00Z"),
                updated_at=at("2024-02-01T00:00:00Z"),
            ),
        }

        assert await ids(client, owner, f"sort={sort}") == [rows[k].id for k in order]

    @pytest.mark.parametrize("sort", ["email", "-age", "name", "created_at,full_name", "--created_at"])
    async def test_unknown_sort_is_refused(self, client: AsyncClient, factory: Factory, sort: str) -> None:
        owner = await factory.actor("owner")

        response = await client.get(f"{BASE}?sort={sort}", headers=owner.headers)

        assert_problem(response, 422, "validation_error")


class TestGetContact:
    async def test_returns_the_contact_with_its_etag(self, client: AsyncClient, factory: Factory) -> None:
        _, actors = await team(factory, "manager", "member")
        data = await create(client, actors["manager"], **FULL)

        response = await client.get(f"{BASE}/{data['id']}", headers=actors["member"].headers)

        assert response.status_code == 200
        assert response.json() == data
        assert response.headers["etag"] == '"1"'

    async def test_trailing_slash_answers_too(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner)

        response = await client.get(f"{BASE}/{data['id']}/", headers=owner.headers)

        assert response.status_code == 200, response.text

    async def test_deleted_contact_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        contact = await make_contact(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00Z"))

        assert_problem(await client.get(f"{BASE}/{contact.id}", headers=owner.headers), 404, "not_found")

    @pytest.mark.parametrize("contact_id", ["0", "-5", "abc", "99999999999999999999"])
    async def test_bad_id_is_refused(self, client: AsyncClient, factory: Factory, contact_id: str) -> None:
        owner = await factory.actor("owner")

        response = await client.get(f"{BASE}/{contact_id}", headers=owner.headers)

        assert_problem(response, 422, "validation_error")


class TestOtherOrganization:
    """Another organization's contact is 404 on every verb, and nothing of it changes."""

    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("PUT", "", {"full_name": "Hijacked"}),
            ("PATCH", "", {"full_name": "Hijacked"}),
            ("DELETE", "", None),
            ("POST", "/restore", None),
            ("POST", "/comments", {"text": "hello"}),
            ("GET", "/activities", None),
        ],
    )
    async def test_is_not_found(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
    ) -> None:
        me = await factory.actor("owner")
        other = await factory.org()
        contact = await make_contact(db, other.id, full_name="Чужой")
        if suffix == "/restore":
            contact.deleted_at = at("2024-01-01T00:00:00Z")
            await db.flush()

        response = await client.request(method, f"{BASE}/{contact.id}{suffix}", json=body, headers=me.headers)

        assert_problem(response, 404, "not_found")
        row = await stored(db, Contact, contact.id)
        assert row is not None
        assert (row.full_name, row.version) == ("Чужой", 1)
        assert (row.deleted_at is None) == (suffix != "/restore")
        assert await count(db, Activity, entity_id=contact.id) == 0


class TestReplaceContact:
    async def test_replaces_every_field_and_clears_the_omitted(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, **FULL)

        response = await client.put(
            f"{BASE}/{data['id']}",
            json={"full_name": "Пётр", "email": "p@example.com"},
            headers={**owner.headers, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert response.headers["etag"] == '"2"'
        assert (body["full_name"], body["email"], body["version"]) == ("Пётр", "p@example.com", 2)
        for cleared in ("phone", "phone_raw", "job_title", "age", "gender", "country", "address", "notes"):
            assert body[cleared] is None, cleared
        assert body["tags"] == []
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.full_name, row.phone, row.tags) == ("Пётр", None, [])
        updated = (await activities(db, "contact", data["id"]))[-1]
        assert updated.action == "updated"
        assert updated.changes["full_name"] == [FULL["full_name"], "Пётр"]
        assert updated.changes["phone"] == ["+79213451948", None]
        assert updated.changes["tags"] == [["vip", "b2b"], []]

    async def test_stale_if_match_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван")
        await client.patch(f"{BASE}/{data['id']}", json={"job_title": "CEO"}, headers=owner.headers)

        response = await client.put(
            f"{BASE}/{data['id']}", json={"full_name": "Пётр"}, headers={**owner.headers, "If-Match": '"1"'}
        )

        assert_problem(response, 412, "version_mismatch")
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.full_name, row.job_title, row.version) == ("Иван", "CEO", 2)
        assert len(await activities(db, "contact", data["id"])) == 2

    async def test_name_is_required(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван")

        response = await client.put(
            f"{BASE}/{data['id']}", json={"email": "x@example.com"}, headers=owner.headers
        )

        assert_problem(response, 422, "validation_error")
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert row.email is None

    async def test_email_taken_by_another_contact(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        await create(client, owner, email="ivan@example.com")
        data = await create(client, owner, email="petr@example.com")

        response = await client.put(
            f"{BASE}/{data['id']}",
            json={"full_name": "X", "email": "Ivan@example.com"},
            headers=owner.headers,
        )

        assert_problem(response, 409, "contact_email_taken")
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.email, row.version) == ("petr@example.com", 1)

    async def test_member_may_not_replace(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "member")
        contact = await make_contact(db, org.id, full_name="Иван")

        response = await client.put(
            f"{BASE}/{contact.id}", json={"full_name": "X"}, headers=actors["member"].headers
        )

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, Contact, contact.id)
        assert row is not None
        assert row.full_name == "Иван"


class TestUpdateContact:
    async def test_changes_only_the_fields_sent(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, **FULL)

        response = await client.patch(
            f"{BASE}/{data['id']}",
            json={"job_title": "CEO", "phone": "8 911 000 00 00"},
            headers={**owner.headers, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert response.headers["etag"] == '"2"'
        assert body == {
            **data,
            "job_title": "CEO",
            "phone": "+79110000000",
            "phone_raw": "8 911 000 00 00",
            "version": 2,
            "updated_at": body["updated_at"],
        }
        assert body["updated_at"] > data["updated_at"]
        [created, updated] = await activities(db, "contact", data["id"])
        assert (created.action, updated.action, updated.actor_id) == ("created", "updated", owner.user.id)
        assert updated.changes == {
            "job_title": ["Директор", "CEO"],
            "phone": ["+79213451948", "+79110000000"],
            "phone_raw": ["+7 (921) 345-19-48", "8 911 000 00 00"],
        }

    async def test_stale_if_match_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван")
        await client.patch(f"{BASE}/{data['id']}", json={"job_title": "CEO"}, headers=owner.headers)

        response = await client.patch(
            f"{BASE}/{data['id']}",
            json={"job_title": "CTO", "email": "x@example.com"},
            headers={**owner.headers, "If-Match": '"1"'},
        )

        body = assert_problem(response, 412, "version_mismatch")
        assert body["current_version"] == 2
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.job_title, row.email, row.version) == ("CEO", None, 2)
        assert len(await activities(db, "contact", data["id"])) == 2

    @pytest.mark.parametrize("if_match", ['"2"', "*", 'W/"2"', '"1", "2"'])
    async def test_current_if_match_applies(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, if_match: str
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван")
        await client.patch(f"{BASE}/{data['id']}", json={"job_title": "CEO"}, headers=owner.headers)

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"job_title": "CTO"}, headers={**owner.headers, "If-Match": if_match}
        )

        assert response.status_code == 200, response.text
        assert response.json()["version"] == 3

    async def test_without_if_match_the_last_write_wins(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван")

        for title in ("CEO", "CTO"):
            response = await client.patch(
                f"{BASE}/{data['id']}", json={"job_title": title}, headers=owner.headers
            )
            assert response.status_code == 200

        assert response.json()["job_title"] == "CTO"

    async def test_nothing_changed_is_no_write(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван", email="ivan@example.com")

        response = await client.patch(
            f"{BASE}/{data['id']}",
            json={"full_name": "Иван", "email": "IVAN@example.com"},
            headers=owner.headers,
        )

        assert response.status_code == 200
        assert response.json()["version"] == 1
        assert len(await activities(db, "contact", data["id"])) == 1

    async def test_null_clears_an_optional_field(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван", phone="89213451948", tags=["vip"])

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"phone": None, "tags": None}, headers=owner.headers
        )

        body = response.json()
        assert (body["phone"], body["phone_raw"], body["tags"]) == (None, None, [])

    async def test_name_may_not_be_null(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван")

        response = await client.patch(f"{BASE}/{data['id']}", json={"full_name": None}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert ["body", "full_name"] in error_locs(response)
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert row.full_name == "Иван"

    async def test_impossible_phone_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, full_name="Иван", phone="89213451948")

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"phone": "12", "job_title": "CEO"}, headers=owner.headers
        )

        assert_problem(response, 422, "validation_error")
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.phone, row.job_title, row.version) == ("+79213451948", None, 1)

    async def test_custom_fields_merge_and_null_removes_a_key(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_custom_field(db, owner.org_id, "contact", "nickname", "text")
        await make_custom_field(db, owner.org_id, "contact", "budget", "number")
        await make_custom_field(db, owner.org_id, "contact", "vip", "boolean")
        data = await create(client, owner, custom_fields={"nickname": "Ваня", "budget": 10})

        response = await client.patch(
            f"{BASE}/{data['id']}",
            json={"custom_fields": {"budget": None, "vip": True}},
            headers=owner.headers,
        )

        assert response.status_code == 200, response.text
        assert response.json()["custom_fields"] == {"nickname": "Ваня", "vip": True}
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert row.custom_fields == {"nickname": "Ваня", "vip": True}

    @pytest.mark.parametrize(
        ("custom_fields", "loc"),
        [({"nickname": "x"}, "nickname"), ({"budget": "x"}, "budget"), ({"region": None}, "region")],
        ids=["unknown_key", "wrong_type", "required_removed"],
    )
    async def test_custom_fields_are_validated(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, custom_fields: dict[str, Any], loc: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_custom_field(db, owner.org_id, "contact", "budget", "number")
        await make_custom_field(db, owner.org_id, "contact", "region", "text", required=True)
        data = await create(client, owner, custom_fields={"budget": 1, "region": "СЗФО"})

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"custom_fields": custom_fields}, headers=owner.headers
        )

        assert response.status_code == 422, response.text
        assert ["body", "custom_fields", loc] in error_locs(response)
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.custom_fields, row.version) == ({"budget": 1, "region": "СЗФО"}, 1)

    async def test_email_taken_by_another_contact(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        await create(client, owner, email="ivan@example.com")
        data = await create(client, owner, email="petr@example.com")

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"email": "IVAN@example.com"}, headers=owner.headers
        )

        assert_problem(response, 409, "contact_email_taken")
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.email, row.version) == ("petr@example.com", 1)
        assert len(await activities(db, "contact", data["id"])) == 1

    @pytest.mark.parametrize("field", ["company_id", "owner_id"])
    async def test_references_must_be_of_the_organization(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, field: str
    ) -> None:
        owner = await factory.actor("owner")
        stranger = await factory.actor("owner")
        assert stranger.org_id is not None
        data = await create(client, owner)
        foreign = {"company_id": (await make_company(db, stranger.org_id)).id, "owner_id": stranger.user.id}

        response = await client.patch(
            f"{BASE}/{data['id']}", json={field: foreign[field]}, headers=owner.headers
        )

        assert_problem(response, 422, "invalid_reference")
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert getattr(row, field) is None

    @pytest.mark.parametrize("body", [{"source": "portal"}, {"version": 10}, {"unknown": 1}, {"age": 151}])
    async def test_invalid_body_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any]
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner)

        response = await client.patch(f"{BASE}/{data['id']}", json=body, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert (row.source, row.version, row.age) == ("manual", 1, None)

    async def test_member_may_not_update(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "member")
        contact = await make_contact(db, org.id, full_name="Иван")

        response = await client.patch(
            f"{BASE}/{contact.id}", json={"full_name": "X"}, headers=actors["member"].headers
        )

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, Contact, contact.id)
        assert row is not None
        assert row.full_name == "Иван"


class TestDeleteContact:
    @pytest.mark.parametrize("role", ["owner", "admin", "manager"])
    async def test_manager_and_up_delete(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org, actors = await team(factory, role)
        contact = await make_contact(db, org.id)

        response = await client.delete(f"{BASE}/{contact.id}", headers=actors[role].headers)

        assert response.status_code == 204
        assert response.content == b""
        row = await stored(db, Contact, contact.id)
        assert row is not None
        assert row.deleted_at is not None
        assert row.version == 2
        [activity] = await activities(db, "contact", contact.id)
        assert (activity.action, activity.actor_id) == ("deleted", actors[role].user.id)
        assert_problem(
            await client.get(f"{BASE}/{contact.id}", headers=actors[role].headers), 404, "not_found"
        )
        assert await ids(client, actors[role], "") == []

    async def test_member_may_not_delete(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "member")
        contact = await make_contact(db, org.id)

        response = await client.delete(f"{BASE}/{contact.id}", headers=actors["member"].headers)

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, Contact, contact.id)
        assert row is not None
        assert row.deleted_at is None

    @pytest.mark.parametrize("status", ["new", "in_progress"])
    async def test_contact_with_open_deals_stays(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, status: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        contact = await make_contact(db, owner.org_id)
        await make_deal(db, owner.org_id, contact_id=contact.id, status=status)

        response = await client.delete(f"{BASE}/{contact.id}", headers=owner.headers)

        assert_problem(response, 409, "contact_has_open_deals")
        row = await stored(db, Contact, contact.id)
        assert row is not None
        assert (row.deleted_at, row.version) == (None, 1)
        assert await activities(db, "contact", contact.id) == []

    @pytest.mark.parametrize(
        "deal", [{"status": "won"}, {"status": "lost"}, {"deleted_at": "2024-01-01T00:00:00Z"}]
    )
    async def test_closed_or_deleted_deals_do_not_block(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, deal: dict[str, str]
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        contact = await make_contact(db, owner.org_id)
        values: dict[str, Any] = {k: at(v) if k == "deleted_at" else v for k, v in deal.items()}
        await make_deal(db, owner.org_id, contact_id=contact.id, **values)

        response = await client.delete(f"{BASE}/{contact.id}", headers=owner.headers)

        assert response.status_code == 204, response.text

    async def test_deleted_contact_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        contact = await make_contact(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00Z"))

        assert_problem(await client.delete(f"{BASE}/{contact.id}", headers=owner.headers), 404, "not_found")


class TestRestoreContact:
    @pytest.mark.parametrize("role", ["owner", "admin"])
    async def test_owner_and_admin_restore(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        _, actors = await team(factory, role)
        actor = actors[role]
        data = await create(client, actor, full_name="Иван")
        await client.delete(f"{BASE}/{data['id']}", headers=actor.headers)

        response = await client.post(f"{BASE}/{data['id']}/restore", headers=actor.headers)

        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"3"'
        assert (response.json()["full_name"], response.json()["version"]) == ("Иван", 3)
        row = await stored(db, Contact, data["id"])
        assert row is not None
        assert row.deleted_at is None
        assert [a.action for a in await activities(db, "contact", data["id"])] == [
            "created",
            "deleted",
            "restored",
        ]
        assert (await client.get(f"{BASE}/{data['id']}", headers=actor.headers)).status_code == 200

    async def test_manager_may_not_restore(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "manager")
        contact = await make_contact(db, org.id, deleted_at=at("2024-01-01T00:00:00Z"))

        response = await client.post(f"{BASE}/{contact.id}/restore", headers=actors["manager"].headers)

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, Contact, contact.id)
        assert row is not None
        assert row.deleted_at is not None

    async def test_email_taken_meanwhile(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        first = await create(client, owner, email="ivan@example.com")
        await client.delete(f"{BASE}/{first['id']}", headers=owner.headers)
        await create(client, owner, email="IVAN@example.com")

        response = await client.post(f"{BASE}/{first['id']}/restore", headers=owner.headers)

        assert_problem(response, 409, "contact_email_taken")
        row = await stored(db, Contact, first["id"])
        assert row is not None
        assert row.deleted_at is not None
        assert row.version == 2
        assert [a.action for a in await activities(db, "contact", first["id"])] == ["created", "deleted"]

    async def test_live_contact_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        contact = await make_contact(db, owner.org_id)

        response = await client.post(f"{BASE}/{contact.id}/restore", headers=owner.headers)

        assert_problem(response, 404, "not_found")


class TestContactTimeline:
    async def test_every_write_is_listed_newest_first(self, client: AsyncClient, factory: Factory) -> None:
        _, actors = await team(factory, "owner", "member")
        owner = actors["owner"]
        data = await create(client, owner, full_name="Иван", tags=["a"])
        await client.patch(f"{BASE}/{data['id']}", json={"full_name": "Иван Иванов"}, headers=owner.headers)
        await client.put(
            f"{BASE}/{data['id']}",
            json={"full_name": "Иван Иванов", "tags": ["a", "b"]},
            headers=owner.headers,
        )
        await client.post(f"{BASE}/{data['id']}/comments", json={"text": "Позвонил"}, headers=owner.headers)

        response = await client.get(f"{BASE}/{data['id']}/activities", headers=actors["member"].headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (4, 50, 0)
        items = body["items"]
        assert [a["action"] for a in items] == ["comment", "updated", "updated", "created"]
        assert all(
            (a["entity_type"], a["entity_id"], a["actor_id"]) == ("contact", data["id"], owner.user.id)
            for a in items
        )
        assert items[0]["payload"] == {"text": "Позвонил"}
        assert items[1]["changes"] == {"tags": [["a"], ["a", "b"]]}
        assert items[2]["changes"] == {"full_name": ["Иван", "Иван Иванов"]}
        assert items[3]["changes"]["full_name"] == [None, "Иван"]
        assert items[0]["created_at"].endswith("Z")

    async def test_other_records_are_not_listed(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner)
        await create(client, owner)

        response = await client.get(f"{BASE}/{data['id']}/activities?limit=1", headers=owner.headers)

        body = response.json()
        assert (body["total"], body["limit"], len(body["items"])) == (1, 1, 1)

    async def test_deleted_contact_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        contact = await make_contact(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00Z"))

        response = await client.get(f"{BASE}/{contact.id}/activities", headers=owner.headers)

        assert_problem(response, 404, "not_found")


class TestCommentOnContact:
    async def test_member_may_comment(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        org, actors = await team(factory, "member")
        member = actors["member"]
        contact = await make_contact(db, org.id)

        response = await client.post(
            f"{BASE}/{contact.id}/comments", json={"text": "Хороший клиент"}, headers=member.headers
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"] == f"/api/v1/activities/{body['id']}"
        assert (body["action"], body["entity_type"], body["entity_id"], body["actor_id"]) == (
            "comment",
            "contact",
            contact.id,
            member.user.id,
        )
        assert body["payload"] == {"text": "Хороший клиент"}
        [stored_comment] = await activities(db, "contact", contact.id)
        assert stored_comment.payload == {"text": "Хороший клиент"}
        row = await stored(db, Contact, contact.id)
        assert row is not None
        assert row.version == 1

    @pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "x", "extra": 1}])
    async def test_invalid_comment_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any]
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        contact = await make_contact(db, owner.org_id)

        response = await client.post(f"{BASE}/{contact.id}/comments", json=body, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert await activities(db, "contact", contact.id) == []

    async def test_deleted_contact_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        contact = await make_contact(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00Z"))

        response = await client.post(
            f"{BASE}/{contact.id}/comments", json={"text": "x"}, headers=owner.headers
        )

        assert_problem(response, 404, "not_found")


@pytest.mark.committing
class TestConcurrentWrites:
    """Real commits, concurrent requests (SPEC §3 concurrency, §19.9)."""

    async def _owner(self, app: Any, client: AsyncClient) -> Actor:
        async with app.state.sessionmaker() as session:
            user = await make_user(session)
            org = await make_org(session)
            await add_member(session, org, user, "owner")
            await session.commit()
        return await login(client, user, org_id=org.id)

    async def test_one_of_ten_patches_with_the_same_if_match_wins(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        owner = await self._owner(app, committing_client)
        created = await committing_client.post(BASE, json={"full_name": "Иван"}, headers=owner.headers)
        contact_id = created.json()["id"]

        responses = await asyncio.gather(
            *(
                committing_client.patch(
                    f"{BASE}/{contact_id}",
                    json={"job_title": f"Title {i}"},
                    headers={**owner.headers, "If-Match": '"1"'},
                )
                for i in range(10)
            )
        )

        codes = sorted(r.status_code for r in responses)
        assert codes == [200] + [412] * 9, [r.text for r in responses]
        winner = next(r.json() for r in responses if r.status_code == 200)
        async with app.state.sessionmaker() as session:
            row = await session.get(Contact, contact_id)
            assert row is not None
            assert (row.version, row.job_title) == (2, winner["job_title"])
            actions = (
                (
                    await session.execute(
                        select(Activity.action).where(
                            Activity.entity_type == "contact", Activity.entity_id == contact_id
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert sorted(actions) == ["created", "updated"]

    async def test_ten_creates_with_one_idempotency_key_make_one_contact(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        owner = await self._owner(app, committing_client)
        headers = {**owner.headers, "Idempotency-Key": "race-1"}

        responses = await asyncio.gather(
            *(
                committing_client.post(
                    BASE, json={"full_name": "Иван", "email": "ivan@example.com"}, headers=headers
                )
                for _ in range(10)
            )
        )

        assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        async with app.state.sessionmaker() as session:
            contacts = (
                (await session.execute(select(Contact.id).where(Contact.organization_id == owner.org_id)))
                .scalars()
                .all()
            )
        assert contacts == [responses[0].json()["id"]]

    async def test_repeat_of_a_create_still_running_answers_409_after_waiting(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        owner = await self._owner(app, committing_client)
        scope = f"u{owner.user.id}|o{owner.org_id}|POST|{BASE}"
        async with app.state.engine.connect() as other:
            # Another request holding the key: its row is written but its transaction still open.
            running = await other.begin()
            await other.execute(
                insert(IdempotencyKey).values(
                    scope=scope,
                    key="slow",
                    request_hash="0" * 64,
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                )
            )
            started = time.monotonic()
            response = await committing_client.post(
                BASE, json={"full_name": "Иван"}, headers={**owner.headers, "Idempotency-Key": "slow"}
            )
            waited = time.monotonic() - started
            await running.rollback()

        assert_problem(response, 409, "idempotency_in_progress")
        assert 9 < waited < 15
        async with app.state.sessionmaker() as session:
            found = (
                await session.execute(select(Contact.id).where(Contact.organization_id == owner.org_id))
            ).all()
        assert found == []

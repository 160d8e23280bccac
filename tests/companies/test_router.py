"""`/api/v1/companies` (SPEC §3, §6 Companies, §8 custom fields, §18 "Companies", §19.1, §19.9)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, Company
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

BASE = "/api/v1/companies"
SBERBANK_INN, SBERBANK_OGRN = "7707083893", "1027700132195"
PERSON_INN, PERSON_OGRNIP = "500100732259", "304500116000157"

FULL = {
    "name": "ПАО Сбербанк",
    "kind": "legal_entity",
    "inn": SBERBANK_INN,
    "kpp": "773601001",
    "ogrn": SBERBANK_OGRN,
    "website": "https://www.sberbank.ru",
    "industry": "Банки",
    "email": "Info@Sberbank.RU",
    "phone": "8 (800) 555-55-50",
    "address": "Москва, ул. Вавилова, 19",
    "tags": ["bank", "key"],
    "notes": "Главный офис",
}


async def create(client: AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "ООО Ромашка")
    response = await client.post(BASE, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def ids(client: AsyncClient, actor: Actor, query: str, path: str = BASE) -> list[int]:
    response = await client.get(f"{path}?{query}", headers=actor.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


class TestCreateCompany:
    async def test_every_field_is_stored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "manager", "member")
        manager, member = actors["manager"], actors["member"]
        await make_custom_field(db, org.id, "company", "employees", "number")

        body = {**FULL, "owner_id": member.user.id, "custom_fields": {"employees": 200_000}}
        response = await client.post(BASE, json=body, headers=manager.headers)

        assert response.status_code == 201, response.text
        data = response.json()
        assert response.headers["location"] == f"{BASE}/{data['id']}"
        assert response.headers["etag"] == '"1"'
        assert data == {
            **FULL,
            "id": data["id"],
            "email": "info@sberbank.ru",
            "phone": "+78005555550",
            "owner_id": member.user.id,
            "custom_fields": {"employees": 200_000},
            "source": "manual",
            "external_id": None,
            "sync_warnings": [],
            "version": 1,
            "created_at": data["created_at"],
            "updated_at": data["updated_at"],
        }
        assert data["created_at"].endswith("Z")
        row = await stored(db, Company, data["id"])
        assert row is not None
        assert (row.organization_id, row.inn, row.ogrn, row.phone, row.email) == (
            org.id,
            SBERBANK_INN,
            SBERBANK_OGRN,
            "+78005555550",
            "info@sberbank.ru",
        )
        [activity] = await activities(db, "company", data["id"])
        assert (activity.action, activity.actor_id) == ("created", manager.user.id)
        assert activity.changes["inn"] == [None, SBERBANK_INN]
        assert activity.changes["kind"] == [None, "legal_entity"]

    async def test_only_the_name_is_required(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, name="Ромашка")

        assert (data["kind"], data["inn"], data["phone"], data["tags"], data["custom_fields"]) == (
            "legal_entity",
            None,
            None,
            [],
            {},
        )

    @pytest.mark.parametrize(
        ("inn", "kind"),
        [(SBERBANK_INN, "legal_entity"), ("7736207543", "legal_entity"), (PERSON_INN, "sole_proprietor")],
    )
    async def test_kind_defaults_from_the_inn(
        self, client: AsyncClient, factory: Factory, inn: str, kind: str
    ) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, inn=inn)

        assert (data["inn"], data["kind"]) == (inn, kind)

    @pytest.mark.parametrize(
        ("kind", "inn"),
        [
            ("legal_entity", SBERBANK_INN),
            ("nonprofit", SBERBANK_INN),
            ("sole_proprietor", PERSON_INN),
            ("individual", PERSON_INN),
            ("individual", None),
            ("nonprofit", None),
        ],
    )
    async def test_kind_with_a_fitting_inn(
        self, client: AsyncClient, factory: Factory, kind: str, inn: str | None
    ) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, kind=kind, inn=inn)

        assert (data["kind"], data["inn"]) == (kind, inn)

    @pytest.mark.parametrize(
        ("kind", "inn"),
        [
            ("legal_entity", PERSON_INN),
            ("nonprofit", PERSON_INN),
            ("sole_proprietor", SBERBANK_INN),
            ("individual", SBERBANK_INN),
        ],
    )
    async def test_inn_length_must_fit_the_kind(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str, inn: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(
            BASE, json={"name": "X", "kind": kind, "inn": inn}, headers=owner.headers
        )

        assert_problem(response, 422, "validation_error")
        assert ["body", "inn"] in error_locs(response)
        assert await count(db, Company, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize(
        "inn",
        [
            "7707083894",
            "500100732258",
            "500100732269",
            "770708389",
            "77070838931",
            "1234567890",
            "77070838AB",
            "",
            "+7707083893",
        ],
        ids=[
            "bad_check_10",
            "bad_second_check_12",
            "bad_first_check_12",
            "9_digits",
            "11_digits",
            "bad_check_sequence",
            "letters",
            "empty",
            "sign",
        ],
    )
    async def test_bad_inn_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, inn: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json={"name": "X", "inn": inn}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert ["body", "inn"] in error_locs(response)
        assert await count(db, Company, organization_id=owner.org_id) == 0

    async def test_whitespace_around_the_inn_is_dropped(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, inn=f" {SBERBANK_INN} ")

        assert data["inn"] == SBERBANK_INN

    @pytest.mark.parametrize(
        ("kind", "ogrn"),
        [("legal_entity", SBERBANK_OGRN), ("nonprofit", "1037739010891"), ("sole_proprietor", PERSON_OGRNIP)],
    )
    async def test_ogrn_with_its_check_digit(
        self, client: AsyncClient, factory: Factory, kind: str, ogrn: str
    ) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, kind=kind, ogrn=ogrn)

        assert data["ogrn"] == ogrn

    @pytest.mark.parametrize(
        ("kind", "ogrn"),
        [
            ("legal_entity", "1027700132196"),
            ("sole_proprietor", "304500116000158"),
            ("legal_entity", "12345"),
            ("legal_entity", PERSON_OGRNIP),
            ("sole_proprietor", SBERBANK_OGRN),
            ("nonprofit", PERSON_OGRNIP),
        ],
        ids=[
            "bad_check_13",
            "bad_check_15",
            "short",
            "ogrnip_for_legal_entity",
            "ogrn_for_sole_proprietor",
            "ogrnip_for_nonprofit",
        ],
    )
    async def test_bad_ogrn_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str, ogrn: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(
            BASE, json={"name": "X", "kind": kind, "ogrn": ogrn}, headers=owner.headers
        )

        assert_problem(response, 422, "validation_error")
        assert ["body", "ogrn"] in error_locs(response)
        assert await count(db, Company, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize("kpp", ["12345", "7736010011", "77360100A"])
    async def test_bad_kpp_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kpp: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json={"name": "X", "kpp": kpp}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert await count(db, Company, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize(
        ("typed", "e164"),
        [
            ("8 (812) 123-45-67", "+78121234567"),
            ("+7 921 345 19 48", "+79213451948"),
            ("+1 202-555-0143", "+12025550143"),
        ],
    )
    async def test_phone_is_stored_as_e164(
        self, client: AsyncClient, factory: Factory, typed: str, e164: str
    ) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, phone=typed)

        assert data["phone"] == e164

    async def test_impossible_phone_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json={"name": "X", "phone": "12"}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert ["body", "phone"] in error_locs(response)
        assert await count(db, Company, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize(
        ("email", "expected"),
        [("Office@Romashka.RU", "office@romashka.ru"), ("it@localhost", "it@localhost")],
    )
    async def test_email_is_checked_and_lower_cased(
        self, client: AsyncClient, factory: Factory, email: str, expected: str
    ) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, email=email)

        assert data["email"] == expected

    async def test_bad_email_is_refused(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json={"name": "X", "email": "office@"}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")

    @pytest.mark.parametrize("website", ["romashka.ru", "https://romashka.ru/about", "http://пример.рф:8080"])
    async def test_website_is_kept_as_typed(
        self, client: AsyncClient, factory: Factory, website: str
    ) -> None:
        owner = await factory.actor("owner")

        data = await create(client, owner, website=website)

        assert data["website"] == website

    @pytest.mark.parametrize(
        "website",
        ["javascript:alert(1)", "ftp://romashka.ru", "file:///etc/passwd", "romashka", "https://[::1"],
    )
    async def test_website_must_be_an_http_address(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, website: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json={"name": "X", "website": website}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert ["body", "website"] in error_locs(response)
        assert await count(db, Company, organization_id=owner.org_id) == 0

    async def test_inn_taken(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        await create(client, owner, inn=SBERBANK_INN)

        response = await client.post(BASE, json={"name": "Dup", "inn": SBERBANK_INN}, headers=owner.headers)

        assert_problem(response, 409, "company_inn_taken")
        assert await count(db, Company, organization_id=owner.org_id) == 1

    async def test_inn_is_free_again_once_the_holder_is_deleted(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")
        first = await create(client, owner, inn=SBERBANK_INN)
        assert (await client.delete(f"{BASE}/{first['id']}", headers=owner.headers)).status_code == 204

        second = await create(client, owner, inn=SBERBANK_INN)

        assert second["id"] != first["id"]

    async def test_same_inn_in_another_organization(self, client: AsyncClient, factory: Factory) -> None:
        a = await factory.actor("owner")
        b = await factory.actor("owner")
        await create(client, a, inn=SBERBANK_INN)

        data = await create(client, b, inn=SBERBANK_INN)

        assert data["inn"] == SBERBANK_INN

    async def test_synced_company_does_not_hold_the_inn(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_company(db, owner.org_id, inn=SBERBANK_INN, source="moysklad", external_id="ms-1")

        data = await create(client, owner, inn=SBERBANK_INN)

        assert data["source"] == "manual"

    async def test_several_companies_without_inn(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        await create(client, owner, name="A")
        await create(client, owner, name="B")

    async def test_owner_must_be_a_member(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        stranger = await factory.actor("owner")

        response = await client.post(
            BASE, json={"name": "X", "owner_id": stranger.user.id}, headers=owner.headers
        )

        assert_problem(response, 422, "invalid_reference")
        assert ["body", "owner_id"] in error_locs(response)
        assert await count(db, Company, organization_id=owner.org_id) == 0

    async def test_member_may_not_create(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        member = await factory.actor("member")

        response = await client.post(BASE, json={"name": "X"}, headers=member.headers)

        assert_problem(response, 403, "permission_denied")
        assert await count(db, Company, organization_id=member.org_id) == 0

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"name": ""},
            {"name": "X", "kind": "corporation"},
            {"name": "X", "source": "moysklad"},
            {"name": "X", "external_id": "x"},
            {"name": "X", "id": 1},
            {"name": "X", "version": 3},
            {"name": "X", "organization_id": 1},
            {"name": "X", "sync_warnings": []},
            {"name": "X", "ceo": "Греф"},
            {"name": "X", "inn": 7707083893},
            {"name": "X\u0000"},
            {"name": "X", "industry": "\u0000"},
        ],
    )
    async def test_invalid_body_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any]
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json=body, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert await count(db, Company, organization_id=owner.org_id) == 0

    @pytest.mark.parametrize(
        ("custom_fields", "loc"),
        [
            ({"unknown": 1}, "unknown"),
            ({"employees": "many"}, "employees"),
            ({}, "region"),
            ({"nickname": "x"}, "nickname"),
        ],
        ids=["unknown_key", "wrong_type", "required_missing", "contact_field"],
    )
    async def test_custom_fields_are_validated(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, custom_fields: dict[str, Any], loc: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_custom_field(db, owner.org_id, "company", "employees", "number")
        await make_custom_field(db, owner.org_id, "company", "region", "text", required=True)
        await make_custom_field(db, owner.org_id, "contact", "nickname", "text")
        if loc != "region":
            custom_fields = {**custom_fields, "region": "ЦФО"}

        response = await client.post(
            BASE, json={"name": "X", "custom_fields": custom_fields}, headers=owner.headers
        )

        assert response.status_code == 422, response.text
        assert ["body", "custom_fields", loc] in error_locs(response)
        assert await count(db, Company, organization_id=owner.org_id) == 0

    async def test_idempotent_repeat_returns_the_first_response(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        headers = {**owner.headers, "Idempotency-Key": "create-sber"}
        first = await client.post(BASE, json={"name": "Сбер", "inn": SBERBANK_INN}, headers=headers)

        repeat = await client.post(BASE, json={"name": "Сбер", "inn": SBERBANK_INN}, headers=headers)

        assert first.status_code == repeat.status_code == 201
        assert repeat.json() == first.json()
        assert repeat.headers["location"] == first.headers["location"]
        assert repeat.headers["idempotent-replayed"] == "true"
        assert await count(db, Company, organization_id=owner.org_id) == 1

    async def test_idempotency_key_with_another_body_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        headers = {**owner.headers, "Idempotency-Key": "k"}
        await client.post(BASE, json={"name": "Сбер"}, headers=headers)

        response = await client.post(BASE, json={"name": "Яндекс"}, headers=headers)

        assert response.status_code == 422, response.text
        assert await count(db, Company, organization_id=owner.org_id) == 1


class TestListCompanies:
    async def test_envelope_newest_first_without_deleted_or_foreign(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        other = await factory.org()
        assert owner.org_id is not None
        first = await make_company(db, owner.org_id, created_at=at("2024-01-01T00:00:00Z"))
        second = await make_company(db, owner.org_id, created_at=at("2024-01-02T00:00:00Z"))
        await make_company(db, owner.org_id, deleted_at=at("2024-01-03T00:00:00Z"))
        await make_company(db, other.id)

        response = await client.get(BASE, headers=owner.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)
        assert [c["id"] for c in body["items"]] == [second.id, first.id]

    async def test_paging(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        made = [
            await make_company(db, owner.org_id, created_at=at(f"2024-01-0{i}T00:00:00Z"))
            for i in range(1, 5)
        ]

        response = await client.get(f"{BASE}?limit=2&offset=2", headers=owner.headers)

        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (4, 2, 2)
        assert [c["id"] for c in body["items"]] == [made[1].id, made[0].id]

    @pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1"])
    async def test_paging_bounds(self, client: AsyncClient, factory: Factory, query: str) -> None:
        owner = await factory.actor("owner")

        assert_problem(await client.get(f"{BASE}?{query}", headers=owner.headers), 422, "validation_error")

    @pytest.mark.parametrize(
        "q", ["ромашка", "РОМАШКА", "Ромаш", "770708", "3893", "OFFICE@ROMASHKA", "romashka.ru"]
    )
    async def test_q_searches_name_inn_and_email(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, q: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        match = await make_company(
            db, owner.org_id, name="ООО «Ромашка»", inn=SBERBANK_INN, email="office@romashka.ru"
        )
        await make_company(db, owner.org_id, name="ИП Иванов", inn=PERSON_INN, email="ivanov@mail.ru")

        assert await ids(client, owner, f"q={q}") == [match.id]

    async def test_filter_inn(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        match = await make_company(db, owner.org_id, inn=SBERBANK_INN)
        await make_company(db, owner.org_id, inn="7736207543")

        assert await ids(client, owner, f"inn={SBERBANK_INN}") == [match.id]
        assert await ids(client, owner, "inn=770708") == []

    async def test_filter_industry(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        match = await make_company(db, owner.org_id, industry="Банки")
        await make_company(db, owner.org_id, industry="Банки и финансы")

        assert await ids(client, owner, "industry=банки") == [match.id]

    async def test_filter_tag(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        match = await make_company(db, owner.org_id, tags=["key", "bank"])
        await make_company(db, owner.org_id, tags=["retail"])

        assert await ids(client, owner, "tag=key") == [match.id]

    async def test_filter_owner_id(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        org, actors = await team(factory, "owner", "manager")
        match = await make_company(db, org.id, owner_id=actors["manager"].user.id)
        await make_company(db, org.id)

        assert await ids(client, actors["owner"], f"owner_id={actors['manager'].user.id}") == [match.id]

    async def test_filter_source(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        match = await make_company(db, owner.org_id, source="moysklad", external_id="ms-2")
        await make_company(db, owner.org_id)

        assert await ids(client, owner, "source=moysklad") == [match.id]

    async def test_filter_created_from_and_to(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        made = {
            d: await make_company(db, owner.org_id, created_at=at(f"2024-05-{d:02d}T00:00:00Z"))
            for d in (1, 2, 3)
        }

        found = await ids(client, owner, "created_from=2024-05-02T00:00:00Z&created_to=2024-05-02T00:00:00Z")

        assert found == [made[2].id]

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("cf.region=ЦФО", "a"),
            ("cf.employees=10", "b"),
            ("cf.partner=true", "a"),
            ("cf.partner=false", "b"),
            ("cf.tier=gold", "a"),
            ("cf.tier=gold&cf.partner=false", None),
        ],
    )
    async def test_filter_custom_fields(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, query: str, expected: str | None
    ) -> None:
        owner = await factory.actor("owner")
        org_id = owner.org_id
        assert org_id is not None
        await make_custom_field(db, org_id, "company", "region", "text")
        await make_custom_field(db, org_id, "company", "employees", "number")
        await make_custom_field(db, org_id, "company", "partner", "boolean")
        await make_custom_field(db, org_id, "company", "tier", "select", options=["gold", "silver"])
        made = {
            "a": await make_company(
                db, org_id, custom_fields={"region": "ЦФО", "partner": True, "tier": "gold"}
            ),
            "b": await make_company(db, org_id, custom_fields={"employees": 10, "partner": False}),
        }

        assert await ids(client, owner, query) == ([made[expected].id] if expected else [])

    @pytest.mark.parametrize(
        "query", ["cf.unknown=1", "cf.employees=many", "cf.tier=bronze", "cf.nickname=x"]
    )
    async def test_bad_custom_field_filter_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, query: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_custom_field(db, owner.org_id, "company", "employees", "number")
        await make_custom_field(db, owner.org_id, "company", "tier", "select", options=["gold"])
        await make_custom_field(db, owner.org_id, "contact", "nickname", "text")

        response = await client.get(f"{BASE}?{query}", headers=owner.headers)

        assert response.status_code == 422, response.text
        assert ["query", query.split("=")[0]] in error_locs(response)

    @pytest.mark.parametrize(
        "query",
        [
            "source=excel",
            "owner_id=0",
            "created_to=soon",
            "sort=inn",
            "sort=full_name",
            "q=%00",
            "inn=%00",
            "industry=%00",
            "created_from=2024-02-01T00:00:00Z&created_to=2024-01-31T23:59:59Z",
        ],
    )
    async def test_bad_filter_or_sort_is_refused(
        self, client: AsyncClient, factory: Factory, query: str
    ) -> None:
        owner = await factory.actor("owner")

        assert_problem(await client.get(f"{BASE}?{query}", headers=owner.headers), 422, "validation_error")

    @pytest.mark.parametrize(
        ("sort", "order"),
        [
            ("created_at", ["b", "c", "a"]),
            ("-created_at", ["a", "c", "b"]),
            ("updated_at", ["c", "a", "b"]),
            ("-updated_at", ["b", "a", "c"]),
            ("name", ["a", "b", "c"]),
            ("-name", ["c", "b", "a"]),
        ],
    )
    async def test_sort(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, sort: str, order: list[str]
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        rows = {
            "a": await make_company(
                db,
                owner.org_id,
                name="Альфа",
                created_at=at("2024-01-03T00:00:00Z"),
                updated_at=at("2024-02-02T00:00:00Z"),
            ),
            "b": await make_company(
                db,
                owner.org_id,
                name="Бета",
                created_at=at("2024-01-01T00:00:00Z"),
                updated_at=at("2024-02-03T00:00:00Z"),
            ),
            "c": await make_company(
                db,
                owner.org_id,
                name="Вега",
                created_at=at("2024-01-02T00:00:00Z"),
                updated_at=at("2024-02-01T00:00:00Z"),
            ),
        }

        assert await ids(client, owner, f"sort={sort}") == [rows[k].id for k in order]


class TestGetCompany:
    async def test_returns_the_company_with_its_etag(self, client: AsyncClient, factory: Factory) -> None:
        _, actors = await team(factory, "manager", "member")
        data = await create(client, actors["manager"], **FULL)

        response = await client.get(f"{BASE}/{data['id']}", headers=actors["member"].headers)

        assert response.status_code == 200
        assert response.json() == data
        assert response.headers["etag"] == '"1"'

    async def test_deleted_company_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00Z"))

        assert_problem(await client.get(f"{BASE}/{company.id}", headers=owner.headers), 404, "not_found")


class TestOtherOrganization:
    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("PUT", "", {"name": "Hijacked"}),
            ("PATCH", "", {"name": "Hijacked"}),
            ("DELETE", "", None),
            ("POST", "/restore", None),
            ("POST", "/comments", {"text": "hello"}),
            ("GET", "/activities", None),
            ("GET", "/contacts", None),
            ("GET", "/deals", None),
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
        deleted_at = at("2024-01-01T00:00:00Z") if suffix == "/restore" else None
        company = await make_company(db, other.id, name="Чужая", deleted_at=deleted_at)

        response = await client.request(method, f"{BASE}/{company.id}{suffix}", json=body, headers=me.headers)

        assert_problem(response, 404, "not_found")
        row = await stored(db, Company, company.id)
        assert row is not None
        assert (row.name, row.version, row.deleted_at) == ("Чужая", 1, deleted_at)
        assert await count(db, Activity, entity_id=company.id) == 0


class TestReplaceCompany:
    async def test_replaces_every_field_and_clears_the_omitted(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, **FULL)

        response = await client.put(
            f"{BASE}/{data['id']}",
            json={"name": "ИП Иванов", "inn": PERSON_INN},
            headers={**owner.headers, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert response.headers["etag"] == '"2"'
        assert (body["name"], body["inn"], body["kind"], body["version"]) == (
            "ИП Иванов",
            PERSON_INN,
            "sole_proprietor",
            2,
        )
        for cleared in ("kpp", "ogrn", "website", "industry", "email", "phone", "address", "notes"):
            assert body[cleared] is None, cleared
        assert body["tags"] == []
        updated = (await activities(db, "company", data["id"]))[-1]
        assert updated.action == "updated"
        assert updated.changes["kind"] == ["legal_entity", "sole_proprietor"]
        assert updated.changes["inn"] == [SBERBANK_INN, PERSON_INN]

    async def test_stale_if_match_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, name="Ромашка")
        await client.patch(f"{BASE}/{data['id']}", json={"industry": "Цветы"}, headers=owner.headers)

        response = await client.put(
            f"{BASE}/{data['id']}", json={"name": "Лютик"}, headers={**owner.headers, "If-Match": '"1"'}
        )

        assert_problem(response, 412, "version_mismatch")
        row = await stored(db, Company, data["id"])
        assert row is not None
        assert (row.name, row.industry, row.version) == ("Ромашка", "Цветы", 2)

    async def test_inn_taken_by_another_company(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        await create(client, owner, inn=SBERBANK_INN)
        data = await create(client, owner, inn="7736207543")

        response = await client.put(
            f"{BASE}/{data['id']}", json={"name": "X", "inn": SBERBANK_INN}, headers=owner.headers
        )

        assert_problem(response, 409, "company_inn_taken")
        row = await stored(db, Company, data["id"])
        assert row is not None
        assert (row.inn, row.version) == ("7736207543", 1)

    async def test_member_may_not_replace(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "member")
        company = await make_company(db, org.id, name="Ромашка")

        response = await client.put(
            f"{BASE}/{company.id}", json={"name": "X"}, headers=actors["member"].headers
        )

        assert_problem(response, 403, "permission_denied")


class TestUpdateCompany:
    async def test_changes_only_the_fields_sent(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, **FULL)

        response = await client.patch(
            f"{BASE}/{data['id']}",
            json={"industry": "Финансы", "phone": "+7 495 500-55-50"},
            headers={**owner.headers, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert response.headers["etag"] == '"2"'
        assert body == {
            **data,
            "industry": "Финансы",
            "phone": "+74955005550",
            "version": 2,
            "updated_at": body["updated_at"],
        }
        [_, updated] = await activities(db, "company", data["id"])
        assert updated.changes == {
            "industry": ["Банки", "Финансы"],
            "phone": ["+78005555550", "+74955005550"],
        }

    async def test_stale_if_match_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, name="Ромашка")
        await client.patch(f"{BASE}/{data['id']}", json={"industry": "Цветы"}, headers=owner.headers)

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"industry": "Травы"}, headers={**owner.headers, "If-Match": '"1"'}
        )

        assert_problem(response, 412, "version_mismatch")
        row = await stored(db, Company, data["id"])
        assert row is not None
        assert (row.industry, row.version) == ("Цветы", 2)
        assert len(await activities(db, "company", data["id"])) == 2

    async def test_inn_must_fit_the_stored_kind(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, inn=SBERBANK_INN)

        response = await client.patch(f"{BASE}/{data['id']}", json={"inn": PERSON_INN}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert ["body", "inn"] in error_locs(response)
        row = await stored(db, Company, data["id"])
        assert row is not None
        assert (row.inn, row.kind, row.version) == (SBERBANK_INN, "legal_entity", 1)

    async def test_kind_and_inn_change_together(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, inn=SBERBANK_INN)

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"kind": "individual", "inn": PERSON_INN}, headers=owner.headers
        )

        assert response.status_code == 200, response.text
        assert (response.json()["kind"], response.json()["inn"]) == ("individual", PERSON_INN)

    async def test_null_kind_defaults_from_the_inn_again(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, kind="individual", inn=PERSON_INN)

        response = await client.patch(f"{BASE}/{data['id']}", json={"kind": None}, headers=owner.headers)

        assert response.status_code == 200, response.text
        assert response.json()["kind"] == "sole_proprietor"

    async def test_kind_must_fit_the_stored_inn(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, inn=SBERBANK_INN)

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"kind": "sole_proprietor"}, headers=owner.headers
        )

        assert_problem(response, 422, "validation_error")

    async def test_synced_company_with_a_refused_inn_stays_editable(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(
            db,
            owner.org_id,
            inn="1234567890",
            source="moysklad",
            external_id="ms-9",
            sync_warnings=["invalid_inn"],
        )

        response = await client.patch(
            f"{BASE}/{company.id}", json={"notes": "проверить ИНН"}, headers=owner.headers
        )

        assert response.status_code == 200, response.text
        assert (response.json()["inn"], response.json()["notes"]) == ("1234567890", "проверить ИНН")

    async def test_bad_inn_is_refused(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner, inn=SBERBANK_INN)

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"inn": "7707083894"}, headers=owner.headers
        )

        assert_problem(response, 422, "validation_error")
        row = await stored(db, Company, data["id"])
        assert row is not None
        assert row.inn == SBERBANK_INN

    async def test_inn_taken_by_another_company(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        await create(client, owner, inn=SBERBANK_INN)
        data = await create(client, owner, inn="7736207543")

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"inn": SBERBANK_INN}, headers=owner.headers
        )

        assert_problem(response, 409, "company_inn_taken")
        row = await stored(db, Company, data["id"])
        assert row is not None
        assert (row.inn, row.version) == ("7736207543", 1)
        assert len(await activities(db, "company", data["id"])) == 1

    async def test_name_may_not_be_null(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        data = await create(client, owner)

        response = await client.patch(f"{BASE}/{data['id']}", json={"name": None}, headers=owner.headers)

        assert_problem(response, 422, "validation_error")
        assert ["body", "name"] in error_locs(response)

    async def test_custom_fields_merge(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        await make_custom_field(db, owner.org_id, "company", "region", "text")
        await make_custom_field(db, owner.org_id, "company", "employees", "number")
        data = await create(client, owner, custom_fields={"region": "ЦФО"})

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"custom_fields": {"employees": 5}}, headers=owner.headers
        )

        assert response.json()["custom_fields"] == {"region": "ЦФО", "employees": 5}

    async def test_owner_must_be_a_member(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        stranger = await factory.actor("owner")
        data = await create(client, owner)

        response = await client.patch(
            f"{BASE}/{data['id']}", json={"owner_id": stranger.user.id}, headers=owner.headers
        )

        assert_problem(response, 422, "invalid_reference")

    async def test_member_may_not_update(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "member")
        company = await make_company(db, org.id, name="Ромашка")

        response = await client.patch(
            f"{BASE}/{company.id}", json={"name": "X"}, headers=actors["member"].headers
        )

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, Company, company.id)
        assert row is not None
        assert row.name == "Ромашка"


class TestDeleteCompany:
    @pytest.mark.parametrize("role", ["owner", "admin", "manager"])
    async def test_manager_and_up_delete(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org, actors = await team(factory, role)
        company = await make_company(db, org.id)

        response = await client.delete(f"{BASE}/{company.id}", headers=actors[role].headers)

        assert response.status_code == 204
        row = await stored(db, Company, company.id)
        assert row is not None
        assert row.deleted_at is not None
        assert row.version == 2
        [activity] = await activities(db, "company", company.id)
        assert (activity.action, activity.actor_id) == ("deleted", actors[role].user.id)
        assert_problem(
            await client.get(f"{BASE}/{company.id}", headers=actors[role].headers), 404, "not_found"
        )
        assert await ids(client, actors[role], "") == []

    async def test_member_may_not_delete(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "member")
        company = await make_company(db, org.id)

        response = await client.delete(f"{BASE}/{company.id}", headers=actors["member"].headers)

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, Company, company.id)
        assert row is not None
        assert row.deleted_at is None

    async def test_deleted_company_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00Z"))

        assert_problem(await client.delete(f"{BASE}/{company.id}", headers=owner.headers), 404, "not_found")


class TestRestoreCompany:
    @pytest.mark.parametrize("role", ["owner", "admin"])
    async def test_owner_and_admin_restore(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        _, actors = await team(factory, role)
        actor = actors[role]
        data = await create(client, actor, inn=SBERBANK_INN)
        await client.delete(f"{BASE}/{data['id']}", headers=actor.headers)

        response = await client.post(f"{BASE}/{data['id']}/restore", headers=actor.headers)

        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"3"'
        assert response.json()["version"] == 3
        assert [a.action for a in await activities(db, "company", data["id"])] == [
            "created",
            "deleted",
            "restored",
        ]
        assert await ids(client, actor, "") == [data["id"]]

    async def test_manager_may_not_restore(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "manager")
        company = await make_company(db, org.id, deleted_at=at("2024-01-01T00:00:00Z"))

        response = await client.post(f"{BASE}/{company.id}/restore", headers=actors["manager"].headers)

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, Company, company.id)
        assert row is not None
        assert row.deleted_at is not None

    async def test_inn_taken_meanwhile(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        first = await create(client, owner, inn=SBERBANK_INN)
        await client.delete(f"{BASE}/{first['id']}", headers=owner.headers)
        await create(client, owner, inn=SBERBANK_INN)

        response = await client.post(f"{BASE}/{first['id']}/restore", headers=owner.headers)

        assert_problem(response, 409, "company_inn_taken")
        row = await stored(db, Company, first["id"])
        assert row is not None
        assert row.deleted_at is not None
        assert row.version == 2


class TestCompanyContacts:
    async def test_lists_the_live_contacts_of_the_company(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "member")
        member = actors["member"]
        company = await make_company(db, org.id)
        other_company = await make_company(db, org.id)
        older = await make_contact(
            db, org.id, company_id=company.id, full_name="Борис", created_at=at("2024-01-01T00:00:00Z")
        )
        newer = await make_contact(
            db, org.id, company_id=company.id, full_name="Анна", created_at=at("2024-01-02T00:00:00Z")
        )
        await make_contact(db, org.id, company_id=company.id, deleted_at=at("2024-01-03T00:00:00Z"))
        await make_contact(db, org.id, company_id=other_company.id)
        await make_contact(db, org.id)

        response = await client.get(f"{BASE}/{company.id}/contacts", headers=member.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)
        assert [c["id"] for c in body["items"]] == [newer.id, older.id]
        assert body["items"][0]["full_name"] == "Анна"
        assert await ids(
            client, member, "sort=full_name&limit=1&offset=1", f"{BASE}/{company.id}/contacts"
        ) == [older.id]

    @pytest.mark.parametrize("query", ["limit=0", "limit=201", "sort=name"])
    async def test_bad_paging_or_sort(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, query: str
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id)

        response = await client.get(f"{BASE}/{company.id}/contacts?{query}", headers=owner.headers)

        assert_problem(response, 422, "validation_error")

    async def test_deleted_company_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00Z"))

        response = await client.get(f"{BASE}/{company.id}/contacts", headers=owner.headers)

        assert_problem(response, 404, "not_found")


class TestCompanyDeals:
    async def test_lists_the_live_deals_of_the_company(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "member")
        company = await make_company(db, org.id)
        other_company = await make_company(db, org.id)
        older = await make_deal(db, org.id, company_id=company.id, created_at=at("2024-01-01T00:00:00Z"))
        newer = await make_deal(
            db,
            org.id,
            company_id=company.id,
            title="Кредитная линия",
            status="won",
            created_at=at("2024-01-02T00:00:00Z"),
        )
        await make_deal(db, org.id, company_id=company.id, deleted_at=at("2024-01-03T00:00:00Z"))
        await make_deal(db, org.id, company_id=other_company.id)

        response = await client.get(f"{BASE}/{company.id}/deals", headers=actors["member"].headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)
        assert [d["id"] for d in body["items"]] == [newer.id, older.id]
        first = body["items"][0]
        assert (first["title"], first["amount"], first["currency"], first["status"], first["company_id"]) == (
            "Кредитная линия",
            "1000.00",
            "RUB",
            "won",
            company.id,
        )
        assert (first["pipeline_id"], first["stage"]) == (newer.pipeline_id, "lead")

    async def test_paging(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id)
        made = [
            await make_deal(db, owner.org_id, company_id=company.id, created_at=at(f"2024-01-0{i}T00:00:00Z"))
            for i in range(1, 4)
        ]

        response = await client.get(f"{BASE}/{company.id}/deals?limit=1&offset=1", headers=owner.headers)

        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 1, 1)
        assert [d["id"] for d in body["items"]] == [made[1].id]

    async def test_deleted_company_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id, deleted_at=at("2024-01-01T00:00:00Z"))

        assert_problem(
            await client.get(f"{BASE}/{company.id}/deals", headers=owner.headers), 404, "not_found"
        )


class TestCompanyTimeline:
    async def test_every_write_is_listed_newest_first(self, client: AsyncClient, factory: Factory) -> None:
        _, actors = await team(factory, "owner", "member")
        owner = actors["owner"]
        data = await create(client, owner, name="Ромашка")
        await client.patch(f"{BASE}/{data['id']}", json={"name": "Лютик"}, headers=owner.headers)
        await client.post(
            f"{BASE}/{data['id']}/comments", json={"text": "Перезвонить"}, headers=actors["member"].headers
        )

        response = await client.get(f"{BASE}/{data['id']}/activities", headers=actors["member"].headers)

        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [a["action"] for a in items] == ["comment", "updated", "created"]
        assert all((a["entity_type"], a["entity_id"]) == ("company", data["id"]) for a in items)
        assert items[0]["actor_id"] == actors["member"].user.id
        assert items[1]["changes"] == {"name": ["Ромашка", "Лютик"]}


class TestCommentOnCompany:
    async def test_member_may_comment(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        org, actors = await team(factory, "member")
        company = await make_company(db, org.id)

        response = await client.post(
            f"{BASE}/{company.id}/comments", json={"text": "Важный клиент"}, headers=actors["member"].headers
        )

        assert response.status_code == 201, response.text
        assert (response.json()["action"], response.json()["payload"]) == (
            "comment",
            {"text": "Важный клиент"},
        )
        [comment] = await activities(db, "company", company.id)
        assert (comment.action, comment.actor_id) == ("comment", actors["member"].user.id)

    async def test_empty_comment_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        assert owner.org_id is not None
        company = await make_company(db, owner.org_id)

        response = await client.post(
            f"{BASE}/{company.id}/comments", json={"text": ""}, headers=owner.headers
        )

        assert_problem(response, 422, "validation_error")
        assert await activities(db, "company", company.id) == []


@pytest.mark.committing
class TestConcurrentWrites:
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
        created = await committing_client.post(BASE, json={"name": "Ромашка"}, headers=owner.headers)
        company_id = created.json()["id"]

        responses = await asyncio.gather(
            *(
                committing_client.patch(
                    f"{BASE}/{company_id}",
                    json={"industry": f"Отрасль {i}"},
                    headers={**owner.headers, "If-Match": '"1"'},
                )
                for i in range(10)
            )
        )

        assert sorted(r.status_code for r in responses) == [200] + [412] * 9, [r.text for r in responses]
        async with app.state.sessionmaker() as session:
            row = await session.get(Company, company_id)
            assert row is not None
            assert row.version == 2

    async def test_ten_creates_with_one_idempotency_key_make_one_company(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        owner = await self._owner(app, committing_client)
        headers = {**owner.headers, "Idempotency-Key": "race"}

        responses = await asyncio.gather(
            *(
                committing_client.post(BASE, json={"name": "Сбер", "inn": SBERBANK_INN}, headers=headers)
                for _ in range(10)
            )
        )

        assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        async with app.state.sessionmaker() as session:
            found = (
                (await session.execute(select(Company.id).where(Company.organization_id == owner.org_id)))
                .scalars()
                .all()
            )
        assert len(found) == 1

    async def test_ten_creates_with_one_inn_make_one_company(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        owner = await self._owner(app, committing_client)

        responses = await asyncio.gather(
            *(
                committing_client.post(BASE, json={"name": f"Сбер {i}", "inn": inn}, headers=owner.headers)
                for i, inn in enumerate([SBERBANK_INN] * 10)
            )
        )

        codes = sorted(r.status_code for r in responses)
        assert codes == [201] + [409] * 9, [r.text for r in responses]
        assert all(r.json()["code"] == "company_inn_taken" for r in responses if r.status_code == 409)
        async with app.state.sessionmaker() as session:
            found = (
                (await session.execute(select(Company.id).where(Company.organization_id == owner.org_id)))
                .scalars()
                .all()
            )
        assert len(found) == 1

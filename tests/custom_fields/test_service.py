"""Custom field values on records: validation of contact writes and `cf.<key>` list filters (SPEC §8)."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Contact, CustomField
from tests.auth.support import assert_problem
from tests.factories import Actor, Factory

CONTACTS = "/api/v1/contacts"
#: One definition of each type, on contacts.
DEFINITIONS: list[dict[str, Any]] = [
    {"key": "nickname", "type": "text"},
    {"key": "score", "type": "number"},
    {"key": "birthday", "type": "date"},
    {"key": "vip", "type": "boolean"},
    {"key": "segment", "type": "select", "options": ["retail", "wholesale"]},
    {"key": "channels", "type": "multiselect", "options": ["email", "sms", "phone"]},
]


@pytest.fixture
async def manager(factory: Factory, db: AsyncSession) -> Actor:
    """A manager of an organization whose contacts have one custom field of each type."""
    actor = await factory.actor("manager")
    assert actor.org_id is not None
    for definition in DEFINITIONS:
        db.add(
            CustomField(organization_id=actor.org_id, entity="contact", label=definition["key"], **definition)
        )
    await db.flush()
    return actor


async def require(db: AsyncSession, org_id: int, key: str) -> None:
    db.expunge_all()
    field = (
        await db.execute(
            select(CustomField).where(CustomField.organization_id == org_id, CustomField.key == key)
        )
    ).scalar_one()
    field.required = True
    await db.flush()


async def create(client: AsyncClient, actor: Actor, custom_fields: dict[str, Any], **fields: Any) -> Any:
    return await client.post(
        CONTACTS, json={"full_name": "Иван", "custom_fields": custom_fields, **fields}, headers=actor.headers
    )


async def stored_fields(db: AsyncSession, contact_id: int) -> dict[str, Any]:
    db.expunge_all()
    contact = (await db.execute(select(Contact).where(Contact.id == contact_id))).scalar_one()
    return contact.custom_fields


async def contact_count(db: AsyncSession) -> int:
    db.expunge_all()
    return int(await db.scalar(select(func.count()).select_from(Contact)) or 0)


def assert_custom_field_error(response: Any, key: str, error_type: str) -> None:
    body = assert_problem(response, 422, "custom_field_invalid")
    assert {"loc": ["body", "custom_fields", key], "type": error_type} in [
        {"loc": e["loc"], "type": e["type"]} for e in body["errors"]
    ], body["errors"]


class TestValidate:
    async def test_values_of_every_type_are_stored(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        values = {
            "nickname": "Ваня",
            "score": 4.5,
            "birthday": "1990-05-17",
            "vip": True,
            "segment": "retail",
            "channels": ["sms", "email", "sms"],
        }

        response = await create(client, manager, values)

        assert response.status_code == 201, response.text
        expected = {**values, "channels": ["sms", "email"]}  # duplicates dropped, order kept
        assert response.json()["custom_fields"] == expected
        assert await stored_fields(db, response.json()["id"]) == expected

    async def test_date_is_stored_in_iso_form(self, client: AsyncClient, manager: Actor) -> None:
        response = await create(client, manager, {"birthday": "19900517"})

        assert response.json()["custom_fields"] == {"birthday": "1990-05-17"}

    async def test_unknown_key_is_422(self, client: AsyncClient, manager: Actor, db: AsyncSession) -> None:
        response = await create(client, manager, {"favourite_colour": "red"})

        assert_custom_field_error(response, "favourite_colour", "custom_field_unknown")
        assert await contact_count(db) == 0

    async def test_field_of_another_entity_is_unknown(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        db.add(
            CustomField(organization_id=manager.org_id, entity="deal", key="budget", label="B", type="number")
        )
        await db.flush()

        response = await create(client, manager, {"budget": 5})

        assert_custom_field_error(response, "budget", "custom_field_unknown")

    async def test_field_of_another_organization_is_unknown(
        self, client: AsyncClient, manager: Actor, factory: Factory, db: AsyncSession
    ) -> None:
        other = await factory.org()
        db.add(
            CustomField(organization_id=other.id, entity="contact", key="budget", label="B", type="number")
        )
        await db.flush()

        response = await create(client, manager, {"budget": 5})

        assert_custom_field_error(response, "budget", "custom_field_unknown")

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("nickname", 5),
            ("nickname", "x" * 10_001),
            ("score", "5"),
            ("score", True),
            ("score", [1]),
            ("birthday", "17.05.1990"),
            ("birthday", "1990-02-30"),
            ("birthday", 19900517),
            ("vip", "true"),
            ("vip", 1),
            ("segment", "vip"),
            ("segment", ["retail"]),
            ("channels", "sms"),
            ("channels", ["sms", "fax"]),
        ],
    )
    async def test_wrong_type_is_422(
        self, client: AsyncClient, manager: Actor, db: AsyncSession, key: str, value: Any
    ) -> None:
        response = await create(client, manager, {key: value})

        assert_custom_field_error(response, key, "custom_field_type")
        assert await contact_count(db) == 0

    async def test_every_error_is_reported(self, client: AsyncClient, manager: Actor) -> None:
        response = await create(client, manager, {"score": "x", "vip": "x", "nope": 1})

        body = assert_problem(response, 422, "custom_field_invalid")
        assert sorted(e["loc"][-1] for e in body["errors"]) == ["nope", "score", "vip"]

    async def test_required_field_missing_is_422(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        await require(db, manager.org_id or 0, "segment")

        without = await create(client, manager, {})
        blank = await create(client, manager, {"segment": None})

        assert_custom_field_error(without, "segment", "missing")
        assert_custom_field_error(blank, "segment", "missing")
        assert await contact_count(db) == 0

    @pytest.mark.parametrize(("key", "empty"), [("nickname", ""), ("channels", [])])
    async def test_required_field_empty_is_422(
        self, client: AsyncClient, manager: Actor, db: AsyncSession, key: str, empty: Any
    ) -> None:
        await require(db, manager.org_id or 0, key)

        response = await create(client, manager, {key: empty})

        assert_custom_field_error(response, key, "missing")

    async def test_required_boolean_may_be_false(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        await require(db, manager.org_id or 0, "vip")

        response = await create(client, manager, {"vip": False})

        assert response.status_code == 201, response.text

    async def test_patch_merges_and_null_removes_a_key(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        contact = (await create(client, manager, {"score": 1, "vip": True})).json()

        response = await client.patch(
            f"{CONTACTS}/{contact['id']}",
            json={"custom_fields": {"score": 2, "vip": None, "segment": "retail"}},
            headers=manager.headers,
        )

        assert response.status_code == 200, response.text
        assert response.json()["custom_fields"] == {"score": 2, "segment": "retail"}
        assert await stored_fields(db, contact["id"]) == {"score": 2, "segment": "retail"}

    async def test_patch_without_custom_fields_keeps_them(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        contact = (await create(client, manager, {"score": 1})).json()
        await require(db, manager.org_id or 0, "segment")  # made required after the contact was written

        response = await client.patch(
            f"{CONTACTS}/{contact['id']}", json={"job_title": "CEO"}, headers=manager.headers
        )

        assert response.status_code == 200, response.text
        assert await stored_fields(db, contact["id"]) == {"score": 1}

    async def test_patch_removing_a_required_value_is_422(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        await require(db, manager.org_id or 0, "segment")
        contact = (await create(client, manager, {"segment": "retail"})).json()

        response = await client.patch(
            f"{CONTACTS}/{contact['id']}", json={"custom_fields": {"segment": None}}, headers=manager.headers
        )

        assert_custom_field_error(response, "segment", "missing")
        assert await stored_fields(db, contact["id"]) == {"segment": "retail"}

    async def test_patch_with_a_wrong_type_writes_nothing(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        contact = (await create(client, manager, {"score": 1})).json()

        response = await client.patch(
            f"{CONTACTS}/{contact['id']}",
            json={"custom_fields": {"score": "two"}, "job_title": "CEO"},
            headers=manager.headers,
        )

        assert_custom_field_error(response, "score", "custom_field_type")
        db.expunge_all()
        row = (await db.execute(select(Contact).where(Contact.id == contact["id"]))).scalar_one()
        assert (row.custom_fields, row.job_title, row.version) == ({"score": 1}, None, 1)

    async def test_put_replaces_the_document(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        contact = (await create(client, manager, {"score": 1, "vip": True})).json()

        response = await client.put(
            f"{CONTACTS}/{contact['id']}",
            json={"full_name": "Иван", "custom_fields": {"vip": False}},
            headers=manager.headers,
        )

        assert response.status_code == 200, response.text
        assert await stored_fields(db, contact["id"]) == {"vip": False}

    async def test_put_with_an_unknown_key_is_422(self, client: AsyncClient, manager: Actor) -> None:
        contact = (await create(client, manager, {})).json()

        response = await client.put(
            f"{CONTACTS}/{contact['id']}",
            json={"full_name": "Иван", "custom_fields": {"nope": 1}},
            headers=manager.headers,
        )

        assert_custom_field_error(response, "nope", "custom_field_unknown")


class TestFilters:
    """`GET /contacts?cf.<key>=value`: one test per field type."""

    async def matching(self, client: AsyncClient, actor: Actor, params: dict[str, str]) -> list[str]:
        response = await client.get(CONTACTS, params=params, headers=actor.headers)
        assert response.status_code == 200, response.text
        return sorted(c["full_name"] for c in response.json()["items"])

    async def seed(self, client: AsyncClient, actor: Actor, **people: dict[str, Any]) -> None:
        for name, values in people.items():
            response = await create(client, actor, values, full_name=name)
            assert response.status_code == 201, response.text

    async def test_text(self, client: AsyncClient, manager: Actor) -> None:
        await self.seed(client, manager, a={"nickname": "Ваня"}, b={"nickname": "ваня"}, c={})

        assert await self.matching(client, manager, {"cf.nickname": "Ваня"}) == ["a"]

    async def test_number(self, client: AsyncClient, manager: Actor) -> None:
        await self.seed(client, manager, a={"score": 5}, b={"score": 5.0}, c={"score": 5.5}, d={})

        assert await self.matching(client, manager, {"cf.score": "5"}) == ["a", "b"]
        assert await self.matching(client, manager, {"cf.score": "5.0"}) == ["a", "b"]
        assert await self.matching(client, manager, {"cf.score": "5.5"}) == ["c"]

    async def test_large_integer_is_matched_exactly(self, client: AsyncClient, manager: Actor) -> None:
        await self.seed(client, manager, a={"score": 12345678901234567890}, b={"score": 12345678901234567168})

        assert await self.matching(client, manager, {"cf.score": "12345678901234567890"}) == ["a"]

    async def test_date(self, client: AsyncClient, manager: Actor) -> None:
        await self.seed(client, manager, a={"birthday": "1990-05-17"}, b={"birthday": "1990-05-18"})

        assert await self.matching(client, manager, {"cf.birthday": "1990-05-17"}) == ["a"]

    async def test_boolean(self, client: AsyncClient, manager: Actor) -> None:
        await self.seed(client, manager, a={"vip": True}, b={"vip": False}, c={})

        assert await self.matching(client, manager, {"cf.vip": "true"}) == ["a"]
        assert await self.matching(client, manager, {"cf.vip": "FALSE"}) == ["b"]

    async def test_select(self, client: AsyncClient, manager: Actor) -> None:
        await self.seed(client, manager, a={"segment": "retail"}, b={"segment": "wholesale"})

        assert await self.matching(client, manager, {"cf.segment": "wholesale"}) == ["b"]

    async def test_multiselect_matches_records_holding_the_option(
        self, client: AsyncClient, manager: Actor
    ) -> None:
        await self.seed(
            client,
            manager,
            a={"channels": ["sms", "email"]},
            b={"channels": ["email"]},
            c={"channels": ["phone"]},
        )

        assert await self.matching(client, manager, {"cf.channels": "email"}) == ["a", "b"]

    async def test_filters_combine(self, client: AsyncClient, manager: Actor) -> None:
        await self.seed(
            client,
            manager,
            a={"vip": True, "segment": "retail"},
            b={"vip": True, "segment": "wholesale"},
            c={"vip": False, "segment": "retail"},
        )

        assert await self.matching(client, manager, {"cf.vip": "true", "cf.segment": "retail"}) == ["a"]

    async def test_total_counts_the_matches(self, client: AsyncClient, manager: Actor) -> None:
        await self.seed(client, manager, a={"vip": True}, b={"vip": True}, c={"vip": False})

        response = await client.get(CONTACTS, params={"cf.vip": "true", "limit": 1}, headers=manager.headers)

        assert response.json()["total"] == 2

    @pytest.mark.parametrize(
        ("params", "error_type"),
        [
            ({"cf.nope": "1"}, "custom_field_unknown"),
            ({"cf.": "1"}, "custom_field_unknown"),
            ({"cf.score": "five"}, "custom_field_type"),
            ({"cf.score": "nan"}, "custom_field_type"),
            ({"cf.score": "1e999"}, "custom_field_type"),
            ({"cf.vip": "yes"}, "custom_field_type"),
            ({"cf.birthday": "1990-13-01"}, "custom_field_type"),
            ({"cf.segment": "vip"}, "custom_field_type"),
            ({"cf.channels": "fax"}, "custom_field_type"),
        ],
    )
    async def test_unknown_key_or_wrong_value_is_422(
        self, client: AsyncClient, manager: Actor, params: dict[str, str], error_type: str
    ) -> None:
        response = await client.get(CONTACTS, params=params, headers=manager.headers)

        body = assert_problem(response, 422, "custom_field_invalid")
        [(name, _)] = params.items()
        assert body["errors"][0]["loc"] == ["query", name]
        assert body["errors"][0]["type"] == error_type

    async def test_field_of_another_entity_is_unknown(
        self, client: AsyncClient, manager: Actor, db: AsyncSession
    ) -> None:
        db.add(
            CustomField(
                organization_id=manager.org_id, entity="company", key="budget", label="B", type="number"
            )
        )
        await db.flush()

        response = await client.get(CONTACTS, params={"cf.budget": "5"}, headers=manager.headers)

        assert_problem(response, 422, "custom_field_invalid")

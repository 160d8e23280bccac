"""`/api/v1/custom-fields`: definitions of extra fields per entity (SPEC §8, §18)."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Contact, CustomField, Organization
from tests.auth.support import assert_problem, assert_validation_error
from tests.factories import Actor, Factory

BASE = "/api/v1/custom-fields"
SCORE = {"entity": "contact", "key": "score", "label": "Score", "type": "number"}


class Team:
    def __init__(self, org: Organization, admin: Actor, manager: Actor, member: Actor) -> None:
        self.org = org
        self.admin = admin
        self.manager = manager
        self.member = member


@pytest.fixture
async def team(factory: Factory) -> Team:
    org = await factory.org()
    return Team(
        org,
        await factory.actor("admin", org=org),
        await factory.actor("manager", org=org),
        await factory.actor("member", org=org),
    )


async def define(client: AsyncClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    response = await client.post(BASE, json={**SCORE, **fields}, headers=actor.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(db: AsyncSession, field_id: int) -> CustomField | None:
    db.expunge_all()
    return (await db.execute(select(CustomField).where(CustomField.id == field_id))).scalar_one_or_none()


async def field_count(db: AsyncSession) -> int:
    db.expunge_all()
    return int(await db.scalar(select(func.count()).select_from(CustomField)) or 0)


class TestCreateCustomField:
    @pytest.mark.parametrize(
        ("type_", "options"),
        [
            ("text", []),
            ("number", []),
            ("date", []),
            ("boolean", []),
            ("select", ["a", "b"]),
            ("multiselect", ["x", "y", "z"]),
        ],
    )
    async def test_admin_defines_each_type(
        self, client: AsyncClient, team: Team, db: AsyncSession, type_: str, options: list[str]
    ) -> None:
        body = {
            "entity": "deal",
            "key": f"f_{type_}",
            "label": "Поле",
            "type": type_,
            "options": options,
            "required": True,
        }

        response = await client.post(BASE, json=body, headers=team.admin.headers)

        assert response.status_code == 201, response.text
        created = response.json()
        assert created == {"id": created["id"], **body}
        assert response.headers["location"] == f"{BASE}/{created['id']}"
        row = await stored(db, created["id"])
        assert row is not None
        assert (row.organization_id, row.entity, row.key, row.type, row.options, row.required) == (
            team.org.id,
            "deal",
            f"f_{type_}",
            type_,
            options,
            True,
        )

    async def test_defaults(self, client: AsyncClient, team: Team) -> None:
        created = await define(client, team.admin)

        assert (created["options"], created["required"]) == ([], False)

    async def test_owner_defines_too(self, client: AsyncClient, team: Team, factory: Factory) -> None:
        owner = await factory.actor("owner", org=team.org)

        response = await client.post(BASE, json=SCORE, headers=owner.headers)

        assert response.status_code == 201, response.text

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_below_admin_is_403(
        self, client: AsyncClient, team: Team, db: AsyncSession, role: str
    ) -> None:
        actor = team.manager if role == "manager" else team.member

        response = await client.post(BASE, json=SCORE, headers=actor.headers)

        assert_problem(response, 403, "permission_denied")
        assert await field_count(db) == 0

    @pytest.mark.parametrize("key", ["Score", "1score", "_score", "score-x", "sc ore", "", "k" * 51, "счёт"])
    async def test_key_not_lower_snake_case_is_422(
        self, client: AsyncClient, team: Team, db: AsyncSession, key: str
    ) -> None:
        response = await client.post(BASE, json={**SCORE, "key": key}, headers=team.admin.headers)

        assert_validation_error(response, "body", "key")
        assert await field_count(db) == 0

    async def test_longest_key_is_accepted(self, client: AsyncClient, team: Team) -> None:
        created = await define(client, team.admin, key="k" + "_9" * 24 + "z")

        assert len(created["key"]) == 50

    @pytest.mark.parametrize(
        "fields",
        [
            {"type": "select", "options": []},
            {"type": "select"},
            {"type": "multiselect", "options": []},
            {"type": "select", "options": ["a", "a"]},
            {"type": "select", "options": ["a", "  "]},
            {"type": "select", "options": ["o" * 201]},
            {"type": "text", "options": ["a"]},
            {"type": "number", "options": ["1"]},
        ],
    )
    async def test_options_must_fit_the_type(
        self, client: AsyncClient, team: Team, db: AsyncSession, fields: dict[str, Any]
    ) -> None:
        response = await client.post(BASE, json={**SCORE, **fields}, headers=team.admin.headers)

        assert_problem(response, 422, "validation_error")
        assert await field_count(db) == 0

    @pytest.mark.parametrize(
        "fields",
        [
            {"entity": "task"},
            {"entity": "contacts"},
            {"type": "money"},
            {"label": ""},
            {"label": "l" * 201},
            {"required": "maybe"},
            {"id": 5},
            {"organization_id": 1},
        ],
    )
    async def test_invalid_body_is_422(
        self, client: AsyncClient, team: Team, db: AsyncSession, fields: dict[str, Any]
    ) -> None:
        response = await client.post(BASE, json={**SCORE, **fields}, headers=team.admin.headers)

        assert_problem(response, 422, "validation_error")
        assert await field_count(db) == 0

    async def test_duplicate_key_is_409(self, client: AsyncClient, team: Team, db: AsyncSession) -> None:
        await define(client, team.admin)

        response = await client.post(
            BASE, json={**SCORE, "label": "Other", "type": "text"}, headers=team.admin.headers
        )

        assert_problem(response, 409, "custom_field_key_taken")
        assert await field_count(db) == 1

    async def test_same_key_on_another_entity_is_fine(self, client: AsyncClient, team: Team) -> None:
        await define(client, team.admin)

        created = await define(client, team.admin, entity="company")

        assert (created["entity"], created["key"]) == ("company", "score")

    async def test_same_key_in_another_organization_is_fine(
        self, client: AsyncClient, team: Team, factory: Factory
    ) -> None:
        await define(client, team.admin)
        other_admin = await factory.actor("admin")

        created = await define(client, other_admin)

        assert created["key"] == "score"

    async def test_idempotency_key_replays(self, client: AsyncClient, team: Team, db: AsyncSession) -> None:
        headers = {**team.admin.headers, "Idempotency-Key": "cf-1"}

        first = await client.post(BASE, json=SCORE, headers=headers)
        second = await client.post(BASE, json=SCORE, headers=headers)

        assert first.status_code == second.status_code == 201, second.text
        assert second.json() == first.json()
        assert second.headers["location"] == first.headers["location"]
        assert await field_count(db) == 1


class TestListCustomFields:
    async def test_newest_first_for_any_member(self, client: AsyncClient, team: Team) -> None:
        first = await define(client, team.admin, key="first")
        second = await define(client, team.admin, key="second", entity="company")

        response = await client.get(BASE, headers=team.member.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert [f["id"] for f in body["items"]] == [second["id"], first["id"]]
        assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)

    async def test_filter_by_entity(self, client: AsyncClient, team: Team) -> None:
        contact_field = await define(client, team.admin)
        await define(client, team.admin, entity="deal")

        response = await client.get(BASE, params={"entity": "contact"}, headers=team.member.headers)

        assert [f["id"] for f in response.json()["items"]] == [contact_field["id"]]

    async def test_pages(self, client: AsyncClient, team: Team) -> None:
        fields = [await define(client, team.admin, key=f"k{n}") for n in range(3)]

        response = await client.get(BASE, params={"limit": 1, "offset": 1}, headers=team.member.headers)

        body = response.json()
        assert [f["id"] for f in body["items"]] == [fields[1]["id"]]
        assert body["total"] == 3

    async def test_other_organizations_fields_are_not_listed(
        self, client: AsyncClient, team: Team, factory: Factory
    ) -> None:
        await define(client, await factory.actor("admin"))

        response = await client.get(BASE, headers=team.member.headers)

        assert response.json()["total"] == 0

    async def test_unknown_entity_is_422(self, client: AsyncClient, team: Team) -> None:
        response = await client.get(BASE, params={"entity": "task"}, headers=team.member.headers)

        assert_validation_error(response, "query", "entity")


class TestGetCustomField:
    async def test_returns_the_definition(self, client: AsyncClient, team: Team) -> None:
        created = await define(client, team.admin, type="select", options=["a", "b"])

        response = await client.get(f"{BASE}/{created['id']}", headers=team.member.headers)

        assert response.status_code == 200, response.text
        assert response.json() == created

    async def test_another_organizations_field_is_404(
        self, client: AsyncClient, team: Team, factory: Factory
    ) -> None:
        foreign = await define(client, await factory.actor("admin"))

        response = await client.get(f"{BASE}/{foreign['id']}", headers=team.admin.headers)

        assert_problem(response, 404, "not_found")

    async def test_missing_is_404(self, client: AsyncClient, team: Team) -> None:
        response = await client.get(f"{BASE}/987654", headers=team.admin.headers)

        assert_problem(response, 404, "not_found")


class TestUpdateCustomField:
    async def test_admin_changes_label_options_and_required(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        created = await define(client, team.admin, type="select", options=["a", "b"])

        response = await client.patch(
            f"{BASE}/{created['id']}",
            json={"label": "Сегмент", "options": ["a", "b", "c"], "required": True},
            headers=team.admin.headers,
        )

        assert response.status_code == 200, response.text
        assert response.json() == {
            **created,
            "label": "Сегмент",
            "options": ["a", "b", "c"],
            "required": True,
        }
        row = await stored(db, created["id"])
        assert row is not None
        assert (row.label, row.options, row.required) == ("Сегмент", ["a", "b", "c"], True)

    async def test_only_the_fields_sent_change(self, client: AsyncClient, team: Team) -> None:
        created = await define(client, team.admin, required=True)

        response = await client.patch(
            f"{BASE}/{created['id']}", json={"label": "Баллы"}, headers=team.admin.headers
        )

        assert response.json() == {**created, "label": "Баллы"}

    @pytest.mark.parametrize("fixed", [{"key": "other"}, {"type": "text"}, {"entity": "deal"}])
    async def test_key_type_and_entity_are_fixed(
        self, client: AsyncClient, team: Team, db: AsyncSession, fixed: dict[str, str]
    ) -> None:
        created = await define(client, team.admin)

        response = await client.patch(f"{BASE}/{created['id']}", json=fixed, headers=team.admin.headers)

        assert_problem(response, 422, "validation_error")
        row = await stored(db, created["id"])
        assert row is not None
        assert (row.key, row.type, row.entity) == ("score", "number", "contact")

    @pytest.mark.parametrize(
        ("type_", "options"), [("number", ["a"]), ("select", []), ("multiselect", ["a", "a"])]
    )
    async def test_options_that_do_not_fit_are_422(
        self, client: AsyncClient, team: Team, db: AsyncSession, type_: str, options: list[str]
    ) -> None:
        created = await define(client, team.admin, type=type_, options=["a"] if "select" in type_ else [])

        response = await client.patch(
            f"{BASE}/{created['id']}", json={"options": options}, headers=team.admin.headers
        )

        assert_validation_error(response, "body", "options")
        row = await stored(db, created["id"])
        assert row is not None
        assert row.options == created["options"]

    @pytest.mark.parametrize("field", ["label", "options", "required"])
    async def test_null_is_422(self, client: AsyncClient, team: Team, db: AsyncSession, field: str) -> None:
        created = await define(client, team.admin)

        response = await client.patch(
            f"{BASE}/{created['id']}", json={field: None}, headers=team.admin.headers
        )

        assert_validation_error(response, "body", field)
        row = await stored(db, created["id"])
        assert row is not None
        assert (row.label, row.options, row.required) == ("Score", [], False)

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_below_admin_is_403(
        self, client: AsyncClient, team: Team, db: AsyncSession, role: str
    ) -> None:
        created = await define(client, team.admin)
        actor = team.manager if role == "manager" else team.member

        response = await client.patch(f"{BASE}/{created['id']}", json={"label": "x"}, headers=actor.headers)

        assert_problem(response, 403, "permission_denied")
        row = await stored(db, created["id"])
        assert row is not None
        assert row.label == "Score"

    async def test_another_organizations_field_is_404(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        foreign = await define(client, await factory.actor("admin"))

        response = await client.patch(
            f"{BASE}/{foreign['id']}", json={"label": "x"}, headers=team.admin.headers
        )

        assert_problem(response, 404, "not_found")
        row = await stored(db, foreign["id"])
        assert row is not None
        assert row.label == "Score"


class TestDeleteCustomField:
    async def test_admin_deletes_and_stored_values_stay(
        self, client: AsyncClient, team: Team, db: AsyncSession
    ) -> None:
        created = await define(client, team.admin)
        contact = Contact(organization_id=team.org.id, full_name="Иван", custom_fields={"score": 5})
        db.add(contact)
        await db.flush()

        response = await client.delete(f"{BASE}/{created['id']}", headers=team.admin.headers)

        assert response.status_code == 204, response.text
        assert await stored(db, created["id"]) is None
        kept = (await db.execute(select(Contact).where(Contact.id == contact.id))).scalar_one()
        assert kept.custom_fields == {"score": 5}
        again = await client.get(f"{BASE}/{created['id']}", headers=team.admin.headers)
        assert_problem(again, 404, "not_found")

    async def test_the_key_can_be_defined_again(self, client: AsyncClient, team: Team) -> None:
        created = await define(client, team.admin)
        await client.delete(f"{BASE}/{created['id']}", headers=team.admin.headers)

        again = await define(client, team.admin, type="text")

        assert again["type"] == "text"

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_below_admin_is_403(
        self, client: AsyncClient, team: Team, db: AsyncSession, role: str
    ) -> None:
        created = await define(client, team.admin)
        actor = team.manager if role == "manager" else team.member

        response = await client.delete(f"{BASE}/{created['id']}", headers=actor.headers)

        assert_problem(response, 403, "permission_denied")
        assert await stored(db, created["id"]) is not None

    async def test_another_organizations_field_is_404(
        self, client: AsyncClient, team: Team, factory: Factory, db: AsyncSession
    ) -> None:
        foreign = await define(client, await factory.actor("admin"))

        response = await client.delete(f"{BASE}/{foreign['id']}", headers=team.admin.headers)

        assert_problem(response, 404, "not_found")
        assert await stored(db, foreign["id"]) is not None

"""`/api/v1/dictionaries/{industries,districts,support-programs,providers}` (PROJECTS.md "Dictionaries")."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import District, Industry, SupportProgram, SupportProvider
from tests.factories import Factory, assert_problem
from tests.projects.support import create_project, make_support, org_of, team

BASE = "/api/v1/dictionaries"
KINDS = {
    "industries": (Industry, "industry"),
    "districts": (District, "district"),
    "support-programs": (SupportProgram, "support_program"),
    "providers": (SupportProvider, "provider"),
}


async def count(db: AsyncSession, model: Any, org_id: int) -> int:
    return int(
        await db.scalar(select(func.count()).select_from(model).where(model.organization_id == org_id)) or 0
    )


async def add(client: AsyncClient, actor: Any, kind: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"{BASE}/{kind}", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    entry: dict[str, Any] = response.json()
    return entry


@pytest.mark.parametrize("kind", list(KINDS))
class TestEveryDictionary:
    async def test_create_read_list_update_delete(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str
    ) -> None:
        actors = await team(factory, "admin", "member")
        admin, member = actors["admin"], actors["member"]

        created = await client.post(
            f"{BASE}/{kind}", json={"name": "Сельское хозяйство"}, headers=admin.headers
        )
        entry = created.json()
        one = await client.get(f"{BASE}/{kind}/{entry['id']}", headers=member.headers)
        listed = await client.get(f"{BASE}/{kind}", headers=member.headers)
        patched = await client.patch(
            f"{BASE}/{kind}/{entry['id']}", json={"name": "АПК"}, headers=admin.headers
        )
        deleted = await client.delete(f"{BASE}/{kind}/{entry['id']}", headers=admin.headers)
        gone = await client.get(f"{BASE}/{kind}/{entry['id']}", headers=member.headers)

        assert created.status_code == 201, created.text
        assert created.headers["location"] == f"{BASE}/{kind}/{entry['id']}"
        assert entry["name"] == "Сельское хозяйство"
        assert one.json() == entry
        assert listed.json() == {"items": [entry], "total": 1, "limit": 50, "offset": 0}
        assert patched.status_code == 200, patched.text
        assert patched.json()["name"] == "АПК"
        assert deleted.status_code == 204
        assert_problem(gone, 404, "not_found")
        assert await count(db, KINDS[kind][0], org_of(admin)) == 0

    async def test_names_are_unique_case_insensitively(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str
    ) -> None:
        admin = await factory.actor("admin")
        first = await add(client, admin, kind, name="Туризм")
        other = await add(client, admin, kind, name="Горнодобыча")

        again = await client.post(f"{BASE}/{kind}", json={"name": "ТУРИЗМ"}, headers=admin.headers)
        renamed = await client.patch(
            f"{BASE}/{kind}/{other['id']}", json={"name": "туризм"}, headers=admin.headers
        )
        same = await client.patch(
            f"{BASE}/{kind}/{first['id']}", json={"name": "Туризм"}, headers=admin.headers
        )

        assert_problem(again, 409, f"{KINDS[kind][1]}_name_taken")
        assert_problem(renamed, 409, f"{KINDS[kind][1]}_name_taken")
        assert same.status_code == 200
        assert await count(db, KINDS[kind][0], org_of(admin)) == 2

    async def test_the_same_name_in_another_organization_is_fine(
        self, client: AsyncClient, factory: Factory, kind: str
    ) -> None:
        mine, theirs = await factory.actor("admin"), await factory.actor("admin")
        await add(client, theirs, kind, name="Туризм")

        await add(client, mine, kind, name="Туризм")

    @pytest.mark.parametrize("reader", ["member", "manager"])
    async def test_a_member_or_manager_reads_but_may_not_write(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str, reader: str
    ) -> None:
        """Dictionaries are written by owners and admins only (§20.12)."""
        actors = await team(factory, "admin", reader)
        entry = await add(client, actors["admin"], kind, name="Туризм")
        h = actors[reader].headers

        listed = await client.get(f"{BASE}/{kind}", headers=h)
        created = await client.post(f"{BASE}/{kind}", json={"name": "X"}, headers=h)
        patched = await client.patch(f"{BASE}/{kind}/{entry['id']}", json={"name": "X"}, headers=h)
        deleted = await client.delete(f"{BASE}/{kind}/{entry['id']}", headers=h)

        assert listed.status_code == 200
        for response in (created, patched, deleted):
            assert_problem(response, 403, "permission_denied")
        assert await count(db, KINDS[kind][0], org_of(actors["admin"])) == 1

    @pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "X", "id": 5}, {"name": None}])
    async def test_invalid_body_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str, body: dict[str, Any]
    ) -> None:
        admin = await factory.actor("admin")

        response = await client.post(f"{BASE}/{kind}", json=body, headers=admin.headers)

        assert_problem(response, 422, "validation_error")
        assert await count(db, KINDS[kind][0], org_of(admin)) == 0

    async def test_idempotency_key_replays(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str
    ) -> None:
        admin = await factory.actor("admin")
        headers = {**admin.headers, "Idempotency-Key": "k1"}

        first = await client.post(f"{BASE}/{kind}", json={"name": "Туризм"}, headers=headers)
        second = await client.post(f"{BASE}/{kind}", json={"name": "Туризм"}, headers=headers)

        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json() == second.json()
        assert await count(db, KINDS[kind][0], org_of(admin)) == 1

    async def test_list_filters_and_sorts_by_name(
        self, client: AsyncClient, factory: Factory, kind: str
    ) -> None:
        admin = await factory.actor("admin")
        for name in ("Туризм", "Агро", "Туристические базы"):
            await add(client, admin, kind, name=name)

        q = await client.get(f"{BASE}/{kind}", params={"q": "ТУРИ"}, headers=admin.headers)
        by_name = await client.get(f"{BASE}/{kind}", params={"sort": "name"}, headers=admin.headers)
        bad = await client.get(f"{BASE}/{kind}", params={"sort": "level"}, headers=admin.headers)

        assert sorted(e["name"] for e in q.json()["items"]) == ["Туризм", "Туристические базы"]
        assert [e["name"] for e in by_name.json()["items"]] == ["Агро", "Туризм", "Туристические базы"]
        assert_problem(bad, 422, "validation_error")


class TestSupportPrograms:
    async def test_level_and_active(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")

        default = await add(client, admin, "support-programs", name="Региональный фонд")
        federal = await add(
            client, admin, "support-programs", name="Фонд развития промышленности", level="federal"
        )
        patched = await client.patch(
            f"{BASE}/support-programs/{default['id']}",
            json={"active": False, "level": "municipal"},
            headers=admin.headers,
        )
        bad = await client.post(
            f"{BASE}/support-programs", json={"name": "X", "level": "global"}, headers=admin.headers
        )
        null = await client.patch(
            f"{BASE}/support-programs/{federal['id']}", json={"level": None}, headers=admin.headers
        )

        assert (default["level"], default["active"]) == ("regional", True)
        assert (federal["level"], federal["active"]) == ("federal", True)
        assert (patched.json()["level"], patched.json()["active"]) == ("municipal", False)
        assert_problem(bad, 422, "validation_error")
        assert_problem(null, 422, "validation_error")

    async def test_filters_on_level_and_active(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        await add(client, admin, "support-programs", name="A", level="federal")
        await add(client, admin, "support-programs", name="B", level="federal", active=False)
        await add(client, admin, "support-programs", name="C")

        federal = await client.get(
            f"{BASE}/support-programs", params={"level": "federal"}, headers=admin.headers
        )
        active = await client.get(
            f"{BASE}/support-programs", params={"level": "federal", "active": "true"}, headers=admin.headers
        )

        assert sorted(e["name"] for e in federal.json()["items"]) == ["A", "B"]
        assert [e["name"] for e in active.json()["items"]] == ["A"]


class TestInUse:
    @pytest.mark.parametrize(("kind", "field"), [("industries", "industry_id"), ("districts", "district_id")])
    async def test_an_entry_used_by_a_project_cannot_be_deleted(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str, field: str
    ) -> None:
        owner = await factory.actor("owner")
        entry = await add(client, owner, kind, name="Туризм")
        project = await create_project(client, owner, **{field: entry["id"]})

        live = await client.delete(f"{BASE}/{kind}/{entry['id']}", headers=owner.headers)
        await client.delete(f"/api/v1/projects/{project['id']}", headers=owner.headers)
        of_deleted = await client.delete(f"{BASE}/{kind}/{entry['id']}", headers=owner.headers)

        assert_problem(live, 409, "dictionary_entry_in_use")
        assert_problem(of_deleted, 409, "dictionary_entry_in_use")  # a deleted project can come back
        assert await count(db, KINDS[kind][0], org_of(owner)) == 1

    @pytest.mark.parametrize(
        ("kind", "field"), [("support-programs", "program_id"), ("providers", "provider_id")]
    )
    async def test_an_entry_used_by_a_support_measure_cannot_be_deleted(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, kind: str, field: str
    ) -> None:
        owner = await factory.actor("owner")
        entry = await add(client, owner, kind, name="Фонд")
        project = await create_project(client, owner)
        measure = await make_support(db, org_of(owner), project["id"])
        setattr(measure, field, entry["id"])
        await db.commit()

        response = await client.delete(f"{BASE}/{kind}/{entry['id']}", headers=owner.headers)

        assert_problem(response, 409, "dictionary_entry_in_use")
        assert await count(db, KINDS[kind][0], org_of(owner)) == 1

"""The record kit (`crm.records.kit`): every record type declared with it answers its generated routes
the same way: create under `Idempotency-Key`, ETag and `If-Match`, another organization's record
not found, soft delete and restore, the timeline; and every list refuses a range that ends before it
starts, as does its export."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.companies.router import companies
from crm.contacts.router import contacts
from crm.deals.router import deals
from crm.models import Activity
from crm.projects.router import projects
from crm.records.kit import RecordKit
from tests.factories import Actor, Factory, assert_problem


@dataclass(frozen=True)
class Case:
    kit: RecordKit[Any]
    create: dict[str, Any]
    replace: dict[str, Any]
    update: dict[str, Any]

    @property
    def base(self) -> str:
        return self.kit.path

    def __str__(self) -> str:
        return self.kit.name


CASES = [
    Case(contacts, {"full_name": "Anna"}, {"full_name": "Anna P.", "job_title": "CEO"}, {"notes": "call"}),
    Case(companies, {"name": "Romashka"}, {"name": "Romashka LLC", "industry": "Food"}, {"notes": "vip"}),
    Case(deals, {"title": "Supply"}, {"title": "Supply 2026", "amount": "100.00"}, {"notes": "soon"}),
    Case(projects, {"name": "Plant"}, {"name": "Plant 2", "city": "Kazan"}, {"description": "steel"}),
]
BY_NAME = pytest.mark.parametrize("case", CASES, ids=str)


async def _activities(db: AsyncSession, entity: str, record_id: int) -> list[str]:
    rows = await db.scalars(
        select(Activity.action)
        .where(Activity.entity_type == entity, Activity.entity_id == record_id)
        .order_by(Activity.id)
    )
    return list(rows)


async def _create(client: AsyncClient, case: Case, actor: Actor) -> dict[str, Any]:
    response = await client.post(case.base, json=case.create, headers=actor.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestGeneratedRoutes:
    @BY_NAME
    def test_the_routes_keep_their_names_and_declared_errors(self, app: FastAPI, case: Case) -> None:
        kit, paths = case.kit, app.openapi()["paths"]
        one = f"{kit.path}/{{{kit.entity}_id}}"
        operations = {
            (kit.path, "get"): (f"list_{kit.name}", {"400", "401", "403", "422"}),
            (kit.path, "post"): (f"create_{kit.entity}", {"400", "401", "403", "409", "422"}),
            (one, "get"): (f"get_{kit.entity}", {"400", "401", "403", "404", "422"}),
            (one, "put"): (f"replace_{kit.entity}", {"400", "401", "403", "404", "409", "412", "422"}),
            (one, "patch"): (f"update_{kit.entity}", {"400", "401", "403", "404", "409", "412", "422"}),
            (f"{one}/restore", "post"): (f"restore_{kit.entity}", {"400", "401", "403", "404", "409", "422"}),
        }
        for (path, method), (name, codes) in operations.items():
            operation = paths[path][method]
            assert operation["operationId"].startswith(f"{name}_api_v1_"), operation["operationId"]
            assert operation["summary"] == name.replace("_", " ").title()
            assert operation["description"]
            assert codes <= set(operation["responses"]), (path, method)
        delete = paths[one]["delete"]
        assert delete["operationId"] == f"delete_{kit.entity}_api_v1_{kit.name}__{kit.entity}_id__delete"
        assert ("409" in delete["responses"]) is kit.delete_conflicts
        assert [p["name"] for p in paths[one]["put"]["parameters"]] == [f"{kit.entity}_id", "If-Match"]
        assert [p["name"] for p in paths[kit.path]["post"]["parameters"]] == ["Idempotency-Key"]
        assert paths[one]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{kit.read.__name__}"
        }

    def test_every_record_type_is_declared_for_the_fast_read(self) -> None:
        assert all(case.kit.fast_read for case in CASES)


class TestRecordLifecycle:
    @BY_NAME
    async def test_create_is_idempotent_and_sets_location_and_etag(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, case: Case
    ) -> None:
        owner = await factory.actor("owner")
        headers = {**owner.headers, "Idempotency-Key": f"kit-{case.kit.name}"}

        first = await client.post(case.base, json=case.create, headers=headers)
        repeat = await client.post(case.base, json=case.create, headers=headers)

        assert first.status_code == repeat.status_code == 201, first.text
        record_id = first.json()["id"]
        assert first.headers["location"] == f"{case.base}/{record_id}"
        assert first.headers["etag"] == repeat.headers["etag"] == '"1"'
        assert repeat.json() == first.json()
        assert repeat.headers["idempotent-replayed"] == "true"
        listed = await client.get(case.base, headers=owner.headers)
        assert [item["id"] for item in listed.json()["items"]] == [record_id]
        assert await _activities(db, case.kit.entity, record_id) == ["created"]

    @BY_NAME
    async def test_read_write_delete_restore_and_timeline(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, case: Case
    ) -> None:
        owner = await factory.actor("owner")
        created = await _create(client, case, owner)
        url = f"{case.base}/{created['id']}"

        got = await client.get(url, headers=owner.headers)
        assert got.status_code == 200, got.text
        assert got.headers["etag"] == '"1"'
        assert got.json() == created

        stale = await client.patch(url, json=case.update, headers={**owner.headers, "If-Match": '"7"'})
        assert_problem(stale, 412, "version_mismatch")
        patched = await client.patch(url, json=case.update, headers={**owner.headers, "If-Match": '"1"'})
        assert patched.status_code == 200, patched.text
        assert patched.headers["etag"] == '"2"'
        assert all(patched.json()[k] == v for k, v in case.update.items())

        stale = await client.put(url, json=case.replace, headers={**owner.headers, "If-Match": '"1"'})
        assert_problem(stale, 412, "version_mismatch")
        replaced = await client.put(url, json=case.replace, headers={**owner.headers, "If-Match": '"2"'})
        assert replaced.status_code == 200, replaced.text
        assert replaced.headers["etag"] == '"3"'
        assert replaced.json()["version"] == 3
        assert all(str(replaced.json()[k]) == v for k, v in case.replace.items())

        deleted = await client.delete(url, headers=owner.headers)
        assert deleted.status_code == 204, deleted.text
        assert (await client.get(url, headers=owner.headers)).status_code == 404
        listed = await client.get(case.base, headers=owner.headers)
        assert listed.json()["total"] == 0

        restored = await client.post(f"{url}/restore", headers=owner.headers)
        assert restored.status_code == 200, restored.text
        assert restored.headers["etag"] == '"5"'
        again = await client.get(url, headers=owner.headers)
        assert again.status_code == 200
        assert again.json() == restored.json()
        assert (await client.post(f"{url}/restore", headers=owner.headers)).status_code == 404

        timeline = await client.get(f"{url}/activities", headers=owner.headers)
        assert timeline.status_code == 200, timeline.text
        actions = await _activities(db, case.kit.entity, created["id"])
        assert actions == ["created", "updated", "updated", "deleted", "restored"]
        assert sorted(a["action"] for a in timeline.json()["items"]) == sorted(actions)

    @BY_NAME
    async def test_another_organizations_record_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, case: Case
    ) -> None:
        owner = await factory.actor("owner")
        stranger = await factory.actor("owner")
        created = await _create(client, case, owner)
        url = f"{case.base}/{created['id']}"
        headers = {**stranger.headers, "If-Match": '"1"'}

        answers = [
            await client.get(url, headers=headers),
            await client.put(url, json=case.replace, headers=headers),
            await client.patch(url, json=case.update, headers=headers),
            await client.delete(url, headers=headers),
            await client.post(f"{url}/restore", headers=headers),
            await client.get(f"{url}/activities", headers=headers),
            await client.post(f"{url}/comments", json={"text": "hi"}, headers=headers),
        ]

        assert [a.status_code for a in answers] == [404] * len(answers)
        assert (await client.get(case.base, headers=stranger.headers)).json()["total"] == 0
        still = await client.get(url, headers=owner.headers)
        assert still.status_code == 200
        assert still.json() == created
        assert await _activities(db, case.kit.entity, created["id"]) == ["created"]

    @BY_NAME
    async def test_each_route_asks_for_its_permission(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, case: Case
    ) -> None:
        org = await factory.org()
        owner = await factory.actor("owner", org=org)
        member = await factory.actor("member", org=org)
        manager = await factory.actor("manager", org=org)
        created = await _create(client, case, owner)
        url = f"{case.base}/{created['id']}"

        assert (await client.get(case.base, headers=member.headers)).status_code == 200
        assert (await client.get(url, headers=member.headers)).status_code == 200
        refused = [
            await client.post(case.base, json=case.create, headers=member.headers),
            await client.put(url, json=case.replace, headers=member.headers),
            await client.patch(url, json=case.update, headers=member.headers),
            await client.delete(url, headers=member.headers),
            await client.post(f"{url}/restore", headers=manager.headers),
        ]

        assert [r.status_code for r in refused] == [403] * len(refused)
        manager_delete = await client.delete(url, headers=manager.headers)
        # Projects are deleted by an owner or admin only; the other records by a manager too.
        assert manager_delete.status_code == (403 if case.kit is projects else 204)
        assert await _activities(db, case.kit.entity, created["id"]) == (
            ["created"] if case.kit is projects else ["created", "deleted"]
        )


INVERTED = {"created_from": "2026-02-01T00:00:00Z", "created_to": "2026-01-01T00:00:00Z"}


class TestInvertedRange:
    @pytest.mark.parametrize(
        ("path", "query", "first"),
        [
            *((case.base, INVERTED, "created_from") for case in CASES),
            *((f"/api/v1/exports/{case.kit.name}", INVERTED, "created_from") for case in CASES),
            (
                "/api/v1/tasks",
                {"due_after": "2026-02-01T00:00:00Z", "due_before": "2026-01-01T00:00:00Z"},
                "due_after",
            ),
            ("/api/v1/sales/documents", {"date_from": "2026-02-01", "date_to": "2026-01-01"}, "date_from"),
            (
                "/api/v1/purchases/documents",
                {"date_from": "2026-02-01", "date_to": "2026-01-01"},
                "date_from",
            ),
            ("/api/v1/activities", {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ],
    )
    async def test_a_range_ending_before_it_starts_is_refused(
        self, client: AsyncClient, factory: Factory, path: str, query: dict[str, str], first: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.get(path, params=query, headers=owner.headers)

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["query", first]
        assert "later than" in body["detail"]

    @BY_NAME
    async def test_a_range_in_order_is_served(
        self, client: AsyncClient, factory: Factory, case: Case
    ) -> None:
        owner = await factory.actor("owner")
        created = await _create(client, case, owner)
        query = {"created_from": "2000-01-01T00:00:00Z", "created_to": "2100-01-01T00:00:00Z"}

        response = await client.get(case.base, params=query, headers=owner.headers)

        assert response.status_code == 200, response.text
        assert [item["id"] for item in response.json()["items"]] == [created["id"]]
        same_day = {"created_from": query["created_from"], "created_to": query["created_from"]}
        empty = await client.get(case.base, params=same_day, headers=owner.headers)
        assert empty.status_code == 200
        assert empty.json()["total"] == 0


async def test_the_kit_counts_no_activity_for_a_refused_write(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    owner = await factory.actor("owner")
    created = await _create(client, CASES[0], owner)

    response = await client.patch(
        f"{contacts.path}/{created['id']}", json={"full_name": None}, headers=owner.headers
    )

    assert response.status_code == 422, response.text
    assert await _activities(db, "contact", created["id"]) == ["created"]
    stored = await client.get(f"{contacts.path}/{created['id']}", headers=owner.headers)
    assert stored.json()["full_name"] == "Anna"

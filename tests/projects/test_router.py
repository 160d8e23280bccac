"""`/api/v1/projects`: the investment project records (PROJECTS.md "Records", SPEC §3, §18)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import CustomField, Project
from tests.factories import Factory, assert_problem
from tests.projects.support import (
    PROJECTS,
    activities,
    complete_project,
    create_project,
    history_rows,
    if_match,
    make_company,
    make_district,
    make_industry,
    org_of,
    project_count,
    set_status,
    stored_project,
    team,
)


class TestCreate:
    async def test_starts_in_draft_with_its_first_history_row_and_an_activity(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        org_id = org_of(manager)
        company = await make_company(db, org_id, "ИП Иванов", kind="sole_proprietor")
        industry, district = await make_industry(db, org_id), await make_district(db, org_id)
        body = {
            "name": "Эко-отель на Ладоге",
            "description": "Строительство гостиницы",
            "client_id": company.id,
            "industry_id": industry.id,
            "district_id": district.id,
            "city": "Приозерск",
            "address": "ул. Ленина, 1",
            "own_funds_amount": 15000000,
            "requested_support_amount": "5000000.5",
            "jobs_count": 40,
            "tax_revenue_amount": "1200000",
            "external_code": "INV-001",
            "curator_id": manager.user.id,
        }

        response = await client.post(PROJECTS, json=body, headers=manager.headers)

        assert response.status_code == 201, response.text
        project = response.json()
        assert response.headers["location"] == f"{PROJECTS}/{project['id']}"
        assert response.headers["etag"] == '"1"'
        assert project == {
            **body,
            "id": project["id"],
            "own_funds_amount": "15000000.00",
            "requested_support_amount": "5000000.50",
            "tax_revenue_amount": "1200000.00",
            "status": "draft",
            "frozen_from": None,
            "custom_fields": {},
            "version": 1,
            "created_at": project["created_at"],
            "updated_at": project["updated_at"],
        }
        stored = await stored_project(db, project["id"])
        assert (stored.organization_id, stored.status, stored.deleted_at) == (org_id, "draft", None)
        assert await history_rows(db, project["id"]) == [(None, "draft", None)]
        (activity,) = await activities(db, project["id"])
        assert (activity.action, activity.actor_id) == ("created", manager.user.id)
        assert activity.changes["name"] == [None, "Эко-отель на Ладоге"]
        assert activity.changes["status"] == [None, "draft"]

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "X", "status": "submitted"}, "status"),
            ({"name": "X", "version": 5}, "version"),
            ({"name": "X", "frozen_from": "draft"}, "frozen_from"),
            ({"name": "X", "own_funds_amount": -1}, "own_funds_amount"),
            ({"name": "X", "requested_support_amount": "1.234"}, "requested_support_amount"),
            ({"name": "X", "jobs_count": -3}, "jobs_count"),
            ({"name": "X", "jobs_count": False}, "jobs_count"),
            ({"name": "X", "client_id": True}, "client_id"),
            ({"name": "X", "industry_id": "5"}, "industry_id"),
            ({"name": "X", "client_id": 0}, "client_id"),
            ({"name": "X", "organization_id": 1}, "organization_id"),
        ],
    )
    async def test_invalid_input_is_422_and_nothing_is_stored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any], loc: str
    ) -> None:
        manager = await factory.actor("manager")

        response = await client.post(PROJECTS, json=body, headers=manager.headers)

        problem = assert_problem(response, 422, "validation_error")
        assert any(e["loc"] == ["body", loc] for e in problem["errors"]), problem
        assert await project_count(db, org_of(manager)) == 0

    @pytest.mark.parametrize("field", ["client_id", "industry_id", "district_id", "curator_id"])
    async def test_references_of_another_organization_are_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, field: str
    ) -> None:
        mine, theirs = await factory.actor("manager"), await factory.actor("owner")
        other_org = org_of(theirs)
        foreign = {
            "client_id": lambda: make_company(db, other_org),
            "industry_id": lambda: make_industry(db, other_org),
            "district_id": lambda: make_district(db, other_org),
        }
        ref = theirs.user.id if field == "curator_id" else (await foreign[field]()).id

        response = await client.post(PROJECTS, json={"name": "X", field: ref}, headers=mine.headers)

        problem = assert_problem(response, 422, "invalid_reference")
        assert problem["errors"][0]["loc"] == ["body", field]
        assert await project_count(db, org_of(mine)) == 0

    async def test_a_deleted_client_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        company = await make_company(db, org_of(manager), deleted_at=datetime.now(UTC))

        response = await client.post(
            PROJECTS, json={"name": "X", "client_id": company.id}, headers=manager.headers
        )

        assert_problem(response, 422, "invalid_reference")

    async def test_external_code_is_unique_in_the_organization(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager, stranger = await factory.actor("manager"), await factory.actor("manager")
        await create_project(client, manager, external_code="INV-7")

        again = await client.post(
            PROJECTS, json={"name": "Y", "external_code": "INV-7"}, headers=manager.headers
        )
        elsewhere = await client.post(
            PROJECTS, json={"name": "Y", "external_code": "INV-7"}, headers=stranger.headers
        )

        assert_problem(again, 409, "project_external_code_taken")
        assert elsewhere.status_code == 201
        assert await project_count(db, org_of(manager)) == 1

    async def test_a_member_may_not_create(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        member = await factory.actor("member")

        response = await client.post(PROJECTS, json={"name": "X"}, headers=member.headers)

        assert_problem(response, 403, "permission_denied")
        assert await project_count(db, org_of(member)) == 0

    async def test_idempotency_key_replays_the_first_response(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        headers = {**manager.headers, "Idempotency-Key": "abc-1"}

        first = await client.post(PROJECTS, json={"name": "Ферма"}, headers=headers)
        second = await client.post(PROJECTS, json={"name": "Ферма"}, headers=headers)
        other_body = await client.post(PROJECTS, json={"name": "Другая"}, headers=headers)

        assert (first.status_code, second.status_code) == (201, 201)
        assert second.json() == first.json()
        assert second.headers["location"] == first.headers["location"]
        assert_problem(other_body, 422, "idempotency_key_reused")
        assert await project_count(db, org_of(manager)) == 1
        assert len(await history_rows(db, first.json()["id"])) == 1

    async def test_custom_fields_are_validated(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        db.add(
            CustomField(
                organization_id=org_of(manager), entity="project", key="priority", label="P", type="number"
            )
        )
        await db.commit()

        ok = await client.post(
            PROJECTS, json={"name": "X", "custom_fields": {"priority": 2}}, headers=manager.headers
        )
        wrong = await client.post(
            PROJECTS, json={"name": "X", "custom_fields": {"priority": "high"}}, headers=manager.headers
        )
        unknown = await client.post(
            PROJECTS, json={"name": "X", "custom_fields": {"nope": 1}}, headers=manager.headers
        )

        assert ok.status_code == 201, ok.text
        assert ok.json()["custom_fields"] == {"priority": 2}
        assert wrong.status_code == 422
        assert unknown.status_code == 422


class TestRead:
    async def test_get_has_an_etag(self, client: AsyncClient, factory: Factory) -> None:
        member, manager = (await team(factory, "member", "manager")).values()
        project = await create_project(client, manager)

        response = await client.get(f"{PROJECTS}/{project['id']}", headers=member.headers)

        assert response.status_code == 200
        assert response.headers["etag"] == '"1"'
        assert response.json() == project

    async def test_missing_is_404(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")

        assert_problem(await client.get(f"{PROJECTS}/999999", headers=manager.headers), 404, "not_found")

    async def test_a_path_id_that_is_not_a_number_is_422(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")

        response = await client.get(f"{PROJECTS}/abc", headers=manager.headers)

        assert_problem(response, 422, "validation_error")


class TestList:
    async def _three(self, client: AsyncClient, db: AsyncSession, manager: Any) -> dict[str, Any]:
        org_id = org_of(manager)
        tourism, farming = (
            await make_industry(db, org_id, "Туризм"),
            await make_industry(db, org_id, "Сельское хозяйство"),
        )
        north = await make_district(db, org_id, "Северный")
        client_a = await make_company(db, org_id, "ООО Альфа")
        hotel = await create_project(
            client,
            manager,
            name="Гостиница Берег",
            industry_id=tourism.id,
            district_id=north.id,
            requested_support_amount="1000000",
            client_id=client_a.id,
            curator_id=manager.user.id,
            city="Выборг",
        )
        # Without a curator (a project created without one would get its creator, §20.12).
        farm = await create_project(
            client,
            manager,
            name="Молочная ферма",
            industry_id=farming.id,
            requested_support_amount="5000000",
            curator_id=None,
        )
        quarry = await create_project(client, manager, name="Карьер", external_code="Q-77", curator_id=None)
        await set_status(db, farm["id"], "submitted")
        return {
            "hotel": hotel,
            "farm": farm,
            "quarry": quarry,
            "tourism": tourism,
            "north": north,
            "client": client_a,
        }

    async def _names(self, client: AsyncClient, manager: Any, **params: Any) -> list[str]:
        response = await client.get(PROJECTS, params=params, headers=manager.headers)
        assert response.status_code == 200, response.text
        return [p["name"] for p in response.json()["items"]]

    async def test_newest_first_in_the_envelope(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        await self._three(client, db, manager)

        response = await client.get(PROJECTS, params={"limit": 2}, headers=manager.headers)

        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 2, 0)
        assert [p["name"] for p in body["items"]] == ["Карьер", "Молочная ферма"]

    async def test_filters(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        manager = await factory.actor("manager")
        made = await self._three(client, db, manager)

        assert await self._names(client, manager, status="submitted") == ["Молочная ферма"]
        assert await self._names(client, manager, industry_id=made["tourism"].id) == ["Гостиница Берег"]
        assert await self._names(client, manager, district_id=made["north"].id) == ["Гостиница Берег"]
        assert await self._names(client, manager, client_id=made["client"].id) == ["Гостиница Берег"]
        assert await self._names(client, manager, curator_id=manager.user.id) == ["Гостиница Берег"]
        assert await self._names(client, manager, q="ФЕРМА") == ["Молочная ферма"]
        assert await self._names(client, manager, q="q-77") == ["Карьер"]
        assert await self._names(client, manager, q="выборг") == ["Гостиница Берег"]
        assert await self._names(client, manager, amount_min="2000000") == ["Молочная ферма"]
        assert await self._names(client, manager, amount_max="1000000") == ["Гостиница Берег"]
        assert await self._names(client, manager, amount_min=1, amount_max=10_000_000) == [
            "Молочная ферма",
            "Гостиница Берег",
        ]

    async def test_sorts(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        manager = await factory.actor("manager")
        await self._three(client, db, manager)

        assert await self._names(client, manager, sort="name") == [
            "Гостиница Берег",
            "Карьер",
            "Молочная ферма",
        ]
        assert await self._names(client, manager, sort="-requested_support_amount") == [
            "Молочная ферма",
            "Гостиница Берег",
            "Карьер",
        ]

    @pytest.mark.parametrize(
        "params", [{"sort": "status"}, {"status": "closed"}, {"amount_min": "lots"}, {"industry_id": 0}]
    )
    async def test_unknown_sort_or_filter_value_is_422(
        self, client: AsyncClient, factory: Factory, params: dict[str, Any]
    ) -> None:
        manager = await factory.actor("manager")

        response = await client.get(PROJECTS, params=params, headers=manager.headers)

        assert_problem(response, 422, "validation_error")

    async def test_custom_field_filter(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        manager = await factory.actor("manager")
        db.add(
            CustomField(
                organization_id=org_of(manager),
                entity="project",
                key="track",
                label="Track",
                type="select",
                options=["fast", "slow"],
            )
        )
        await db.commit()
        await create_project(client, manager, name="A", custom_fields={"track": "fast"})
        await create_project(client, manager, name="B", custom_fields={"track": "slow"})

        assert await self._names(client, manager, **{"cf.track": "fast"}) == ["A"]
        bad = await client.get(PROJECTS, params={"cf.nope": "x"}, headers=manager.headers)
        assert bad.status_code == 422

    async def test_deleted_and_foreign_projects_are_not_listed(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner, stranger = await factory.actor("owner"), await factory.actor("owner")
        gone = await create_project(client, owner, name="Gone")
        await create_project(client, owner, name="Here")
        await create_project(client, stranger, name="Theirs")
        await client.delete(f"{PROJECTS}/{gone['id']}", headers=owner.headers)

        assert await self._names(client, owner) == ["Here"]


class TestUpdate:
    async def test_patch_changes_the_fields_sent_and_logs_them(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager, city="Тосно", jobs_count=5)

        response = await client.patch(
            f"{PROJECTS}/{project['id']}", json={"jobs_count": 12, "city": None}, headers=if_match(manager, 1)
        )

        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"2"'
        body = response.json()
        assert (body["jobs_count"], body["city"], body["name"], body["version"]) == (
            12,
            None,
            project["name"],
            2,
        )
        last = (await activities(db, project["id"]))[-1]
        assert last.action == "updated"
        assert last.changes == {"jobs_count": [5, 12], "city": ["Тосно", None]}

    async def test_put_replaces_every_editable_field(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager, city="Тосно", external_code="A-1")

        response = await client.put(
            f"{PROJECTS}/{project['id']}", json={"name": "Новое"}, headers=manager.headers
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["name"], body["city"], body["external_code"], body["status"]) == (
            "Новое",
            None,
            None,
            "draft",
        )

    async def test_stale_if_match_is_412_and_nothing_changes(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager)
        await client.patch(f"{PROJECTS}/{project['id']}", json={"city": "Луга"}, headers=manager.headers)

        patched = await client.patch(
            f"{PROJECTS}/{project['id']}", json={"city": "Кириши"}, headers=if_match(manager, 1)
        )
        put = await client.put(
            f"{PROJECTS}/{project['id']}", json={"name": "Z"}, headers=if_match(manager, 1)
        )

        assert_problem(patched, 412, "version_mismatch")
        assert_problem(put, 412, "version_mismatch")
        stored = await stored_project(db, project["id"])
        assert (stored.city, stored.version) == ("Луга", 2)

    async def test_name_may_not_be_null(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager)

        response = await client.patch(
            f"{PROJECTS}/{project['id']}", json={"name": None}, headers=manager.headers
        )

        assert_problem(response, 422, "validation_error")

    async def test_a_foreign_industry_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager, stranger = await factory.actor("manager"), await factory.actor("manager")
        project = await create_project(client, manager)
        foreign = await make_industry(db, org_of(stranger))

        response = await client.patch(
            f"{PROJECTS}/{project['id']}", json={"industry_id": foreign.id}, headers=manager.headers
        )

        assert_problem(response, 422, "invalid_reference")
        assert (await stored_project(db, project["id"])).industry_id is None

    async def test_nothing_changed_keeps_the_version(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager, city="Луга")

        response = await client.patch(
            f"{PROJECTS}/{project['id']}", json={"city": "Луга"}, headers=manager.headers
        )

        assert response.json()["version"] == 1

    async def test_a_member_may_not_edit(self, client: AsyncClient, factory: Factory) -> None:
        member, manager = (await team(factory, "member", "manager")).values()
        project = await create_project(client, manager)

        response = await client.patch(
            f"{PROJECTS}/{project['id']}", json={"city": "X"}, headers=member.headers
        )

        assert_problem(response, 403, "permission_denied")


class TestDeleteAndRestore:
    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_staff_may_not_delete(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        actors = await team(factory, "owner", role)
        project = await create_project(client, actors["owner"])

        response = await client.delete(f"{PROJECTS}/{project['id']}", headers=actors[role].headers)

        assert_problem(response, 403, "permission_denied")
        assert (await stored_project(db, project["id"])).deleted_at is None

    @pytest.mark.parametrize("role", ["owner", "admin"])
    async def test_owner_and_admin_soft_delete_and_restore(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        actor = await factory.actor(role)
        project = await create_project(client, actor)

        deleted = await client.delete(f"{PROJECTS}/{project['id']}", headers=actor.headers)
        hidden = await client.get(f"{PROJECTS}/{project['id']}", headers=actor.headers)
        again = await client.delete(f"{PROJECTS}/{project['id']}", headers=actor.headers)
        stored = await stored_project(db, project["id"])
        restored = await client.post(f"{PROJECTS}/{project['id']}/restore", headers=actor.headers)

        assert deleted.status_code == 204
        assert_problem(hidden, 404, "not_found")
        assert_problem(again, 404, "not_found")
        assert stored.deleted_at is not None
        assert restored.status_code == 200, restored.text
        assert restored.json()["version"] == 3
        assert restored.headers["etag"] == '"3"'
        assert (await stored_project(db, project["id"])).deleted_at is None
        actions = [a.action for a in await activities(db, project["id"])]
        assert actions == ["created", "deleted", "restored"]

    async def test_a_manager_may_not_restore(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "owner", "manager")
        project = await create_project(client, actors["owner"])
        await client.delete(f"{PROJECTS}/{project['id']}", headers=actors["owner"].headers)

        response = await client.post(f"{PROJECTS}/{project['id']}/restore", headers=actors["manager"].headers)

        assert_problem(response, 403, "permission_denied")
        assert (await stored_project(db, project["id"])).deleted_at is not None

    async def test_restoring_a_live_project_is_404(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        project = await create_project(client, owner)

        response = await client.post(f"{PROJECTS}/{project['id']}/restore", headers=owner.headers)

        assert_problem(response, 404, "not_found")


class TestCompanyClients:
    """A company that is a live project's client is deleted by owner/admin only (SPEC §18)."""

    async def test_a_manager_may_not_delete_a_project_client(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "manager", "admin")
        project = await complete_project(client, db, actors["manager"])

        by_manager = await client.delete(
            f"/api/v1/companies/{project['client_id']}", headers=actors["manager"].headers
        )
        by_admin = await client.delete(
            f"/api/v1/companies/{project['client_id']}", headers=actors["admin"].headers
        )

        assert_problem(by_manager, 403, "permission_denied")
        assert by_admin.status_code == 204

    async def test_the_client_of_a_deleted_project_is_an_ordinary_company(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "manager", "admin")
        project = await complete_project(client, db, actors["manager"])
        await client.delete(f"{PROJECTS}/{project['id']}", headers=actors["admin"].headers)

        response = await client.delete(
            f"/api/v1/companies/{project['client_id']}", headers=actors["manager"].headers
        )

        assert response.status_code == 204


class TestTimeline:
    async def test_comments_and_activities_of_a_project(self, client: AsyncClient, factory: Factory) -> None:
        member, manager = (await team(factory, "member", "manager")).values()
        project = await create_project(client, manager)

        comment = await client.post(
            f"{PROJECTS}/{project['id']}/comments", json={"text": "Звонил инвестор"}, headers=member.headers
        )
        timeline = await client.get(f"{PROJECTS}/{project['id']}/activities", headers=member.headers)

        assert comment.status_code == 201, comment.text
        assert [a["action"] for a in timeline.json()["items"]] == ["comment", "created"]


async def test_the_stored_row_matches_the_response(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    manager = await factory.actor("manager")
    project = await create_project(client, manager, own_funds_amount="10.10")

    row = (await db.execute(select(Project).where(Project.id == project["id"]))).scalar_one()

    assert str(row.own_funds_amount) == project["own_funds_amount"] == "10.10"

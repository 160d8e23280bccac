"""Project teams: `GET/POST /projects/{id}/users`, `DELETE /projects/{id}/users/{user_id}`,
`GET /users/{user_id}/projects` (PROJECTS.md "Endpoints")."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import ProjectMember
from tests.factories import Actor, Factory, assert_problem
from tests.projects.support import PROJECTS, activities, create_project, org_of, team


async def assign(client: AsyncClient, actor: Actor, project_id: int, user_id: int, role: str) -> Any:
    return await client.post(
        f"{PROJECTS}/{project_id}/users", json={"user_id": user_id, "role": role}, headers=actor.headers
    )


async def stored_team(db: AsyncSession, project_id: int) -> list[tuple[int, str]]:
    db.expunge_all()
    rows = await db.execute(
        select(ProjectMember.user_id, ProjectMember.role)
        .where(ProjectMember.project_id == project_id)
        .order_by(ProjectMember.id)
    )
    return [tuple(r) for r in rows.all()]  # type: ignore[misc]


class TestAssign:
    async def test_a_member_is_put_on_the_team(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager, member = (await team(factory, "manager", "member")).values()
        project = await create_project(client, manager)

        response = await assign(client, manager, project["id"], member.user.id, "editor")

        assert response.status_code == 201, response.text
        body = response.json()
        assert body == {
            "project_id": project["id"],
            "user_id": member.user.id,
            "role": "editor",
            "full_name": member.user.full_name,
            "email": member.user.email,
            "created_at": body["created_at"],
        }
        assert await stored_team(db, project["id"]) == [(member.user.id, "editor")]
        last = (await activities(db, project["id"]))[-1]
        assert (last.action, last.changes) == (
            "updated",
            {"team": [None, {"user_id": member.user.id, "role": "editor"}]},
        )

    async def test_assigning_again_changes_the_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager, member = (await team(factory, "manager", "member")).values()
        project = await create_project(client, manager)
        await assign(client, manager, project["id"], member.user.id, "viewer")

        response = await assign(client, manager, project["id"], member.user.id, "curator")

        assert response.status_code == 200, response.text
        assert response.json()["role"] == "curator"
        assert await stored_team(db, project["id"]) == [(member.user.id, "curator")]

    async def test_a_user_who_is_not_a_member_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager, outsider = await factory.actor("manager"), await factory.actor("manager")
        project = await create_project(client, manager)

        response = await assign(client, manager, project["id"], outsider.user.id, "editor")
        unknown = await assign(client, manager, project["id"], 99_999_999, "editor")

        assert assert_problem(response, 422, "invalid_reference")["errors"][0]["loc"] == ["body", "user_id"]
        assert_problem(unknown, 422, "invalid_reference")
        assert await stored_team(db, project["id"]) == []

    @pytest.mark.parametrize("body", [{"user_id": 1, "role": "owner"}, {"user_id": 1}, {"role": "viewer"}])
    async def test_invalid_body_is_422(
        self, client: AsyncClient, factory: Factory, body: dict[str, Any]
    ) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager)

        response = await client.post(f"{PROJECTS}/{project['id']}/users", json=body, headers=manager.headers)

        assert_problem(response, 422, "validation_error")

    async def test_a_member_may_not_assign(self, client: AsyncClient, factory: Factory) -> None:
        manager, member = (await team(factory, "manager", "member")).values()
        project = await create_project(client, manager)

        response = await assign(client, member, project["id"], member.user.id, "curator")

        assert_problem(response, 403, "permission_denied")


class TestListAndUnassign:
    async def test_the_team_in_the_order_of_assignment(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "manager", "member", "admin")
        project = await create_project(client, actors["manager"])
        await assign(client, actors["manager"], project["id"], actors["member"].user.id, "editor")
        await assign(client, actors["manager"], project["id"], actors["admin"].user.id, "curator")

        response = await client.get(f"{PROJECTS}/{project['id']}/users", headers=actors["member"].headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert [(m["user_id"], m["role"]) for m in body["items"]] == [
            (actors["member"].user.id, "editor"),
            (actors["admin"].user.id, "curator"),
        ]
        assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)

    async def test_unassign(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        manager, member = (await team(factory, "manager", "member")).values()
        project = await create_project(client, manager)
        await assign(client, manager, project["id"], member.user.id, "editor")

        response = await client.delete(
            f"{PROJECTS}/{project['id']}/users/{member.user.id}", headers=manager.headers
        )
        again = await client.delete(
            f"{PROJECTS}/{project['id']}/users/{member.user.id}", headers=manager.headers
        )

        assert response.status_code == 204
        assert_problem(again, 404, "not_found")
        assert await stored_team(db, project["id"]) == []
        last = (await activities(db, project["id"]))[-1]
        assert last.changes == {"team": [{"user_id": member.user.id, "role": "editor"}, None]}

    async def test_an_unassigned_editor_can_no_longer_move_the_status(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        manager, member = (await team(factory, "manager", "member")).values()
        project = await create_project(client, manager)
        await assign(client, manager, project["id"], member.user.id, "editor")
        await client.delete(f"{PROJECTS}/{project['id']}/users/{member.user.id}", headers=manager.headers)

        response = await client.post(
            f"{PROJECTS}/{project['id']}/status", json={"status": "withdrawn"}, headers=member.headers
        )

        assert_problem(response, 403, "permission_denied")


class TestUserProjects:
    async def test_the_projects_a_user_is_on_with_the_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager, member = (await team(factory, "manager", "member")).values()
        first = await create_project(client, manager, name="Первый")
        second = await create_project(client, manager, name="Второй")
        gone = await create_project(client, manager, name="Удалённый")
        await create_project(client, manager, name="Чужой")
        await assign(client, manager, first["id"], member.user.id, "viewer")
        await assign(client, manager, second["id"], member.user.id, "editor")
        await assign(client, manager, gone["id"], member.user.id, "editor")
        owner = await factory.actor("owner", org=await _org(db, org_of(manager)))
        await client.delete(f"{PROJECTS}/{gone['id']}", headers=owner.headers)

        response = await client.get(f"/api/v1/users/{member.user.id}/projects", headers=member.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert [(p["name"], p["team_role"]) for p in body["items"]] == [
            ("Второй", "editor"),
            ("Первый", "viewer"),
        ]
        assert body["total"] == 2
        assert body["items"][0]["status"] == "draft"

    async def test_a_user_of_another_organization_is_404(self, client: AsyncClient, factory: Factory) -> None:
        manager, stranger = await factory.actor("manager"), await factory.actor("manager")

        response = await client.get(f"/api/v1/users/{stranger.user.id}/projects", headers=manager.headers)

        assert_problem(response, 404, "not_found")

    async def test_a_member_with_no_projects_gets_an_empty_page(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        manager = await factory.actor("manager")

        response = await client.get(f"/api/v1/users/{manager.user.id}/projects", headers=manager.headers)

        assert response.json() == {"items": [], "total": 0, "limit": 50, "offset": 0}


async def _org(db: AsyncSession, org_id: int) -> Any:
    from crm.models import Organization

    return await db.get(Organization, org_id)

"""Object-level authorization: every route of the projects and dictionaries modules that takes an id
answers 404 to an owner of another organization, and changes nothing (SPEC §3, §17)."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.dictionaries.router import router as dictionaries_router
from crm.models import Activity, District, Industry, Project, ProjectMember, SupportProgram, SupportProvider
from crm.projects.router import router as projects_router
from crm.projects.router import user_projects_router
from tests.factories import Factory
from tests.projects.support import DICTIONARIES, PROJECTS, create_project, org_of

#: A body each write accepts, so that validation passes and the id lookup decides.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/projects/{project_id}"): {"name": "Intruder"},
    ("PATCH", "/projects/{project_id}"): {"name": "Intruder"},
    ("POST", "/projects/{project_id}/status"): {"status": "withdrawn"},
    ("POST", "/projects/{record_id}/comments"): {"text": "Intruder"},
    ("POST", "/projects/{project_id}/users"): {"role": "curator"},  # user_id: the intruder
    ("PATCH", "/dictionaries/support-programs/{entry_id}"): {"name": "Intruder", "active": False},
}


def _id_routes() -> list[tuple[str, str]]:
    out = []
    for router in (projects_router, user_projects_router, dictionaries_router):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if "{" in route.path:
                out.extend((method, route.path) for method in sorted(route.methods))
    return out


async def _counts(db: AsyncSession) -> tuple[int, ...]:
    db.expunge_all()
    models = (Project, ProjectMember, Activity, Industry, District, SupportProgram, SupportProvider)
    values = [int(await db.scalar(select(func.count()).select_from(m)) or 0) for m in models]
    deleted = await db.scalar(
        select(func.count()).select_from(Project).where(Project.deleted_at.is_not(None))
    )
    return (*values, int(deleted or 0))


async def test_every_id_route_is_404_for_another_organization(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    owner, intruder = await factory.actor("owner"), await factory.actor("owner")
    project = await create_project(client, owner, name="Свой проект")
    deleted = await create_project(client, owner, name="Удалённый")
    assert (await client.delete(f"{PROJECTS}/{deleted['id']}", headers=owner.headers)).status_code == 204
    await client.post(
        f"{PROJECTS}/{project['id']}/users",
        json={"user_id": owner.user.id, "role": "curator"},
        headers=owner.headers,
    )
    entries: dict[str, int] = {}
    for slug in ("industries", "districts", "support-programs", "providers"):
        created = await client.post(f"{DICTIONARIES}/{slug}", json={"name": "Своё"}, headers=owner.headers)
        assert created.status_code == 201, created.text
        entries[slug] = created.json()["id"]
    before = await _counts(db)
    routes = _id_routes()
    assert len(routes) >= 26

    answers = []
    for method, path in routes:
        url = path.replace("{user_id}", str(owner.user.id))
        if path.endswith("/restore"):
            url = url.replace("{project_id}", str(deleted["id"]))
        url = url.replace("{project_id}", str(project["id"])).replace("{record_id}", str(project["id"]))
        if "{entry_id}" in url:
            url = url.replace("{entry_id}", str(entries[path.split("/")[2]]))
        body = BODIES.get((method, path), {"name": "Intruder"} if method == "PATCH" else None)
        if body is not None and path.endswith("/users"):
            body = {**body, "user_id": intruder.user.id}
        response = await client.request(
            method,
            f"/api/v1{url}",
            json=body if method in ("POST", "PUT", "PATCH") else None,
            headers=intruder.headers,
        )
        answers.append(
            (method, path, response.status_code, response.json().get("code") if response.content else None)
        )

    assert [a for a in answers if a[2:] != (404, "not_found")] == []
    assert await _counts(db) == before
    # The owner still sees everything.
    assert (await client.get(f"{PROJECTS}/{project['id']}", headers=owner.headers)).status_code == 200
    assert org_of(owner) != org_of(intruder)

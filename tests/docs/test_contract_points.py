"""Small contract points of SPEC §20.12: owners by default, `Location` of a team member, 204 answers
without a body or a `Content-Type`."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Company, Deal, Project, ProjectMember
from tests.factories import Factory, make_api_key
from tests.projects.support import create_project, team


@pytest.mark.parametrize(
    ("path", "body", "model", "field"),
    [
        ("/api/v1/companies", {"name": "Romashka"}, Company, "owner_id"),
        ("/api/v1/deals", {"title": "Supply"}, Deal, "owner_id"),
        ("/api/v1/projects", {"name": "Hotel"}, Project, "curator_id"),
    ],
)
async def test_a_new_record_without_owner_belongs_to_its_creator(
    client: AsyncClient,
    factory: Factory,
    db: AsyncSession,
    path: str,
    body: dict[str, str],
    model: type,
    field: str,
) -> None:
    actors = await team(factory, "admin", "manager")
    manager, admin = actors["manager"], actors["admin"]

    own = await client.post(path, json=body, headers=manager.headers)
    explicit = await client.post(path, json={**body, field: admin.user.id}, headers=manager.headers)
    nobody = await client.post(path, json={**body, field: None}, headers=manager.headers)

    for response in (own, explicit, nobody):
        assert response.status_code == 201, response.text
    assert own.json()[field] == manager.user.id
    assert explicit.json()[field] == admin.user.id
    assert nobody.json()[field] is None
    stored = await db.get(model, own.json()["id"])
    assert getattr(stored, field) == manager.user.id


async def test_an_api_key_creates_without_an_owner(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    org = await factory.org()
    _, raw = await make_api_key(db, org, ["companies:write", "companies:read"])
    await db.commit()

    response = await client.post("/api/v1/companies", json={"name": "Keyed"}, headers={"X-API-Key": raw})

    assert response.status_code == 201, response.text
    assert response.json()["owner_id"] is None


async def test_adding_a_team_member_gives_its_location(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    actors = await team(factory, "admin", "member")
    project = await create_project(client, actors["admin"])
    user_id = actors["member"].user.id
    url = f"/api/v1/projects/{project['id']}/users"

    created = await client.post(
        url, json={"user_id": user_id, "role": "viewer"}, headers=actors["admin"].headers
    )
    again = await client.post(
        url, json={"user_id": user_id, "role": "editor"}, headers=actors["admin"].headers
    )

    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{url}/{user_id}"
    assert again.status_code == 200
    assert "location" not in again.headers
    role = await db.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project["id"], ProjectMember.user_id == user_id
        )
    )
    assert role == "editor"
    removed = await client.delete(created.headers["location"], headers=actors["admin"].headers)
    assert removed.status_code == 204
    assert removed.content == b""
    assert "content-type" not in removed.headers


async def test_204_answers_have_no_body_and_no_content_type(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor("owner")
    contact = await client.post("/api/v1/contacts", json={"full_name": "Gone"}, headers=owner.headers)

    deleted = await client.delete(f"/api/v1/contacts/{contact.json()['id']}", headers=owner.headers)
    logout = await client.post("/api/v1/auth/logout", headers=owner.auth)

    for response in (deleted, logout):
        assert response.status_code == 204
        assert response.content == b""
        assert "content-type" not in response.headers
        assert response.headers.get("content-length", "0") == "0"
    gone = await client.get(f"/api/v1/contacts/{contact.json()['id']}", headers=owner.headers)
    assert gone.status_code in (401, 404)

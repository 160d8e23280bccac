"""Roles and permissions are discoverable (SPEC §20.11)."""

from __future__ import annotations

from httpx import AsyncClient

from crm.organizations.permissions import API_KEY_SCOPES, ROLE_PERMISSIONS
from tests.factories import Factory, assert_problem


async def test_built_in_roles_are_listed_with_their_permissions(
    client: AsyncClient, factory: Factory
) -> None:
    manager = await factory.actor("manager")
    created = await client.post(
        f"/api/v1/organizations/{manager.org_id}/roles",
        json={"name": "auditor", "permissions": ["audit:read"]},
        headers=manager.auth,
    )
    assert_problem(created, 403, "permission_denied")

    response = await client.get(f"/api/v1/organizations/{manager.org_id}/roles", headers=manager.auth)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 4
    roles = {r["name"]: r for r in body["items"]}
    assert list(roles) == ["owner", "admin", "manager", "member"]
    for name, role in roles.items():
        assert role["built_in"] is True
        assert role["permissions"] == sorted(ROLE_PERMISSIONS[name])
    assert "contacts:write" in roles["manager"]["permissions"]
    assert "dictionaries:write" not in roles["manager"]["permissions"]
    assert "organization:delete" in roles["owner"]["permissions"]


async def test_roles_page_through_built_in_and_custom(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor("owner")
    for name in ("auditor", "curator"):
        response = await client.post(
            f"/api/v1/organizations/{owner.org_id}/roles",
            json={"name": name, "permissions": ["contacts:read"]},
            headers=owner.auth,
        )
        assert response.status_code == 201, response.text
    url = f"/api/v1/organizations/{owner.org_id}/roles"

    pages = [(await client.get(f"{url}?limit=3&offset={o}", headers=owner.auth)).json() for o in (0, 3, 6)]

    assert [[r["name"] for r in p["items"]] for p in pages] == [
        ["owner", "admin", "manager"],
        ["member", "curator", "auditor"],
        [],
    ]
    assert {p["total"] for p in pages} == {6}


async def test_every_permission_has_a_description(client: AsyncClient, factory: Factory) -> None:
    member = await factory.actor("member")

    response = await client.get("/api/v1/permissions", headers=member.auth)

    assert response.status_code == 200, response.text
    listed = response.json()
    assert [p["name"] for p in listed] == sorted(API_KEY_SCOPES)
    for permission in listed:
        assert set(permission) == {"name", "description"}
        assert permission["description"].strip()
        assert "\n" not in permission["description"]
        assert len(permission["description"]) < 120


async def test_permissions_need_a_login(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/permissions"), 401, "not_authenticated")

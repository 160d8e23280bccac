"""`/api/v1/api-keys`: organization API keys (§12, §18)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import ApiKey, Membership, Organization
from tests.factories import Actor, Factory, add_member, assert_problem, make_api_key

BASE = "/api/v1/api-keys"


async def key_count(db: AsyncSession, org_id: int | None) -> int:
    return int(
        await db.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.organization_id == org_id)) or 0
    )


async def create_key(client: AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Portal")
    body.setdefault("scopes", ["users:read"])
    response = await client.post(BASE, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class TestCreateApiKey:
    async def test_secret_is_shown_once_and_stored_hashed(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)

        response = await client.post(
            BASE,
            json={
                "name": "Portal",
                "scopes": ["users:read", "contacts:read", "users:read"],
                "expires_at": expires.isoformat().replace("+00:00", "Z"),
            },
            headers=admin.headers,
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {
            "id",
            "name",
            "scopes",
            "prefix",
            "key",
            "created_by_id",
            "created_at",
            "expires_at",
            "last_used_at",
        }
        assert body["name"] == "Portal"
        assert body["created_by_id"] == admin.user.id
        assert body["scopes"] == ["contacts:read", "users:read"]
        assert body["key"].startswith(f"crm_{body['prefix']}_")
        assert len(body["key"]) > 40
        assert body["expires_at"] == expires.isoformat().replace("+00:00", "Z")
        assert body["created_at"].endswith("Z")
        assert body["last_used_at"] is None
        assert response.headers["location"] == f"{BASE}/{body['id']}"
        assert response.headers["cache-control"] == "no-store"

        row = (
            (await db.execute(text("SELECT * FROM api_key WHERE id = :id"), {"id": body["id"]}))
            .mappings()
            .one()
        )
        assert row["key_hash"] == hashlib.sha256(body["key"].encode()).hexdigest()
        assert row["prefix"] == body["prefix"]
        assert row["organization_id"] == admin.org_id
        assert row["created_by_id"] == admin.user.id
        assert row["expires_at"] == expires
        secret_part = body["key"].split(f"{body['prefix']}_", 1)[1]
        assert len(secret_part) >= 40
        for value in row.values():
            assert secret_part not in str(value)

    async def test_the_new_key_works(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        created = await create_key(client, owner, scopes=["organization:read"])

        response = await client.get(
            f"/api/v1/organizations/{owner.org_id}", headers={"X-API-Key": created["key"]}
        )

        assert response.status_code == 200, response.text
        assert response.json()["id"] == owner.org_id

    async def test_each_key_is_different(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        first, second = await create_key(client, owner), await create_key(client, owner)

        assert first["key"] != second["key"]
        assert first["prefix"] != second["prefix"]

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "k", "scopes": ["contacts:fly"]},
            {"name": "k", "scopes": ["contacts:read", "admin"]},
            {"name": "k", "scopes": []},
            {"name": "k"},
            {"name": "", "scopes": ["users:read"]},
            {"name": "k" * 101, "scopes": ["users:read"]},
            {"name": "k", "scopes": ["users:read"], "expires_at": "2001-01-01T00:00:00Z"},
            {"name": "k", "scopes": ["users:read"], "expires_at": "2999-01-01T00:00:00"},
            {"name": "k", "scopes": ["users:read"], "expires_at": "tomorrow"},
            {"name": "k", "scopes": ["users:read"], "organization_id": 1},
            {"name": "k", "scopes": ["users:read"], "key_hash": "0" * 64},
        ],
    )
    async def test_invalid_input_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any]
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.post(BASE, json=body, headers=owner.headers)

        problem = assert_problem(response, 422, "validation_error")
        assert problem["errors"]
        assert await key_count(db, owner.org_id) == 0

    async def test_unknown_scope_is_named(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        response = await client.post(
            BASE, json={"name": "k", "scopes": ["contacts:fly"]}, headers=owner.headers
        )

        assert "contacts:fly" in assert_problem(response, 422, "validation_error")["detail"]

    @pytest.mark.parametrize("scope", ["organization:delete", "owners:manage"])
    async def test_scopes_beyond_the_creator_are_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, scope: str
    ) -> None:
        admin = await factory.actor("admin")

        response = await client.post(
            BASE, json={"name": "k", "scopes": ["contacts:read", scope]}, headers=admin.headers
        )

        body = assert_problem(response, 403, "permission_denied")
        assert body["scopes"] == [scope]
        assert await key_count(db, admin.org_id) == 0

    async def test_owner_may_grant_owner_scopes(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        created = await create_key(client, owner, scopes=["organization:delete"])

        assert created["scopes"] == ["organization:delete"]

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_lower_roles_are_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        actor = await factory.actor(role)

        response = await client.post(
            BASE, json={"name": "k", "scopes": ["contacts:read"]}, headers=actor.headers
        )

        assert_problem(response, 403, "permission_denied")
        assert await key_count(db, actor.org_id) == 0

    async def test_missing_organization_header(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        """With several memberships the organization must be named (§20.1)."""
        owner = await factory.actor("owner")
        await add_member(db, await factory.org(), owner.user, "owner")
        await db.commit()

        response = await client.post(BASE, json={"name": "k", "scopes": ["users:read"]}, headers=owner.auth)

        assert_problem(response, 400, "organization_required")
        assert await key_count(db, owner.org_id) == 0


class TestListApiKeys:
    async def test_lists_this_organizations_keys_without_secrets(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        admin = await factory.actor("admin")
        first = await create_key(client, admin, name="First")
        second = await create_key(client, admin, name="Second", scopes=["contacts:read"])
        other = await factory.actor("owner")
        await create_key(client, other, name="Elsewhere")

        response = await client.get(BASE, headers=admin.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)
        assert [(k["id"], k["name"], k["scopes"]) for k in body["items"]] == [
            (second["id"], "Second", ["contacts:read"]),
            (first["id"], "First", ["users:read"]),
        ]
        for item in body["items"]:
            assert "key" not in item
            assert "key_hash" not in item
        assert first["key"] not in response.text
        # The secret part follows the prefix (it may itself hold `_`, so it is not split on one).
        secret = second["key"].split(f"{second['prefix']}_", 1)[1]
        assert len(secret) >= 40
        assert secret not in response.text

    async def test_pages(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        created = [await create_key(client, owner, name=f"k{i}") for i in range(3)]

        response = await client.get(BASE, params={"limit": 1, "offset": 2}, headers=owner.headers)

        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 1, 2)
        assert [k["id"] for k in body["items"]] == [created[0]["id"]]

    async def test_shows_when_a_key_was_last_used(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        created = await create_key(client, owner, scopes=["users:read"])
        assert (await client.get("/users", headers={"X-API-Key": created["key"]})).status_code == 200

        response = await client.get(BASE, headers=owner.headers)

        assert response.json()["items"][0]["last_used_at"] is not None


class TestGetApiKey:
    async def test_returns_one_without_its_secret(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        created = await create_key(client, owner)

        response = await client.get(f"{BASE}/{created['id']}", headers=owner.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["id"], body["prefix"], body["scopes"]) == (
            created["id"],
            created["prefix"],
            ["users:read"],
        )
        assert "key" not in body

    async def test_another_organizations_key_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        foreign, _ = await make_api_key(db, await factory.org(), ["users:read"], name="foreign")

        response = await client.get(f"{BASE}/{foreign.id}", headers=owner.headers)

        assert_problem(response, 404, "not_found")
        assert "foreign" not in response.text


class TestDeleteApiKey:
    async def test_deleted_key_stops_working_at_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_key(client, admin, scopes=["users:read"])
        assert (await client.get("/users", headers={"X-API-Key": created["key"]})).status_code == 200

        response = await client.delete(f"{BASE}/{created['id']}", headers=admin.headers)

        assert response.status_code == 204
        assert response.content == b""
        assert await db.get(ApiKey, created["id"]) is None
        after = await client.get("/users", headers={"X-API-Key": created["key"]})
        assert_problem(after, 401, "invalid_api_key")
        assert_problem(
            await client.delete(f"{BASE}/{created['id']}", headers=admin.headers), 404, "not_found"
        )

    async def test_another_organizations_key_is_not_found_and_keeps_working(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        other_org = await factory.org()
        foreign, raw = await make_api_key(db, other_org, ["users:read"])

        response = await client.delete(f"{BASE}/{foreign.id}", headers=owner.headers)

        assert_problem(response, 404, "not_found")
        assert await key_count(db, other_org.id) == 1
        assert (await client.get("/users", headers={"X-API-Key": raw})).status_code == 200

    async def test_unknown_id_is_not_found(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        assert_problem(await client.delete(f"{BASE}/999999999", headers=owner.headers), 404, "not_found")

    @pytest.mark.parametrize("key_id", ["abc", "0", "99999999999999999999"])
    async def test_bad_id_is_a_validation_error(
        self, client: AsyncClient, factory: Factory, key_id: str
    ) -> None:
        owner = await factory.actor("owner")

        assert_problem(
            await client.delete(f"{BASE}/{key_id}", headers=owner.headers), 422, "validation_error"
        )


class TestApiKeyAsCaller:
    """A key acting on tenant routes gets exactly its scopes."""

    async def test_key_without_api_keys_manage_cannot_create_keys(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        _, raw = await make_api_key(db, org, ["members:read"])

        response = await client.post(
            BASE, json={"name": "k", "scopes": ["members:read"]}, headers={"X-API-Key": raw}
        )

        assert_problem(response, 403, "permission_denied")
        assert await key_count(db, org.id) == 1

    async def test_key_with_members_read_lists_members_but_cannot_add(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        owner = await factory.actor("owner", org=org)
        _, raw = await make_api_key(db, org, ["members:read"], created_by_id=owner.user.id)
        members = f"/api/v1/organizations/{org.id}/members"

        listed = await client.get(members, headers={"X-API-Key": raw})
        added = await client.post(members, json={"email": "x@example.com"}, headers={"X-API-Key": raw})

        assert listed.status_code == 200, listed.text
        assert [m["user_id"] for m in listed.json()["items"]] == [owner.user.id]
        assert_problem(added, 403, "permission_denied")

    async def test_key_manager_key_creates_keys_within_its_own_scopes(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        key, raw = await make_api_key(db, org, ["api_keys:manage", "contacts:read"])

        allowed = await client.post(
            BASE, json={"name": "k", "scopes": ["contacts:read", "users:read"]}, headers={"X-API-Key": raw}
        )
        beyond = await client.post(
            BASE, json={"name": "k", "scopes": ["contacts:write"]}, headers={"X-API-Key": raw}
        )

        assert allowed.status_code == 201, allowed.text
        stored = await db.get(ApiKey, allowed.json()["id"])
        assert stored is not None
        assert stored.created_by_id == key.created_by_id  # it acts for the same person
        assert_problem(beyond, 403, "permission_denied")
        assert await key_count(db, org.id) == 2

    async def test_key_cannot_grant_the_owner_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        await factory.actor("owner", org=org)
        newcomer = await factory.user()
        _, raw = await make_api_key(db, org, ["members:manage", "members:read"])

        response = await client.post(
            f"/api/v1/organizations/{org.id}/members",
            json={"email": newcomer.email, "role": "owner"},
            headers={"X-API-Key": raw},
        )

        assert_problem(response, 403, "permission_denied")


class TestKeyActsForItsCreator:
    """A key may do at most what its creator still may; it stops when the creator leaves."""

    async def test_demoted_then_removed_creator_then_reissued(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        org = await db.get(Organization, owner.org_id)
        assert org is not None
        admin = await factory.actor("admin", org=org)
        other_admin = await factory.actor("admin", org=org)
        newcomer = await factory.user()
        created = await create_key(
            client, admin, scopes=["members:manage", "members:read", "contacts:read", "users:read"]
        )
        raw = {"X-API-Key": created["key"]}
        members = f"/api/v1/organizations/{org.id}/members"

        # As admin, the key manages members.
        listed = await client.get(members, headers=raw)
        assert listed.status_code == 200, listed.text
        member_ids = {m["user_id"] for m in listed.json()["items"]}
        assert member_ids == {owner.user.id, admin.user.id, other_admin.user.id}

        # Demoted to member: the key keeps reading but can no longer do admin things.
        demoted = await client.patch(
            f"{members}/{admin.user.id}", json={"role": "member"}, headers=owner.headers
        )
        assert demoted.status_code == 200, demoted.text
        added = await client.post(members, json={"email": newcomer.email, "role": "member"}, headers=raw)
        assert_problem(added, 403, "permission_denied")
        assert (await client.get(members, headers=raw)).status_code == 200
        assert (await client.get("/users", headers=raw)).status_code == 200  # members:read reveals the same
        assert (
            await db.scalar(
                select(func.count()).select_from(Membership).where(Membership.user_id == newcomer.id)
            )
            == 0
        )
        # Re-adding himself as admin with the key is refused as well.
        escalated = await client.patch(f"{members}/{admin.user.id}", json={"role": "admin"}, headers=raw)
        assert_problem(escalated, 403, "permission_denied")
        membership = await db.scalar(
            select(Membership).where(
                Membership.organization_id == org.id, Membership.user_id == admin.user.id
            )
        )
        assert membership is not None
        await db.refresh(membership)
        assert membership.role == "member"

        # Removed: the key acts for nobody.
        removed = await client.delete(f"{members}/{admin.user.id}", headers=owner.headers)
        assert removed.status_code == 204, removed.text
        for method, path in (("GET", members), ("GET", "/api/v1/contacts"), ("GET", "/users")):
            gone = await client.request(method, path, headers=raw)
            assert_problem(gone, 401, "api_key_revoked")
            assert gone.headers["www-authenticate"] == "ApiKey"
        listed_keys = await client.get(BASE, headers=other_admin.headers)
        assert [k["created_by_id"] for k in listed_keys.json()["items"]] == [admin.user.id]

        # Another admin re-issues it: new secret, acting for that admin; the old secret is dead.
        reissued = await client.post(f"{BASE}/{created['id']}/reissue", headers=other_admin.headers)
        assert reissued.status_code == 200, reissued.text
        body = reissued.json()
        assert body["id"] == created["id"]
        assert body["created_by_id"] == other_admin.user.id
        assert body["scopes"] == created["scopes"]
        assert body["key"] != created["key"]
        assert body["prefix"] != created["prefix"]
        assert reissued.headers["cache-control"] == "no-store"
        stored = await db.get(ApiKey, created["id"])
        assert stored is not None
        await db.refresh(stored)
        assert stored.created_by_id == other_admin.user.id
        assert stored.key_hash == hashlib.sha256(body["key"].encode()).hexdigest()
        assert_problem(await client.get(members, headers=raw), 401, "invalid_api_key")
        works = await client.get(members, headers={"X-API-Key": body["key"]})
        assert works.status_code == 200, works.text
        assert (await client.get("/users", headers={"X-API-Key": body["key"]})).status_code == 200

    async def test_deactivated_creator_revokes_the_key(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_key(client, admin, scopes=["contacts:read"])
        assert (
            await client.get("/api/v1/contacts", headers={"X-API-Key": created["key"]})
        ).status_code == 200
        root = await factory.actor("member", is_superuser=True)

        off = await client.patch(
            f"/api/v1/admin/users/{admin.user.id}", json={"is_active": False}, headers=root.auth
        )
        assert off.status_code == 200, off.text

        gone = await client.get("/api/v1/contacts", headers={"X-API-Key": created["key"]})
        assert_problem(gone, 401, "api_key_revoked")

    async def test_reissue_needs_the_keys_scopes_and_the_organization(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        org = await db.get(Organization, owner.org_id)
        assert org is not None
        created = await create_key(client, owner, scopes=["roles:manage", "contacts:read"])
        role = await client.post(
            f"/api/v1/organizations/{org.id}/roles",
            json={"name": "keeper", "permissions": ["api_keys:manage", "contacts:read"]},
            headers=owner.headers,
        )
        assert role.status_code == 201, role.text
        keeper = await factory.actor("keeper", org=org)
        stranger = await factory.actor("admin")

        refused = await client.post(f"{BASE}/{created['id']}/reissue", headers=keeper.headers)
        body = assert_problem(refused, 403, "permission_denied")
        assert body["scopes"] == ["roles:manage"]
        elsewhere = await client.post(f"{BASE}/{created['id']}/reissue", headers=stranger.headers)
        assert_problem(elsewhere, 404, "not_found")
        stored = await db.get(ApiKey, created["id"])
        assert stored is not None
        await db.refresh(stored)
        assert stored.created_by_id == owner.user.id
        assert stored.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()

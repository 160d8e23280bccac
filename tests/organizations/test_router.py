"""`/api/v1/organizations`: organizations, members and roles (SPEC §5, §18, §19.8)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import ApiKey, Membership, Organization, OrganizationRole, User
from tests.factories import (
    Actor,
    Factory,
    add_member,
    assert_problem,
    login,
    make_api_key,
    make_org,
    make_user,
)

BASE = "/api/v1/organizations"


async def stored_org(db: AsyncSession, org_id: int) -> Organization:
    result = await db.execute(
        select(Organization).where(Organization.id == org_id).execution_options(populate_existing=True)
    )
    return result.scalar_one()


async def stored_roles(db: AsyncSession, org_id: int) -> dict[int, str]:
    result = await db.execute(
        select(Membership.user_id, Membership.role).where(Membership.organization_id == org_id)
    )
    return dict(result.all())


async def org_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Organization)) or 0)


async def team(factory: Factory, *roles: str) -> tuple[Organization, dict[str, Actor]]:
    """An organization with one logged-in actor per role (the first actor of each role)."""
    org = await factory.org()
    actors: dict[str, Actor] = {}
    for role in roles:
        actors[role] = await factory.actor(role, org=org)
    return org, actors


class TestCreateOrganization:
    async def test_creator_becomes_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.actor("member")

        response = await client.post(BASE, json={"name": "Acme", "slug": "acme"}, headers=user.auth)

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "Acme"
        assert body["slug"] == "acme"
        assert body["currency"] == "RUB"
        assert body["version"] == 1
        assert body["role"] == "owner"
        assert body["created_at"].endswith("Z")
        assert response.headers["location"] == f"{BASE}/{body['id']}"
        assert response.headers["etag"] == '"1"'
        org = await stored_org(db, body["id"])
        assert (org.name, org.slug, org.currency, org.deleted_at) == ("Acme", "acme", "RUB", None)
        assert await stored_roles(db, body["id"]) == {user.user.id: "owner"}

    async def test_slug_is_generated_from_a_cyrillic_name(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.actor("member")

        response = await client.post(BASE, json={"name": "Рога и Копыта"}, headers=user.auth)

        assert response.status_code == 201, response.text
        assert response.json()["slug"] == "roga-i-kopyta"
        assert (await stored_org(db, response.json()["id"])).slug == "roga-i-kopyta"

    async def test_generated_slug_avoids_a_taken_one(self, client: AsyncClient, factory: Factory) -> None:
        await factory.org(slug="roga-i-kopyta")
        user = await factory.actor("member")

        response = await client.post(BASE, json={"name": "Рога и копыта"}, headers=user.auth)

        assert response.status_code == 201, response.text
        assert response.json()["slug"] == "roga-i-kopyta-2"

    async def test_taken_explicit_slug_is_a_conflict(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        await factory.org(slug="acme")
        user = await factory.actor("member")
        before = await org_count(db)

        response = await client.post(BASE, json={"name": "Another", "slug": "acme"}, headers=user.auth)

        assert_problem(response, 409, "organization_slug_taken")
        assert await org_count(db) == before

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "X", "slug": "Bad Slug"},
            {"name": "X", "slug": "UPPER"},
            {"name": "X", "slug": "-leading"},
            {"name": "X", "slug": "x" * 101},
            {"name": "X", "currency": "rub"},
            {"name": "X", "currency": "RUBL"},
            {"name": "X", "currency": "R1B"},
            {"name": "   "},
            {"slug": "no-name"},
        ],
    )
    async def test_invalid_input_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, str]
    ) -> None:
        user = await factory.actor("member")
        before = await org_count(db)

        response = await client.post(BASE, json=body, headers=user.auth)

        problem = assert_problem(response, 422, "validation_error")
        assert problem["errors"]
        assert await org_count(db) == before

    @pytest.mark.parametrize("field", ["id", "version", "role", "deleted_at"])
    async def test_server_owned_fields_are_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, field: str
    ) -> None:
        user = await factory.actor("member")
        before = await org_count(db)

        response = await client.post(BASE, json={"name": "Acme", field: 7}, headers=user.auth)

        assert_problem(response, 422, "validation_error")
        assert await org_count(db) == before

    async def test_anonymous_is_unauthorized(self, client: AsyncClient, db: AsyncSession) -> None:
        before = await org_count(db)

        response = await client.post(BASE, json={"name": "Acme"})

        assert_problem(response, 401, "not_authenticated")
        assert await org_count(db) == before


class TestListOrganizations:
    async def test_lists_only_mine_with_my_role(self, client: AsyncClient, factory: Factory) -> None:
        user = await make_user(factory.db)
        first = await make_org(factory.db, name="First")
        second = await make_org(factory.db, name="Second")
        await make_org(factory.db, name="Not mine")
        await add_member(factory.db, first, user, "owner")
        await add_member(factory.db, second, user, "manager")
        await factory.db.commit()
        actor = await login(client, user)

        response = await client.get(BASE, headers=actor.auth)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 2
        assert (body["limit"], body["offset"]) == (50, 0)
        assert [(o["id"], o["name"], o["role"]) for o in body["items"]] == [
            (second.id, "Second", "manager"),
            (first.id, "First", "owner"),
        ]

    async def test_pages(self, client: AsyncClient, factory: Factory) -> None:
        user = await make_user(factory.db)
        orgs = [await make_org(factory.db, user) for _ in range(3)]
        await factory.db.commit()
        actor = await login(client, user)

        response = await client.get(BASE, params={"limit": 1, "offset": 1}, headers=actor.auth)

        assert response.status_code == 200
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 1, 1)
        assert [o["id"] for o in body["items"]] == [orgs[1].id]

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"}])
    async def test_bad_paging_is_refused(
        self, client: AsyncClient, factory: Factory, params: dict[str, object]
    ) -> None:
        actor = await factory.actor("owner")

        response = await client.get(BASE, params=params, headers=actor.auth)

        assert_problem(response, 422, "validation_error")

    async def test_superuser_sees_only_their_memberships(self, client: AsyncClient, factory: Factory) -> None:
        await make_org(factory.db, await make_user(factory.db))
        admin = await factory.actor("member", is_superuser=True)

        response = await client.get(BASE, headers=admin.auth)

        assert response.status_code == 200
        assert [o["id"] for o in response.json()["items"]] == [admin.org_id]

    async def test_anonymous_is_unauthorized(self, client: AsyncClient) -> None:
        assert_problem(await client.get(BASE), 401, "not_authenticated")


class TestGetOrganization:
    async def test_returns_it_with_an_etag(self, client: AsyncClient, factory: Factory) -> None:
        org = await factory.org(name="Acme", slug="acme", currency="USD")
        member = await factory.actor("member", org=org)

        response = await client.get(f"{BASE}/{org.id}", headers=member.auth)

        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"1"'
        body = response.json()
        assert {k: body[k] for k in ("id", "name", "slug", "currency", "version", "role")} == {
            "id": org.id,
            "name": "Acme",
            "slug": "acme",
            "currency": "USD",
            "version": 1,
            "role": "member",
        }

    async def test_trailing_slash_answers_the_same(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        response = await client.get(f"{BASE}/{owner.org_id}/", headers=owner.auth)

        assert response.status_code == 200
        assert response.json()["id"] == owner.org_id

    async def test_non_member_gets_not_found(self, client: AsyncClient, factory: Factory) -> None:
        other = await factory.org()
        outsider = await factory.actor("owner")

        response = await client.get(f"{BASE}/{other.id}", headers=outsider.auth)

        body = assert_problem(response, 404, "not_found")
        assert other.name not in response.text
        assert "etag" not in response.headers
        assert body["detail"] == "Organization not found"

    async def test_superuser_is_not_a_member(self, client: AsyncClient, factory: Factory) -> None:
        other = await factory.org()
        admin = await factory.actor("owner", is_superuser=True)

        response = await client.get(f"{BASE}/{other.id}", headers=admin.auth)

        assert_problem(response, 404, "not_found")

    async def test_unknown_id_is_not_found(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        assert_problem(await client.get(f"{BASE}/999999999", headers=owner.auth), 404, "not_found")

    @pytest.mark.parametrize("ref", ["abc", "0", "-1", "99999999999999999999"])
    async def test_bad_id_is_a_validation_error(
        self, client: AsyncClient, factory: Factory, ref: str
    ) -> None:
        owner = await factory.actor("owner")

        assert_problem(await client.get(f"{BASE}/{ref}", headers=owner.auth), 422, "validation_error")

    async def test_api_key_of_the_organization_reads_it(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        _, raw = await make_api_key(db, org, ["organization:read"])

        response = await client.get(f"{BASE}/{org.id}", headers={"X-API-Key": raw})

        assert response.status_code == 200, response.text
        assert response.json()["id"] == org.id
        assert response.json()["role"] is None

    async def test_api_key_of_another_organization_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, other = await factory.org(), await factory.org()
        _, raw = await make_api_key(db, other, ["organization:read"])

        assert_problem(await client.get(f"{BASE}/{org.id}", headers={"X-API-Key": raw}), 404, "not_found")

    async def test_api_key_without_the_scope_is_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        _, raw = await make_api_key(db, org, ["contacts:read"])

        response = await client.get(f"{BASE}/{org.id}", headers={"X-API-Key": raw})

        assert_problem(response, 403, "permission_denied")


class TestUpdateOrganization:
    async def test_admin_updates_with_a_matching_if_match(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org(name="Old", slug="old")
        admin = await factory.actor("admin", org=org)

        response = await client.put(
            f"{BASE}/{org.id}",
            json={"name": "New", "slug": "new", "currency": "EUR"},
            headers={**admin.auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["name"], body["slug"], body["currency"], body["version"], body["role"]) == (
            "New",
            "new",
            "EUR",
            2,
            "admin",
        )
        assert response.headers["etag"] == '"2"'
        stored = await stored_org(db, org.id)
        assert (stored.name, stored.slug, stored.currency, stored.version) == ("New", "new", "EUR", 2)

    async def test_omitted_optional_fields_keep_their_value(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org(slug="keep-me", currency="USD")
        owner = await factory.actor("owner", org=org)

        response = await client.put(f"{BASE}/{org.id}", json={"name": "Renamed"}, headers=owner.auth)

        assert response.status_code == 200, response.text
        stored = await stored_org(db, org.id)
        assert (stored.name, stored.slug, stored.currency, stored.version) == ("Renamed", "keep-me", "USD", 2)

    async def test_stale_if_match_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org(name="Old")
        admin = await factory.actor("admin", org=org)
        first = await client.put(
            f"{BASE}/{org.id}", json={"name": "First"}, headers={**admin.auth, "If-Match": '"1"'}
        )
        assert first.status_code == 200

        response = await client.put(
            f"{BASE}/{org.id}", json={"name": "Second"}, headers={**admin.auth, "If-Match": '"1"'}
        )

        body = assert_problem(response, 412, "version_mismatch")
        assert body["current_version"] == 2
        stored = await stored_org(db, org.id)
        assert (stored.name, stored.version) == ("First", 2)

    async def test_taken_slug_is_a_conflict(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        await factory.org(slug="taken")
        org = await factory.org(slug="mine")
        owner = await factory.actor("owner", org=org)

        response = await client.put(
            f"{BASE}/{org.id}", json={"name": "X", "slug": "taken"}, headers=owner.auth
        )

        assert_problem(response, 409, "organization_slug_taken")
        stored = await stored_org(db, org.id)
        assert (stored.slug, stored.version) == ("mine", 1)

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_lower_roles_are_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org = await factory.org(name="Old")
        actor = await factory.actor(role, org=org)

        response = await client.put(f"{BASE}/{org.id}", json={"name": "New"}, headers=actor.auth)

        assert_problem(response, 403, "permission_denied")
        stored = await stored_org(db, org.id)
        assert (stored.name, stored.version) == ("Old", 1)

    async def test_non_member_gets_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org(name="Old")
        outsider = await factory.actor("owner")

        response = await client.put(f"{BASE}/{org.id}", json={"name": "Mine now"}, headers=outsider.auth)

        assert_problem(response, 404, "not_found")
        assert (await stored_org(db, org.id)).name == "Old"

    @pytest.mark.parametrize(
        "body", [{"name": ""}, {"name": "X", "currency": "eur"}, {"name": "X", "version": 5}, {}]
    )
    async def test_invalid_body_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, object]
    ) -> None:
        org = await factory.org(name="Old")
        owner = await factory.actor("owner", org=org)

        response = await client.put(f"{BASE}/{org.id}", json=body, headers=owner.auth)

        assert_problem(response, 422, "validation_error")
        stored = await stored_org(db, org.id)
        assert (stored.name, stored.version) == ("Old", 1)


class TestDeleteOrganization:
    async def test_owner_deletes_it_for_everyone(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org(slug="doomed")
        owner = await factory.actor("owner", org=org)
        member = await factory.actor("member", org=org)

        response = await client.delete(f"{BASE}/{org.id}", headers=owner.auth)

        assert response.status_code == 204
        assert response.content == b""
        stored = await stored_org(db, org.id)
        assert stored.deleted_at is not None
        for actor in (owner, member):
            assert_problem(await client.get(f"{BASE}/{org.id}", headers=actor.auth), 404, "not_found")
            assert_problem(await client.get(f"{BASE}/{org.id}/members", headers=actor.auth), 404, "not_found")
            listed = await client.get(BASE, headers=actor.auth)
            assert org.id not in [o["id"] for o in listed.json()["items"]]
            me = await client.get("/api/v1/auth/me", headers=actor.auth)
            assert org.id not in [m["organization_id"] for m in me.json()["memberships"]]
        assert_problem(await client.delete(f"{BASE}/{org.id}", headers=owner.auth), 404, "not_found")

    async def test_slug_is_free_again(self, client: AsyncClient, factory: Factory) -> None:
        org = await factory.org(slug="reused")
        owner = await factory.actor("owner", org=org)
        assert (await client.delete(f"{BASE}/{org.id}", headers=owner.auth)).status_code == 204

        response = await client.post(BASE, json={"name": "Reused", "slug": "reused"}, headers=owner.auth)

        assert response.status_code == 201, response.text

    @pytest.mark.parametrize("role", ["admin", "manager", "member"])
    async def test_only_the_owner_may_delete(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org = await factory.org()
        actor = await factory.actor(role, org=org)

        response = await client.delete(f"{BASE}/{org.id}", headers=actor.auth)

        assert_problem(response, 403, "permission_denied")
        assert (await stored_org(db, org.id)).deleted_at is None

    async def test_non_member_gets_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        outsider = await factory.actor("owner")

        assert_problem(await client.delete(f"{BASE}/{org.id}", headers=outsider.auth), 404, "not_found")
        assert (await stored_org(db, org.id)).deleted_at is None


class TestListMembers:
    async def test_lists_members_with_roles(self, client: AsyncClient, factory: Factory) -> None:
        org, actors = await team(factory, "owner", "admin", "member")
        await factory.actor("member", org=await factory.org())  # someone elsewhere

        response = await client.get(f"{BASE}/{org.id}/members", headers=actors["member"].auth)

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 50, 0)
        assert {(m["user_id"], m["role"]) for m in body["items"]} == {
            (a.user.id, role) for role, a in actors.items()
        }
        first = next(m for m in body["items"] if m["user_id"] == actors["owner"].user.id)
        assert first["email"] == actors["owner"].user.email
        assert first["full_name"] == actors["owner"].user.full_name
        assert first["is_active"] is True

    async def test_pages(self, client: AsyncClient, factory: Factory) -> None:
        org, actors = await team(factory, "owner", "admin", "manager")

        response = await client.get(
            f"{BASE}/{org.id}/members", params={"limit": 2, "offset": 2}, headers=actors["owner"].auth
        )

        body = response.json()
        assert (body["total"], body["limit"], body["offset"], len(body["items"])) == (3, 2, 2, 1)

    async def test_non_member_gets_not_found(self, client: AsyncClient, factory: Factory) -> None:
        org, _ = await team(factory, "owner")
        outsider = await factory.actor("owner")

        response = await client.get(f"{BASE}/{org.id}/members", headers=outsider.auth)

        assert_problem(response, 404, "not_found")


class TestAddMember:
    @pytest.mark.parametrize("role", ["member", "manager", "admin"])
    async def test_admin_adds_by_email(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org, actors = await team(factory, "owner", "admin")
        newcomer = await factory.user(full_name="Иван Иванов")

        response = await client.post(
            f"{BASE}/{org.id}/members",
            json={"email": newcomer.email.upper(), "role": role},
            headers=actors["admin"].auth,
        )

        assert response.status_code == 201, response.text
        assert response.headers["location"] == f"{BASE}/{org.id}/members/{newcomer.id}"
        body = response.json()
        assert (body["user_id"], body["email"], body["full_name"], body["role"]) == (
            newcomer.id,
            newcomer.email,
            "Иван Иванов",
            role,
        )
        assert (await stored_roles(db, org.id))[newcomer.id] == role

    async def test_role_defaults_to_member(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        newcomer = await factory.user()

        response = await client.post(
            f"{BASE}/{org.id}/members", json={"email": newcomer.email}, headers=actors["owner"].auth
        )

        assert response.status_code == 201
        assert (await stored_roles(db, org.id))[newcomer.id] == "member"

    async def test_admin_may_not_grant_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin")
        newcomer = await factory.user()

        response = await client.post(
            f"{BASE}/{org.id}/members",
            json={"email": newcomer.email, "role": "owner"},
            headers=actors["admin"].auth,
        )

        assert_problem(response, 403, "permission_denied")
        assert newcomer.id not in await stored_roles(db, org.id)

    async def test_owner_may_add_an_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        newcomer = await factory.user()

        response = await client.post(
            f"{BASE}/{org.id}/members",
            json={"email": newcomer.email, "role": "owner"},
            headers=actors["owner"].auth,
        )

        assert response.status_code == 201, response.text
        assert (await stored_roles(db, org.id))[newcomer.id] == "owner"

    async def test_unknown_email_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")

        response = await client.post(
            f"{BASE}/{org.id}/members", json={"email": "nobody@example.com"}, headers=actors["owner"].auth
        )

        assert_problem(response, 404, "user_not_found")
        assert len(await stored_roles(db, org.id)) == 1

    async def test_existing_member_is_a_conflict(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "member")

        response = await client.post(
            f"{BASE}/{org.id}/members",
            json={"email": actors["member"].user.email, "role": "admin"},
            headers=actors["owner"].auth,
        )

        assert_problem(response, 409, "member_exists")
        assert (await stored_roles(db, org.id))[actors["member"].user.id] == "member"

    @pytest.mark.parametrize(
        "body",
        [
            {"email": "not-an-email"},
            {"email": "x@example.com", "role": "superuser"},
            {"email": "x@example.com", "role": "Owner"},
            {"role": "member"},
            {"email": "x@example.com", "organization_id": 1},
        ],
    )
    async def test_invalid_body_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, object]
    ) -> None:
        org, actors = await team(factory, "owner")

        response = await client.post(f"{BASE}/{org.id}/members", json=body, headers=actors["owner"].auth)

        assert_problem(response, 422, "validation_error")
        assert len(await stored_roles(db, org.id)) == 1

    async def test_non_member_gets_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, _ = await team(factory, "owner")
        outsider = await factory.actor("owner")

        response = await client.post(
            f"{BASE}/{org.id}/members",
            json={"email": outsider.user.email, "role": "owner"},
            headers=outsider.auth,
        )

        assert_problem(response, 404, "not_found")
        assert outsider.user.id not in await stored_roles(db, org.id)


class TestChangeMemberRole:
    async def test_admin_changes_a_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin", "member")
        target = actors["member"].user

        response = await client.patch(
            f"{BASE}/{org.id}/members/{target.id}", json={"role": "manager"}, headers=actors["admin"].auth
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["user_id"], body["role"], body["email"]) == (target.id, "manager", target.email)
        assert (await stored_roles(db, org.id))[target.id] == "manager"

    async def test_new_role_takes_effect_at_once(self, client: AsyncClient, factory: Factory) -> None:
        org, actors = await team(factory, "owner", "member")
        member = actors["member"]
        assert (
            await client.put(f"{BASE}/{org.id}", json={"name": "X"}, headers=member.auth)
        ).status_code == 403

        await client.patch(
            f"{BASE}/{org.id}/members/{member.user.id}", json={"role": "admin"}, headers=actors["owner"].auth
        )

        assert (
            await client.put(f"{BASE}/{org.id}", json={"name": "X"}, headers=member.auth)
        ).status_code == 200

    @pytest.mark.parametrize("new_role", ["admin", "manager", "member", "owner"])
    async def test_admin_cannot_touch_an_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, new_role: str
    ) -> None:
        org, actors = await team(factory, "owner", "admin")
        owner = actors["owner"].user

        response = await client.patch(
            f"{BASE}/{org.id}/members/{owner.id}", json={"role": new_role}, headers=actors["admin"].auth
        )

        assert_problem(response, 403, "permission_denied")
        assert (await stored_roles(db, org.id))[owner.id] == "owner"

    async def test_admin_cannot_promote_to_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin", "member")
        target = actors["member"].user

        response = await client.patch(
            f"{BASE}/{org.id}/members/{target.id}", json={"role": "owner"}, headers=actors["admin"].auth
        )

        assert_problem(response, 403, "permission_denied")
        assert (await stored_roles(db, org.id))[target.id] == "member"

    async def test_admin_cannot_make_themselves_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin")
        admin = actors["admin"]

        response = await client.patch(
            f"{BASE}/{org.id}/members/{admin.user.id}", json={"role": "owner"}, headers=admin.auth
        )

        assert_problem(response, 403, "permission_denied")
        assert (await stored_roles(db, org.id))[admin.user.id] == "admin"

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_lower_roles_cannot_change_even_their_own_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org, actors = await team(factory, "owner", role)
        actor = actors[role]

        response = await client.patch(
            f"{BASE}/{org.id}/members/{actor.user.id}", json={"role": "admin"}, headers=actor.auth
        )

        assert_problem(response, 403, "permission_denied")
        assert (await stored_roles(db, org.id))[actor.user.id] == role

    async def test_last_owner_cannot_demote_themselves(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin")
        owner = actors["owner"]

        response = await client.patch(
            f"{BASE}/{org.id}/members/{owner.user.id}", json={"role": "admin"}, headers=owner.auth
        )

        assert_problem(response, 409, "last_owner")
        assert (await stored_roles(db, org.id))[owner.user.id] == "owner"

    async def test_one_of_two_owners_may_be_demoted(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        first = await factory.actor("owner", org=org)
        second = await factory.actor("owner", org=org)

        response = await client.patch(
            f"{BASE}/{org.id}/members/{second.user.id}", json={"role": "member"}, headers=first.auth
        )

        assert response.status_code == 200, response.text
        assert await stored_roles(db, org.id) == {first.user.id: "owner", second.user.id: "member"}
        # Now `first` is the last owner.
        again = await client.patch(
            f"{BASE}/{org.id}/members/{first.user.id}", json={"role": "admin"}, headers=first.auth
        )
        assert_problem(again, 409, "last_owner")

    async def test_owner_may_promote_to_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin")
        target = actors["admin"].user

        response = await client.patch(
            f"{BASE}/{org.id}/members/{target.id}", json={"role": "owner"}, headers=actors["owner"].auth
        )

        assert response.status_code == 200
        assert (await stored_roles(db, org.id))[target.id] == "owner"

    async def test_unknown_member_is_not_found(self, client: AsyncClient, factory: Factory) -> None:
        org, actors = await team(factory, "owner")
        elsewhere = await factory.actor("member")  # a member of another organization

        for user_id in (elsewhere.user.id, 999999999):
            response = await client.patch(
                f"{BASE}/{org.id}/members/{user_id}", json={"role": "admin"}, headers=actors["owner"].auth
            )
            assert_problem(response, 404, "not_found")

    async def test_non_member_gets_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "member")
        outsider = await factory.actor("owner")
        target = actors["member"].user

        response = await client.patch(
            f"{BASE}/{org.id}/members/{target.id}", json={"role": "admin"}, headers=outsider.auth
        )

        assert_problem(response, 404, "not_found")
        assert (await stored_roles(db, org.id))[target.id] == "member"

    @pytest.mark.parametrize("body", [{}, {"role": "root"}, {"role": "admin", "user_id": 1}])
    async def test_invalid_body_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, object]
    ) -> None:
        org, actors = await team(factory, "owner", "member")
        target = actors["member"].user

        response = await client.patch(
            f"{BASE}/{org.id}/members/{target.id}", json=body, headers=actors["owner"].auth
        )

        assert_problem(response, 422, "validation_error")
        assert (await stored_roles(db, org.id))[target.id] == "member"

    @pytest.mark.committing
    async def test_two_owners_demoting_each_other_leave_one_owner(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        async with app.state.sessionmaker() as session:
            org = await make_org(session)
            users = [await make_user(session), await make_user(session)]
            for user in users:
                await add_member(session, org, user, "owner")
            await session.commit()
        a, b = [await login(committing_client, u) for u in users]

        responses = await asyncio.gather(
            committing_client.patch(
                f"{BASE}/{org.id}/members/{b.user.id}", json={"role": "admin"}, headers=a.auth
            ),
            committing_client.patch(
                f"{BASE}/{org.id}/members/{a.user.id}", json={"role": "admin"}, headers=b.auth
            ),
        )

        # The loser either saw the winner's commit when its own role was resolved (now an admin: 403)
        # or passed that check and was stopped by the locked last-owner check (409).
        codes = sorted(r.status_code for r in responses)
        assert codes[0] == 200
        assert codes[1] in (403, 409)
        async with app.state.sessionmaker() as session:
            owners = await session.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.organization_id == org.id, Membership.role == "owner")
            )
        assert owners == 1


class TestRemoveMember:
    @pytest.mark.parametrize("role", ["admin", "manager", "member"])
    async def test_admin_removes_a_member(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org = await factory.org()
        admin = await factory.actor("admin", org=org)
        target = await factory.actor(role, org=org)

        response = await client.delete(f"{BASE}/{org.id}/members/{target.user.id}", headers=admin.auth)

        assert response.status_code == 204
        assert target.user.id not in await stored_roles(db, org.id)
        assert_problem(await client.get(f"{BASE}/{org.id}", headers=target.auth), 404, "not_found")
        assert (await db.get(User, target.user.id)) is not None  # the account itself stays

    async def test_admin_cannot_remove_an_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin")
        owner = actors["owner"].user

        response = await client.delete(f"{BASE}/{org.id}/members/{owner.id}", headers=actors["admin"].auth)

        assert_problem(response, 403, "permission_denied")
        assert (await stored_roles(db, org.id))[owner.id] == "owner"

    async def test_last_owner_can_never_be_removed(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin")
        owner = actors["owner"]

        response = await client.delete(f"{BASE}/{org.id}/members/{owner.user.id}", headers=owner.auth)

        assert_problem(response, 409, "last_owner")
        assert (await stored_roles(db, org.id))[owner.user.id] == "owner"

    async def test_owner_removes_another_owner(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        first = await factory.actor("owner", org=org)
        second = await factory.actor("owner", org=org)

        response = await client.delete(f"{BASE}/{org.id}/members/{second.user.id}", headers=first.auth)

        assert response.status_code == 204
        assert await stored_roles(db, org.id) == {first.user.id: "owner"}

    @pytest.mark.parametrize("role", ["member", "manager", "admin"])
    async def test_a_member_may_leave(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org, actors = await team(factory, "owner", role)
        leaver = actors[role]

        response = await client.delete(f"{BASE}/{org.id}/members/{leaver.user.id}", headers=leaver.auth)

        assert response.status_code == 204
        assert leaver.user.id not in await stored_roles(db, org.id)
        listed = await client.get(BASE, headers=leaver.auth)
        assert listed.json()["total"] == 0

    async def test_one_of_two_owners_may_leave(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        first = await factory.actor("owner", org=org)
        second = await factory.actor("owner", org=org)

        response = await client.delete(f"{BASE}/{org.id}/members/{first.user.id}", headers=first.auth)

        assert response.status_code == 204
        assert await stored_roles(db, org.id) == {second.user.id: "owner"}

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_lower_roles_cannot_remove_others(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org, actors = await team(factory, "owner", role)
        victim = await factory.actor("member", org=org)

        response = await client.delete(f"{BASE}/{org.id}/members/{victim.user.id}", headers=actors[role].auth)

        assert_problem(response, 403, "permission_denied")
        assert victim.user.id in await stored_roles(db, org.id)

    async def test_unknown_member_is_not_found(self, client: AsyncClient, factory: Factory) -> None:
        org, actors = await team(factory, "owner")
        elsewhere = await factory.actor("member")

        for user_id in (elsewhere.user.id, 999999999):
            response = await client.delete(f"{BASE}/{org.id}/members/{user_id}", headers=actors["owner"].auth)
            assert_problem(response, 404, "not_found")

    async def test_non_member_gets_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "member")
        outsider = await factory.actor("owner")
        target = actors["member"].user

        response = await client.delete(f"{BASE}/{org.id}/members/{target.id}", headers=outsider.auth)

        assert_problem(response, 404, "not_found")
        assert target.id in await stored_roles(db, org.id)


class TestLowerRolesTryingEveryAdminAction:
    """A member or a manager walks every admin/owner operation of organizations, members and API
    keys: each answers 403 and nothing changes."""

    @pytest.mark.parametrize("role", ["member", "manager"])
    async def test_every_admin_action_is_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org = await factory.org(name="Stable")
        owner = await factory.actor("owner", org=org)
        colleague = await factory.actor("member", org=org)
        actor = await factory.actor(role, org=org)
        key, _ = await make_api_key(db, org, ["contacts:read"])
        stranger = await factory.user()
        await db.commit()
        roles_before = await stored_roles(db, org.id)
        tenant = {**actor.auth, "X-Organization-ID": str(org.id)}
        members = f"{BASE}/{org.id}/members"

        keys = "/api/v1/api-keys"
        attempts: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = [
            ("PUT", f"{BASE}/{org.id}", {"name": "Hijacked"}, actor.auth),
            ("DELETE", f"{BASE}/{org.id}", None, actor.auth),
            ("POST", members, {"email": stranger.email, "role": "member"}, actor.auth),
            ("POST", members, {"email": stranger.email, "role": "owner"}, actor.auth),
            ("PATCH", f"{members}/{colleague.user.id}", {"role": "admin"}, actor.auth),
            ("PATCH", f"{members}/{actor.user.id}", {"role": "admin"}, actor.auth),
            ("PATCH", f"{members}/{owner.user.id}", {"role": "member"}, actor.auth),
            ("DELETE", f"{members}/{colleague.user.id}", None, actor.auth),
            ("DELETE", f"{members}/{owner.user.id}", None, actor.auth),
            ("POST", keys, {"name": "k", "scopes": ["contacts:read"]}, tenant),
            ("GET", keys, None, tenant),
            ("GET", f"{keys}/{key.id}", None, tenant),
            ("DELETE", f"{keys}/{key.id}", None, tenant),
        ]
        for method, url, body, headers in attempts:
            response = await client.request(method, url, json=body, headers=headers)
            assert response.status_code == 403, f"{method} {url}: {response.status_code}"
            assert_problem(response, 403, "permission_denied")

        stored = await stored_org(db, org.id)
        assert (stored.name, stored.version, stored.deleted_at) == ("Stable", 1, None)
        assert await stored_roles(db, org.id) == roles_before
        stored_keys = await db.execute(select(ApiKey.id).where(ApiKey.organization_id == org.id))
        assert list(stored_keys.scalars()) == [key.id]


async def make_role(
    db: AsyncSession, org: Organization, name: str, permissions: list[str]
) -> OrganizationRole:
    role = OrganizationRole(organization_id=org.id, name=name, permissions=permissions)
    db.add(role)
    await db.flush()
    return role


async def stored_role(db: AsyncSession, role_id: int) -> OrganizationRole | None:
    result = await db.execute(
        select(OrganizationRole)
        .where(OrganizationRole.id == role_id)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


class TestListRoles:
    async def test_lists_the_custom_roles_to_members(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "member")
        first = await make_role(db, org, "auditor", ["audit:read", "contacts:read"])
        second = await make_role(db, org, "curator", ["projects:status"])
        await make_role(db, await factory.org(), "elsewhere", ["contacts:read"])

        response = await client.get(f"{BASE}/{org.id}/roles", headers=actors["member"].auth)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (6, 50, 0)
        assert [(r["name"], r["built_in"], r["id"]) for r in body["items"][:4]] == [
            ("owner", True, None),
            ("admin", True, None),
            ("manager", True, None),
            ("member", True, None),
        ]
        assert [(r["id"], r["name"], r["permissions"], r["built_in"]) for r in body["items"][4:]] == [
            (second.id, "curator", ["projects:status"], False),
            (first.id, "auditor", ["audit:read", "contacts:read"], False),
        ]

    async def test_non_member_gets_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        await make_role(db, org, "auditor", ["audit:read"])
        outsider = await factory.actor("owner")

        response = await client.get(f"{BASE}/{org.id}/roles", headers=outsider.auth)

        assert_problem(response, 404, "not_found")
        assert "auditor" not in response.text


class TestCreateRole:
    async def test_admin_defines_a_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "admin")

        response = await client.post(
            f"{BASE}/{org.id}/roles",
            json={"name": "sales-lead", "permissions": ["deals:write", "contacts:read", "deals:write"]},
            headers=actors["admin"].auth,
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["name"], body["permissions"], body["version"]) == (
            "sales-lead",
            ["contacts:read", "deals:write"],
            1,
        )
        assert response.headers["location"] == f"{BASE}/{org.id}/roles/{body['id']}"
        assert response.headers["etag"] == '"1"'
        role = await stored_role(db, body["id"])
        assert role is not None
        assert (role.organization_id, role.name, role.permissions) == (
            org.id,
            "sales-lead",
            ["contacts:read", "deals:write"],
        )

    @pytest.mark.parametrize("name", ["owner", "admin", "manager", "member"])
    async def test_built_in_roles_cannot_be_redefined(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, name: str
    ) -> None:
        org, actors = await team(factory, "owner")

        response = await client.post(
            f"{BASE}/{org.id}/roles",
            json={"name": name, "permissions": ["contacts:read"]},
            headers=actors["owner"].auth,
        )

        body = assert_problem(response, 422, "validation_error")
        assert "built-in" in body["detail"]
        listed = (await client.get(f"{BASE}/{org.id}/roles", headers=actors["owner"].auth)).json()
        assert [r["name"] for r in listed["items"] if not r["built_in"]] == []

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "Auditor", "permissions": ["audit:read"]},
            {"name": "has space", "permissions": ["audit:read"]},
            {"name": "x" * 51, "permissions": ["audit:read"]},
            {"name": "auditor", "permissions": []},
            {"name": "auditor", "permissions": ["audit:write"]},
            {"name": "auditor", "permissions": ["users:read"]},
            {"name": "co-owner", "permissions": ["owners:manage"]},
            {"name": "destroyer", "permissions": ["organization:delete"]},
            {"name": "auditor", "permissions": ["audit:read"], "organization_id": 1},
        ],
    )
    async def test_invalid_input_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, object]
    ) -> None:
        org, actors = await team(factory, "owner")

        response = await client.post(f"{BASE}/{org.id}/roles", json=body, headers=actors["owner"].auth)

        assert assert_problem(response, 422, "validation_error")["errors"]
        count = await db.scalar(select(func.count()).select_from(OrganizationRole))
        assert count == 0

    async def test_taken_name_is_a_conflict(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        existing = await make_role(db, org, "auditor", ["audit:read"])

        response = await client.post(
            f"{BASE}/{org.id}/roles",
            json={"name": "auditor", "permissions": ["contacts:read"]},
            headers=actors["owner"].auth,
        )

        assert_problem(response, 409, "role_name_taken")
        role = await stored_role(db, existing.id)
        assert role is not None
        assert role.permissions == ["audit:read"]

    async def test_same_name_in_another_organization_is_fine(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        await make_role(db, await factory.org(), "auditor", ["audit:read"])
        org, actors = await team(factory, "owner")

        response = await client.post(
            f"{BASE}/{org.id}/roles",
            json={"name": "auditor", "permissions": ["audit:read"]},
            headers=actors["owner"].auth,
        )

        assert response.status_code == 201

    async def test_permissions_beyond_the_caller_are_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        _, raw = await make_api_key(db, org, ["roles:manage", "members:read", "contacts:read"])

        response = await client.post(
            f"{BASE}/{org.id}/roles",
            json={"name": "writer", "permissions": ["contacts:read", "contacts:write"]},
            headers={"X-API-Key": raw},
        )

        body = assert_problem(response, 403, "permission_denied")
        assert body["permissions"] == ["contacts:write"]
        assert await db.scalar(select(func.count()).select_from(OrganizationRole)) == 0

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_lower_roles_are_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        org, actors = await team(factory, role)

        response = await client.post(
            f"{BASE}/{org.id}/roles",
            json={"name": "reader", "permissions": ["contacts:read"]},
            headers=actors[role].auth,
        )

        assert_problem(response, 403, "permission_denied")
        assert await db.scalar(select(func.count()).select_from(OrganizationRole)) == 0


class TestGetRole:
    async def test_returns_it_with_an_etag(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "member")
        role = await make_role(db, org, "auditor", ["audit:read"])

        response = await client.get(f"{BASE}/{org.id}/roles/{role.id}", headers=actors["member"].auth)

        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"1"'
        assert (response.json()["id"], response.json()["name"]) == (role.id, "auditor")

    async def test_another_organizations_role_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        foreign = await make_role(db, await factory.org(), "spy", ["audit:read"])

        response = await client.get(f"{BASE}/{org.id}/roles/{foreign.id}", headers=actors["owner"].auth)

        assert_problem(response, 404, "not_found")
        assert "spy" not in response.text


class TestReplaceRole:
    async def test_rename_and_new_permissions_reach_its_members_at_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        owner = await factory.actor("owner", org=org)
        role = await make_role(db, org, "keykeeper", ["api_keys:manage", "members:read"])
        holder = await factory.actor("keykeeper", org=org)
        tenant = {**holder.auth, "X-Organization-ID": str(org.id)}
        assert (await client.get("/api/v1/api-keys", headers=tenant)).status_code == 200

        response = await client.put(
            f"{BASE}/{org.id}/roles/{role.id}",
            json={"name": "viewer", "permissions": ["members:read"]},
            headers={**owner.auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"2"'
        body = response.json()
        assert (body["name"], body["permissions"], body["version"]) == ("viewer", ["members:read"], 2)
        stored = await stored_role(db, role.id)
        assert stored is not None
        assert (stored.name, stored.permissions, stored.version) == ("viewer", ["members:read"], 2)
        assert (await stored_roles(db, org.id))[holder.user.id] == "viewer"
        assert_problem(await client.get("/api/v1/api-keys", headers=tenant), 403, "permission_denied")
        members = await client.get(f"{BASE}/{org.id}/members", headers=holder.auth)
        assert members.status_code == 200

    async def test_stale_if_match_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        role = await make_role(db, org, "auditor", ["audit:read"])

        response = await client.put(
            f"{BASE}/{org.id}/roles/{role.id}",
            json={"name": "auditor", "permissions": ["contacts:read"]},
            headers={**actors["owner"].auth, "If-Match": '"7"'},
        )

        assert_problem(response, 412, "version_mismatch")
        stored = await stored_role(db, role.id)
        assert stored is not None
        assert (stored.permissions, stored.version) == (["audit:read"], 1)

    async def test_taken_name_is_a_conflict_and_members_keep_their_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        owner = await factory.actor("owner", org=org)
        await make_role(db, org, "taken", ["audit:read"])
        role = await make_role(db, org, "auditor", ["audit:read"])
        holder = await factory.actor("auditor", org=org)

        response = await client.put(
            f"{BASE}/{org.id}/roles/{role.id}",
            json={"name": "taken", "permissions": ["audit:read"]},
            headers=owner.auth,
        )

        assert_problem(response, 409, "role_name_taken")
        stored = await stored_role(db, role.id)
        assert stored is not None
        assert (stored.name, stored.version) == ("auditor", 1)
        assert (await stored_roles(db, org.id))[holder.user.id] == "auditor"

    async def test_cannot_become_a_built_in_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        role = await make_role(db, org, "auditor", ["audit:read"])

        response = await client.put(
            f"{BASE}/{org.id}/roles/{role.id}",
            json={"name": "admin", "permissions": ["audit:read"]},
            headers=actors["owner"].auth,
        )

        assert_problem(response, 422, "validation_error")
        stored = await stored_role(db, role.id)
        assert stored is not None
        assert stored.name == "auditor"

    async def test_member_is_forbidden(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        org, actors = await team(factory, "member")
        role = await make_role(db, org, "auditor", ["audit:read"])

        response = await client.put(
            f"{BASE}/{org.id}/roles/{role.id}",
            json={"name": "auditor", "permissions": ["contacts:read"]},
            headers=actors["member"].auth,
        )

        assert_problem(response, 403, "permission_denied")
        stored = await stored_role(db, role.id)
        assert stored is not None
        assert stored.permissions == ["audit:read"]

    async def test_another_organizations_role_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        foreign = await make_role(db, await factory.org(), "spy", ["audit:read"])

        response = await client.put(
            f"{BASE}/{org.id}/roles/{foreign.id}",
            json={"name": "spy", "permissions": ["contacts:read"]},
            headers=actors["owner"].auth,
        )

        assert_problem(response, 404, "not_found")
        stored = await stored_role(db, foreign.id)
        assert stored is not None
        assert stored.permissions == ["audit:read"]


class TestDeleteRole:
    async def test_unused_role_is_deleted(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "admin")
        role = await make_role(db, org, "auditor", ["audit:read"])

        response = await client.delete(f"{BASE}/{org.id}/roles/{role.id}", headers=actors["admin"].auth)

        assert response.status_code == 204
        assert await stored_role(db, role.id) is None

    async def test_role_in_use_is_a_conflict(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        owner = await factory.actor("owner", org=org)
        role = await make_role(db, org, "auditor", ["audit:read"])
        await factory.actor("auditor", org=org)

        response = await client.delete(f"{BASE}/{org.id}/roles/{role.id}", headers=owner.auth)

        body = assert_problem(response, 409, "role_in_use")
        assert body["holders"] == 1
        assert await stored_role(db, role.id) is not None

    async def test_another_organizations_role_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        foreign = await make_role(db, await factory.org(), "spy", ["audit:read"])

        response = await client.delete(f"{BASE}/{org.id}/roles/{foreign.id}", headers=actors["owner"].auth)

        assert_problem(response, 404, "not_found")
        assert await stored_role(db, foreign.id) is not None

    @pytest.mark.parametrize("role_name", ["manager", "member"])
    async def test_lower_roles_are_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role_name: str
    ) -> None:
        org, actors = await team(factory, role_name)
        role = await make_role(db, org, "auditor", ["audit:read"])

        response = await client.delete(f"{BASE}/{org.id}/roles/{role.id}", headers=actors[role_name].auth)

        assert_problem(response, 403, "permission_denied")
        assert await stored_role(db, role.id) is not None


class TestCustomRoleMembership:
    async def test_admin_gives_a_custom_role(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner", "admin", "member")
        await make_role(db, org, "auditor", ["audit:read", "members:read"])
        newcomer = await factory.user()

        added = await client.post(
            f"{BASE}/{org.id}/members",
            json={"email": newcomer.email, "role": "auditor"},
            headers=actors["admin"].auth,
        )
        changed = await client.patch(
            f"{BASE}/{org.id}/members/{actors['member'].user.id}",
            json={"role": "auditor"},
            headers=actors["admin"].auth,
        )

        assert added.status_code == 201, added.text
        assert added.json()["role"] == "auditor"
        assert changed.status_code == 200, changed.text
        roles = await stored_roles(db, org.id)
        assert (roles[newcomer.id], roles[actors["member"].user.id]) == ("auditor", "auditor")

    async def test_unknown_role_is_a_validation_error(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        await make_role(db, await factory.org(), "elsewhere", ["audit:read"])
        newcomer = await factory.user()

        response = await client.post(
            f"{BASE}/{org.id}/members",
            json={"email": newcomer.email, "role": "elsewhere"},
            headers=actors["owner"].auth,
        )

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "role"]
        assert newcomer.id not in await stored_roles(db, org.id)

    async def test_holder_gets_exactly_the_roles_permissions(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        await make_role(db, org, "people", ["members:read", "members:manage"])
        holder = await factory.actor("people", org=org)
        newcomer = await factory.user()

        listed = await client.get(f"{BASE}/{org.id}/members", headers=holder.auth)
        org_read = await client.get(f"{BASE}/{org.id}", headers=holder.auth)
        as_member = await client.post(
            f"{BASE}/{org.id}/members", json={"email": newcomer.email, "role": "member"}, headers=holder.auth
        )
        as_peer = await client.post(
            f"{BASE}/{org.id}/members", json={"email": newcomer.email, "role": "people"}, headers=holder.auth
        )

        assert listed.status_code == 200
        assert_problem(org_read, 403, "permission_denied")  # `organization:read` is not in the role
        assert_problem(as_member, 403, "permission_denied")  # `member` grants more than the holder has
        assert as_peer.status_code == 201, as_peer.text
        assert (await stored_roles(db, org.id))[newcomer.id] == "people"

    async def test_role_shows_in_my_organizations(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        await make_role(db, org, "auditor", ["audit:read"])
        holder = await factory.actor("auditor", org=org)

        response = await client.get(BASE, headers=holder.auth)

        assert [(o["id"], o["role"]) for o in response.json()["items"]] == [(org.id, "auditor")]


class TestIdempotentCreates:
    async def test_repeated_organization_create_returns_the_first_response(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.actor("member")
        headers = {**user.auth, "Idempotency-Key": "create-acme"}
        before = await org_count(db)

        first = await client.post(BASE, json={"name": "Acme"}, headers=headers)
        again = await client.post(BASE, json={"name": "Acme"}, headers=headers)
        other = await client.post(BASE, json={"name": "Other"}, headers=headers)

        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert_problem(other, 422, "idempotency_key_reused")
        assert await org_count(db) == before + 1

    async def test_repeated_member_add_returns_the_first_response(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, actors = await team(factory, "owner")
        newcomer = await factory.user()
        headers = {**actors["owner"].auth, "Idempotency-Key": "add-1"}
        body = {"email": newcomer.email, "role": "manager"}

        first = await client.post(f"{BASE}/{org.id}/members", json=body, headers=headers)
        again = await client.post(f"{BASE}/{org.id}/members", json=body, headers=headers)

        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert (await stored_roles(db, org.id))[newcomer.id] == "manager"

"""The cached answer to "what may this user do here" follows membership changes at once."""

from __future__ import annotations

from sqlalchemy import select

from crm.models import Membership, Organization


class TestAccessCache:
    async def test_demotion_applies_to_the_next_request(self, client, factory, redis):
        owner = await factory.actor("owner")
        admin = await factory.actor("admin", org=await _org(factory, owner))
        assert (await client.get("/api/v1/api-keys", headers=admin.headers)).status_code == 200
        assert await redis.exists(f"acc:{owner.org_id}:{admin.user.id}")  # the answer is cached

        demoted = await client.patch(
            f"/api/v1/organizations/{owner.org_id}/members/{admin.user.id}",
            json={"role": "member"},
            headers=owner.auth,
        )
        assert demoted.status_code == 200, demoted.text

        response = await client.get("/api/v1/api-keys", headers=admin.headers)
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"

    async def test_removed_member_is_refused_at_once(self, client, factory, db):
        owner = await factory.actor("owner")
        manager = await factory.actor("manager", org=await _org(factory, owner))
        assert (await client.get("/api/v1/contacts", headers=manager.headers)).status_code == 200

        removed = await client.delete(
            f"/api/v1/organizations/{owner.org_id}/members/{manager.user.id}", headers=owner.auth
        )
        assert removed.status_code == 204
        assert (
            await db.execute(select(Membership).where(Membership.user_id == manager.user.id))
        ).first() is None

        response = await client.get("/api/v1/contacts", headers=manager.headers)
        assert response.status_code == 403
        assert response.json()["code"] == "not_a_member"

    async def test_logout_still_refuses_a_cached_member(self, client, factory):
        owner = await factory.actor("owner")
        assert (await client.get("/api/v1/contacts", headers=owner.headers)).status_code == 200
        assert (await client.post("/api/v1/auth/logout", headers=owner.auth)).status_code == 204
        response = await client.get("/api/v1/contacts", headers=owner.headers)
        assert response.status_code == 401


async def _org(factory, owner):
    return await factory.db.get(Organization, owner.org_id)

"""List totals come from the organization's cache and stay exact across writes (SPEC §19.17)."""

from __future__ import annotations


class TestCachedTotals:
    async def test_total_is_cached_and_follows_writes(self, client, factory, redis):
        owner = await factory.actor("manager")
        h = owner.headers
        for name in ("Anna", "Boris"):
            assert (
                await client.post("/api/v1/contacts", json={"full_name": name}, headers=h)
            ).status_code == 201

        first = await client.get("/api/v1/contacts", headers=h)
        assert first.json()["total"] == 2
        assert [k async for k in redis.scan_iter(f"cache:{owner.org_id}:count:contact*")]

        created = await client.post("/api/v1/contacts", json={"full_name": "Clara"}, headers=h)
        assert created.status_code == 201
        assert (await client.get("/api/v1/contacts", headers=h)).json()["total"] == 3

        deleted = await client.delete(f"/api/v1/contacts/{created.json()['id']}", headers=h)
        assert deleted.status_code == 204
        assert (await client.get("/api/v1/contacts", headers=h)).json()["total"] == 2

    async def test_filters_have_their_own_totals(self, client, factory):
        owner = await factory.actor("manager")
        h = owner.headers
        await client.post("/api/v1/contacts", json={"full_name": "Иванов Иван", "tags": ["vip"]}, headers=h)
        await client.post("/api/v1/contacts", json={"full_name": "Petrov"}, headers=h)
        assert (await client.get("/api/v1/contacts?tag=vip", headers=h)).json()["total"] == 1
        assert (await client.get("/api/v1/contacts?q=иван", headers=h)).json()["total"] == 1
        assert (await client.get("/api/v1/contacts", headers=h)).json()["total"] == 2

    async def test_totals_without_redis(self, redis_down_client, factory):
        owner = await factory.actor("manager")
        h = owner.headers
        response = await redis_down_client.post("/api/v1/contacts", json={"full_name": "Anna"}, headers=h)
        assert response.status_code == 201
        assert (await redis_down_client.get("/api/v1/contacts", headers=h)).json()["total"] == 1

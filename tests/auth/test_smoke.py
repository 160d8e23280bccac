async def test_register_then_me(client, factory):
    owner = await factory.actor("owner")
    response = await client.get("/api/v1/auth/me", headers=owner.auth)
    assert response.status_code == 200
    assert response.json()["memberships"][0]["role"] == "owner"

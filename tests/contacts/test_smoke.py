async def test_contact_crud_smoke(client, factory):
    owner = await factory.actor("owner")
    h = owner.headers
    r = await client.post("/api/v1/contacts", json={"full_name": "Иванов Иван", "email": "Ivan@Example.com",
                                                     "phone": "+7(921)345-19-48"}, headers=h)
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["phone"] == "+79213451948" and c["phone_raw"] == "+7(921)345-19-48"
    assert c["email"] == "ivan@example.com"
    r = await client.post("/api/v1/contacts", json={"full_name": "Dup", "email": "IVAN@example.com"}, headers=h)
    assert r.status_code == 409, r.text
    r = await client.get(f"/api/v1/contacts/{c['id']}", headers=h)
    assert r.headers["etag"] == '"1"'
    r = await client.patch(f"/api/v1/contacts/{c['id']}", json={"job_title": "CEO"}, headers={**h, "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    r = await client.patch(f"/api/v1/contacts/{c['id']}", json={"job_title": "CTO"}, headers={**h, "If-Match": '"1"'})
    assert r.status_code == 412, r.text
    r = await client.get("/api/v1/contacts?q=иван", headers=h)
    assert r.json()["total"] == 1, r.text
    r = await client.get(f"/api/v1/contacts/{c['id']}/activities", headers=h)
    assert [a["action"] for a in r.json()["items"]] == ["updated", "created"], r.text
    r = await client.post("/api/v1/contacts", json={"full_name": "Idem"}, headers={**h, "Idempotency-Key": "k1"})
    r2 = await client.post("/api/v1/contacts", json={"full_name": "Idem"}, headers={**h, "Idempotency-Key": "k1"})
    assert r.status_code == r2.status_code == 201 and r.json()["id"] == r2.json()["id"], r2.text
    r3 = await client.post("/api/v1/contacts", json={"full_name": "Other"}, headers={**h, "Idempotency-Key": "k1"})
    assert r3.status_code == 422, r3.text
    r = await client.delete(f"/api/v1/contacts/{c['id']}", headers=h)
    assert r.status_code == 204
    r = await client.get(f"/api/v1/contacts/{c['id']}", headers=h)
    assert r.status_code == 404
    r = await client.post(f"/api/v1/contacts/{c['id']}/restore", headers=h)
    assert r.status_code == 200, r.text

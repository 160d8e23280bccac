"""The flows of a single-page app written against the API (SPEC §20.1, §20.2, §20.3, §20.12 415,
§20.16): login → no organization header → lists work; pages counted with `page`/`page_size`;
an unknown query parameter → 422 naming it; a JSON body sent as another type → 415."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Contact
from tests.factories import PASSWORD, Factory, assert_problem


async def _contacts(db: AsyncSession, organization_id: int, count: int) -> None:
    db.add_all(Contact(organization_id=organization_id, full_name=f"Contact {n:03d}") for n in range(count))
    await db.commit()


async def test_spa_login_then_list_without_the_header(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor("owner")
    await _contacts(factory.db, owner.org_id or 0, 3)

    login = await client.post("/api/v1/auth/login", json={"email": owner.user.email, "password": PASSWORD})
    assert login.status_code == 200
    token = login.json()["access_token"]
    listing = await client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {token}"})

    assert listing.status_code == 200, listing.text
    assert listing.json()["total"] == 3


async def test_page_and_page_size(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor("owner")
    await _contacts(factory.db, owner.org_id or 0, 45)

    page2 = await client.get("/api/v1/contacts?page=2&page_size=20&sort=full_name", headers=owner.headers)
    same = await client.get("/api/v1/contacts?offset=20&limit=20&sort=full_name", headers=owner.headers)
    last = await client.get("/api/v1/contacts?page=3&page_size=20", headers=owner.headers)
    first = await client.get("/api/v1/contacts?page=1", headers=owner.headers)

    assert page2.status_code == 200, page2.text
    body = page2.json()
    assert (body["total"], body["limit"], body["offset"]) == (45, 20, 20)
    assert [c["full_name"] for c in body["items"]] == [f"Contact {n:03d}" for n in range(20, 40)]
    assert body == same.json()
    assert len(last.json()["items"]) == 5
    assert (first.json()["limit"], first.json()["offset"], len(first.json()["items"])) == (50, 0, 45)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("page=2&offset=10", ["offset"]),
        ("page_size=10&limit=10", ["limit"]),
        ("page=1&page_size=10&limit=5&offset=0", ["limit", "offset"]),
    ],
)
async def test_mixing_paging_styles_is_422(
    client: AsyncClient, factory: Factory, query: str, named: list[str]
) -> None:
    owner = await factory.actor("owner")

    response = await client.get(f"/api/v1/contacts?{query}", headers=owner.headers)

    body = assert_problem(response, 422, "validation_error")
    assert [e["loc"] for e in body["errors"]] == [["query", name] for name in named]


@pytest.mark.parametrize("query", ["page=0", "page_size=201", "page_size=0", "page=100000&page_size=200"])
async def test_out_of_range_pages_are_422(client: AsyncClient, factory: Factory, query: str) -> None:
    owner = await factory.actor("owner")

    response = await client.get(f"/api/v1/contacts?{query}", headers=owner.headers)

    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("path", "query", "unknown"),
    [
        ("/api/v1/contacts", "serach=anna", ["serach"]),
        ("/api/v1/contacts", "search=anna&q=anna&colour=red", ["colour", "search"]),
        ("/api/v1/companies", "stage=lead", ["stage"]),
        ("/api/v1/deals", "cf.budget=1&x=1", ["x"]),
        ("/api/v1/auth/me", "verbose=1", ["verbose"]),
        ("/api/v1/analytics/dashboard", "foo=1", ["foo"]),
        ("/api/v1/api-keys", "cf.x=1", ["cf.x"]),
    ],
)
async def test_unknown_query_parameters_are_named(
    client: AsyncClient, factory: Factory, path: str, query: str, unknown: list[str]
) -> None:
    owner = await factory.actor("owner")

    response = await client.get(f"{path}?{query}", headers=owner.headers)

    body = assert_problem(response, 422, "unknown_parameter")
    assert body["parameters"] == unknown
    assert [e["loc"] for e in body["errors"]] == [["query", name] for name in unknown]
    assert all(name in body["detail"] for name in unknown)


async def test_known_parameters_and_custom_field_filters_pass(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor("owner")
    field = await client.post(
        "/api/v1/custom-fields",
        json={"entity": "contact", "key": "city", "label": "City", "type": "text"},
        headers=owner.headers,
    )
    assert field.status_code == 201, field.text

    response = await client.get(
        "/api/v1/contacts?q=a&cf.city=Omsk&limit=5&offset=0&sort=-created_at", headers=owner.headers
    )

    assert response.status_code == 200, response.text


async def test_unknown_parameter_on_a_write_changes_nothing(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    owner = await factory.actor("owner")

    response = await client.post("/api/v1/contacts?dry_run=1", json={"full_name": "X"}, headers=owner.headers)

    assert_problem(response, 422, "unknown_parameter")
    assert await db.scalar(select(func.count()).select_from(Contact)) == 0


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/html", None]
)
async def test_json_body_with_another_content_type_is_415(
    client: AsyncClient, factory: Factory, db: AsyncSession, content_type: str | None
) -> None:
    owner = await factory.actor("owner")

    headers = dict(owner.headers)
    if content_type:
        headers["Content-Type"] = content_type

    response = await client.post("/api/v1/contacts", content=b'{"full_name": "Plain"}', headers=headers)

    body = assert_problem(response, 415, "unsupported_media_type")
    assert body["accepted"] == ["application/json"]
    assert await db.scalar(select(func.count()).select_from(Contact)) == 0


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]
)
async def test_json_content_types_are_accepted(
    client: AsyncClient, factory: Factory, content_type: str
) -> None:
    owner = await factory.actor("owner")
    headers = {**owner.headers, "Content-Type": content_type}

    response = await client.post("/api/v1/contacts", content=b'{"full_name": "Json"}', headers=headers)

    assert response.status_code == 201, response.text


async def test_form_endpoints_keep_their_type(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor("owner")

    response = await client.post(
        "/api/v1/auth/token", data={"username": owner.user.email, "password": PASSWORD}
    )

    assert response.status_code == 200, response.text


async def test_login_token_and_refresh_carry_the_user(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor("owner", full_name="Olga Owner")
    expected = {
        "id": owner.user.id,
        "email": owner.user.email,
        "full_name": "Olga Owner",
        "is_superuser": False,
    }

    login = await client.post("/api/v1/auth/login", json={"email": owner.user.email, "password": PASSWORD})
    form = await client.post("/api/v1/auth/token", data={"username": owner.user.email, "password": PASSWORD})
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})

    for response in (login, form, refresh):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user"] == expected
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {refresh.json()['access_token']}"}
    )
    assert me.json()["id"] == owner.user.id

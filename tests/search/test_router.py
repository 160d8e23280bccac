"""`GET /api/v1/search`: one ranked list across contacts, companies and deals (SPEC §8, §18, §19.15)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from tests.analytics.support import make_company, make_contact, make_deal, make_pipeline
from tests.factories import Actor, Factory, add_member, assert_problem, make_api_key, make_org

URL = "/api/v1/search"


async def search(client: AsyncClient, actor: Actor, q: str, **params: Any) -> dict[str, Any]:
    response = await client.get(URL, params={"q": q, **params}, headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def found(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["type"], item["title"]) for item in body["items"]]


class TestSearch:
    async def test_cyrillic_word_finds_its_forms(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        ivanov = await make_contact(
            db, actor.org_id, "Иванов Иван", email="ivan@example.com", phone="+79213451948"
        )
        await make_contact(db, actor.org_id, "Петров Пётр")

        body = await search(client, actor, "иванов")

        assert body["items"] == [
            {
                "type": "contact",
                "id": ivanov.id,
                "title": "Иванов Иван",
                "subtitle": "ivan@example.com · +79213451948",
                "rank": body["items"][0]["rank"],
            }
        ]
        assert body["items"][0]["rank"] > 0
        assert (body["total"], body["limit"], body["offset"]) == (1, 50, 0)

    async def test_stemming_matches_another_case_of_the_word(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await make_company(db, actor.org_id, "Северная логистическая компания")

        body = await search(client, actor, "компании")

        assert found(body) == [("company", "Северная логистическая компания")]

    async def test_cyrillic_typo_is_found_by_trigrams(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await make_contact(db, actor.org_id, "Иванов Иван")
        await make_contact(db, actor.org_id, "Сидорова Анна")

        body = await search(client, actor, "Иваноф")

        assert found(body) == [("contact", "Иванов Иван")]

    async def test_latin_typo_is_found_by_trigrams(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await make_contact(db, actor.org_id, "Ivan Petrov")
        await make_contact(db, actor.org_id, "Emma Smith")

        body = await search(client, actor, "Ivanv")

        assert found(body) == [("contact", "Ivan Petrov")]

    async def test_english_words_are_stemmed(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        pipeline = await make_pipeline(db, actor.org_id)
        await make_deal(db, actor.org_id, pipeline, title="Servers for the warehouses")

        body = await search(client, actor, "warehouse server")

        assert found(body) == [("deal", "Servers for the warehouses")]

    async def test_word_prefix_matches(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        await make_company(db, actor.org_id, "Техносервис")

        body = await search(client, actor, "техно")

        assert found(body) == [("company", "Техносервис")]

    async def test_email_finds_the_contact(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await make_contact(db, actor.org_id, "Иванов Иван", email="ivan@example.com")
        await make_contact(db, actor.org_id, "Someone Else", email="else@example.com")

        body = await search(client, actor, "ivan@example.com")

        assert found(body) == [("contact", "Иванов Иван")]

    async def test_one_list_across_entities_best_match_first(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        pipeline = await make_pipeline(db, actor.org_id)
        company = await make_company(db, actor.org_id, "Иванов и партнёры", inn="7707083893", industry="IT")
        contact = await make_contact(db, actor.org_id, "Иванов")
        deal = await make_deal(
            db, actor.org_id, pipeline, title="Поставка для Иванова", amount="150000.5", stage="proposal"
        )
        await make_contact(db, actor.org_id, "Петрова Мария")

        body = await search(client, actor, "Иванов")

        assert [(i["type"], i["id"]) for i in body["items"]] == [
            ("contact", contact.id),
            ("company", company.id),
            ("deal", deal.id),
        ]
        ranks = [i["rank"] for i in body["items"]]
        assert ranks == sorted(ranks, reverse=True)
        assert ranks[0] > ranks[1]
        subtitles = {i["type"]: i["subtitle"] for i in body["items"]}
        assert subtitles == {
            "contact": None,
            "company": "ИНН 7707083893 · IT",
            "deal": "150000.50 RUB · proposal",
        }
        assert body["total"] == 3

    async def test_types_limits_the_entities(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        pipeline = await make_pipeline(db, actor.org_id)
        await make_company(db, actor.org_id, "Альфа")
        await make_contact(db, actor.org_id, "Альфа Контакт")
        await make_deal(db, actor.org_id, pipeline, title="Альфа сделка")

        body = await search(client, actor, "альфа", types="deals,companies")

        assert sorted(found(body)) == [("company", "Альфа"), ("deal", "Альфа сделка")]
        assert body["total"] == 2

    async def test_types_projects_leaves_other_entities_out(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await make_contact(db, actor.org_id, "Альфа Контакт")

        body = await search(client, actor, "альфа", types="projects")

        assert body == {"items": [], "total": 0, "limit": 50, "offset": 0}

    async def test_pages_keep_the_total(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        for n in range(5):
            await make_contact(db, actor.org_id, f"Смирнов {n}")

        first = await search(client, actor, "смирнов", limit=2)
        second = await search(client, actor, "смирнов", limit=2, offset=2)
        beyond = await search(client, actor, "смирнов", limit=2, offset=10)

        assert (len(first["items"]), first["total"]) == (2, 5)
        assert (len(second["items"]), second["total"]) == (2, 5)
        assert {i["id"] for i in first["items"]}.isdisjoint({i["id"] for i in second["items"]})
        assert beyond == {"items": [], "total": 5, "limit": 2, "offset": 10}

    async def test_other_organizations_and_deleted_rows_never_appear(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        other = await make_org(db)
        other_pipeline = await make_pipeline(db, other.id)
        mine = await make_contact(db, actor.org_id, "Кузнецов Олег")
        await make_contact(db, actor.org_id, "Кузнецов Удалённый", deleted_at=datetime.now(UTC))
        await make_contact(db, other.id, "Кузнецов Чужой")
        await make_company(db, other.id, "Кузнецов и Ко")
        await make_deal(db, other.id, other_pipeline, title="Кузнецов сделка")

        body = await search(client, actor, "Кузнецов")

        assert [(i["type"], i["id"]) for i in body["items"]] == [("contact", mine.id)]
        assert body["total"] == 1

    async def test_nothing_found(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        await make_contact(db, actor.org_id, "Иванов Иван")

        body = await search(client, actor, "xyzzy")

        assert body == {"items": [], "total": 0, "limit": 50, "offset": 0}

    async def test_query_syntax_characters_are_plain_text(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await make_contact(db, actor.org_id, "O'Brien Sean")

        body = await search(client, actor, "o'brien & | ! ( ) :* <-> \\")

        assert found(body) == [("contact", "O'Brien Sean")]

    async def test_unknown_type_is_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await client.get(URL, params={"q": "x", "types": "contacts,users"}, headers=actor.headers)

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["query", "types"]

    async def test_missing_query_is_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await client.get(URL, headers=actor.headers)

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["query", "q"]

    async def test_too_long_query_is_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await client.get(URL, params={"q": "я" * 201}, headers=actor.headers)

        assert_problem(response, 422, "validation_error")

    async def test_blank_query_is_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        response = await client.get(URL, params={"q": " \x00\t "}, headers=actor.headers)

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["query", "q"]

    async def test_without_organization_header_is_400(self, client: AsyncClient, factory: Factory) -> None:
        """A member of several organizations must name one (§20.1)."""
        actor = await factory.actor("member")
        await add_member(factory.db, await make_org(factory.db), actor.user, "member")
        await factory.db.commit()

        response = await client.get(URL, params={"q": "x"}, headers=actor.auth)

        assert_problem(response, 400, "organization_required")

    async def test_api_key_without_search_scope_is_403(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await make_org(db)
        _, raw = await make_api_key(db, org, ["contacts:read"])

        response = await client.get(URL, params={"q": "x"}, headers={"X-API-Key": raw})

        assert_problem(response, 403, "permission_denied")

    async def test_api_key_with_search_scope_searches_its_organization(
        self, client: AsyncClient, db: AsyncSession
    ) -> None:
        org = await make_org(db)
        await make_contact(db, org.id, "Иванов Иван")
        _, raw = await make_api_key(db, org, ["search:read"])

        response = await client.get(URL, params={"q": "иван"}, headers={"X-API-Key": raw})

        assert response.status_code == 200, response.text
        assert found(response.json()) == [("contact", "Иванов Иван")]

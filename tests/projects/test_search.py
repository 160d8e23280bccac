"""Projects in the cross-entity search (SPEC §8, §19.15)."""

from __future__ import annotations

from httpx import AsyncClient

from tests.factories import Factory
from tests.projects.support import PROJECTS, create_project

URL = "/api/v1/search"


class TestProjectSearch:
    async def test_a_russian_word_finds_the_project_in_another_form(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        manager = await factory.actor("manager")
        project = await create_project(
            client, manager, name="Строительство гостиницы", external_code="INV-9", city="Выборг"
        )
        await create_project(client, manager, name="Молочная ферма")

        response = await client.get(URL, params={"q": "гостиница"}, headers=manager.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert [(i["type"], i["id"], i["title"]) for i in body["items"]] == [
            ("project", project["id"], "Строительство гостиницы")
        ]
        assert body["items"][0]["subtitle"] == "INV-9 · Выборг · draft"
        assert body["total"] == 1

    async def test_types_projects_limits_the_search_and_deleted_ones_are_hidden(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")
        await client.post("/api/v1/companies", json={"name": "Агрохолдинг"}, headers=owner.headers)
        kept = await create_project(client, owner, name="Агрокомплекс Север")
        gone = await create_project(client, owner, name="Агрокомплекс Юг")
        await client.delete(f"{PROJECTS}/{gone['id']}", headers=owner.headers)

        only = await client.get(URL, params={"q": "агрокомплекс", "types": "projects"}, headers=owner.headers)

        assert [(i["type"], i["id"]) for i in only.json()["items"]] == [("project", kept["id"])]

    async def test_another_organizations_projects_are_not_found(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        mine, theirs = await factory.actor("manager"), await factory.actor("manager")
        await create_project(client, theirs, name="Горнолыжный курорт")

        response = await client.get(URL, params={"q": "курорт"}, headers=mine.headers)

        assert response.json()["items"] == []

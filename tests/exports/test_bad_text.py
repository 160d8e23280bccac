"""Text PostgreSQL cannot hold (a NUL) in an export's filters is a 422 before any byte of a file is
sent, and a query that fails is an error response, never a 200 broken off mid-file."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.schemas import storable_query
from crm.exports.repository import ExportQuery
from crm.exports.service import ExportPlan, stream
from crm.models import Contact
from tests.exports.conftest import World
from tests.exports.support import ENTITIES, EXPORTS
from tests.factories import assert_problem

#: A text filter of each entity's list, and a value with a NUL in it.
TEXT_FILTER = {"contacts": "q", "companies": "q", "deals": "q", "projects": "q"}


def nul_query(entity: str, fmt: str, where: str) -> str:
    if where == "value":
        return f"format={fmt}&{TEXT_FILTER[entity]}=ab%00cd"
    if where == "custom_field":
        return f"format={fmt}&cf.segment=x%00"
    return f"format={fmt}&q%00=1"  # the parameter's name


class TestNul:
    @pytest.mark.parametrize("where", ["value", "custom_field", "name"])
    @pytest.mark.parametrize("fmt", ["csv", "xlsx"])
    @pytest.mark.parametrize("entity", ENTITIES)
    async def test_nul_in_a_filter_is_422_problem(
        self, client: AsyncClient, world: World, entity: str, fmt: str, where: str
    ) -> None:
        response = await client.get(
            f"{EXPORTS}/{entity}?{nul_query(entity, fmt, where)}", headers=world.owner.headers
        )

        body = assert_problem(response, 422, "validation_error")
        assert "content-disposition" not in response.headers
        assert body["errors"][0]["loc"][0] == "query"
        assert body["errors"][0]["msg"] == "NUL characters are not allowed"

    async def test_raw_nul_byte_and_list_routes_too(self, client: AsyncClient, world: World) -> None:
        for path in ("/api/v1/contacts?q=a%00", "/api/v1/companies?q=%00", "/api/v1/deals?q=%00"):
            response = await client.get(path, headers=world.owner.headers)
            body = assert_problem(response, 422, "validation_error")
            assert body["errors"] == [
                {"loc": ["query", "q"], "msg": "NUL characters are not allowed", "type": "value_error"}
            ]

    async def test_an_escaped_percent_is_ordinary_text(self, client: AsyncClient, world: World) -> None:
        # `%2500` is the three characters "%00", not a NUL.
        response = await client.get(f"{EXPORTS}/contacts?q=%2500", headers=world.owner.headers)

        assert response.status_code == 200, response.text


class TestFailingQuery:
    @pytest.mark.parametrize("fmt", ["csv", "xlsx"])
    @pytest.mark.parametrize("entity", ["contacts", "companies", "deals"])
    async def test_a_query_postgresql_refuses_is_a_problem_not_a_broken_file(
        self, app: Any, client: AsyncClient, world: World, entity: str, fmt: str
    ) -> None:
        """With the up-front check switched off, the NUL reaches PostgreSQL: the export's first query
        fails before the status line is sent, so the answer is still a clean 422."""
        app.dependency_overrides[storable_query] = lambda: None
        try:
            response = await client.get(
                f"{EXPORTS}/{entity}?format={fmt}&q=ab%00cd", headers=world.owner.headers
            )
        finally:
            app.dependency_overrides.pop(storable_query)

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"][0] == "query"
        assert "content-disposition" not in response.headers
        # The request's session is usable afterwards: the next export works.
        again = await client.get(f"{EXPORTS}/{entity}?format={fmt}", headers=world.owner.headers)
        assert again.status_code == 200, again.text

    async def test_the_first_query_runs_before_the_file_is_answered(self, db: AsyncSession) -> None:
        """`stream` raises at once when the query fails, so the router answers with a problem
        instead of a 200 followed by a broken body."""
        bad = select(Contact.id.label("c0"), literal("x\x00y").label("custom_fields"))
        plan = ExportPlan("contacts", "csv", ExportQuery([], bad), [])

        with pytest.raises(DBAPIError):
            await stream(db, plan)
        await db.rollback()

    async def test_an_empty_export_still_streams_its_header(self, db: AsyncSession, world: World) -> None:
        plan = ExportPlan("contacts", "csv", ExportQuery([], select(Contact.id).where(Contact.id < 0)), [])

        chunks: list[Any] = [chunk async for chunk in await stream(db, plan)]

        assert chunks == ["\ufeff\r\n".encode()]

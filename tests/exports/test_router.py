"""`GET /exports/{entity}`: content against what is stored, filters as the list, escaping, scoping,
permissions and refusals."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from httpx import AsyncClient
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.imports.fields import ENTITIES as IMPORT_FIELDS
from crm.models import Contact, Organization
from tests.exports.conftest import World
from tests.exports.support import (
    ENTITIES,
    csv_table,
    export,
    org_of,
    stored_rows,
    table,
    xlsx_values,
)
from tests.factories import Factory, add_member, assert_problem, make_api_key, make_org

FORMATS = ("csv", "xlsx")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Columns an export adds beside the import's fields.
EXTRA = {"id", "created_at", "updated_at"}


def ids_of(rows: list[dict[str, str]]) -> list[int]:
    return [int(r["id"]) for r in rows]


class TestContent:
    @pytest.mark.parametrize("fmt", FORMATS)
    @pytest.mark.parametrize("entity", ENTITIES)
    async def test_rows_are_what_is_stored(
        self, client: AsyncClient, db: AsyncSession, world: World, entity: str, fmt: str
    ) -> None:
        response = await export(client, world.owner, entity, fmt)

        headers, rows = table(response, fmt)
        expected = await stored_rows(db, entity, world.ids[entity], world.cf[entity])
        if fmt == "xlsx":  # XML cannot hold most control characters: they are dropped
            expected = [{k: ILLEGAL_CHARACTERS_RE.sub("", v) for k, v in row.items()} for row in expected]
        assert headers == list(expected[0])
        assert rows == expected

    @pytest.mark.parametrize("entity", ENTITIES)
    async def test_headers_are_the_import_fields(
        self, client: AsyncClient, world: World, entity: str
    ) -> None:
        response = await export(client, world.owner, entity)

        headers, _ = csv_table(response)
        own = [h for h in headers if h not in EXTRA and not h.startswith("cf.")]
        own += ["id"] if "id" in IMPORT_FIELDS[entity].fields else []
        assert sorted(own) == sorted(IMPORT_FIELDS[entity].fields)
        assert [h for h in headers if h in IMPORT_FIELDS[entity].fields] == list(IMPORT_FIELDS[entity].fields)
        assert headers[0] == "id"
        assert headers[-2:] == ["created_at", "updated_at"]
        assert [h for h in headers if h.startswith("cf.")] == [f"cf.{k}" for k in world.cf[entity]]

    @pytest.mark.parametrize(("fmt", "media_type"), [("csv", "text/csv; charset=utf-8"), ("xlsx", XLSX)])
    async def test_file_headers(self, client: AsyncClient, world: World, fmt: str, media_type: str) -> None:
        response = await export(client, world.owner, "contacts", fmt)

        assert response.status_code == 200
        assert response.headers["content-type"] == media_type
        today = datetime.now(UTC).date().isoformat()
        assert response.headers["content-disposition"] == f'attachment; filename="contacts-{today}.{fmt}"'
        assert response.headers["cache-control"] == "no-store"

    async def test_csv_is_utf8_with_bom_and_crlf(self, client: AsyncClient, world: World) -> None:
        response = await export(client, world.owner, "contacts")

        assert response.content.startswith(b"\xef\xbb\xbfid,full_name,")
        assert "Иван Петров".encode() in response.content
        assert response.content.endswith(b"\r\n")
        _, rows = csv_table(response)
        assert rows[1]["notes"] == 'line 1\nline 2, "quoted"'

    async def test_csv_is_the_default_format(self, client: AsyncClient, world: World) -> None:
        response = await client.get("/api/v1/exports/companies", headers=world.owner.headers)

        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert ids_of(csv_table(response)[1]) == world.ids["companies"]

    async def test_xlsx_cells_are_typed(self, client: AsyncClient, world: World) -> None:
        response = await export(client, world.owner, "projects", "xlsx")

        _, records = xlsx_values(response)
        hotel = records[1]
        assert hotel["id"] == world.ids["projects"][1]
        assert hotel["jobs_count"] == 85
        assert hotel["own_funds_amount"] == 25000000.0
        assert hotel["requested_support_amount"] == 12000000.5
        assert hotel["client_inn"] == str(hotel["client_inn"])  # INNs stay text (leading zeros)
        assert hotel["cf.score"] == 3
        deals = xlsx_values(await export(client, world.owner, "deals", "xlsx"))[1]
        assert deals[1]["expected_close_date"] == datetime(2026, 12, 31)

    async def test_empty_result_has_the_header_row(self, client: AsyncClient, world: World) -> None:
        for fmt in FORMATS:
            response = await export(client, world.owner, "deals", fmt, q="no such deal")
            headers, rows = table(response, fmt)
            assert headers[:3] == ["id", "title", "amount"]
            assert rows == []

    async def test_many_rows_stream_in_chunks(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")
        count = 2_345  # more than two cursor chunks
        await db.execute(
            insert(Contact),
            [
                {"organization_id": org_of(owner), "full_name": f"Person {i:05d}", "phone": f"+7921{i:07d}"}
                for i in range(count)
            ],
        )
        await db.commit()

        for fmt in FORMATS:
            response = await export(client, owner, "contacts", fmt, sort="full_name")
            _, rows = table(response, fmt)
            assert len(rows) == count
            assert [r["full_name"] for r in rows[:2]] == ["Person 00000", "Person 00001"]
            assert rows[-1]["phone"] == f"+7921{count - 1:07d}"


class TestFilters:
    """The export holds exactly what the list returns for the same query, in the same order."""

    CASES: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("contacts", {"q": "иван"}),
        ("contacts", {"q": "8 921 345"}),
        ("contacts", {"tag": "lead"}),
        ("contacts", {"email": "ANNA-main@example.com"}),
        ("contacts", {"cf.segment": "-minus"}),
        ("contacts", {"cf.channels": "phone"}),
        ("contacts", {"sort": "full_name"}),
        ("contacts", {"created_from": "2000-01-01T00:00:00Z", "sort": "-updated_at"}),
        ("companies", {"q": "ромашка"}),
        ("companies", {"industry": "tourism"}),
        ("companies", {"cf.vip": "true"}),
        ("companies", {"source": "manual", "sort": "name"}),
        ("deals", {"amount_min": "100", "amount_max": "200000"}),
        ("deals", {"status": "new", "stage": "lead", "amount_min": "1"}),
        ("deals", {"q": "hyperlink"}),
        ("deals", {"cf.score": "7"}),
        ("deals", {"sort": "amount"}),
        ("projects", {"status": "submitted"}),
        ("projects", {"amount_min": "1000000"}),
        ("projects", {"q": "ферма"}),
        ("projects", {"cf.channels": "web"}),
        ("projects", {"sort": "-jobs_count"}),
    ]

    @pytest.mark.parametrize(("entity", "query"), CASES)
    async def test_same_rows_as_the_list(
        self, client: AsyncClient, world: World, entity: str, query: dict[str, Any]
    ) -> None:
        listed = await client.get(
            f"/api/v1/{entity}", params={**query, "limit": 200}, headers=world.owner.headers
        )
        assert listed.status_code == 200, listed.text
        expected = [item["id"] for item in listed.json()["items"]]

        for fmt in FORMATS:
            response = await export(client, world.owner, entity, fmt, **query)
            assert ids_of(table(response, fmt)[1]) == expected
        assert 0 < len(expected) < len(world.ids[entity]) or "sort" in query or "created_from" in query

    @pytest.mark.parametrize("entity", ENTITIES)
    async def test_reference_filters(self, client: AsyncClient, world: World, entity: str) -> None:
        """Filters by id (company, contact, client, industry...) as the list takes them."""
        first = (await client.get(f"/api/v1/{entity}", headers=world.owner.headers)).json()["items"][-1]
        query = {
            "contacts": {"company_id": first.get("company_id")},
            "companies": {"inn": first.get("inn")},
            "deals": {"contact_id": first.get("contact_id"), "company_id": first.get("company_id")},
            "projects": {"industry_id": first.get("industry_id"), "curator_id": first.get("curator_id")},
        }[entity]
        response = await export(client, world.owner, entity, **query)
        assert ids_of(csv_table(response)[1]) == [first["id"]]


class TestRefusals:
    async def test_unknown_format(self, client: AsyncClient, world: World) -> None:
        response = await export(client, world.owner, "contacts", "pdf")

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["query", "format"]

    @pytest.mark.parametrize("param", ["limit", "offset", "colour", "stauts"])
    async def test_unknown_query_parameter(self, client: AsyncClient, world: World, param: str) -> None:
        response = await export(client, world.owner, "deals", **{param: "1"})

        body = assert_problem(response, 422, "unknown_parameter")
        assert body["errors"] == [
            {"loc": ["query", param], "msg": "Unknown query parameter", "type": "unknown_parameter"}
        ]

    async def test_a_filter_of_another_entity_is_unknown(self, client: AsyncClient, world: World) -> None:
        response = await export(client, world.owner, "companies", stage="lead")

        assert_problem(response, 422, "unknown_parameter")

    async def test_unknown_custom_field(self, client: AsyncClient, world: World) -> None:
        response = await export(client, world.owner, "contacts", **{"cf.nope": "x"})

        body = assert_problem(response, 422, "custom_field_invalid")
        assert body["errors"][0]["loc"] == ["query", "cf.nope"]

    async def test_custom_field_value_of_the_wrong_type(self, client: AsyncClient, world: World) -> None:
        response = await export(client, world.owner, "projects", **{"cf.score": "many"})

        assert_problem(response, 422, "custom_field_invalid")

    @pytest.mark.parametrize(
        ("entity", "query"),
        [
            ("deals", {"amount_min": "lots"}),
            ("deals", {"status": "closed"}),
            ("projects", {"status": "done"}),
            ("contacts", {"company_id": "0"}),
            ("contacts", {"sort": "email"}),
            ("companies", {"created_from": "2026-02-01", "created_to": "2026-01-01"}),
        ],
    )
    async def test_bad_filter_values(
        self, client: AsyncClient, world: World, entity: str, query: dict[str, str]
    ) -> None:
        response = await export(client, world.owner, entity, **query)

        assert_problem(response, 422, "validation_error")

    async def test_unknown_entity(self, client: AsyncClient, world: World) -> None:
        response = await client.get("/api/v1/exports/tasks", headers=world.owner.headers)

        assert_problem(response, 404, "not_found")


class TestInjection:
    async def test_csv_text_cells_are_escaped(self, client: AsyncClient, world: World) -> None:
        _, contacts = csv_table(await export(client, world.owner, "contacts"), raw=True)
        _, companies = csv_table(await export(client, world.owner, "companies"), raw=True)
        _, deals = csv_table(await export(client, world.owner, "deals"), raw=True)
        _, projects = csv_table(await export(client, world.owner, "projects"), raw=True)

        ivan, anna = contacts[1], contacts[0]
        assert ivan["phone"] == "'+79213451948"
        assert ivan["job_title"] == "'@director"
        assert ivan["cf.segment"] == "'-minus"
        assert anna["cf.segment"] == "''=quoted"  # an apostrophe before `=` is doubled
        assert companies[1]["notes"] == "'=cmd|' /C calc'!A0"
        assert companies[1]["cf.segment"] == "'+gold"
        assert deals[1]["title"] == '\'=HYPERLINK("http://evil")'
        assert deals[1]["notes"] == "'\tTabbed\x0b"
        assert projects[1]["description"] == "'+ 120 номеров"

    async def test_numbers_are_not_escaped(self, client: AsyncClient, world: World) -> None:
        _, companies = csv_table(await export(client, world.owner, "companies"), raw=True)
        _, deals = csv_table(await export(client, world.owner, "deals"), raw=True)

        assert companies[1]["cf.score"] == "-5"  # a negative number stays a number
        assert companies[0]["cf.score"] == "2.5"
        assert deals[1]["amount"] == "150000.50"
        assert deals[0]["amount"] == "0.00"

    async def test_xlsx_text_is_never_a_formula(self, client: AsyncClient, world: World) -> None:
        _, deals = xlsx_values(await export(client, world.owner, "deals", "xlsx"))
        _, contacts = xlsx_values(await export(client, world.owner, "contacts", "xlsx"))
        _, companies = xlsx_values(await export(client, world.owner, "companies", "xlsx"))

        # Typed string cells: shown as text by spreadsheets, so written unchanged.
        assert deals[1]["title"] == '=HYPERLINK("http://evil")'
        assert contacts[1]["phone"] == "+79213451948"
        assert companies[1]["cf.score"] == -5
        assert contacts[0]["cf.segment"] == "''=quoted"  # kept reversible for the import
        assert deals[1]["notes"] == "\tTabbed"  # a control character XML cannot hold is dropped
        raw = (await export(client, world.owner, "deals", "xlsx")).content
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            sheets = [archive.read(n) for n in archive.namelist() if n.startswith("xl/worksheets/")]
        assert sheets
        assert b"HYPERLINK" in b"".join(sheets)
        assert not any(re.search(rb"<f[ >]", sheet) for sheet in sheets)


class TestScope:
    @pytest.mark.parametrize("entity", ENTITIES)
    async def test_deleted_rows_are_left_out(self, client: AsyncClient, world: World, entity: str) -> None:
        for fmt in FORMATS:
            _, rows = table(await export(client, world.owner, entity, fmt), fmt)
            assert world.deleted[entity] not in ids_of(rows)
            assert ids_of(rows) == world.ids[entity]

    async def test_references_to_deleted_records_are_empty(self, client: AsyncClient, world: World) -> None:
        _, contacts = csv_table(await export(client, world.owner, "contacts"))
        _, deals = csv_table(await export(client, world.owner, "deals"))

        assert contacts[0]["full_name"] == "Anna Smith"
        assert contacts[0]["company_inn"] == ""  # her company was deleted
        assert deals[0]["contact_email"] == ""

    @pytest.mark.parametrize("entity", ENTITIES)
    async def test_only_the_callers_organization(
        self, client: AsyncClient, world: World, other_world: World, entity: str
    ) -> None:
        ours = ids_of(csv_table(await export(client, world.owner, entity))[1])
        theirs = ids_of(csv_table(await export(client, other_world.owner, entity))[1])

        assert ours == world.ids[entity]
        assert theirs == other_world.ids[entity]
        assert not set(ours) & set(theirs)

    async def test_another_organizations_ids_in_filters_find_nothing(
        self, client: AsyncClient, world: World, other_world: World
    ) -> None:
        listed = (await client.get("/api/v1/contacts", headers=other_world.owner.headers)).json()["items"]
        their_company = next(c["company_id"] for c in listed if c["company_id"])

        response = await export(client, world.owner, "contacts", company_id=their_company)
        assert csv_table(response)[1] == []

    async def test_not_a_member(self, client: AsyncClient, world: World, other_world: World) -> None:
        headers = {**other_world.owner.auth, "X-Organization-ID": str(world.org.id)}
        response = await client.get("/api/v1/exports/contacts", headers=headers)

        assert_problem(response, 403, "not_a_member")

    async def test_organization_header_required_with_several_memberships(
        self, client: AsyncClient, world: World, db: AsyncSession
    ) -> None:
        second = await make_org(db)
        await add_member(db, second, world.owner.user, "owner")
        await db.commit()

        response = await client.get("/api/v1/exports/contacts", headers=world.owner.auth)

        assert_problem(response, 400, "organization_required")

    async def test_not_authenticated(self, client: AsyncClient) -> None:
        response = await client.get("/api/v1/exports/contacts")

        assert_problem(response, 401, "not_authenticated")


class TestPermissions:
    @pytest.mark.parametrize("entity", ENTITIES)
    async def test_member_may_not_export(
        self, client: AsyncClient, factory: Factory, world: World, entity: str
    ) -> None:
        member = await factory.actor("member", org=world.org)

        response = await export(client, member, entity)
        assert_problem(response, 403, "permission_denied")

    @pytest.mark.parametrize("role", ["manager", "admin"])
    async def test_manager_and_up_may(
        self, client: AsyncClient, factory: Factory, world: World, role: str
    ) -> None:
        actor = await factory.actor(role, org=world.org)

        response = await export(client, actor, "projects", "xlsx")
        assert response.status_code == 200
        assert ids_of(table(response, "xlsx")[1]) == world.ids["projects"]

    async def test_api_key_needs_the_read_permission_too(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        org = await db.get(Organization, world.org.id)
        assert org is not None
        _, export_only = await make_api_key(db, org, ["exports:run"])
        _, with_read = await make_api_key(db, org, ["exports:run", "contacts:read"])
        _, read_only = await make_api_key(db, org, ["contacts:read"])
        await db.commit()

        denied = await client.get("/api/v1/exports/contacts", headers={"X-API-Key": export_only})
        assert_problem(denied, 403, "permission_denied")
        denied = await client.get("/api/v1/exports/contacts", headers={"X-API-Key": read_only})
        assert_problem(denied, 403, "permission_denied")
        allowed = await client.get("/api/v1/exports/contacts", headers={"X-API-Key": with_read})
        assert ids_of(csv_table(allowed)[1]) == world.ids["contacts"]

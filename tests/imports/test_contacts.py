"""Contacts and companies imports through the HTTP API, the job body run on the test's transaction."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.models import Activity, Company, Contact, ImportJob, ImportUpload
from tests.factories import Factory, assert_problem
from tests.imports.support import URL, csv_bytes, import_file, run_job, upload, with_cached_values, xlsx_bytes

HEADER = ["full_name", "email", "phone", "job_title", "tags"]
ROWS = [
    ["Анна Иванова", "anna@example.com", "+7 921 345-19-48", "CEO", "vip, ru"],
    ["Boris Petrov", "boris@example.com", "8 (812) 000-11-22", "", ""],
    ["Clara Smith", "clara@example.com", "", "CTO", "it"],
]


def inn10(seed: int) -> str:
    body = f"{seed:09d}"[:9]
    check = sum(int(d) * w for d, w in zip(body, (2, 4, 10, 3, 5, 9, 4, 6, 8), strict=True)) % 11 % 10
    return body + str(check)


async def contacts_of(db: AsyncSession, org_id: int) -> dict[str, Contact]:
    db.expunge_all()
    rows = await db.scalars(select(Contact).where(Contact.organization_id == org_id))
    return {c.email or c.full_name: c for c in rows}


class TestContacts:
    async def test_import_creates_and_reports(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        response = await upload(client, actor, csv_bytes([HEADER, *ROWS]), "contacts", filename="people.csv")
        assert response.status_code == 202, response.text
        queued = response.json()
        assert queued["status"] == "queued"
        assert queued["entity"] == "contacts"
        assert queued["file_format"] == "csv"
        assert queued["on_conflict"] == "update"
        assert queued["dry_run"] is False
        assert queued["created_at"].endswith("Z")

        await run_job(app, test_maker, queued["id"])
        body = (await client.get(f"{URL}/{queued['id']}", headers=actor.headers)).json()
        assert body["status"] == "succeeded"
        assert (body["total_rows"], body["processed_rows"]) == (3, 3)
        assert (body["created"], body["updated"], body["skipped"], body["failed"]) == (3, 0, 0, 0)
        assert body["errors"] == []
        assert body["started_at"]
        assert body["finished_at"]

        stored = await contacts_of(db, actor.org_id)  # type: ignore[arg-type]
        assert set(stored) == {"anna@example.com", "boris@example.com", "clara@example.com"}
        anna = stored["anna@example.com"]
        assert (anna.full_name, anna.phone, anna.phone_raw) == (
            "Анна Иванова",
            "+79213451948",
            "+7 921 345-19-48",
        )
        assert anna.tags == ["vip", "ru"]
        assert anna.source == "import"
        assert stored["boris@example.com"].job_title is None
        assert stored["boris@example.com"].phone == "+78120001122"

        activities = (
            await db.scalars(
                select(Activity).where(
                    Activity.organization_id == actor.org_id, Activity.action == "imported"
                )
            )
        ).all()
        assert [(a.entity_type, a.entity_id, a.payload["created"]) for a in activities] == [
            ("contact", None, 3)
        ]
        # The upload is dropped once the job is done.
        assert (
            await db.scalar(
                select(func.count()).select_from(ImportUpload).where(ImportUpload.job_id == body["id"])
            )
            == 0
        )

        # The list shows the contacts at once (cached totals invalidated).
        listed = await client.get("/api/v1/contacts", headers=actor.headers)
        assert listed.json()["total"] == 3

    async def test_reimport_changes_nothing_and_edit_updates_only_changed(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        first = await import_file(client, app, test_maker, actor, csv_bytes([HEADER, *ROWS]), "contacts")
        assert first["created"] == 3
        before = {k: (c.version, c.updated_at) for k, c in (await contacts_of(db, actor.org_id)).items()}  # type: ignore[arg-type]

        again = await import_file(client, app, test_maker, actor, csv_bytes([HEADER, *ROWS]), "contacts")
        assert (again["created"], again["updated"], again["skipped"], again["failed"]) == (0, 0, 3, 0)
        after = {k: (c.version, c.updated_at) for k, c in (await contacts_of(db, actor.org_id)).items()}  # type: ignore[arg-type]
        assert after == before

        edited = [row[:] for row in ROWS]
        edited[1][3] = "Head of Sales"
        edited[2][0] = "CLARA SMITH"
        # Same email in another case, the same phone typed differently: unchanged.
        edited[0][1] = "ANNA@example.com"
        edited[0][2] = "+79213451948"
        result = await import_file(client, app, test_maker, actor, csv_bytes([HEADER, *edited]), "contacts")
        assert (result["created"], result["updated"], result["skipped"]) == (0, 2, 1)
        stored = await contacts_of(db, actor.org_id)  # type: ignore[arg-type]
        assert stored["anna@example.com"].version == 1
        assert stored["anna@example.com"].phone_raw == "+7 921 345-19-48"
        assert (stored["boris@example.com"].job_title, stored["boris@example.com"].version) == (
            "Head of Sales",
            2,
        )
        assert stored["clara@example.com"].full_name == "CLARA SMITH"

    async def test_on_conflict_skip_leaves_existing_rows(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        await import_file(client, app, test_maker, actor, csv_bytes([HEADER, ROWS[0]]), "contacts")
        changed = [
            ["Anna Renamed", "anna@example.com", "", "", ""],
            ["New Person", "new@example.com", "", "", ""],
        ]
        skip = await import_file(
            client, app, test_maker, actor, csv_bytes([HEADER, *changed]), "contacts", on_conflict="skip"
        )
        assert (skip["created"], skip["updated"], skip["skipped"]) == (1, 0, 1)
        assert (await contacts_of(db, actor.org_id))["anna@example.com"].full_name == "Анна Иванова"  # type: ignore[arg-type]

        update = await import_file(client, app, test_maker, actor, csv_bytes([HEADER, *changed]), "contacts")
        assert (update["created"], update["updated"], update["skipped"]) == (0, 1, 1)
        assert (await contacts_of(db, actor.org_id))["anna@example.com"].full_name == "Anna Renamed"  # type: ignore[arg-type]

    async def test_bad_rows_reported_good_rows_imported(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        rows = [
            HEADER,
            ["Good One", "good1@example.com", "", "", ""],
            ["Bad Email", "not-an-email", "", "", ""],
            ["Bad Phone", "phone@example.com", "12", "", ""],
            ["", "noname@example.com", "", "", ""],
            ["Good Two", "good2@example.com", "", "", ""],
            ["Twice", "good1@example.com", "", "", ""],
        ]
        body = await import_file(client, app, test_maker, actor, csv_bytes(rows, delimiter=";"), "contacts")
        assert body["status"] == "succeeded"
        assert (body["created"], body["failed"], body["processed_rows"]) == (2, 4, 6)
        by_row = {e["row"]: e for e in body["errors"]}
        assert set(by_row) == {3, 4, 5, 7}
        assert by_row[3]["column"] == "email"
        assert by_row[4]["column"] == "phone"
        assert by_row[5] == {"row": 5, "column": "full_name", "message": "full_name is required"}
        assert by_row[7]["column"] == "email"
        assert "row 2" in by_row[7]["message"]
        assert set(await contacts_of(db, actor.org_id)) == {"good1@example.com", "good2@example.com"}  # type: ignore[arg-type]

    async def test_atomic_writes_nothing_when_a_row_fails(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        rows = [HEADER, ["Good", "good@example.com", "", "", ""], ["Bad", "bad@", "", "", ""]]
        body = await import_file(client, app, test_maker, actor, csv_bytes(rows), "contacts", atomic=True)
        assert body["status"] == "failed"
        assert body["atomic"] is True
        assert (body["created"], body["failed"]) == (0, 1)
        assert body["errors"][0]["row"] == 3
        assert await contacts_of(db, actor.org_id) == {}  # type: ignore[arg-type]

        ok = await import_file(client, app, test_maker, actor, csv_bytes(rows[:2]), "contacts", atomic=True)
        assert (ok["status"], ok["created"]) == ("succeeded", 1)

    async def test_dry_run_counts_and_writes_nothing(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        await import_file(client, app, test_maker, actor, csv_bytes([HEADER, ROWS[0]]), "contacts")
        rows = [HEADER, ["Renamed", "anna@example.com", "", "", ""], ROWS[1], ["Bad", "x", "", "", ""]]
        body = await import_file(client, app, test_maker, actor, csv_bytes(rows), "contacts", dry_run=True)
        assert body["dry_run"] is True
        assert body["status"] == "succeeded"
        assert (body["created"], body["updated"], body["skipped"], body["failed"]) == (1, 1, 0, 1)
        stored = await contacts_of(db, actor.org_id)  # type: ignore[arg-type]
        assert set(stored) == {"anna@example.com"}
        assert stored["anna@example.com"].full_name == "Анна Иванова"
        imported = await db.scalar(
            select(func.count())
            .select_from(Activity)
            .where(Activity.organization_id == actor.org_id, Activity.action == "imported")
        )
        assert imported == 1  # the first, real import only

    async def test_mapping_with_custom_headers(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        rows = [["ФИО", "E-mail", "Телефон", "Ignored"], ["Мария", "maria@example.com", "89213451948", "x"]]
        mapping = '{"ФИО": "full_name", "e-mail": "email", "Телефон": "phone", "Ignored": null}'
        body = await import_file(client, app, test_maker, actor, csv_bytes(rows), "contacts", mapping=mapping)
        assert body["created"] == 1, body
        assert body["mapping"] == {"ФИО": "full_name", "e-mail": "email", "Телефон": "phone", "Ignored": None}
        maria = (await contacts_of(db, actor.org_id))["maria@example.com"]  # type: ignore[arg-type]
        assert (maria.full_name, maria.phone) == ("Мария", "+79213451948")

    async def test_bad_requests_are_422_and_store_nothing(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        actor = await factory.actor("manager")
        good = csv_bytes([HEADER, *ROWS])
        cases = [
            (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "contacts", {}, "import_file_invalid"),
            (b"PK\x03\x04not really a zip", "contacts", {}, "import_file_invalid"),
            (b"", "contacts", {}, "import_file_invalid"),
            (good, "contacts", {"mapping": '{"email": "nope"}'}, "import_mapping_invalid"),
            (good, "contacts", {"mapping": "[1]"}, "import_mapping_invalid"),
            (good, "contacts", {"mapping": '{"Missing": "email"}'}, "import_mapping_invalid"),
            (csv_bytes([["a", "b"], ["1", "2"]]), "contacts", {}, "import_mapping_invalid"),
            (csv_bytes([["full_name", "cf.nope"], ["A", "1"]]), "contacts", {}, "import_mapping_invalid"),
        ]
        for content, entity, form, code in cases:
            response = await upload(client, actor, content, entity, filename="data.csv", **form)
            assert_problem(response, 422, code)
        response = await upload(client, actor, good, "invoices")
        assert_problem(response, 422, "validation_error")
        response = await upload(client, actor, good, "contacts", on_conflict="merge")
        assert_problem(response, 422, "validation_error")
        assert await db.scalar(select(func.count()).select_from(ImportJob)) == 0
        assert await db.scalar(select(func.count()).select_from(ImportUpload)) == 0

    async def test_oversize_upload_is_413(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        actor = await factory.actor("manager")
        content = csv_bytes([HEADER]) + b"x" * (50 * 1024 * 1024)
        response = await upload(client, actor, content, "contacts")
        assert_problem(response, 413, "payload_too_large")
        assert await db.scalar(select(func.count()).select_from(ImportJob)) == 0

    async def test_xlsx_formula_cells_are_read_as_values(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        content = xlsx_bytes(
            [
                ["full_name", "email", "age"],
                ["Formula Person", "formula@example.com", "=20+22"],
                [None, None, None],
            ]
        )
        content = with_cached_values(content, {"C2": "42"})
        body = await import_file(client, app, test_maker, actor, content, "contacts", filename="people.xlsx")
        assert body["file_format"] == "xlsx"
        assert (body["created"], body["failed"]) == (1, 0), body
        assert (await contacts_of(db, actor.org_id))["formula@example.com"].age == 42  # type: ignore[arg-type]

    async def test_member_may_not_import_and_other_org_is_404(
        self, client: AsyncClient, app: Any, test_maker: async_sessionmaker[AsyncSession], factory: Factory
    ) -> None:
        actor = await factory.actor("manager")
        member = await factory.actor("member")
        assert_problem(
            await upload(client, member, csv_bytes([HEADER, *ROWS]), "contacts"), 403, "permission_denied"
        )
        body = await import_file(client, app, test_maker, actor, csv_bytes([HEADER, *ROWS]), "contacts")
        other = await factory.actor("owner")
        assert_problem(await client.get(f"{URL}/{body['id']}", headers=other.headers), 404, "not_found")
        listed = await client.get(URL, headers=other.headers)
        assert listed.json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
        mine = await client.get(URL, headers=actor.headers)
        assert [j["id"] for j in mine.json()["items"]] == [body["id"]]


class TestCompanies:
    async def test_companies_by_inn(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        a, b = inn10(770708389), inn10(773620754)
        rows = [["name", "inn", "kpp", "website"], ["Альфа", a, "773601001", "alfa.ru"], ["Бета", b, "", ""]]
        body = await import_file(client, app, test_maker, actor, csv_bytes(rows), "companies")
        assert (body["created"], body["failed"]) == (2, 0), body
        again = await import_file(client, app, test_maker, actor, csv_bytes(rows), "companies")
        assert (again["created"], again["updated"], again["skipped"]) == (0, 0, 2)
        rows[2][0] = "Бета Плюс"
        rows.append(["Гамма", "1234567890", "", ""])
        edited = await import_file(client, app, test_maker, actor, csv_bytes(rows), "companies")
        assert (edited["created"], edited["updated"], edited["skipped"], edited["failed"]) == (0, 1, 1, 1)
        assert edited["errors"][0]["row"] == 4
        assert edited["errors"][0]["column"] == "inn"
        db.expunge_all()
        stored = {
            c.inn: c for c in await db.scalars(select(Company).where(Company.organization_id == actor.org_id))
        }
        assert stored[b].name == "Бета Плюс"
        assert (stored[a].kind, stored[a].source, stored[a].kpp) == ("legal_entity", "import", "773601001")


class TestCustomFieldsAndEncoding:
    async def test_custom_field_columns_and_bom(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("owner")
        for key, kind in (("budget", "number"), ("vip", "boolean")):
            created = await client.post(
                "/api/v1/custom-fields",
                headers=actor.headers,
                json={"entity": "contact", "key": key, "label": key.title(), "type": kind},
            )
            assert created.status_code == 201, created.text
        rows = [
            ["Full_Name", "EMAIL", "cf.budget", "cf.vip"],
            ["Ольга", "olga@example.com", "1 500,5", "да"],
            ["Пётр", "petr@example.com", "many", "no"],
        ]
        body = await import_file(
            client, app, test_maker, actor, csv_bytes(rows, delimiter=";", bom=True), "contacts"
        )
        assert (body["created"], body["failed"]) == (1, 1), body
        assert body["errors"] == [{"row": 3, "column": "cf.budget", "message": "expected a number"}]
        olga = (await contacts_of(db, actor.org_id))["olga@example.com"]  # type: ignore[arg-type]
        assert olga.custom_fields == {"budget": 1500.5, "vip": True}

        # Clearing one custom field cell removes only that key.
        rows[1][2] = ""
        again = await import_file(client, app, test_maker, actor, csv_bytes(rows[:2]), "contacts")
        assert again["updated"] == 1
        olga = (await contacts_of(db, actor.org_id))["olga@example.com"]  # type: ignore[arg-type]
        assert olga.custom_fields == {"vip": True}

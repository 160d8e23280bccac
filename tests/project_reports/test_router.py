"""`GET /projects/report`: sums against a fixture computed by hand, for every grouping and format."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from httpx import AsyncClient
from openpyxl import load_workbook
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from crm.models import District, Industry, Organization
from tests.factories import Actor, Factory, add_member, assert_problem
from tests.support.helpers import make_measure, make_program, make_project, org_of

URL = "/api/v1/projects/report"
NUMBERS = ["count", "own_funds_amount", "requested_support_amount", "approved_support_amount", "jobs_count"]
COLUMNS = ["key", "label", *NUMBERS, "tax_revenue_amount"]


def sums(count: int, own: str, requested: str, approved: str, jobs: int, tax: str) -> dict[str, Any]:
    return {
        "count": count,
        "own_funds_amount": own,
        "requested_support_amount": requested,
        "approved_support_amount": approved,
        "jobs_count": jobs,
        "tax_revenue_amount": tax,
    }


@dataclass
class Fixture:
    owner: Actor
    ids: dict[str, int]


@pytest.fixture
async def fixture(factory: Factory, db: AsyncSession) -> Fixture:
    """Four live projects (A–D), one deleted (E) and one of another organization (F).

    Measures: A — finance 200 RUB approved (P1), credit 100 RUB requested (P1), land 5 ha approved (P2);
    B — finance 300 RUB provided (P2), equipment 2 pieces approved (P1), finance 50 RUB rejected (no
    program); C — none; D — credit 1000 RUB approved (P1); E — finance 777 RUB approved (P1)."""
    owner = await factory.actor("owner")
    org_id = org_of(owner)
    org = await db.get(Organization, org_id)
    assert org is not None
    anna = await factory.user(full_name="Анна")
    boris = await factory.user(full_name="Борис")
    await add_member(db, org, anna, "manager")
    await add_member(db, org, boris, "manager")
    tourism = Industry(organization_id=org_id, name="Туризм")
    farming = Industry(organization_id=org_id, name="Сельское хозяйство")
    city = District(organization_id=org_id, name="Город")
    rural = District(organization_id=org_id, name="Район")
    db.add_all([tourism, farming, city, rural])
    await db.flush()
    p1 = await make_program(db, org_id, name="Фонд развития")
    p2 = await make_program(db, org_id, name="Льготный кредит")
    a = await make_project(
        db,
        org_id,
        status="draft",
        industry_id=tourism.id,
        district_id=city.id,
        curator_id=anna.id,
        own_funds_amount=Decimal("1000.00"),
        requested_support_amount=Decimal("500.00"),
        jobs_count=10,
        tax_revenue_amount=Decimal("100.00"),
    )
    b = await make_project(
        db,
        org_id,
        status="submitted",
        industry_id=tourism.id,
        district_id=rural.id,
        curator_id=boris.id,
        own_funds_amount=Decimal("2000.50"),
        requested_support_amount=Decimal("700.00"),
        jobs_count=5,
        tax_revenue_amount=Decimal("50.25"),
    )
    await make_project(
        db,
        org_id,
        status="submitted",
        industry_id=farming.id,
        district_id=city.id,
        requested_support_amount=Decimal("300.00"),
        tax_revenue_amount=Decimal("10.00"),
    )
    d = await make_project(
        db,
        org_id,
        status="supported",
        curator_id=anna.id,
        own_funds_amount=Decimal("400.00"),
        requested_support_amount=Decimal("0"),
        jobs_count=3,
        tax_revenue_amount=Decimal("0"),
    )
    e = await make_project(
        db,
        org_id,
        status="draft",
        industry_id=tourism.id,
        own_funds_amount=Decimal("99999"),
        deleted_at=datetime.now(UTC),
    )
    await make_measure(
        db, a, type="finance", unit="RUB", amount=Decimal(200), status="approved", program_id=p1.id
    )
    await make_measure(
        db, a, type="credit", unit="RUB", amount=Decimal(100), status="requested", program_id=p1.id
    )
    await make_measure(
        db, a, type="land", unit="hectares", amount=Decimal(5), status="approved", program_id=p2.id
    )
    await make_measure(
        db, b, type="finance", unit="RUB", amount=Decimal(300), status="provided", program_id=p2.id
    )
    await make_measure(
        db, b, type="equipment", unit="pieces", amount=Decimal(2), status="approved", program_id=p1.id
    )
    await make_measure(db, b, type="finance", unit="RUB", amount=Decimal(50), status="rejected")
    await make_measure(
        db, d, type="credit", unit="RUB", amount=Decimal(1000), status="approved", program_id=p1.id
    )
    await make_measure(
        db, e, type="finance", unit="RUB", amount=Decimal(777), status="approved", program_id=p1.id
    )
    stranger = await factory.org()
    f = await make_project(db, stranger.id, status="draft", own_funds_amount=Decimal("5"), jobs_count=1)
    await make_measure(db, f, type="finance", unit="RUB", amount=Decimal(9), status="approved")
    await db.commit()
    ids = {
        "tourism": tourism.id,
        "farming": farming.id,
        "city": city.id,
        "rural": rural.id,
        "p1": p1.id,
        "p2": p2.id,
        "anna": anna.id,
        "boris": boris.id,
    }
    return Fixture(owner, ids)


TOTALS = sums(4, "3400.50", "1500.00", "1500.00", 18, "160.25")


def expected_rows(group_by: str, ids: dict[str, int]) -> list[dict[str, Any]]:
    table: dict[str, list[tuple[Any, str, dict[str, Any]]]] = {
        "status": [
            ("draft", "draft", sums(1, "1000.00", "500.00", "200.00", 10, "100.00")),
            ("submitted", "submitted", sums(2, "2000.50", "1000.00", "300.00", 5, "60.25")),
            ("supported", "supported", sums(1, "400.00", "0.00", "1000.00", 3, "0.00")),
        ],
        "industry": [
            (ids["farming"], "Сельское хозяйство", sums(1, "0.00", "300.00", "0.00", 0, "10.00")),
            (ids["tourism"], "Туризм", sums(2, "3000.50", "1200.00", "500.00", 15, "150.25")),
            (None, "(not set)", sums(1, "400.00", "0.00", "1000.00", 3, "0.00")),
        ],
        "district": [
            (ids["city"], "Город", sums(2, "1000.00", "800.00", "200.00", 10, "110.00")),
            (ids["rural"], "Район", sums(1, "2000.50", "700.00", "300.00", 5, "50.25")),
            (None, "(not set)", sums(1, "400.00", "0.00", "1000.00", 3, "0.00")),
        ],
        "curator": [
            (ids["anna"], "Анна", sums(2, "1400.00", "500.00", "1200.00", 13, "100.00")),
            (ids["boris"], "Борис", sums(1, "2000.50", "700.00", "300.00", 5, "50.25")),
            (None, "(not set)", sums(1, "0.00", "300.00", "0.00", 0, "10.00")),
        ],
        "program": [
            (ids["p2"], "Льготный кредит", sums(2, "3000.50", "1200.00", "300.00", 15, "150.25")),
            (ids["p1"], "Фонд развития", sums(3, "3400.50", "1200.00", "1200.00", 18, "150.25")),
            (None, "(not set)", sums(2, "2000.50", "1000.00", "0.00", 5, "60.25")),
        ],
    }
    return [{"key": key, "label": label, **values} for key, label, values in table[group_by]]


GROUPS = ["status", "industry", "district", "program", "curator"]


def as_text_table(rows: list[dict[str, Any]], totals: dict[str, Any]) -> list[list[str]]:
    """The expected report as CSV cells: every row, then the totals row."""
    out = [
        [("" if r["key"] is None else str(r["key"])), r["label"], *(str(r[c]) for c in COLUMNS[2:])]
        for r in rows
    ]
    out.append(["", "Total", *(str(totals[c]) for c in COLUMNS[2:])])
    return out


class TestJson:
    @pytest.mark.parametrize("group_by", GROUPS)
    async def test_rows_and_totals_match_the_hand_computed_sums(
        self, client: AsyncClient, fixture: Fixture, group_by: str
    ) -> None:
        response = await client.get(URL, params={"group_by": group_by}, headers=fixture.owner.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["group_by"] == group_by
        assert body["rows"] == expected_rows(group_by, fixture.ids)
        assert body["totals"] == TOTALS

    async def test_the_report_is_one_sql_statement(
        self, client: AsyncClient, connection: AsyncConnection, fixture: Fixture
    ) -> None:
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "support_measure" in statement:
                statements.append(statement)

        event.listen(connection.sync_connection, "before_cursor_execute", seen)  # type: ignore[arg-type]
        try:
            response = await client.get(URL, params={"group_by": "program"}, headers=fixture.owner.headers)
        finally:
            event.remove(connection.sync_connection, "before_cursor_execute", seen)  # type: ignore[arg-type]
        assert response.status_code == 200
        assert len(statements) == 1

    async def test_filters_narrow_the_projects(self, client: AsyncClient, fixture: Fixture) -> None:
        response = await client.get(
            URL, params={"group_by": "industry", "status": "submitted"}, headers=fixture.owner.headers
        )
        assert response.status_code == 200
        body = response.json()
        assert body["totals"] == sums(2, "2000.50", "1000.00", "300.00", 5, "60.25")
        assert [(r["label"], r["count"]) for r in body["rows"]] == [("Сельское хозяйство", 1), ("Туризм", 1)]
        by_amount = await client.get(
            URL,
            params={"group_by": "status", "amount_min": "400", "amount_max": "600"},
            headers=fixture.owner.headers,
        )
        assert by_amount.json()["totals"]["count"] == 1
        by_curator = await client.get(
            URL,
            params={"group_by": "status", "curator_id": fixture.ids["anna"]},
            headers=fixture.owner.headers,
        )
        assert by_curator.json()["totals"] == sums(2, "1400.00", "500.00", "1200.00", 13, "100.00")

    async def test_an_organization_without_projects_has_zero_totals(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")
        response = await client.get(URL, params={"group_by": "program"}, headers=owner.headers)
        assert response.status_code == 200
        assert response.json() == {
            "group_by": "program",
            "rows": [],
            "totals": sums(0, "0.00", "0.00", "0.00", 0, "0.00"),
        }

    async def test_bad_parameters_are_422(self, client: AsyncClient, fixture: Fixture) -> None:
        headers = fixture.owner.headers
        assert_problem(await client.get(URL, headers=headers), 422, "validation_error")
        for params in (
            {"group_by": "client"},
            {"group_by": "status", "format": "pdf"},
            {"group_by": "status", "status": "lost"},
            {"group_by": "status", "amount_min": "10", "amount_max": "5"},
        ):
            assert_problem(await client.get(URL, params=params, headers=headers), 422, "validation_error")

    async def test_a_member_may_read_it_and_a_stranger_needs_a_membership(
        self, client: AsyncClient, db: AsyncSession, factory: Factory, fixture: Fixture
    ) -> None:
        org = await db.get(Organization, org_of(fixture.owner))
        member = await factory.actor("member", org=org)
        response = await client.get(URL, params={"group_by": "status"}, headers=member.headers)
        assert response.status_code == 200
        assert response.json()["totals"] == TOTALS
        outsider = await factory.actor("owner")
        foreign = {**outsider.auth, "X-Organization-ID": str(org_of(fixture.owner))}
        assert_problem(
            await client.get(URL, params={"group_by": "status"}, headers=foreign), 403, "not_a_member"
        )


class TestDownloads:
    @pytest.mark.parametrize("group_by", GROUPS)
    async def test_csv_parses_back_to_the_same_numbers(
        self, client: AsyncClient, fixture: Fixture, group_by: str
    ) -> None:
        response = await client.get(
            URL, params={"group_by": group_by, "format": "csv"}, headers=fixture.owner.headers
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert (
            response.headers["content-disposition"]
            == f'attachment; filename="projects-report-{group_by}.csv"'
        )
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert rows[0] == COLUMNS
        assert rows[1:] == as_text_table(expected_rows(group_by, fixture.ids), TOTALS)

    @pytest.mark.parametrize("group_by", GROUPS)
    async def test_xlsx_parses_back_to_the_same_numbers(
        self, client: AsyncClient, fixture: Fixture, group_by: str
    ) -> None:
        response = await client.get(
            URL, params={"group_by": group_by, "format": "xlsx"}, headers=fixture.owner.headers
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
        assert (
            response.headers["content-disposition"]
            == f'attachment; filename="projects-report-{group_by}.xlsx"'
        )
        sheet = load_workbook(io.BytesIO(response.content), read_only=True).active
        assert sheet is not None
        cells = [list(row) for row in sheet.iter_rows(values_only=True)]
        assert list(cells[0]) == COLUMNS
        expected = []
        for row in [*expected_rows(group_by, fixture.ids), {"key": None, "label": "Total", **TOTALS}]:
            expected.append(
                [
                    row["key"],
                    row["label"],
                    row["count"],
                    *(Decimal(row[c]) for c in COLUMNS[3:6]),
                    row["jobs_count"],
                    Decimal(row["tax_revenue_amount"]),
                ]
            )
        got = [
            [c[0], c[1], c[2], *(Decimal(str(v)) for v in c[3:6]), c[6], Decimal(str(c[7]))]
            for c in cells[1:]
        ]
        assert got == expected

    async def test_formula_like_labels_are_defused(
        self, client: AsyncClient, db: AsyncSession, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")
        org_id = org_of(owner)
        names = ['=HYPERLINK("http://evil","x")', "+7 club", "-5+3", "@SUM(A1)"]
        for name in names:
            industry = Industry(organization_id=org_id, name=name)
            db.add(industry)
            await db.flush()
            await make_project(db, org_id, industry_id=industry.id, jobs_count=1)
        await db.commit()
        response = await client.get(
            URL, params={"group_by": "industry", "format": "csv"}, headers=owner.headers
        )
        labels = [row[1] for row in csv.reader(io.StringIO(response.content.decode("utf-8-sig")))][1:-1]
        assert sorted(labels) == sorted("'" + name for name in names)
        response = await client.get(
            URL, params={"group_by": "industry", "format": "xlsx"}, headers=owner.headers
        )
        sheet = load_workbook(io.BytesIO(response.content)).active
        assert sheet is not None
        label_cells = [row[1] for row in sheet.iter_rows(min_row=2)][:-1]
        assert sorted(str(c.value) for c in label_cells) == sorted(names)
        assert {c.data_type for c in label_cells} == {"s"}

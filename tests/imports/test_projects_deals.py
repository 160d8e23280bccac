"""Projects (the agency's spreadsheet) and deals imports."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.models import Activity, Company, Deal, DealHistory, District, Industry, Project, ProjectStatusHistory
from tests.factories import Factory
from tests.imports.support import csv_bytes, import_file, xlsx_bytes
from tests.imports.test_contacts import inn10

PROJECT_HEADER = [
    "external_code",
    "name",
    "client_inn",
    "client_name",
    "client_kind",
    "industry",
    "district",
    "own_funds_amount",
    "requested_support_amount",
    "jobs_count",
    "tax_revenue_amount",
    "status",
    "curator_email",
]


def inn12(seed: int) -> str:
    body = f"{seed:010d}"[:10]
    c1 = sum(int(d) * w for d, w in zip(body, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8), strict=True)) % 11 % 10
    body += str(c1)
    c2 = sum(int(d) * w for d, w in zip(body, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8), strict=True)) % 11 % 10
    return body + str(c2)


async def projects_of(db: AsyncSession, org_id: int) -> dict[str | None, Project]:
    db.expunge_all()
    rows = await db.scalars(select(Project).where(Project.organization_id == org_id))
    return {p.external_code: p for p in rows}


class TestProjects:
    async def test_agency_spreadsheet(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        curator = actor.user.email
        legal, person = inn10(500100732), inn12(5001007322)
        rows = [
            PROJECT_HEADER,
            [
                "P-1",
                "Гостиница",
                legal,
                "ООО Альфа",
                "",
                "Туризм",
                "Центральный",
                "1 500 000,50",
                "300000",
                12,
                "",
                "APPLICANTION_SHORT",
                curator,
            ],
            [
                "P-2",
                "Ферма",
                person,
                "ИП Петров",
                "sole_proprietor",
                "туризм",
                "Северный",
                100,
                50,
                3,
                10,
                "project_on_support",
                "",
            ],
            ["P-3", "Карьер", legal, "", "", "Добыча", "центральный", "", "", "", "", "ENDED", ""],
            ["P-4", "Завод", "", "", "", "", "", "", "", "", "", "Freeze", ""],
            ["P-5", "Broken", "", "", "", "", "", "-5", "", "", "", "nonsense", "stranger@example.com"],
        ]
        content = xlsx_bytes(rows)
        body = await import_file(client, app, test_maker, actor, content, "projects", filename="agency.xlsx")
        assert body["status"] == "succeeded", body
        assert (body["created"], body["updated"], body["skipped"], body["failed"]) == (4, 0, 0, 1), body
        columns = {e["column"] for e in body["errors"] if e["row"] == 6}
        assert columns == {"own_funds_amount", "status"}

        org = actor.org_id
        stored = await projects_of(db, org)  # type: ignore[arg-type]
        assert {k: p.status for k, p in stored.items()} == {
            "P-1": "draft",
            "P-2": "supported",
            "P-3": "completed",
            "P-4": "frozen",
        }
        p1 = stored["P-1"]
        assert (str(p1.own_funds_amount), str(p1.requested_support_amount), p1.jobs_count) == (
            "1500000.50",
            "300000.00",
            12,
        )
        assert p1.curator_id == actor.user.id
        companies = {
            c.inn: c for c in await db.scalars(select(Company).where(Company.organization_id == org))
        }
        assert set(companies) == {legal, person}
        assert (companies[legal].name, companies[legal].kind, companies[legal].source) == (
            "ООО Альфа",
            "legal_entity",
            "import",
        )
        assert companies[person].kind == "sole_proprietor"
        assert stored["P-3"].client_id == companies[legal].id
        industries = {
            i.name for i in await db.scalars(select(Industry).where(Industry.organization_id == org))
        }
        assert industries == {"Туризм", "Добыча"}
        districts = {
            d.name for d in await db.scalars(select(District).where(District.organization_id == org))
        }
        assert districts == {"Центральный", "Северный"}
        assert stored["P-1"].industry_id == stored["P-2"].industry_id

        history = (
            await db.scalars(select(ProjectStatusHistory).where(ProjectStatusHistory.organization_id == org))
        ).all()
        assert sorted((h.project_id, h.from_status, h.to_status, h.comment) for h in history) == sorted(
            (stored[k].id, None, stored[k].status, "imported") for k in ("P-1", "P-2", "P-3", "P-4")
        )
        imported = {
            a.entity_type: a.payload
            for a in await db.scalars(
                select(Activity).where(Activity.organization_id == org, Activity.action == "imported")
            )
        }
        assert imported["project"]["created"] == 4
        assert imported["company"]["created"] == 2

        # The same file again changes nothing; an edited status is recorded once.
        again = await import_file(client, app, test_maker, actor, content, "projects", filename="agency.xlsx")
        assert (again["created"], again["updated"], again["skipped"]) == (0, 0, 4), again
        rows[1][11] = "APPLICANTION_FULL"
        edited = await import_file(client, app, test_maker, actor, xlsx_bytes(rows), "projects")
        assert (edited["created"], edited["updated"], edited["skipped"]) == (0, 1, 3)
        db.expunge_all()
        moves = (
            await db.scalars(
                select(ProjectStatusHistory).where(ProjectStatusHistory.project_id == stored["P-1"].id)
            )
        ).all()
        assert sorted((m.from_status or "", m.to_status) for m in moves) == [
            ("", "draft"),
            ("draft", "submitted"),
        ]
        assert all(m.comment == "imported" for m in moves)


class TestDeals:
    async def test_create_then_update_by_exported_id(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
    ) -> None:
        actor = await factory.actor("manager")
        contact = await client.post(
            "/api/v1/contacts",
            headers=actor.headers,
            json={"full_name": "Buyer", "email": "buyer@example.com"},
        )
        assert contact.status_code == 201, contact.text
        rows = [
            ["id", "title", "amount", "stage", "status", "contact_email", "lost_reason"],
            ["", "Big deal", "1000", "qualification", "new", "buyer@example.com", ""],
            ["", "Won deal", "0", "", "won", "", ""],
            ["", "Lost deal", "10", "lead", "lost", "", ""],
            ["", "Nowhere", "10", "nowhere", "new", "", ""],
            ["", "Plain", "", "", "", "", ""],
        ]
        body = await import_file(client, app, test_maker, actor, csv_bytes(rows), "deals")
        assert (body["created"], body["failed"]) == (2, 3), body["errors"]
        assert {e["row"]: e["column"] for e in body["errors"]} == {3: "amount", 4: "lost_reason", 5: "stage"}

        db.expunge_all()
        deals = {
            d.title: d for d in await db.scalars(select(Deal).where(Deal.organization_id == actor.org_id))
        }
        big = deals["Big deal"]
        assert (big.stage, big.status, big.contact_id, big.source) == (
            "qualification",
            "new",
            contact.json()["id"],
            "import",
        )
        assert (deals["Plain"].stage, deals["Plain"].currency) == ("lead", "RUB")

        update = [
            ["id", "title", "stage", "status", "amount"],
            [big.id, "Big deal", "proposal", "won", "1000"],
            [deals["Plain"].id, "Plain", "lead", "new", "0"],
            [999999999, "Ghost", "", "", ""],
        ]
        result = await import_file(client, app, test_maker, actor, csv_bytes(update), "deals")
        assert (result["created"], result["updated"], result["skipped"], result["failed"]) == (0, 1, 1, 1), (
            result
        )
        assert result["errors"][0]["row"] == 4
        db.expunge_all()
        big = await db.get(Deal, big.id)  # type: ignore[assignment]
        assert big is not None
        assert (big.stage, big.status, big.version) == ("proposal", "won", 2)
        assert big.closed_at is not None
        history = (
            await db.scalars(
                select(DealHistory).where(DealHistory.deal_id == big.id).order_by(DealHistory.id)
            )
        ).all()
        assert [(h.field, h.from_value, h.to_value) for h in history] == [
            ("stage", None, "qualification"),
            ("stage", "qualification", "proposal"),
            ("status", "new", "won"),
        ]
        assert history[0].left_at is not None

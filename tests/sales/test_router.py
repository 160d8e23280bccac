"""`/api/v1/sales/documents` and `/api/v1/purchases/documents` (SPEC §10)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tests.analytics.support import make_company, make_contact
from tests.factories import Actor, Factory, assert_problem
from tests.inventory.support import make_document, make_product, make_store

SALES = "/api/v1/sales/documents"
PURCHASES = "/api/v1/purchases/documents"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=UTC)


async def get(client: AsyncClient, actor: Actor, url: str, **params: Any) -> Response:
    response = await client.get(url, params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    return response


def numbers(response: Response) -> list[str]:
    return [item["number"] for item in response.json()["items"]]


async def documents(db: AsyncSession, org_id: int) -> dict[str, Any]:
    phone = await make_product(db, org_id, "Смартфон", code="A55")
    store = await make_store(db, org_id, "Основной склад")
    company = await make_company(db, org_id, "ООО Ромашка")
    contact = await make_contact(db, org_id, "Петров Пётр")
    order = await make_document(
        db,
        org_id,
        "customer_order",
        at(1),
        [(phone, 2, "39990.00", 5)],
        number="00017",
        company_id=company.id,
    )
    shipment = await make_document(
        db,
        org_id,
        "demand",
        at(3),
        [(phone, 2, "39990.00", 5, "31000.00"), (None, 1, "500.00")],
        number="00012",
        company_id=company.id,
        store_id=store.id,
        state="Отгружено",
    )
    draft = await make_document(
        db,
        org_id,
        "demand",
        at(5),
        [(phone, 1, "100")],
        number="00013",
        contact_id=contact.id,
        applicable=False,
    )
    supply = await make_document(
        db, org_id, "supply", at(2), [(phone, 50, "31000.00")], purchase=True, number="S-1", store_id=store.id
    )
    purchase_order = await make_document(
        db, org_id, "purchase_order", at(1), [(phone, 50, "31000.00")], purchase=True, number="PO-1"
    )
    return {
        "phone": phone,
        "store": store,
        "company": company,
        "contact": contact,
        "order": order,
        "shipment": shipment,
        "draft": draft,
        "supply": supply,
        "purchase_order": purchase_order,
    }


class TestSalesDocuments:
    async def test_list_and_filters(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        d = await documents(db, actor.org_id)
        other = await factory.actor("member")
        await make_document(db, other.org_id, "demand", at(3), number="FOREIGN")

        every = await get(client, actor, SALES, sort="moment")
        assert numbers(every) == ["00017", "00012", "00013"]
        assert every.json()["total"] == 3
        first = every.json()["items"][1]
        assert first["kind"] == "demand"
        assert first["moment"] == "2025-03-03T12:00:00Z"
        assert first["total_amount"] == "76481.00"
        assert first["state"] == "Отгружено"
        assert first["store_id"] == d["store"].id
        assert "positions" not in first
        assert numbers(await get(client, actor, SALES, kind="demand", sort="number")) == ["00012", "00013"]
        assert numbers(await get(client, actor, SALES, date_from="2025-03-03", date_to="2025-03-03")) == [
            "00012"
        ]
        assert numbers(await get(client, actor, SALES, date_from="2025-03-04")) == ["00013"]
        assert numbers(await get(client, actor, SALES, date_to="2025-03-02")) == ["00017"]
        company = await get(client, actor, SALES, company_id=d["company"].id, sort="-moment")
        assert numbers(company) == ["00012", "00017"]
        assert numbers(await get(client, actor, SALES, contact_id=d["contact"].id)) == ["00013"]
        assert numbers(await get(client, actor, SALES, applicable="false")) == ["00013"]
        assert numbers(await get(client, actor, SALES, store_id=d["store"].id)) == ["00012"]
        assert numbers(await get(client, actor, SALES, sort="-total_amount", limit=1)) == ["00012"]

    async def test_one_with_positions(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        d = await documents(db, actor.org_id)

        body = (await get(client, actor, f"{SALES}/{d['shipment'].id}")).json()

        assert body["number"] == "00012"
        assert body["company_id"] == d["company"].id
        assert [
            {
                k: p[k]
                for k in ("product_id", "product_name", "quantity", "price", "discount", "cost", "total")
            }
            for p in body["positions"]
        ] == [
            {
                "product_id": d["phone"].id,
                "product_name": "Смартфон",
                "quantity": 2,
                "price": "39990.00",
                "discount": 5,
                "cost": "31000.00",
                "total": "75981.00",
            },
            {
                "product_id": None,
                "product_name": None,
                "quantity": 1,
                "price": "500.00",
                "discount": 0,
                "cost": None,
                "total": "500.00",
            },
        ]

    async def test_not_found_across_kinds_and_organizations(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        d = await documents(db, actor.org_id)
        other = await factory.actor("owner")

        assert_problem(
            await client.get(f"{SALES}/{d['shipment'].id}", headers=other.headers), 404, "not_found"
        )
        # A purchase document id is not a sales document.
        assert_problem(
            await client.get(f"{SALES}/{d['supply'].id + 10**6}", headers=actor.headers), 404, "not_found"
        )
        assert (await get(client, other, SALES)).json()["total"] == 0

    async def test_bad_filters_are_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")
        for params in (
            {"kind": "supply"},
            {"sort": "state"},
            {"date_from": "2025-03-05", "date_to": "2025-03-01"},
            {"date_from": "yesterday"},
            {"company_id": "-1"},
        ):
            assert_problem(
                await client.get(SALES, params=params, headers=actor.headers), 422, "validation_error"
            )


class TestPurchaseDocuments:
    async def test_list_filter_and_one(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        d = await documents(db, actor.org_id)

        assert numbers(await get(client, actor, PURCHASES, sort="moment")) == ["PO-1", "S-1"]
        assert numbers(await get(client, actor, PURCHASES, kind="supply")) == ["S-1"]
        body = (await get(client, actor, f"{PURCHASES}/{d['supply'].id}")).json()
        assert body["kind"] == "supply"
        assert body["total_amount"] == "1550000.00"
        assert [(p["quantity"], p["total"]) for p in body["positions"]] == [(50, "1550000.00")]
        assert_problem(
            await client.get(PURCHASES, params={"kind": "demand"}, headers=actor.headers),
            422,
            "validation_error",
        )
        other = await factory.actor("owner")
        assert_problem(
            await client.get(f"{PURCHASES}/{d['supply'].id}", headers=other.headers), 404, "not_found"
        )

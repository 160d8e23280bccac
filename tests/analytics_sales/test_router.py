"""Sales, inventory and customer analytics and the dashboard's sales half (SPEC §7), against
hand-computed fixtures; cached per organization and invalidated by a cache generation bump."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.cache import OrgCache
from tests.analytics.support import make_company, make_contact
from tests.factories import Actor, Factory, assert_problem, join_another_org
from tests.inventory.support import make_document, make_product, make_store, set_stock

REPORT = "/api/v1/analytics/sales/report"
INVENTORY = "/api/v1/analytics/inventory/report"
SEGMENTS = "/api/v1/analytics/customers/segments"
DASHBOARD = "/api/v1/analytics/dashboard"
MARCH = {"date_from": "2025-03-01", "date_to": "2025-03-31"}


def at(month: int, day: int, year: int = 2025, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


async def get(client: AsyncClient, actor: Actor, url: str, **params: Any) -> Response:
    response = await client.get(url, params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response


async def sales_fixture(db: AsyncSession, org_id: int) -> dict[str, Any]:
    """Posted RUB shipments in March 2025:
    S1 03-03 Ромашка: phone 2 × 40000 −5 % (cost 31000) = 76000 / 62000;
                      cable 10 × 1000 (buy 300) = 10000 / 3000
    S2 03-05 Петров:  cable 5 × 1000 −10 % = 4500 / 1500; case 1 × 2000 (no cost, no buy price) = 2000 / 0
    S3 03-12 Ромашка: phone 1 × 40000 (cost 30000) = 40000 / 30000
    S4 04-01 a counterparty known only by its external id: cable 1 × 1000 = 1000 / 300
    Not sales: an unposted shipment, a customer order, a USD shipment, another organization's."""
    phone = await make_product(db, org_id, "Смартфон", buy_price="31000", sale_price="39990")
    cable = await make_product(db, org_id, "Кабель", buy_price="300", sale_price="990")
    case = await make_product(db, org_id, "Чехол", sale_price="2500")
    company = await make_company(db, org_id, "ООО Ромашка")
    contact = await make_contact(db, org_id, "Петров Пётр")
    await make_document(
        db,
        org_id,
        "demand",
        at(3, 3),
        [(phone, 2, 40000, 5, 31000), (cable, 10, 1000)],
        company_id=company.id,
    )
    await make_document(
        db, org_id, "demand", at(3, 5), [(cable, 5, 1000, 10), (case, 1, 2000)], contact_id=contact.id
    )
    await make_document(
        db, org_id, "demand", at(3, 12, hour=23), [(phone, 1, 40000, 0, 30000)], company_id=company.id
    )
    await make_document(db, org_id, "demand", at(4, 1), [(cable, 1, 1000)], counterparty_external_id="ext-1")
    await make_document(db, org_id, "demand", at(3, 6), [(phone, 1, 99999)], applicable=False)
    await make_document(db, org_id, "customer_order", at(3, 4), [(phone, 5, 40000)], company_id=company.id)
    await make_document(db, org_id, "demand", at(3, 7), [(cable, 1, 500)], currency="USD")
    return {"phone": phone, "cable": cable, "case": case, "company": company, "contact": contact}


def row(
    key: Any, label: Any, revenue: str, cost: str, profit: str, margin: Any, orders: int, qty: float
) -> dict[str, Any]:
    return {
        "key": key,
        "label": label,
        "revenue": revenue,
        "cost": cost,
        "profit": profit,
        "margin": margin,
        "orders": orders,
        "quantity": qty,
    }


MARCH_TOTALS = {
    "revenue": "132500.00",
    "cost": "96500.00",
    "profit": "36000.00",
    "margin": 0.2717,
    "orders": 3,
    "quantity": 19.0,
}


class TestSalesReport:
    async def test_by_day(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        await sales_fixture(db, actor.org_id)
        other = await factory.actor("member")
        await make_document(db, other.org_id, "demand", at(3, 3), [(None, 1, 777)])

        body = (await get(client, actor, REPORT, group_by="day", **MARCH)).json()

        assert body["group_by"] == "day"
        assert (body["date_from"], body["date_to"], body["currency"]) == ("2025-03-01", "2025-03-31", "RUB")
        assert body["rows"] == [
            row("2025-03-03", "2025-03-03", "86000.00", "65000.00", "21000.00", 0.2442, 1, 12.0),
            row("2025-03-05", "2025-03-05", "6500.00", "1500.00", "5000.00", 0.7692, 1, 6.0),
            row("2025-03-12", "2025-03-12", "40000.00", "30000.00", "10000.00", 0.25, 1, 1.0),
        ]
        assert body["totals"] == MARCH_TOTALS

    async def test_by_week_and_month(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        await sales_fixture(db, actor.org_id)

        weeks = (await get(client, actor, REPORT, group_by="week", **MARCH)).json()
        months = (
            await get(client, actor, REPORT, group_by="month", date_from="2025-03-01", date_to="2025-04-30")
        ).json()

        assert weeks["rows"] == [
            row("2025-03-03", "2025-W10", "92500.00", "66500.00", "26000.00", 0.2811, 2, 18.0),
            row("2025-03-10", "2025-W11", "40000.00", "30000.00", "10000.00", 0.25, 1, 1.0),
        ]
        assert weeks["totals"] == MARCH_TOTALS
        assert months["rows"] == [
            row("2025-03-01", "2025-03", "132500.00", "96500.00", "36000.00", 0.2717, 3, 19.0),
            row("2025-04-01", "2025-04", "1000.00", "300.00", "700.00", 0.7, 1, 1.0),
        ]
        assert months["totals"]["orders"] == 4
        assert months["totals"]["revenue"] == "133500.00"

    async def test_by_product(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        f = await sales_fixture(db, actor.org_id)

        body = (await get(client, actor, REPORT, group_by="product", **MARCH)).json()

        assert body["rows"] == [
            row(str(f["phone"].id), "Смартфон", "116000.00", "92000.00", "24000.00", 0.2069, 2, 3.0),
            row(str(f["cable"].id), "Кабель", "14500.00", "4500.00", "10000.00", 0.6897, 2, 15.0),
            row(str(f["case"].id), "Чехол", "2000.00", "0.00", "2000.00", 1.0, 1, 1.0),
        ]
        assert body["totals"] == MARCH_TOTALS

    async def test_by_customer(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        f = await sales_fixture(db, actor.org_id)

        body = (
            await get(
                client, actor, REPORT, group_by="customer", date_from="2025-03-01", date_to="2025-04-01"
            )
        ).json()

        assert body["rows"] == [
            row(
                f"company:{f['company'].id}",
                "ООО Ромашка",
                "126000.00",
                "95000.00",
                "31000.00",
                0.246,
                2,
                13.0,
            ),
            row(f"contact:{f['contact'].id}", "Петров Пётр", "6500.00", "1500.00", "5000.00", 0.7692, 1, 6.0),
            row("external:ext-1", None, "1000.00", "300.00", "700.00", 0.7, 1, 1.0),
        ]

    async def test_empty_period_and_defaults(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await sales_fixture(db, actor.org_id)

        body = (await get(client, actor, REPORT, date_from="2025-01-01", date_to="2025-01-31")).json()
        default = (await get(client, actor, REPORT)).json()

        assert body["rows"] == []
        assert body["totals"] == {
            "revenue": "0.00",
            "cost": "0.00",
            "profit": "0.00",
            "margin": None,
            "orders": 0,
            "quantity": 0.0,
        }
        today = datetime.now(UTC).date()
        assert default["group_by"] == "day"
        assert default["date_from"] == today.replace(day=1).isoformat()

    async def test_bad_parameters_are_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")
        for params in (
            {"group_by": "year"},
            {"date_from": "2025-03-02", "date_to": "2025-03-01"},
            {"date_from": "03/01/2025"},
        ):
            assert_problem(
                await client.get(REPORT, params=params, headers=actor.headers), 422, "validation_error"
            )


async def inventory_fixture(db: AsyncSession, org_id: int) -> dict[str, Any]:
    moscow = await make_store(db, org_id, "Основной склад")
    spb = await make_store(db, org_id, "Склад Санкт-Петербург")
    phone = await make_product(db, org_id, "Смартфон", buy_price="31000", sale_price="39990")
    cable = await make_product(
        db, org_id, "Кабель", code="CAB", buy_price="300", sale_price="990", min_stock=20
    )
    case = await make_product(db, org_id, "Чехол", sale_price="2500")
    old = await make_product(db, org_id, "Архивный", archived=True, buy_price="1")
    await make_product(db, org_id, "Доставка", kind="service")
    await set_stock(db, phone, moscow, 30)
    await set_stock(db, phone, spb, 12)
    await set_stock(db, cable, spb, 7)
    await set_stock(db, case, moscow, -2)
    await set_stock(db, old, moscow, 0)
    return {"moscow": moscow, "spb": spb, "phone": phone, "cable": cable, "case": case}


class TestInventoryReport:
    async def test_values_low_and_out_of_stock(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        f = await inventory_fixture(db, actor.org_id)
        other = await factory.actor("member")
        await inventory_fixture(db, other.org_id)

        body = (await get(client, actor, INVENTORY)).json()

        assert body == {
            "currency": "RUB",
            "stores": [
                {
                    "store_id": f["moscow"].id,
                    "store_name": "Основной склад",
                    "products": 1,
                    "quantity": 30.0,
                    "value_at_cost": "930000.00",
                    "value_at_sale_price": "1199700.00",
                },
                {
                    "store_id": f["spb"].id,
                    "store_name": "Склад Санкт-Петербург",
                    "products": 2,
                    "quantity": 19.0,
                    "value_at_cost": "374100.00",
                    "value_at_sale_price": "486810.00",
                },
            ],
            "totals": {
                "products": 2,
                "quantity": 49.0,
                "value_at_cost": "1304100.00",
                "value_at_sale_price": "1686510.00",
            },
            "low_stock": {
                "count": 1,
                "items": [
                    {
                        "product_id": f["cable"].id,
                        "name": "Кабель",
                        "code": "CAB",
                        "stock": 7.0,
                        "min_stock": 20.0,
                    }
                ],
            },
            "out_of_stock": {
                "count": 1,
                "items": [
                    {
                        "product_id": f["case"].id,
                        "name": "Чехол",
                        "code": None,
                        "stock": -2.0,
                        "min_stock": None,
                    }
                ],
            },
        }

    async def test_empty_organization(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        body = (await get(client, actor, INVENTORY)).json()

        assert body["stores"] == []
        assert body["totals"] == {
            "products": 0,
            "quantity": 0.0,
            "value_at_cost": "0.00",
            "value_at_sale_price": "0.00",
        }
        assert body["low_stock"] == {"count": 0, "items": []}


async def rfm_fixture(db: AsyncSession, org_id: int) -> dict[str, str]:
    """As of 2025-06-30 (recency days → R, shipments → F, expected segment):
    Альфа 10 × 100 last 06-20 (10 → 5, 10 → 5) champions; Борис 3 × 1000 last 05-15 (46 → 4, F3) loyal;
    Вера 1 × 50 on 06-25 (5 → 5, F1) new; Гамма 2 × 500 last 04-10 (81 → 3, F2) promising;
    ext-9 5 × 2000 last 02-01 (149 → 2, F4) at_risk; Дмитрий 1 × 10 on 03-01 (121 → 2, F1) hibernating;
    Эпсилон 1 × 20 on 2024-06-30 (365 → 1, F1) lost. Вера's shipment of 07-01 is after as_of."""
    alpha = await make_company(db, org_id, "Альфа")
    boris = await make_contact(db, org_id, "Борис")
    vera = await make_contact(db, org_id, "Вера")
    gamma = await make_company(db, org_id, "Гамма")
    dmitry = await make_contact(db, org_id, "Дмитрий")
    epsilon = await make_company(db, org_id, "Эпсилон")
    for day in range(11, 21):
        await make_document(db, org_id, "demand", at(6, day), [(None, 1, 100)], company_id=alpha.id)
    for month, day in ((3, 1), (4, 20), (5, 15)):
        await make_document(db, org_id, "demand", at(month, day), [(None, 1, 1000)], contact_id=boris.id)
    await make_document(db, org_id, "demand", at(6, 25), [(None, 1, 50)], contact_id=vera.id)
    await make_document(db, org_id, "demand", at(7, 1), [(None, 1, 99999)], contact_id=vera.id)
    for month, day in ((1, 10), (4, 10)):
        await make_document(db, org_id, "demand", at(month, day), [(None, 1, 500)], company_id=gamma.id)
    for month in (1, 1, 1, 1, 2):
        await make_document(
            db, org_id, "demand", at(month, 1), [(None, 1, 2000)], counterparty_external_id="ext-9"
        )
    await make_document(db, org_id, "demand", at(3, 1), [(None, 1, 10)], contact_id=dmitry.id)
    await make_document(db, org_id, "demand", at(6, 30, year=2024), [(None, 1, 20)], company_id=epsilon.id)
    await make_document(db, org_id, "customer_order", at(6, 29), [(None, 1, 5)], company_id=epsilon.id)
    return {
        "alpha": f"company:{alpha.id}",
        "boris": f"contact:{boris.id}",
        "vera": f"contact:{vera.id}",
        "gamma": f"company:{gamma.id}",
        "ext": "external:ext-9",
        "dmitry": f"contact:{dmitry.id}",
        "epsilon": f"company:{epsilon.id}",
    }


class TestCustomerSegments:
    async def test_rfm_scores_and_segments(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        k = await rfm_fixture(db, actor.org_id)

        body = (await get(client, actor, SEGMENTS, as_of="2025-06-30")).json()

        assert (body["as_of"], body["currency"]) == ("2025-06-30", "RUB")
        assert body["segments"] == [
            {"segment": "champions", "customers": 1, "revenue": "1000.00"},
            {"segment": "loyal", "customers": 1, "revenue": "3000.00"},
            {"segment": "new", "customers": 1, "revenue": "50.00"},
            {"segment": "promising", "customers": 1, "revenue": "1000.00"},
            {"segment": "at_risk", "customers": 1, "revenue": "10000.00"},
            {"segment": "hibernating", "customers": 1, "revenue": "10.00"},
            {"segment": "lost", "customers": 1, "revenue": "20.00"},
        ]
        customers = body["customers"]
        assert (customers["total"], customers["limit"], customers["offset"]) == (7, 50, 0)
        got = {
            c["key"]: (c["recency_days"], c["frequency"], c["monetary"], c["r"], c["f"], c["m"], c["segment"])
            for c in customers["items"]
        }
        # M: percent rank of the revenue in fifths (10, 20, 50, 1000, 1000, 3000, 10000).
        assert got == {
            k["alpha"]: (10, 10, "1000.00", 5, 5, 3, "champions"),
            k["boris"]: (46, 3, "3000.00", 4, 3, 5, "loyal"),
            k["vera"]: (5, 1, "50.00", 5, 1, 2, "new"),
            k["gamma"]: (81, 2, "1000.00", 3, 2, 3, "promising"),
            k["ext"]: (149, 5, "10000.00", 2, 4, 5, "at_risk"),
            k["dmitry"]: (121, 1, "10.00", 2, 1, 1, "hibernating"),
            k["epsilon"]: (365, 1, "20.00", 1, 1, 1, "lost"),
        }
        assert [c["key"] for c in customers["items"][:2]] == [k["ext"], k["boris"]]  # by revenue
        alpha = next(c for c in customers["items"] if c["key"] == k["alpha"])
        assert alpha["name"] == "Альфа"
        assert alpha["company_id"] is not None
        assert alpha["contact_id"] is None
        assert alpha["last_purchase_at"] == "2025-06-20T10:00:00Z"

    async def test_segment_filter_and_paging(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        k = await rfm_fixture(db, actor.org_id)

        lost = (await get(client, actor, SEGMENTS, as_of="2025-06-30", segment="lost")).json()
        page = (await get(client, actor, SEGMENTS, as_of="2025-06-30", limit=2, offset=6)).json()
        beyond = (await get(client, actor, SEGMENTS, as_of="2025-06-30", limit=2, offset=10)).json()

        assert [c["key"] for c in lost["customers"]["items"]] == [k["epsilon"]]
        assert lost["customers"]["total"] == 1
        assert [c["key"] for c in page["customers"]["items"]] == [k["dmitry"]]
        assert page["customers"]["total"] == 7
        assert beyond["customers"] == {"items": [], "total": 7, "limit": 2, "offset": 10}
        assert_problem(
            await client.get(SEGMENTS, params={"segment": "vip"}, headers=actor.headers),
            422,
            "validation_error",
        )


class TestDashboardSales:
    async def test_sales_half(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        f = await sales_fixture(db, actor.org_id)
        store = await make_store(db, actor.org_id, "Склад")
        await set_stock(db, f["cable"], store, 7)
        f["cable"].min_stock = 20
        await db.flush()

        sales = (await get(client, actor, DASHBOARD, **MARCH)).json()["sales"]

        assert sales == {
            "available": True,
            "date_from": "2025-03-01",
            "date_to": "2025-03-31",
            "revenue": "132500.00",
            "orders": 3,
            "average_check": "44166.67",
            "top_products": [
                {"product_id": f["phone"].id, "name": "Смартфон", "quantity": 3.0, "revenue": "116000.00"},
                {"product_id": f["cable"].id, "name": "Кабель", "quantity": 15.0, "revenue": "14500.00"},
                {"product_id": f["case"].id, "name": "Чехол", "quantity": 1.0, "revenue": "2000.00"},
            ],
            "low_stock_count": 1,
            "currency": "RUB",
        }

    async def test_available_with_data_outside_the_period(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await sales_fixture(db, actor.org_id)

        sales = (await get(client, actor, DASHBOARD, date_from="2025-01-01", date_to="2025-01-31")).json()[
            "sales"
        ]

        assert sales["available"] is True
        assert (sales["revenue"], sales["orders"], sales["average_check"], sales["top_products"]) == (
            "0.00",
            0,
            "0.00",
            [],
        )


@pytest.mark.parametrize("url", [REPORT, INVENTORY, SEGMENTS, DASHBOARD])
class TestCache:
    async def test_hit_and_invalidation_by_a_generation_bump(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, app: Any, url: str
    ) -> None:
        actor = await factory.actor("member")
        await sales_fixture(db, actor.org_id)
        params = {"as_of": "2025-06-30"} if url == SEGMENTS else ({} if url == INVENTORY else MARCH)
        first = await get(client, actor, url, **params)
        second = await get(client, actor, url, **params)
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        assert second.content == first.content

        # Rows written by a sync are not seen while the cached answer stands...
        product = await make_product(db, actor.org_id, "Новинка", buy_price="1", sale_price="2", min_stock=1)
        await set_stock(db, product, await make_store(db, actor.org_id, "Новый склад"), 0)
        await make_document(
            db,
            actor.org_id,
            "demand",
            at(3, 20),
            [(product, 1, 100)],
            company_id=None,
            contact_id=None,
            counterparty_external_id="new",
        )
        assert (await get(client, actor, url, **params)).headers["x-cache"] == "HIT"

        # ...until the finished sync job bumps the organization's cache generation.
        await OrgCache(app.state.redis, 0).bump(actor.org_id)
        after = await get(client, actor, url, **params)

        assert after.headers["x-cache"] == "MISS"
        assert after.content != first.content

    async def test_redis_down_still_answers(
        self,
        client: AsyncClient,
        redis_down_client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        url: str,
    ) -> None:
        actor = await factory.actor("member")
        await sales_fixture(db, actor.org_id)
        expected = (await get(client, actor, url)).json()

        first = await get(redis_down_client, actor, url)
        second = await get(redis_down_client, actor, url)

        assert first.json() == second.json() == expected
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "MISS")


class TestCacheInvalidationByWrites:
    async def test_setting_min_stock_drops_the_inventory_report(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("admin")
        f = await inventory_fixture(db, actor.org_id)
        assert (await get(client, actor, INVENTORY)).json()["low_stock"]["count"] == 1

        patched = await client.patch(
            f"/api/v1/products/{f['phone'].id}", json={"min_stock": 100}, headers=actor.headers
        )
        assert patched.status_code == 200, patched.text
        after = await get(client, actor, INVENTORY)

        assert after.headers["x-cache"] == "MISS"
        assert after.json()["low_stock"]["count"] == 2


class TestAccess:
    async def test_organizations_are_apart(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await sales_fixture(db, actor.org_id)
        stranger = await factory.actor("member")

        body = (await get(client, stranger, REPORT, **MARCH)).json()
        sales = (await get(client, stranger, DASHBOARD, **MARCH)).json()["sales"]

        assert body["rows"] == []
        assert sales["available"] is False
        assert sales["revenue"] == "0.00"

    async def test_needs_the_tenant_header(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")
        await join_another_org(factory.db, actor.user)
        for url in (REPORT, INVENTORY, SEGMENTS):
            assert_problem(await client.get(url, headers=actor.auth), 400, "organization_required")

"""`/api/v1/products` and `/api/v1/inventory` (SPEC §10): synced rows read through the API."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, Alert, Notification, Product
from tests.factories import Actor, Factory, assert_problem, join_another_org
from tests.inventory.support import make_folder, make_product, make_store, set_stock

PRODUCTS = "/api/v1/products"
FOLDERS = "/api/v1/products/folders"
STOCK = "/api/v1/inventory/stock"
STORES = "/api/v1/inventory/stores"


async def get(client: AsyncClient, actor: Actor, url: str, **params: Any) -> Response:
    response = await client.get(url, params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    return response


def names(response: Response) -> list[str]:
    return [item["name"] for item in response.json()["items"]]


async def catalog(db: AsyncSession, org_id: int) -> dict[str, Any]:
    """Электроника > Ноутбуки; Аксессуары; two stores; five products and a service."""
    electronics = await make_folder(db, org_id, "Электроника")
    laptops = await make_folder(db, org_id, "Ноутбуки", electronics)
    accessories = await make_folder(db, org_id, "Аксессуары")
    moscow = await make_store(db, org_id, "Основной склад")
    spb = await make_store(db, org_id, "Склад Санкт-Петербург")
    phone = await make_product(
        db,
        org_id,
        "Смартфон Samsung Galaxy A55",
        code="A55",
        folder_id=electronics.id,
        sale_price="39990.00",
        buy_price="31000.00",
        min_stock=50,
    )
    laptop = await make_product(
        db,
        org_id,
        "Ноутбук Lenovo IdeaPad 5",
        code="LEN-5",
        article="82XD",
        folder_id=laptops.id,
        sale_price="89990.00",
        buy_price="70000.00",
    )
    cable = await make_product(
        db,
        org_id,
        "Кабель USB-C",
        code="CAB-1",
        folder_id=accessories.id,
        sale_price="990.00",
        buy_price="300.00",
        min_stock=5,
    )
    old = await make_product(db, org_id, "Старый чехол", archived=True, sale_price="100.00")
    await make_product(db, org_id, "Доставка", kind="service", sale_price="500.00")
    await set_stock(db, phone, moscow, 30, reserve=1)
    await set_stock(db, phone, spb, 12)
    await set_stock(db, laptop, moscow, 3, in_transit=2)
    await set_stock(db, cable, spb, 0)
    return {
        "electronics": electronics,
        "laptops": laptops,
        "accessories": accessories,
        "moscow": moscow,
        "spb": spb,
        "phone": phone,
        "laptop": laptop,
        "cable": cable,
        "old": old,
    }


class TestListProducts:
    async def test_items_with_total_stock_newest_first(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        c = await catalog(db, actor.org_id)
        other = await factory.actor("member")
        await make_product(db, other.org_id, "Чужой товар")

        body = (await get(client, actor, PRODUCTS)).json()

        assert body["total"] == 5
        assert body["limit"] == 50
        assert body["offset"] == 0
        assert next(i["name"] for i in body["items"]) == "Доставка"
        phone = next(i for i in body["items"] if i["id"] == c["phone"].id)
        assert phone["stock"] == 42
        assert phone["reserve"] == 1
        assert phone["sale_price"] == "39990.00"
        assert phone["buy_price"] == "31000.00"
        assert phone["min_stock"] == 50
        assert phone["folder_id"] == c["electronics"].id
        assert phone["kind"] == "product"
        assert phone["source"] == "moysklad"
        assert next(i for i in body["items"] if i["name"] == "Доставка")["stock"] == 0

    async def test_q_full_text_typo_and_code(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await catalog(db, actor.org_id)

        assert names(await get(client, actor, PRODUCTS, q="ноутбуки")) == ["Ноутбук Lenovo IdeaPad 5"]
        assert names(await get(client, actor, PRODUCTS, q="Смартфн")) == ["Смартфон Samsung Galaxy A55"]
        assert names(await get(client, actor, PRODUCTS, q="cab-1")) == ["Кабель USB-C"]
        assert names(await get(client, actor, PRODUCTS, q="82XD")) == ["Ноутбук Lenovo IdeaPad 5"]
        assert (await get(client, actor, PRODUCTS, q="холодильник")).json()["total"] == 0

    async def test_folder_with_and_without_subfolders(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        c = await catalog(db, actor.org_id)

        deep = await get(client, actor, PRODUCTS, folder_id=c["electronics"].id, sort="name")
        flat = await get(client, actor, PRODUCTS, folder_id=c["electronics"].id, include_subfolders="false")

        assert names(deep) == ["Ноутбук Lenovo IdeaPad 5", "Смартфон Samsung Galaxy A55"]
        assert names(flat) == ["Смартфон Samsung Galaxy A55"]

    async def test_kind_archived_price_and_stock_filters(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await catalog(db, actor.org_id)

        assert names(await get(client, actor, PRODUCTS, kind="service")) == ["Доставка"]
        assert names(await get(client, actor, PRODUCTS, archived="true")) == ["Старый чехол"]
        assert (await get(client, actor, PRODUCTS, archived="false")).json()["total"] == 4
        priced = await get(client, actor, PRODUCTS, price_min="500", price_max=39990, sort="sale_price")
        assert names(priced) == ["Доставка", "Кабель USB-C", "Смартфон Samsung Galaxy A55"]
        in_stock = await get(client, actor, PRODUCTS, in_stock="true", sort="name")
        assert names(in_stock) == ["Ноутбук Lenovo IdeaPad 5", "Смартфон Samsung Galaxy A55"]
        assert (await get(client, actor, PRODUCTS, in_stock="false")).json()["total"] == 3

    async def test_sorts(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        await catalog(db, actor.org_id)

        by_price = names(await get(client, actor, PRODUCTS, sort="-sale_price", limit=2))

        assert by_price == ["Ноутбук Lenovo IdeaPad 5", "Смартфон Samsung Galaxy A55"]

    async def test_bad_filters_are_422(self, client: AsyncClient, factory: Factory) -> None:
        actor = await factory.actor("member")

        for params in (
            {"sort": "stock"},
            {"kind": "variant"},
            {"price_min": "-1"},
            {"price_min": "10", "price_max": "5"},
            {"folder_id": "0"},
        ):
            response = await client.get(PRODUCTS, params=params, headers=actor.headers)
            assert_problem(response, 422, "validation_error")


class TestGetProduct:
    async def test_with_stock_per_store(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        c = await catalog(db, actor.org_id)

        body = (await get(client, actor, f"{PRODUCTS}/{c['phone'].id}")).json()

        assert body["name"] == "Смартфон Samsung Galaxy A55"
        assert body["stock"] == 42
        assert body["stores"] == [
            {
                "store_id": c["moscow"].id,
                "store_name": "Основной склад",
                "stock": 30,
                "reserve": 1,
                "in_transit": 0,
                "available": 29,
            },
            {
                "store_id": c["spb"].id,
                "store_name": "Склад Санкт-Петербург",
                "stock": 12,
                "reserve": 0,
                "in_transit": 0,
                "available": 12,
            },
        ]

    async def test_another_organizations_product_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("owner")
        other = await factory.actor("owner")
        product = await make_product(db, other.org_id, "Чужой")

        assert_problem(await client.get(f"{PRODUCTS}/{product.id}", headers=actor.headers), 404, "not_found")
        patched = await client.patch(f"{PRODUCTS}/{product.id}", json={"min_stock": 1}, headers=actor.headers)
        assert_problem(patched, 404, "not_found")

    async def test_needs_inventory_read(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        await join_another_org(db, actor.user)
        response = await client.get(PRODUCTS, headers=actor.auth)
        assert_problem(response, 400, "organization_required")


class TestFolderTree:
    async def test_nested_by_name_and_the_literal_path_wins(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        c = await catalog(db, actor.org_id)
        await make_folder(db, actor.org_id, "Планшеты", c["electronics"], archived=True)

        body = (await get(client, actor, FOLDERS)).json()
        slash = await get(client, actor, FOLDERS + "/")

        assert slash.json() == body
        assert body["total"] == 2
        accessories, electronics = body["items"]
        assert accessories["name"] == "Аксессуары"
        assert accessories["children"] == []
        assert accessories["product_count"] == 1
        assert electronics["name"] == "Электроника"
        assert electronics["product_count"] == 1
        assert [(f["name"], f["parent_id"], f["product_count"]) for f in electronics["children"]] == [
            ("Ноутбуки", c["electronics"].id, 1),
            ("Планшеты", c["electronics"].id, 0),
        ]
        active = (await get(client, actor, FOLDERS, archived="false")).json()
        assert [f["name"] for f in active["items"][1]["children"]] == ["Ноутбуки"]

    async def test_a_cycle_of_parents_still_lists_every_folder(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("member")
        a = await make_folder(db, actor.org_id, "A")
        b = await make_folder(db, actor.org_id, "B", a)
        a.parent_id = b.id
        await db.flush()

        body = (await get(client, actor, FOLDERS)).json()

        assert body["total"] == 2
        assert {f["name"] for f in body["items"]} == {"A", "B"}
        products = await get(client, actor, PRODUCTS, folder_id=a.id)
        assert products.json()["total"] == 0


class TestUpdateProduct:
    async def test_admin_sets_min_stock_and_an_alert_is_raised(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("admin")
        c = await catalog(db, actor.org_id)
        laptop = c["laptop"]

        response = await client.patch(
            f"{PRODUCTS}/{laptop.id}", json={"min_stock": "4.5"}, headers=actor.headers
        )

        assert response.status_code == 200, response.text
        assert response.json()["min_stock"] == 4.5
        assert response.json()["stores"][0]["stock"] == 3
        db.expunge_all()
        stored = await db.get(Product, laptop.id)
        assert stored is not None
        assert str(stored.min_stock) == "4.500"
        activity = (await db.scalars(select(Activity).where(Activity.entity_type == "product"))).one()
        assert (activity.entity_id, activity.action) == (laptop.id, "updated")
        assert activity.changes == {"min_stock": [None, "4.5"]}
        keys = set(await db.scalars(select(Alert.key).where(Alert.organization_id == actor.org_id)))
        # The phone (42 < 50) is low as well; the cable's 0 < 5 too.
        assert keys == {f"low_stock:product:{p.id}" for p in (laptop, c["phone"], c["cable"])}
        notified = await db.scalars(select(Notification.user_id).where(Notification.kind == "low_stock"))
        assert set(notified) == {actor.user.id}

    async def test_clearing_min_stock_resolves_the_alert(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("owner")
        c = await catalog(db, actor.org_id)
        url = f"{PRODUCTS}/{c['cable'].id}"
        await client.patch(url, json={"min_stock": 5}, headers=actor.headers)  # unchanged: no evaluation
        assert (await client.patch(url, json={"min_stock": 6}, headers=actor.headers)).status_code == 200

        response = await client.patch(url, json={"min_stock": None}, headers=actor.headers)

        assert response.status_code == 200
        assert response.json()["min_stock"] is None
        alert = (await db.scalars(select(Alert).where(Alert.entity_id == c["cable"].id))).one()
        assert alert.resolved_at is not None

    async def test_member_and_manager_get_403(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        for role in ("member", "manager"):
            actor = await factory.actor(role)
            product = await make_product(db, actor.org_id, "Товар")
            response = await client.patch(
                f"{PRODUCTS}/{product.id}", json={"min_stock": 1}, headers=actor.headers
            )
            assert_problem(response, 403, "permission_denied")

    async def test_bad_bodies_are_422_and_change_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actor = await factory.actor("admin")
        product = await make_product(db, actor.org_id, "Товар", min_stock=2)

        for body in ({"min_stock": -1}, {"min_stock": "1.2345"}, {"name": "x"}, {"min_stock": "abc"}):
            response = await client.patch(f"{PRODUCTS}/{product.id}", json=body, headers=actor.headers)
            assert_problem(response, 422, "validation_error")
        db.expunge_all()
        stored = await db.get(Product, product.id)
        assert stored is not None
        assert stored.min_stock == 2
        assert stored.name == "Товар"


class TestStock:
    async def test_rows_and_filters(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        c = await catalog(db, actor.org_id)
        other = await factory.actor("member")
        foreign = await make_store(db, other.org_id, "Чужой склад")
        await set_stock(db, await make_product(db, other.org_id, "Чужой"), foreign, 7)

        every = (await get(client, actor, STOCK)).json()
        by_store = (await get(client, actor, STOCK, store_id=c["moscow"].id, sort="product_name")).json()
        by_product = (await get(client, actor, STOCK, product_id=c["phone"].id, sort="-stock")).json()
        low = (await get(client, actor, STOCK, low_only="true", sort="product_name")).json()

        assert every["total"] == 4
        assert [(i["product_name"], i["stock"], i["available"]) for i in by_store["items"]] == [
            ("Ноутбук Lenovo IdeaPad 5", 3, 5),
            ("Смартфон Samsung Galaxy A55", 30, 29),
        ]
        assert [(i["store_name"], i["stock"]) for i in by_product["items"]] == [
            ("Основной склад", 30),
            ("Склад Санкт-Петербург", 12),
        ]
        # Low: total stock below min_stock (phone 42 < 50, cable 0 < 5), every store's row.
        assert [(i["product_name"], i["store_name"], i["min_stock"]) for i in low["items"]] == [
            ("Кабель USB-C", "Склад Санкт-Петербург", 5),
            ("Смартфон Samsung Galaxy A55", "Основной склад", 50),
            ("Смартфон Samsung Galaxy A55", "Склад Санкт-Петербург", 50),
        ]
        assert low["total"] == 3

    async def test_stores(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        actor = await factory.actor("member")
        await catalog(db, actor.org_id)
        await make_store(db, actor.org_id, "Закрытый склад", archived=True)

        every = (await get(client, actor, STORES, sort="name")).json()
        active = (await get(client, actor, STORES, archived="false")).json()

        assert [s["name"] for s in every["items"]] == [
            "Закрытый склад",
            "Основной склад",
            "Склад Санкт-Петербург",
        ]
        assert active["total"] == 2
        assert_problem(
            await client.get(STORES, params={"sort": "x"}, headers=actor.headers), 422, "validation_error"
        )

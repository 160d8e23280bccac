"""A MoySklad sync end to end: the generic engine runs the provider against the fake server over real
HTTP and stores into PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.models import (
    Company,
    Contact,
    Integration,
    Product,
    PurchaseDocument,
    SalesDocument,
    SalesDocumentPosition,
    StockLevel,
    Store,
)
from tests.factories import make_org
from tests.fakes.moysklad import FakeConfig, FakeMoySklad, entity_id
from tests.sync.conftest import Syncer, make_integration

CONFIG = FakeConfig(
    products=23, services=2, folders=3, stores=2, counterparties=6, documents=3, bad_inn_every=3
)


@pytest.fixture
def syncer(db: AsyncSession, test_maker: async_sessionmaker[AsyncSession], app: Any) -> Syncer:
    return Syncer(db, test_maker, app.state.redis)


async def count(db: AsyncSession, model: Any, org_id: int, *where: Any) -> int:
    stmt = select(func.count()).select_from(model).where(model.organization_id == org_id, *where)
    return int(await db.scalar(stmt) or 0)


async def moysklad(db: AsyncSession, fake: FakeMoySklad, org_id: int, **settings: Any) -> Integration:
    return await make_integration(
        db,
        org_id,
        provider="moysklad",
        base_url=fake.base_url,
        credentials={"login": fake.config.login, "password": fake.config.password},
        settings={"backoff_seconds": 0.01, "rate_limit_units": 45, "page_size": 10, **settings},
    )


@pytest.mark.parametrize("fake", [CONFIG], indirect=True)
async def test_full_then_incremental_sync(db: AsyncSession, syncer: Syncer, fake: FakeMoySklad) -> None:
    org_id = (await make_org(db)).id
    integration = await moysklad(db, fake, org_id)

    job = await syncer.sync(integration)

    assert job.status == "succeeded", (job.error, job.errors)
    assert job.errors == []
    assert job.counts["products"]["created"] == 23
    assert job.counts["services"]["created"] == 2
    assert job.counts["stock"]["created"] == 46
    assert await count(db, Product, org_id) == 25
    assert await count(db, Product, org_id, Product.kind == "service") == 2
    assert await count(db, Store, org_id) == 2
    assert await count(db, StockLevel, org_id) == 46
    assert await count(db, Company, org_id) == 4
    assert await count(db, Contact, org_id) == 2
    assert await count(db, SalesDocument, org_id) == 6
    assert await count(db, PurchaseDocument, org_id) == 6
    assert fake.tokens_issued == 1

    product = await db.scalar(
        select(Product).where(
            Product.organization_id == org_id, Product.external_id == entity_id("product", 4)
        )
    )
    assert product is not None
    assert product.source == "moysklad"
    assert product.folder_id is not None
    raw = fake._generate(fake.base_url, "product", 4)
    assert product.sale_price == (Decimal(str(raw["salePrices"][0]["value"])) / 100).quantize(Decimal("0.01"))
    flagged = await db.scalar(
        select(Company).where(
            Company.organization_id == org_id, Company.external_id == entity_id("counterparty", 0)
        )
    )
    assert flagged is not None
    assert flagged.sync_warnings == ["invalid_inn"]
    order = await db.scalar(
        select(SalesDocument).where(
            SalesDocument.organization_id == org_id,
            SalesDocument.external_id == entity_id("customerorder", 0),
        )
    )
    assert order is not None
    assert order.kind == "customer_order"
    assert order.state == "Новый"
    assert order.company_id == flagged.id
    assert order.store_id is not None
    lines = (
        await db.scalars(select(SalesDocumentPosition).where(SalesDocumentPosition.document_id == order.id))
    ).all()
    assert len(lines) == 3
    assert all(line.product_id is not None for line in lines)

    # Incremental: only what changed is fetched again; the saved token is reused.
    fake.touch("product", 4, name="Переименован")
    fake.requests.clear()
    again = await syncer.sync(integration)
    assert again.status == "succeeded", again.error
    # The changed product, plus products 20-22 inside the two-minute overlap before the mark.
    assert again.counts["products"] == {"fetched": 4, "created": 0, "updated": 1, "unchanged": 3, "failed": 0}
    assert again.counts["counterparties"]["created"] == 0
    assert fake.tokens_issued == 1
    await db.refresh(product)
    assert product.name == "Переименован"
    [products_call] = fake.requests_to("/entity/product")
    assert products_call.params["filter"][0].startswith("updated>=")


@pytest.mark.parametrize("fake", [FakeConfig(products=5, counterparties=0, documents=0)], indirect=True)
async def test_rejected_credentials_fail_the_job(
    db: AsyncSession, syncer: Syncer, fake: FakeMoySklad
) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(
        db,
        org_id,
        provider="moysklad",
        base_url=fake.base_url,
        credentials={"token": "not-a-valid-token"},
        settings={"backoff_seconds": 0.01},
    )
    job = await syncer.sync(integration)
    assert job.status == "failed"
    assert "MoySklad rejected the credentials (401)" in (job.error or "")
    assert "not-a-valid-token" not in (job.error or "")
    assert await count(db, Product, org_id) == 0


async def stock_rows(
    db: AsyncSession, org_id: int
) -> dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]:
    rows = await db.execute(
        select(
            StockLevel.product_external_id,
            StockLevel.store_external_id,
            StockLevel.stock,
            StockLevel.reserve,
            StockLevel.in_transit,
        ).where(StockLevel.organization_id == org_id)
    )
    return {(p, s): (a, b, c) for p, s, a, b, c in rows.tuples()}


def source_stock(fake: FakeMoySklad) -> dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]:
    c = fake.config
    return {
        (entity_id("product", p), entity_id("store", s)): tuple(Decimal(str(v)) for v in fake.stock(p, s))  # type: ignore[misc]
        for p in range(c.products)
        for s in range(c.stores)
        if (p, s) not in fake.stock_hidden
    }


STOCK_CONFIG = FakeConfig(products=1200, services=0, folders=1, stores=3, counterparties=0, documents=0)
STOCK_ONLY = ["products", "stores", "stock"]


@pytest.mark.parametrize("fake", [STOCK_CONFIG], indirect=True)
async def test_stock_snapshot_equals_the_source(
    db: AsyncSession, syncer: Syncer, fake: FakeMoySklad, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm.integrations.moysklad import provider as module

    monkeypatch.setattr(module, "STOCK_LINES_PER_PAGE", 1000)  # several pages per report request
    org_id = (await make_org(db)).id
    integration = await moysklad(db, fake, org_id, page_size=1000)

    job = await syncer.sync(integration, entities=STOCK_ONLY)

    assert job.status == "succeeded", (job.error, job.errors)
    assert job.counts["stock"] == {
        "fetched": 3600,
        "created": 3600,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
    }
    assert await stock_rows(db, org_id) == source_stock(fake)
    assert len(fake.requests_to("/report/stock/bystore")) == 2
    linked = await count(
        db, StockLevel, org_id, StockLevel.product_id.is_not(None), StockLevel.store_id.is_not(None)
    )
    assert linked == 3600


@pytest.mark.parametrize(
    "fake", [FakeConfig(products=6, stores=2, documents=0, counterparties=0)], indirect=True
)
async def test_changed_figures_update_only_what_changed(
    db: AsyncSession, syncer: Syncer, fake: FakeMoySklad
) -> None:
    org_id = (await make_org(db)).id
    integration = await moysklad(db, fake, org_id)
    assert (await syncer.sync(integration, entities=STOCK_ONLY)).status == "succeeded"
    stock, _, in_transit = fake.stock(1, 0)
    fake.set_stock(1, 0, stock + 7, 3.0, in_transit)  # stock and reserve change
    ran_out = next(p for p in (0, 2, 4, 5) if fake.stock(p, 1) != (0.0, 0.0, 0.0))
    fake.set_stock(ran_out, 1, 0.0, 0.0, 0.0)  # the zero line is still reported and stored
    fake.set_stock(3, 1, fake.stock(3, 1)[0], 5.5, fake.stock(3, 1)[2])  # only the reserve changes

    job = await syncer.sync(integration, entities=STOCK_ONLY)

    assert job.status == "succeeded", (job.error, job.errors)
    assert job.counts["stock"] == {"fetched": 12, "created": 0, "updated": 3, "unchanged": 9, "failed": 0}
    stored = await stock_rows(db, org_id)
    assert stored == source_stock(fake)
    assert stored[(entity_id("product", 3), entity_id("store", 1))][0] == Decimal(str(fake.stock(3, 1)[0]))
    assert stored[(entity_id("product", 3), entity_id("store", 1))][1] == Decimal("5.5")


@pytest.mark.parametrize(
    "fake", [FakeConfig(products=5, stores=2, documents=0, counterparties=0)], indirect=True
)
async def test_a_line_missing_from_the_report_is_deleted(
    db: AsyncSession, syncer: Syncer, fake: FakeMoySklad
) -> None:
    org_id = (await make_org(db)).id
    other_org = (await make_org(db)).id
    integration = await moysklad(db, fake, org_id)
    other = await moysklad(db, fake, other_org)
    assert (await syncer.sync(integration, entities=STOCK_ONLY)).status == "succeeded"
    assert (await syncer.sync(other, entities=STOCK_ONLY)).status == "succeeded"
    fake.hide_stock(2, 1)
    fake.hide_stock(4, 0)

    job = await syncer.sync(integration, entities=STOCK_ONLY)

    assert job.status == "succeeded", (job.error, job.errors)
    assert job.counts["stock"] == {"fetched": 8, "created": 0, "updated": 0, "unchanged": 8, "failed": 0}
    stored = await stock_rows(db, org_id)
    assert (entity_id("product", 2), entity_id("store", 1)) not in stored
    assert stored == source_stock(fake)
    assert await count(db, StockLevel, other_org) == 10  # another organization's rows are untouched


@pytest.mark.parametrize(
    "fake", [FakeConfig(products=5, stores=2, documents=0, counterparties=0)], indirect=True
)
async def test_a_broken_line_keeps_rows_that_were_not_delivered(
    db: AsyncSession, syncer: Syncer, fake: FakeMoySklad
) -> None:
    org_id = (await make_org(db)).id
    integration = await moysklad(db, fake, org_id)
    assert (await syncer.sync(integration, entities=STOCK_ONLY)).status == "succeeded"
    fake.hide_stock(2, 1)
    fake.stock_changes[(0, 0)] = ("many", 0.0, 0.0)  # type: ignore[assignment]  # a line that fails

    job = await syncer.sync(integration, entities=STOCK_ONLY)

    assert job.counts["stock"]["failed"] == 1
    # The snapshot is incomplete, so nothing is deleted on its evidence.
    assert await count(db, StockLevel, org_id) == 10

"""The generic sync engine run in-process with the toy provider (a plugin that is not built in)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations import engine
from crm.integrations.registry import get_provider, provider_names
from crm.models import (
    Activity,
    Company,
    Contact,
    Integration,
    Product,
    ProductFolder,
    SalesDocument,
    SalesDocumentPosition,
    StockLevel,
    Store,
    SyncCursor,
    SyncJob,
)
from tests.factories import make_org
from tests.fakes.toy_provider import DATASETS, ToyDataset
from tests.sync.conftest import SECRET, Syncer, make_integration

ZERO = {"fetched": 0, "created": 0, "updated": 0, "unchanged": 0, "failed": 0}


async def count(db: AsyncSession, model: Any, org_id: int) -> int:
    return int(
        await db.scalar(select(func.count()).select_from(model).where(model.organization_id == org_id)) or 0
    )


@pytest.fixture
def dataset() -> Any:
    data = ToyDataset.generate(products=25, stores=3, folders=2)
    DATASETS["t"] = data
    yield data
    DATASETS.pop("t", None)


def test_the_plugin_is_found_through_its_entry_point(toy: Any) -> None:
    assert "toy" in provider_names()
    provider = get_provider("toy")
    assert type(provider).__module__ == "tests.fakes.toy_provider"
    assert provider.entities[:4] == ("folders", "products", "stores", "stock")


async def test_full_sync_stores_every_record_with_references(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, settings={"products": 25, "stores": 3, "page_size": 10})

    job = await syncer.sync(integration)

    assert job.status == "succeeded", job.error
    assert job.error is None
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.attempts == 1
    assert job.counts["folders"] == {**ZERO, "fetched": 2, "created": 2}
    assert job.counts["products"] == {**ZERO, "fetched": 25, "created": 25}
    assert job.counts["stores"] == {**ZERO, "fetched": 3, "created": 3}
    assert job.counts["stock"] == {**ZERO, "fetched": 75, "created": 75}
    assert job.counts["counterparties"] == ZERO
    assert job.errors == []
    assert await count(db, Product, org_id) == 25
    assert await count(db, StockLevel, org_id) == 75

    product = await db.scalar(
        select(Product).where(Product.organization_id == org_id, Product.external_id == "p3")
    )
    assert product is not None
    assert product.source == "toy"
    assert product.name == "Product 3"
    assert product.sale_price == Decimal("100.03")
    folder = await db.get(ProductFolder, product.folder_id)
    assert folder is not None
    assert folder.external_id == "f1"
    child = await db.scalar(
        select(ProductFolder).where(
            ProductFolder.external_id == "f1", ProductFolder.organization_id == org_id
        )
    )
    assert child is not None
    assert child.parent_id is not None
    stock = await db.scalar(
        select(StockLevel).where(
            StockLevel.organization_id == org_id,
            StockLevel.product_external_id == "p3",
            StockLevel.store_external_id == "s2",
        )
    )
    assert stock is not None
    assert stock.product_id == product.id
    assert stock.stock == Decimal(23 % 20)
    store = await db.get(Store, stock.store_id)
    assert store is not None
    assert store.external_id == "s2"

    # One `synced` activity per target, not one per row.
    activities = (
        await db.scalars(
            select(Activity).where(Activity.organization_id == org_id, Activity.action == "synced")
        )
    ).all()
    assert sorted(a.entity_type for a in activities) == ["product", "product_folder", "stock_level", "store"]
    by_type = {a.entity_type: a.payload for a in activities}
    assert by_type["product"]["created"] == 25
    assert by_type["product"]["job_id"] == job.id

    await db.refresh(integration)
    assert integration.last_sync_status == "succeeded"
    assert integration.last_sync_at is not None
    assert integration.next_sync_at is not None
    assert (integration.next_sync_at - integration.last_sync_at).total_seconds() == pytest.approx(
        15 * 60, abs=1
    )
    cursors = (await db.scalars(select(SyncCursor).where(SyncCursor.integration_id == integration.id))).all()
    assert {c.entity for c in cursors} >= {"folders", "products", "stores", "stock"}
    assert all(c.job_id == job.id for c in cursors)


async def test_a_rerun_creates_nothing_new(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, settings={"products": 12, "stores": 2, "page_size": 5})
    first = await syncer.sync(integration)
    assert first.status == "succeeded"

    again = await syncer.sync(integration, full=True)

    assert again.status == "succeeded"
    assert again.counts["products"] == {**ZERO, "fetched": 12, "unchanged": 12}
    assert again.counts["stock"] == {**ZERO, "fetched": 24, "unchanged": 24}
    assert await count(db, Product, org_id) == 12
    assert await count(db, StockLevel, org_id) == 24


async def test_incremental_sync_fetches_only_changes(
    db: AsyncSession, syncer: Syncer, dataset: ToyDataset
) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, settings={"dataset": "t", "page_size": 10})
    assert (await syncer.sync(integration)).status == "succeeded"

    dataset.change("products", "p1", name="Renamed 1")
    dataset.change("products", "p2", price=99999)
    dataset.change("products", "p3")  # touched remotely, same values
    dataset.put("products", {"id": "p-new", "name": "Brand new", "price": 500, "folder": "f0"})
    job = await syncer.sync(integration)

    assert job.status == "succeeded"
    assert job.counts["products"] == {**ZERO, "fetched": 4, "created": 1, "updated": 2, "unchanged": 1}
    assert job.counts["stock"] == ZERO
    assert job.counts["folders"] == ZERO
    renamed = await db.scalar(
        select(Product).where(Product.organization_id == org_id, Product.external_id == "p1")
    )
    assert renamed is not None
    assert renamed.name == "Renamed 1"
    assert await count(db, Product, org_id) == 26


async def test_a_crash_after_a_page_resumes_from_the_cursor_without_duplicates(
    db: AsyncSession, syncer: Syncer
) -> None:
    org_id = (await make_org(db)).id
    settings = {
        "products": 25,
        "stores": 2,
        "page_size": 10,
        "fail_after_page": {"entity": "products", "page": 2},
    }
    integration = await make_integration(db, org_id, settings=settings)

    crashed = await syncer.sync(integration)

    assert crashed.status == "failed"
    assert crashed.error == "sync crashed: internal error (RuntimeError)"
    assert crashed.finished_at is not None
    assert crashed.counts["products"] == {**ZERO, "fetched": 20, "created": 20}
    assert await count(db, Product, org_id) == 20  # the two committed pages stay
    await db.refresh(integration)
    assert integration.last_sync_status == "failed"

    await db.execute(
        update(Integration)
        .where(Integration.id == integration.id)
        .values(settings={**settings, "fail_after_page": None})
    )
    await db.commit()
    resumed = await syncer.sync(integration)

    assert resumed.status == "succeeded", resumed.error
    assert resumed.counts["products"] == {**ZERO, "fetched": 5, "created": 5}
    assert await count(db, Product, org_id) == 25
    ids = (await db.scalars(select(Product.external_id).where(Product.organization_id == org_id))).all()
    assert sorted(ids) == sorted(f"p{i}" for i in range(25))
    assert await count(db, StockLevel, org_id) == 50


async def test_a_redelivered_running_job_continues_from_its_own_cursor(
    db: AsyncSession, syncer: Syncer
) -> None:
    """A worker died after committing two pages of a full sync; the redelivered message resumes."""
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, settings={"products": 25, "stores": 0, "folders": 0})
    job = await syncer.start(integration, entities=["products"], full=True)
    # What the dead worker left: the job running with two pages stored and their cursor.
    db.add(
        SyncCursor(
            integration_id=integration.id,
            entity="products",
            organization_id=org_id,
            job_id=job.id,
            cursor=json.dumps({"since": 0, "offset": 20}),
        )
    )
    await db.execute(
        update(SyncJob)
        .where(SyncJob.id == job.id)
        .values(status="running", attempts=1, counts={"products": {**ZERO, "fetched": 20, "created": 20}})
    )
    await db.commit()

    finished = await syncer.run(job.id)

    assert finished.status == "succeeded"
    assert finished.attempts == 2
    assert finished.counts["products"] == {**ZERO, "fetched": 25, "created": 25}
    assert finished.entities == ["products"]
    assert await count(db, Product, org_id) == 5  # only the rest came in this run


async def test_a_redelivered_finished_job_does_nothing(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, settings={"products": 3})
    job = await syncer.sync(integration)
    assert job.status == "succeeded"

    again = await syncer.run(job.id)

    assert again.status == "succeeded"
    assert again.attempts == 1
    assert again.finished_at == job.finished_at
    synced = await db.scalar(
        select(func.count())
        .select_from(Activity)
        .where(Activity.organization_id == org_id, Activity.action == "synced")
    )
    assert synced == 4  # folders, products, stores, stock — nothing added by the redelivery


async def test_bad_records_are_counted_with_reasons(
    db: AsyncSession, syncer: Syncer, dataset: ToyDataset
) -> None:
    org_id = (await make_org(db)).id
    dataset.put("products", {"id": "bad-type", "name": 12345})
    dataset.put("products", {"name": "no id at all"})
    dataset.put("products", {"id": "too-long", "name": "x" * 600})
    dataset.put("products", {"id": "bad-price", "name": "Price", "price": "lots"})
    integration = await make_integration(db, org_id, settings={"dataset": "t"})

    job = await syncer.sync(integration)

    assert job.status == "succeeded"
    assert job.counts["products"] == {**ZERO, "fetched": 29, "created": 25, "failed": 4}
    errors = {e["external_id"]: e for e in job.errors}
    assert errors["bad-type"] == {
        "entity": "products",
        "external_id": "bad-type",
        "message": "name must be a string",
    }
    assert errors[None]["message"] == "record has no id"
    assert errors["too-long"]["message"] == "name is longer than 500 characters"
    assert errors["bad-price"]["message"] == "record cannot be read (InvalidOperation)"
    assert await count(db, Product, org_id) == 25


async def test_a_provider_error_fails_the_job_without_credentials(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    fault = {"entity": "stores", "message": "toy: 403 access to the stores denied", "status": 403}
    integration = await make_integration(db, org_id, settings={"products": 5, "provider_error": fault})

    job = await syncer.sync(integration)

    assert job.status == "failed"
    assert job.error == "toy: 403 access to the stores denied"
    assert job.counts["products"]["created"] == 5  # entities before the failure are kept
    assert SECRET not in json.dumps({"error": job.error, "errors": job.errors})


async def test_refused_credentials_fail_the_job(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, credentials={"api_key": "wrong"})

    job = await syncer.sync(integration)

    assert job.status == "failed"
    assert job.error == "toy: authentication failed (401)"
    assert "wrong" not in (job.error or "").replace("toy", "")


async def test_an_uninstalled_provider_fails_the_job(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id)
    job = await syncer.start(integration)
    await db.execute(update(Integration).where(Integration.id == integration.id).values(provider="gone"))
    await db.commit()

    finished = await syncer.run(job.id)

    assert finished.status == "failed"
    assert finished.error == "provider 'gone' is not installed"


async def test_a_retryable_error_requeues_and_the_retry_resumes(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    settings: dict[str, Any] = {
        "products": 15,
        "page_size": 10,
        "provider_error": {
            "entity": "products",
            "page": 1,
            "message": "toy: 503 try later",
            "retryable": True,
        },
    }
    integration = await make_integration(db, org_id, settings=settings)
    job_id = (await syncer.start(integration)).id

    with pytest.raises(engine.RetryLater):
        await engine.run_sync_job(job_id, maker=syncer.maker, redis=syncer.redis, retry_allowed=True)
    db.expire_all()
    await db.refresh(integration)
    waiting = await db.get(SyncJob, job_id)
    assert waiting is not None
    assert waiting.status == "queued"
    assert waiting.error == "will retry: toy: 503 try later"
    assert await count(db, Product, org_id) == 10

    await db.execute(
        update(Integration)
        .where(Integration.id == integration.id)
        .values(settings={**settings, "provider_error": None})
    )
    await db.commit()
    done = await syncer.run(job_id, retry_allowed=True)
    assert done.status == "succeeded"
    assert done.attempts == 2
    assert done.error is None
    assert done.counts["products"] == {**ZERO, "fetched": 15, "created": 15}


async def test_cancel_stops_between_pages(db: AsyncSession, syncer: Syncer, dataset: ToyDataset) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, settings={"dataset": "t", "page_size": 10})
    job = await syncer.start(integration)

    async def cancel_after_first_page(entity: str, page_no: int) -> None:
        if entity == "products" and page_no == 1:
            await db.execute(update(SyncJob).where(SyncJob.id == job.id).values(cancel_requested=True))
            await db.commit()

    dataset.on_page = cancel_after_first_page
    finished = await syncer.run(job.id)

    assert finished.status == "cancelled"
    assert finished.error == "cancelled by user"
    assert finished.finished_at is not None
    assert finished.counts["products"]["created"] == 10
    assert "stores" not in finished.counts
    assert await count(db, Product, org_id) == 10


async def test_synced_duplicates_of_manual_rows_are_flagged(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    db.add(Contact(organization_id=org_id, full_name="Manual", email="CP1@example.com"))
    db.add(Company(organization_id=org_id, name="Manual Ltd", inn="7700000002"))
    await db.flush()
    integration = await make_integration(
        db, org_id, settings={"counterparties": 4, "products": 0, "stores": 0, "folders": 0}
    )

    job = await syncer.sync(integration, entities=["counterparties"])

    assert job.status == "succeeded"
    assert job.counts["counterparties"] == {**ZERO, "fetched": 4, "created": 4}
    synced_contacts = {
        c.external_id: c.sync_warnings
        for c in (
            await db.scalars(
                select(Contact).where(Contact.organization_id == org_id, Contact.source == "toy")
            )
        )
    }
    assert synced_contacts == {"c1": ["duplicate_email"], "c3": []}
    synced_companies = {
        c.external_id: c.sync_warnings
        for c in (
            await db.scalars(
                select(Company).where(Company.organization_id == org_id, Company.source == "toy")
            )
        )
    }
    assert synced_companies == {"c0": [], "c2": ["duplicate_inn"]}

    again = await syncer.sync(integration, entities=["counterparties"], full=True)
    assert again.counts["counterparties"] == {**ZERO, "fetched": 4, "unchanged": 4}


async def test_documents_with_positions(db: AsyncSession, syncer: Syncer, dataset: ToyDataset) -> None:
    org_id = (await make_org(db)).id
    data = ToyDataset.generate(products=4, stores=1, folders=0, counterparties=2, documents=3)
    DATASETS["t"] = data
    integration = await make_integration(db, org_id, settings={"dataset": "t"})

    job = await syncer.sync(integration)

    assert job.status == "succeeded", job.error
    assert job.counts["sales"] == {**ZERO, "fetched": 3, "created": 3}
    doc = await db.scalar(
        select(SalesDocument).where(
            SalesDocument.organization_id == org_id, SalesDocument.external_id == "d1"
        )
    )
    assert doc is not None
    assert doc.contact_id is not None
    assert doc.company_id is None
    assert doc.store_id is not None
    assert doc.total_amount == Decimal("100.01") * 3
    positions = (
        await db.scalars(
            select(SalesDocumentPosition)
            .where(SalesDocumentPosition.document_id == doc.id)
            .order_by(SalesDocumentPosition.id)
        )
    ).all()
    assert [(p.product_external_id, p.quantity) for p in positions] == [("p1", 1), ("p2", 2)]
    assert all(p.product_id is not None for p in positions)

    doc_id = doc.id
    again = await syncer.sync(integration, full=True)
    assert again.counts["sales"] == {**ZERO, "fetched": 3, "unchanged": 3}

    raw = data.records["sales"]["d1"]
    data.change("sales", "d1", positions=[{**raw["positions"][0], "quantity": 7}])
    changed = await syncer.sync(integration)
    assert changed.counts["sales"] == {**ZERO, "fetched": 1, "updated": 1}
    positions = (
        await db.scalars(select(SalesDocumentPosition).where(SalesDocumentPosition.document_id == doc_id))
    ).all()
    assert [(p.product_external_id, p.quantity) for p in positions] == [("p1", 7)]
    assert await count(db, SalesDocumentPosition, org_id) == 5


async def test_finish_hooks_run_once_per_job(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, settings={"products": 2})
    seen: list[tuple[int, str]] = []

    async def hook(session: AsyncSession, job: SyncJob) -> None:
        seen.append((job.id, job.status))

    async def broken(session: AsyncSession, job: SyncJob) -> None:
        raise RuntimeError("a hook failing never undoes the job")

    engine.SYNC_FINISHED_HOOKS.extend([broken, hook])
    try:
        job = await syncer.sync(integration)
    finally:
        engine.SYNC_FINISHED_HOOKS.remove(broken)
        engine.SYNC_FINISHED_HOOKS.remove(hook)

    assert job.status == "succeeded"
    assert seen == [(job.id, "succeeded")]


async def test_provider_state_is_kept_in_the_integration(db: AsyncSession, syncer: Syncer) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id, settings={"products": 1, "page_size": 5})

    await syncer.sync(integration, entities=["products"])
    await db.refresh(integration)
    assert integration.settings["_state"] == {"fetches": 1}
    assert integration.settings["products"] == 1

    await syncer.sync(integration, entities=["products"])
    await db.refresh(integration)
    assert integration.settings["_state"] == {"fetches": 2}

"""A MoySklad integration set up through the admin API and synced by a real Celery worker process
against the fake server: full sync, a re-run that creates nothing, an incremental run after a change,
and a 429 storm the client waits out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from crm.models import Product, StockLevel, SyncJob
from tests.factories import add_member, login, make_org, make_user
from tests.fakes.moysklad import FakeConfig, FakeMoySklad
from tests.sync import conftest as sync_fixtures
from tests.sync.conftest import Worker

#: A real worker process (the toy plugin it also installs is not used here).
toy = sync_fixtures.toy
toy_worker = sync_fixtures.toy_worker

CONFIG = FakeConfig(products=30, services=2, folders=2, stores=2, counterparties=4, documents=2)
INTEGRATIONS = "/api/v1/admin/integrations"
SYNC = "/api/v1/admin/sync"


async def _admin(app: Any, client: AsyncClient) -> Any:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "admin")
        await session.commit()
    return await login(client, user, org_id=org.id)


async def _run(
    app: Any, client: AsyncClient, worker: Worker, admin: Any, integration_id: int, *, full: bool = False
) -> SyncJob:
    body = {"integration_id": integration_id, "full": full}
    started = await client.post(f"{SYNC}/start", json=body, headers=admin.headers)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, worker.log()
        async with app.state.sessionmaker() as session:
            job = await session.get(SyncJob, started.json()["id"])
        assert job is not None
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.3)
    raise AssertionError(worker.log())


async def _count(app: Any, model: Any, org_id: int) -> int:
    async with app.state.sessionmaker() as session:
        stmt = select(func.count()).select_from(model).where(model.organization_id == org_id)
        return int(await session.scalar(stmt) or 0)


@pytest.mark.parametrize("fake", [CONFIG], indirect=True)
async def test_worker_syncs_moysklad_full_then_incremental(
    app: Any, committing_client: AsyncClient, toy_worker: Worker, fake: FakeMoySklad
) -> None:
    admin = await _admin(app, committing_client)
    created = await committing_client.post(
        INTEGRATIONS,
        json={
            "provider": "moysklad",
            "name": "Shop",
            "base_url": fake.base_url,
            "credentials": {"token": fake.config.token},
            "settings": {"page_size": 10, "backoff_seconds": 0.01, "rate_limit_units": 45},
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    integration_id = created.json()["id"]

    full = await _run(app, committing_client, toy_worker, admin, integration_id)
    assert full.status == "succeeded", (full.error, toy_worker.log())
    assert full.counts["products"]["created"] == 30
    assert await _count(app, Product, admin.org_id) == 32
    assert await _count(app, StockLevel, admin.org_id) == 60  # products × stores (services hold none)

    rerun = await _run(app, committing_client, toy_worker, admin, integration_id)
    assert rerun.status == "succeeded", rerun.error
    assert sum(c["created"] for c in rerun.counts.values()) == 0
    assert await _count(app, Product, admin.org_id) == 32

    fake.touch("product", 3, name="Новое имя")
    fake.force_429(3, retry_after_ms=300)
    incremental = await _run(app, committing_client, toy_worker, admin, integration_id)
    assert incremental.status == "succeeded", incremental.error
    assert incremental.counts["products"]["updated"] == 1
    assert incremental.counts["products"]["created"] == 0
    assert fake.early_requests == 0
    async with app.state.sessionmaker() as session:
        names = await session.scalars(
            select(Product.name).where(Product.organization_id == admin.org_id, Product.name == "Новое имя")
        )
        assert list(names) == ["Новое имя"]


@pytest.mark.parametrize("fake", [CONFIG], indirect=True)
async def test_worker_keeps_admin_min_stock_and_soft_deletes_counterparties(
    app: Any, committing_client: AsyncClient, toy_worker: Worker, fake: FakeMoySklad
) -> None:
    from crm.models import Company, Contact

    admin = await _admin(app, committing_client)
    created = await committing_client.post(
        INTEGRATIONS,
        json={
            "provider": "moysklad",
            "name": "Shop",
            "base_url": fake.base_url,
            "credentials": {"token": fake.config.token},
            "settings": {"page_size": 10, "backoff_seconds": 0.01, "rate_limit_units": 45},
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    integration_id = created.json()["id"]
    full = await _run(app, committing_client, toy_worker, admin, integration_id)
    assert full.status == "succeeded", (full.error, toy_worker.log())

    # An admin sets a product's minimum stock; MoySklad later changes its own value.
    rid = fake.touch("product", 3, name="Товар с порогом")
    async with app.state.sessionmaker() as session:
        product = await session.scalar(
            select(Product).where(Product.organization_id == admin.org_id, Product.external_id == rid)
        )
    assert product is not None
    patched = await committing_client.patch(
        f"/api/v1/products/{product.id}", json={"min_stock": "42"}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    fake.touch("product", 3, minimumBalance=7.0, name="Товар с новым порогом")
    again = await _run(app, committing_client, toy_worker, admin, integration_id)
    assert again.status == "succeeded", again.error
    async with app.state.sessionmaker() as session:
        stored = await session.get(Product, product.id)
    assert stored is not None
    assert stored.name == "Товар с новым порогом"  # the provider's other fields still apply
    assert stored.min_stock == 42  # the admin's threshold stays
    assert stored.min_stock_manual is True

    # Counterparties deleted at MoySklad: a full run soft-deletes their companies and contacts.
    async def live(model: Any) -> set[str]:
        async with app.state.sessionmaker() as session:
            rows = await session.scalars(
                select(model.external_id).where(
                    model.organization_id == admin.org_id,
                    model.source == "moysklad",
                    model.deleted_at.is_(None),
                )
            )
            return set(rows)

    companies_before, contacts_before = await live(Company), await live(Contact)
    gone_company = fake.remove("counterparty", 1)  # an entrepreneur → company
    gone_contact = fake.remove("counterparty", 2)  # an individual → contact
    assert gone_company in companies_before
    assert gone_contact in contacts_before
    swept = await _run(app, committing_client, toy_worker, admin, integration_id, full=True)
    assert swept.status == "succeeded", swept.error
    assert await live(Company) == companies_before - {gone_company}
    assert await live(Contact) == contacts_before - {gone_contact}
    async with app.state.sessionmaker() as session:
        kept = await session.scalar(
            select(Company).where(
                Company.organization_id == admin.org_id, Company.external_id == gone_company
            )
        )
    assert kept is not None
    assert kept.deleted_at is not None

"""Kaspi as a separately installed plugin: the distribution in `plugins/crm-kaspi` is built and
installed into a directory of its own, the core then lists it (and not before), and a real worker
with it on its path syncs orders and customers from the fake Kaspi."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from crm.config import Settings
from crm.integrations import registry
from crm.models import Contact, SalesDocument, SalesDocumentPosition
from tests.fakes.kaspi import FakeKaspi, running
from tests.integrations.bitrix24.test_worker import admin_session, run_job
from tests.workers import celery_worker

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "plugins" / "crm-kaspi"
INTEGRATIONS = "/api/v1/admin/integrations"


def _install(target: Path) -> None:
    """`uv pip install --target`: a real build and install of the plugin, outside the project's venv."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    command = [
        uv,
        "pip",
        "install",
        "--no-deps",
        "--python",
        sys.executable,
        "--target",
        str(target),
        str(PLUGIN),
    ]
    done = subprocess.run([*command, "--offline"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:  # hatchling not in uv's cache yet: fetch it
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_core_does_not_know_kaspi() -> None:
    assert "kaspi" not in registry.provider_names()
    assert "kaspi" not in (ROOT / "pyproject.toml").read_text().lower()
    core = ROOT / "src" / "crm"
    assert not [p for p in core.rglob("*.py") if "crm_kaspi" in p.read_text(encoding="utf-8")]
    # The plugin imports nothing of the core but the provider contract.
    imports = {
        line.split()[1]
        for p in (PLUGIN / "src").rglob("*.py")
        for line in p.read_text(encoding="utf-8").splitlines()
        if line.startswith(("from crm", "import crm"))
    }
    assert imports == {"crm.integrations.base"}


@pytest.fixture
def kaspi() -> Iterator[FakeKaspi]:
    with running(FakeKaspi(orders=30)) as server:
        yield server


async def test_kaspi_plugin_installed_and_synced(
    app: Any, committing_client: AsyncClient, settings: Settings, tmp_path: Path, kaspi: FakeKaspi
) -> None:
    client = committing_client
    admin = await admin_session(app, client)
    body = {
        "provider": "kaspi",
        "name": "Kaspi shop",
        "base_url": kaspi.base_url,
        "credentials": {"token": kaspi.token},
        "settings": {"rate_per_second": 50, "page_size": 7, "backoff_seconds": 0.05},
    }
    missing = await client.post(INTEGRATIONS, json=body, headers=admin.headers)
    assert missing.status_code == 422, missing.text
    assert missing.json()["code"] == "unknown_provider"

    site = tmp_path / "site"
    _install(site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    registry.reload_providers()
    try:
        assert "kaspi" in registry.provider_names()
        providers = await client.get("/api/v1/admin/providers", headers=admin.headers)
        assert providers.status_code == 200, providers.text
        kaspi_info = next(p for p in providers.json() if p["name"] == "kaspi")
        assert kaspi_info["entities"] == ["orders"]
        assert kaspi_info["credentials_schema"]["type"] == "object"
        created = await client.post(INTEGRATIONS, json=body, headers=admin.headers)
        assert created.status_code == 201, created.text
        assert kaspi.token not in created.text
        integration_id = created.json()["id"]
        with celery_worker(settings, tmp_path, name="kaspi-test", pythonpath=[site]) as worker:
            first = await run_job(app, client, worker, admin, integration_id)
            assert first.status == "succeeded", (first.error, worker.log())
            assert kaspi.bad_requests == []
            async with app.state.sessionmaker() as session:
                documents = {
                    d.external_id: d
                    for d in await session.scalars(
                        select(SalesDocument).where(SalesDocument.organization_id == admin.org_id)
                    )
                }
                contacts = {
                    c.external_id: c
                    for c in await session.scalars(
                        select(Contact).where(Contact.organization_id == admin.org_id)
                    )
                }
                lines = await session.scalar(
                    select(func.count())
                    .select_from(SalesDocumentPosition)
                    .where(SalesDocumentPosition.organization_id == admin.org_id)
                )
            assert set(documents) == set(kaspi.orders)
            assert len(contacts) == 7
            assert lines == sum(len(v) for v in kaspi.entries.values())
            for order_id, document in documents.items():
                remote = kaspi.orders[order_id]["attributes"]
                assert document.source == "kaspi"
                assert document.kind == "customer_order"
                assert document.currency == "KZT"
                assert document.number == remote["code"]
                assert document.total_amount == Decimal(str(remote["totalPrice"])).quantize(Decimal("0.01"))
                assert int(document.moment.timestamp() * 1000) == remote["creationDate"]
                assert document.contact_id == contacts[remote["customer"]["id"]].id
                assert document.applicable is (remote["status"] != "CANCELLED")
            customer = next(iter(kaspi.orders.values()))["attributes"]["customer"]
            assert contacts[customer["id"]].phone == "+7" + customer["cellPhone"]
            # The plugin's name is a source the contact list filters by, as the built-in ones.
            listed = await client.get("/api/v1/contacts?source=kaspi&limit=100", headers=admin.headers)
            assert listed.status_code == 200, listed.text
            assert {c["external_id"] for c in listed.json()["items"]} == set(contacts)
            assert {c["source"] for c in listed.json()["items"]} == {"kaspi"}

            again = await run_job(app, client, worker, admin, integration_id)
            assert again.status == "succeeded", again.error
            assert sum(c["created"] for c in again.counts.values()) == 0
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m == "crm_kaspi" or m.startswith("crm_kaspi.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        registry.reload_providers()
    assert "kaspi" not in registry.provider_names()

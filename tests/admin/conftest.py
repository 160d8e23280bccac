from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations.registry import provider_names
from tests.factories import Actor
from tests.fakes.plugins import installed_provider

PROBE = "tests.admin.probe_provider:ProbeProvider"
API = "/api/v1/admin/integrations"
SECRET_KEY = "s3cret-probe-key-0001"


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[str]:
    """The `probe` provider installed as a plugin distribution (and as `bitrix24` when no real one is)."""
    with installed_provider("probe", PROBE, tmp_path / "probe"):
        if "bitrix24" in provider_names():
            yield "probe"
            return
        with installed_provider("bitrix24", PROBE, tmp_path / "bitrix24"):
            yield "probe"


def integration_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "probe",
        "name": "Warehouse",
        "base_url": "http://127.0.0.1:9/api",
        "credentials": {"api_key": SECRET_KEY, "account": "acme-account"},
        "settings": {"page_size": 20},
        "enabled": True,
    }
    body.update(overrides)
    return body


async def create_integration(client: Any, actor: Actor, **overrides: Any) -> dict[str, Any]:
    response = await client.post(API, json=integration_body(**overrides), headers=actor.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(db: AsyncSession, integration_id: int) -> Any:
    from crm.models import Integration

    db.expunge_all()
    return await db.get(Integration, integration_id)

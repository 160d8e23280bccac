"""The fake MoySklad server on 127.0.0.1 and helpers to talk to it through the provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm.integrations.base import Page, ProviderContext
from crm.integrations.moysklad.provider import MoySkladProvider
from tests.fakes.moysklad import FakeConfig, FakeMoySklad, running

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeMoySklad]:
    """A running fake; parametrize indirectly with a `FakeConfig` to change its data or limits."""
    config = getattr(request, "param", None) or FakeConfig()
    with running(FakeMoySklad(config)) as server:
        yield server


def context(
    fake: FakeMoySklad, credentials: dict[str, Any] | None = None, **settings: Any
) -> ProviderContext:
    """A provider context for the fake: bearer token by default, fast retries, a generous budget."""
    return ProviderContext(
        organization_id=1,
        integration_id=1,
        base_url=fake.base_url,
        credentials=credentials if credentials is not None else {"token": fake.config.token},
        settings={"backoff_seconds": 0.01, "rate_limit_units": 45, **settings},
    )


async def pages(
    provider: MoySkladProvider, ctx: ProviderContext, entity: str, cursor: str | None = None
) -> list[Page]:
    return [page async for page in provider.fetch(ctx, entity, cursor)]


def ids(page_list: list[Page]) -> list[str]:
    return [r["id"] for page in page_list for r in page.records]

"""The Kaspi plugin's HTTP client goes through the core's SSRF guard (`http_client` of the provider
contract): its URL is checked and its connections pinned like every built-in provider's, so a base URL
on a private network is refused unless the deployment allows those."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm.integrations.base import ProviderContext
from crm.integrations.ssrf import PinnedTransport
from tests.fakes.kaspi import FakeKaspi, running

PLUGIN_SOURCE = Path(__file__).resolve().parents[3] / "plugins" / "crm-kaspi" / "src"


@pytest.fixture
def plugin() -> Iterator[Any]:
    """The plugin's provider module, imported from its source tree (not registered as a provider)."""
    sys.path.insert(0, str(PLUGIN_SOURCE))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("crm_kaspi.provider")
    finally:
        sys.path.remove(str(PLUGIN_SOURCE))
        for name in [m for m in sys.modules if m == "crm_kaspi" or m.startswith("crm_kaspi.")]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def kaspi() -> Iterator[FakeKaspi]:
    with running(FakeKaspi(orders=3)) as server:
        yield server


def context(kaspi: FakeKaspi, base_url: str | None = None) -> ProviderContext:
    return ProviderContext(
        organization_id=1,
        integration_id=None,
        base_url=base_url or kaspi.base_url,
        credentials={"token": kaspi.token},
        settings={"retry_attempts": 1, "backoff_seconds": 0.01},
    )


async def test_client_is_pinned_and_reaches_an_allowed_url(plugin: Any, kaspi: FakeKaspi) -> None:
    provider = plugin.KaspiProvider()
    ctx = context(kaspi)
    client = provider._client(ctx)
    assert isinstance(client._http._transport, PinnedTransport)
    assert client._http.event_hooks["request"]  # every request's URL is checked, redirects included
    await provider.aclose()

    result = await provider.test_connection(ctx)

    assert result.ok, result.detail
    assert kaspi.requests == 1


async def test_private_url_refused_when_not_allowed(
    plugin: Any, kaspi: FakeKaspi, override_settings: Any
) -> None:
    override_settings(allow_private_integration_urls=False)
    provider = plugin.KaspiProvider()

    result = await provider.test_connection(context(kaspi))

    assert not result.ok
    assert result.detail.startswith("Kaspi URL refused")
    assert kaspi.token not in result.detail
    assert kaspi.requests == 0  # nothing was sent

    # A name that resolves to a private address is refused the same way (checked where it connects).
    port = kaspi.base_url.split(":")[2].split("/")[0]
    result = await provider.test_connection(context(kaspi, f"http://localhost:{port}/shop/api/v2"))
    assert not result.ok
    assert result.detail.startswith("Kaspi URL refused")
    assert kaspi.requests == 0

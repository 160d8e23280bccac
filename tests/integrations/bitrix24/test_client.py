"""The Bitrix24 client and provider against the fake portal, in process: paging and batch, limit
answers waited out, auth failures named, malformed rows reported, the SSRF guard on the portal address."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient

from crm.integrations.base import ProviderContext, ProviderError
from crm.integrations.bitrix24 import mapping
from crm.integrations.bitrix24.client import Bitrix24Client
from crm.integrations.bitrix24.provider import Bitrix24Provider
from tests.factories import Factory
from tests.fakes.bitrix24 import STAGES, FakeBitrix24, FakeConfig, running


@pytest.fixture
def fake() -> Iterator[FakeBitrix24]:
    with running(FakeBitrix24(FakeConfig(contacts=260, companies=12, deals=0, min_gap=0.1))) as server:
        yield server


def context(fake: FakeBitrix24, **settings: Any) -> ProviderContext:
    return ProviderContext(
        organization_id=1,
        integration_id=None,
        base_url=fake.base_url,
        credentials={"webhook_user_id": fake.config.user_id, "webhook_secret": fake.config.secret},
        settings={"backoff_seconds": 0.15, "rate_per_second": 50, "burst": 50, **settings},
    )


async def fetch_all(provider: Bitrix24Provider, ctx: ProviderContext, entity: str) -> list[Any]:
    return [page async for page in provider.fetch(ctx, entity, None)]


async def test_pages_batches_and_requisites(fake: FakeBitrix24) -> None:
    provider = Bitrix24Provider()
    try:
        pages = await fetch_all(provider, context(fake), "contacts")
        ids = [r["ID"] for p in pages for r in p.records]
        assert ids == [str(i) for i in range(1, 261)]
        assert pages[-1].last
        # One counting request, then one batch of the remaining four pages (and one more for the tail).
        assert fake.http_requests <= 3
        assert fake.requests > fake.http_requests  # the batch carried several method calls
        companies = [r for p in await fetch_all(provider, context(fake), "companies") for r in p.records]
        assert {r["ID"] for r in companies if "_REQUISITE" in r} == {str(i) for i in range(2, 13, 2)}
    finally:
        await provider.aclose()


async def test_without_batch_reads_page_by_page(fake: FakeBitrix24) -> None:
    provider = Bitrix24Provider()
    try:
        pages = await fetch_all(provider, context(fake, use_batch=False), "contacts")
        assert sum(len(p.records) for p in pages) == 260
        assert fake.http_requests == 6
    finally:
        await provider.aclose()


async def test_operation_time_limit_and_503_waited_out(fake: FakeBitrix24) -> None:
    client = Bitrix24Client(context(fake), backoff_seconds=0.15, shared=False)
    try:
        fake.force_429(2)
        body = await client.call("crm.contact.list", {"start": 0})
        assert len(body["result"]) == 50
        fake.force_503(2)
        body = await client.call("crm.contact.list", {"start": 50})
        assert body["next"] == 100
        assert fake.limited == 4
        assert fake.early_requests == 0
    finally:
        await client.aclose()


async def test_limit_storm_gives_up_as_retryable(fake: FakeBitrix24) -> None:
    client = Bitrix24Client(context(fake), backoff_seconds=0.05, limit_waits=2, shared=False)
    try:
        fake.force_503(10)
        with pytest.raises(ProviderError) as caught:
            await client.call("crm.contact.list")
        assert caught.value.retryable
        assert "QUERY_LIMIT_EXCEEDED" in caught.value.message
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("secret", "INVALID_CREDENTIALS"),
        ("expired", "expired_token"),
        ("scope", "insufficient_scope"),
    ],
)
async def test_auth_failures_are_named(fake: FakeBitrix24, setup: str, code: str) -> None:
    ctx = context(fake)
    if setup == "secret":
        ctx.credentials["webhook_secret"] = "wrong-secret-value"
    elif setup == "expired":
        fake.expired = True
    else:
        fake.scopes = {"user"}
    provider = Bitrix24Provider()
    result = await provider.test_connection(ctx)
    assert result.ok is False
    assert code in result.detail
    assert fake.config.secret not in result.detail
    assert "wrong-secret-value" not in result.detail
    await provider.aclose()


def test_malformed_rows_are_bad_records() -> None:
    from crm.integrations.base import BadRecord

    stages = mapping.StageInfo(1, {code: code.lower() for code, _, _ in STAGES}, {}, {}, "NEW")
    with pytest.raises(BadRecord):
        mapping.map_contact({"NAME": "no id"})
    with pytest.raises(BadRecord) as caught:
        mapping.map_contact({"ID": "5", "EMAIL": "not a list"})
    assert caught.value.external_id == "5"
    with pytest.raises(BadRecord):
        mapping.map_deal({"ID": "7", "STAGE_ID": "C3:UNKNOWN"}, stages)
    record = mapping.map_contact(
        {"ID": 8, "NAME": "", "PHONE": [{"VALUE": "позвонить вечером", "VALUE_TYPE": "WORK"}]}
    )
    assert record.values["phone"] is None
    assert record.values["phone_raw"] == "позвонить вечером"
    assert set(record.warnings) == {"invalid_phone", "no_name"}
    company = mapping.map_company({"ID": "9", "TITLE": "ИП", "_REQUISITE": {"RQ_INN": "123456789012"}})
    assert company.values["kind"] == "sole_proprietor"
    assert "invalid_inn" in company.warnings


async def test_portal_address_passes_the_ssrf_guard(client: AsyncClient, factory: Factory) -> None:
    admin = await factory.actor("admin")
    response = await client.post(
        "/api/v1/admin/integrations",
        json={
            "provider": "bitrix24",
            "name": "Metadata",
            "base_url": "http://169.254.169.254",
            "credentials": {"webhook_user_id": "1", "webhook_secret": "s3cret"},
            "settings": {},
        },
        headers=admin.headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "url_not_allowed"
    assert "s3cret" not in response.text

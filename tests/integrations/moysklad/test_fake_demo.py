"""The fake MoySklad's demo mode (what the README's demo runs): documents in the last 90 days, lines
sold at their products' own prices — so this month's dashboard and the margins look alive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest

from tests.fakes.moysklad import DOCUMENTS, PREFIX, FakeConfig, FakeMoySklad

NOW = datetime(2026, 12, 6, 12, 0)


@pytest.fixture
async def fake_http() -> AsyncIterator[httpx.AsyncClient]:
    fake = FakeMoySklad(FakeConfig(demo=True, demo_now=NOW, documents=12, products=10))
    headers = {"Authorization": f"Bearer {fake.config.token}", "Accept-Encoding": "gzip"}
    transport = httpx.ASGITransport(app=fake.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers=headers) as client:
        yield client


async def test_documents_fall_in_the_last_90_days(fake_http: httpx.AsyncClient) -> None:
    for kind in DOCUMENTS:
        response = await fake_http.get(f"{PREFIX}/entity/{kind}", params={"limit": 100})
        assert response.status_code == 200, response.text
        moments = [datetime.fromisoformat(row["moment"]) for row in response.json()["rows"]]
        assert len(moments) == 12
        assert all(NOW - timedelta(days=90) < m <= NOW for m in moments), moments
        assert max(moments) > NOW - timedelta(days=8)  # this week has sales too
        assert min(moments) < NOW - timedelta(days=60)


async def test_lines_are_sold_at_their_products_prices(fake_http: httpx.AsyncClient) -> None:
    products = (await fake_http.get(f"{PREFIX}/entity/product", params={"limit": 100})).json()["rows"]
    sale = {p["id"]: p["salePrices"][0]["value"] for p in products}
    buy = {p["id"]: p["buyPrice"]["value"] for p in products}
    demands = (await fake_http.get(f"{PREFIX}/entity/demand", params={"limit": 100})).json()["rows"]
    checked = 0
    for demand in demands:
        lines = (await fake_http.get(demand["positions"]["meta"]["href"].removeprefix("http://fake"))).json()
        for line in lines["rows"]:
            product = line["assortment"]["meta"]["href"].rsplit("/", 1)[-1]
            assert line["price"] == sale[product]
            assert line["price"] > buy[product]  # a positive margin
            checked += 1
    assert checked >= 12


async def test_tests_keep_the_fixed_2024_documents() -> None:
    fake = FakeMoySklad(FakeConfig())
    transport = httpx.ASGITransport(app=fake.app)
    headers = {"Authorization": f"Bearer {fake.config.token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers=headers) as client:
        rows = (await client.get(f"{PREFIX}/entity/demand")).json()["rows"]
    assert all(row["moment"].startswith("2024-01-01") for row in rows)

"""The MoySklad provider against the fake server over real HTTP: paging, incremental cursors,
documents with positions, the stock snapshot, broken records, test_connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import ValidationError

from crm.integrations.base import BadRecord, ProviderError
from crm.integrations.moysklad.client import format_filter_moment, parse_moment
from crm.integrations.moysklad.mapping import map_stock
from crm.integrations.moysklad.provider import MoySkladCredentials, MoySkladProvider, stock_lines
from crm.integrations.registry import get_provider
from tests.fakes.moysklad import FakeConfig, FakeMoySklad, entity_id
from tests.integrations.moysklad.conftest import context, fixture, ids, pages

ARCHIVED_TOO = "archived=true;archived=false"


@pytest.fixture
async def provider() -> AsyncIterator[MoySkladProvider]:
    provider = MoySkladProvider()
    yield provider
    await provider.aclose()


def test_registered_under_the_entry_point() -> None:
    provider = get_provider("moysklad")
    assert isinstance(provider, MoySkladProvider)
    assert provider.entities[:5] == ("product_folders", "products", "services", "stores", "stock")
    assert provider.default_base_url == "https://api.moysklad.ru/api/remap/1.2"


class TestCredentials:
    def test_token_or_login_password(self) -> None:
        assert MoySkladCredentials.model_validate({"token": "abc"}).token == "abc"
        assert MoySkladCredentials.model_validate({"login": "a@b", "password": "p"}).login == "a@b"
        for bad in ({}, {"login": "a@b"}, {"token": "t", "login": "a@b", "password": "p"}, {"token": ""}):
            with pytest.raises(ValidationError):
                MoySkladCredentials.model_validate(bad)


class TestPaging:
    @pytest.mark.parametrize("fake", [FakeConfig(products=25)], indirect=True)
    async def test_collects_exactly_every_record(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        ctx = context(fake, page_size=10)
        result = await pages(provider, ctx, "products")
        assert [len(p.records) for p in result] == [10, 10, 5]
        assert [p.last for p in result] == [False, False, True]
        assert ids(result) == [entity_id("product", i) for i in range(25)]
        calls = fake.requests_to("/entity/product")
        assert [c.params["limit"] for c in calls] == [["10"]] * 3
        assert all(c.params["order"] == ["updated,asc;id,asc"] for c in calls)
        assert calls[0].params["filter"] == [ARCHIVED_TOO]
        last_seen = result[0].records[-1]["updated"]
        assert calls[1].params["filter"] == [f"updated>={last_seen[:19]};{ARCHIVED_TOO}"]
        assert calls[1].params["offset"] == ["1"]
        final = json.loads(result[-1].cursor or "")
        assert final == {"v": 1, "since": result[-1].records[-1]["updated"]}

    @pytest.mark.parametrize("fake", [FakeConfig(products=25, archived_every=5)], indirect=True)
    async def test_archived_rows_included(self, fake: FakeMoySklad, provider: MoySkladProvider) -> None:
        result = await pages(provider, context(fake), "products")
        assert len(ids(result)) == 25
        assert sum(r["archived"] for p in result for r in p.records) == 5

    @pytest.mark.parametrize("fake", [FakeConfig(products=30)], indirect=True)
    async def test_resume_from_a_page_cursor(self, fake: FakeMoySklad, provider: MoySkladProvider) -> None:
        ctx = context(fake, page_size=7)
        first = await pages(provider, ctx, "products")
        resumed = await pages(provider, ctx, "products", first[1].cursor)
        assert ids(first[:2]) + ids(resumed) == [entity_id("product", i) for i in range(30)]

    @pytest.mark.parametrize("fake", [FakeConfig(products=30)], indirect=True)
    async def test_rows_changing_while_paging_are_not_skipped(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        ctx = context(fake, page_size=10)
        seen: list[str] = []
        async for page in provider.fetch(ctx, "products", None):
            if not seen:
                fake.touch("product", 2, name="Изменён")  # moves behind every other row
            seen += [r["id"] for r in page.records]
        assert set(seen) == {entity_id("product", i) for i in range(30)}
        assert seen[-1] == entity_id("product", 2)

    @pytest.mark.parametrize("fake", [FakeConfig(products=25)], indirect=True)
    async def test_500_mid_entity_fails_then_resumes(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        fake.fault(path="/entity/product", status=500, skip=1, times=None)
        ctx = context(fake, page_size=10, retry_attempts=2)
        got = []

        async def drain() -> None:
            async for page in provider.fetch(ctx, "products", None):
                got.append(page)

        with pytest.raises(ProviderError) as caught:
            await drain()
        assert caught.value.status == 500
        assert caught.value.retryable
        assert len(got) == 1
        fake.faults.clear()
        rest = await pages(provider, ctx, "products", got[0].cursor)
        assert ids(got) + ids(rest) == [entity_id("product", i) for i in range(25)]


class TestIncremental:
    @pytest.mark.parametrize("fake", [FakeConfig(products=40)], indirect=True)
    async def test_only_changed_records(self, fake: FakeMoySklad, provider: MoySkladProvider) -> None:
        ctx = context(fake, overlap_seconds=0)
        full = await pages(provider, ctx, "products")
        mark = json.loads(full[-1].cursor or "")["since"]
        changed = {fake.touch("product", 3, name="Новое имя"), fake.touch("product", 17)}
        fake.requests.clear()
        delta = await pages(provider, ctx, "products", full[-1].cursor)
        # `>=` at second precision re-reads the record that set the mark; the rest is what changed.
        assert set(ids(delta)) == changed | {entity_id("product", 39)}
        [call] = fake.requests
        assert call.params["filter"] == [f"updated>={mark[:19]};{ARCHIVED_TOO}"]
        new_mark = json.loads(delta[-1].cursor or "")["since"]
        assert parse_moment(new_mark) > parse_moment(mark)
        renamed = next(r for r in delta[-1].records if r["id"] == entity_id("product", 3))
        assert provider.map_record("products", renamed).values["name"] == "Новое имя"

    async def test_overlap_and_empty_delta_keep_the_mark(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        ctx = context(fake)
        cursor = json.dumps({"v": 1, "since": "2030-01-01 12:00:00.000"})
        result = await pages(provider, ctx, "stores", cursor)
        assert result[0].records == []
        assert result[0].last
        assert json.loads(result[0].cursor or "") == {"v": 1, "since": "2030-01-01 12:00:00.000"}
        assert fake.requests[0].params["filter"] == [f"updated>=2030-01-01 11:58:00;{ARCHIVED_TOO}"]

    async def test_unreadable_cursor_means_full_scan(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        result = await pages(provider, context(fake), "stores", "not json")
        assert len(ids(result)) == fake.config.stores
        assert fake.requests[0].params["filter"] == [ARCHIVED_TOO]

    def test_filter_moment_is_moscow_time(self) -> None:
        assert format_filter_moment(parse_moment("2024-05-20 00:00:05.999")) == "2024-05-20 00:00:05"


class TestDocuments:
    @pytest.mark.parametrize("fake", [FakeConfig(documents=5, positions=3)], indirect=True)
    async def test_positions_expanded(self, fake: FakeMoySklad, provider: MoySkladProvider) -> None:
        result = await pages(provider, context(fake), "customer_orders")
        [call] = fake.requests
        assert call.params["limit"] == ["100"]  # expand only works up to 100
        assert call.params["expand"] == ["positions,state"]
        records = [provider.map_record("customer_orders", r) for r in result[0].records]
        assert len(records) == 5
        first = records[0]
        assert first.target == "sales_document"
        assert first.values["kind"] == "customer_order"
        assert first.values["state"] == "Новый"
        assert first.values["counterparty_external_id"] == entity_id("counterparty", 0)
        assert first.values["store_external_id"] == entity_id("store", 0)
        assert len(first.children) == 3
        total = sum(
            (c["quantity"] * c["price"] * (100 - c["discount"]) / 100).quantize(Decimal("0.01"))
            for c in first.children
        )
        assert abs(first.values["total_amount"] - total) <= Decimal("0.03")

    @pytest.mark.parametrize(
        "fake", [FakeConfig(documents=2, positions=5, embedded_positions_cap=2)], indirect=True
    )
    async def test_cut_positions_fetched_separately(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        result = await pages(provider, context(fake), "supplies")
        records = [provider.map_record("supplies", r) for r in result[0].records]
        assert [len(r.children) for r in records] == [5, 5]
        assert records[0].target == "purchase_document"
        assert len(fake.requests_to("/positions")) == 2


class TestStock:
    @pytest.mark.parametrize("fake", [FakeConfig(products=7, stores=3)], indirect=True)
    async def test_snapshot_by_store(self, fake: FakeMoySklad, provider: MoySkladProvider) -> None:
        result = await pages(provider, context(fake), "stock", '{"v": 1, "snapshot": true}')
        assert [p.last for p in result] == [True]
        records = [provider.map_record("stock", r) for p in result for r in p.records]
        assert len(records) == 21  # zero lines included: a product that ran out is updated too
        by_id = {r.external_id: r for r in records}
        for p in range(7):
            for s in range(3):
                rec = by_id[f"{entity_id('product', p)}:{entity_id('store', s)}"]
                stock, reserve, in_transit = fake.stock(p, s)
                assert rec.values["stock"] == Decimal(str(stock))
                assert rec.values["reserve"] == Decimal(str(reserve))
                assert rec.values["in_transit"] == Decimal(str(in_transit))
        calls = fake.requests_to("/report/stock/bystore")
        assert len(calls) == 1
        assert calls[0].params["filter"] == ["stockMode=all"]
        assert calls[0].params["limit"] == ["1000"]

    @pytest.mark.parametrize("fake", [FakeConfig(products=2500, stores=3)], indirect=True)
    async def test_report_is_paged_and_pages_are_bounded(
        self, fake: FakeMoySklad, provider: MoySkladProvider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from crm.integrations.moysklad import provider as module

        monkeypatch.setattr(module, "STOCK_LINES_PER_PAGE", 2000)
        result = await pages(provider, context(fake), "stock")
        sizes = [len(p.records) for p in result]
        assert max(sizes) <= 2000
        assert sum(sizes) == 7500
        assert [p.last for p in result] == [False] * (len(result) - 1) + [True]
        assert [c.params["offset"] for c in fake.requests_to("/report/stock/bystore")] == [
            ["0"],
            ["1000"],
            ["2000"],
        ]
        keys = {(r["assortmentId"], r["storeId"]) for p in result for r in p.records}
        assert len(keys) == 7500

    def test_lines_of_a_report_row(self) -> None:
        body = fixture("stock_bystore.json")
        lines = stock_lines(body["rows"])
        assert lines[0] == {
            "assortmentId": "5c0e8a11-1a32-11ef-0a80-0d5b00000201",
            "storeId": "1fa3e0b6-0b7e-11ef-0a80-0d5b00000049",
            "stock": 30.0,
            "reserve": 1.0,
            "inTransit": 0.0,
        }
        assert len(lines) == sum(len(r["stockByStore"]) for r in body["rows"])
        broken = stock_lines([{"meta": {"href": "x/entity/product/p1"}, "stockByStore": [{"stock": 1}]}])
        with pytest.raises(BadRecord, match="no product or store id"):
            map_stock(broken[0])


class TestBrokenRecords:
    async def test_record_without_id_is_bad_others_map(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        fake.add_raw("store", {"name": "Без id", "updated": "2024-01-01 09:00:30.000", "archived": False})
        result = await pages(provider, context(fake), "stores")
        raws = [r for p in result for r in p.records]
        assert len(raws) == fake.config.stores + 1
        mapped, bad = [], []
        for raw in raws:
            try:
                mapped.append(provider.map_record("stores", raw))
            except BadRecord as exc:
                bad.append(exc)
        assert len(mapped) == fake.config.stores
        assert [b.message for b in bad] == ["record has no id"]

    @pytest.mark.parametrize(
        "fake", [FakeConfig(counterparties=12, bad_inn_every=3, bad_phone_every=4)], indirect=True
    )
    async def test_bad_requisites_kept_and_flagged(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        result = await pages(provider, context(fake), "counterparties")
        records = {
            r.external_id: r for r in (provider.map_record("counterparties", x) for x in result[0].records)
        }
        legal_bad_inn = records[entity_id("counterparty", 0)]  # legal, every 3rd INN, every 4th phone
        assert legal_bad_inn.target == "company"
        assert set(legal_bad_inn.warnings) == {"invalid_inn", "invalid_phone"}
        assert legal_bad_inn.values["inn"] == result[0].records[0]["inn"]
        assert legal_bad_inn.values["phone"] == "12"
        person = records[entity_id("counterparty", 2)]
        assert person.target == "contact"
        assert person.warnings == []
        assert person.values["phone"].startswith("+7916")
        assert records[entity_id("counterparty", 1)].values["kind"] == "sole_proprietor"


class TestConnection:
    async def test_ok(self, fake: FakeMoySklad, provider: MoySkladProvider) -> None:
        result = await provider.test_connection(context(fake))
        assert result.ok
        assert result.detail == "Connected to MoySklad"

    async def test_login_password_stores_the_token(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        ctx = context(fake, {"login": fake.config.login, "password": fake.config.password})
        assert (await provider.test_connection(ctx)).ok
        assert ctx.state["token"] in fake.tokens

    async def test_wrong_credentials(self, fake: FakeMoySklad, provider: MoySkladProvider) -> None:
        result = await provider.test_connection(context(fake, {"token": "nope"}))
        assert not result.ok
        assert result.detail == "MoySklad rejected the credentials (401)"

    async def test_unreachable(self, provider: MoySkladProvider) -> None:
        ctx = context(FakeMoySklad(FakeConfig(products=0)), retry_attempts=1)
        ctx.base_url = "http://127.0.0.1:9/api/remap/1.2"
        result = await provider.test_connection(ctx)
        assert not result.ok
        assert "unavailable" in result.detail


class TestSettings:
    async def test_disabled_entity_yields_an_empty_last_page(
        self, fake: FakeMoySklad, provider: MoySkladProvider
    ) -> None:
        result = await pages(provider, context(fake, entities=["products"]), "stores", "kept")
        assert len(result) == 1
        assert result[0].records == []
        assert result[0].last
        assert result[0].cursor == "kept"
        assert fake.requests == []

    async def test_unknown_entity(self, fake: FakeMoySklad, provider: MoySkladProvider) -> None:
        with pytest.raises(ProviderError, match="no entity"):
            await pages(provider, context(fake), "variants")

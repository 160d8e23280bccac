"""Mapping of real MoySklad payloads (the shared fixtures) onto local rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from crm.integrations.base import BadRecord
from crm.integrations.moysklad.mapping import map_record
from tests.integrations.moysklad.conftest import fixture


def rows(name: str) -> list[dict[str, Any]]:
    return list(fixture(name)["rows"])


class TestDirectories:
    def test_product(self) -> None:
        a55, buds = rows("product_list_page1.json")
        record = map_record("products", a55)
        assert record.target == "product"
        assert record.external_id == "5c0e8a11-1a32-11ef-0a80-0d5b00000201"
        assert record.warnings == []
        assert record.remote_updated_at == datetime(2024, 5, 20, 11, 3, 11, 482000, tzinfo=UTC)
        v = record.values
        assert v["kind"] == "product"
        assert v["name"] == "Смартфон Galaxy A55 8/256 ГБ, чёрный"
        assert (v["code"], v["article"]) == ("00001", "SM-A556EZKCSKZ")
        assert v["sale_price"] == Decimal("39990.00")  # the first sale price, not the wholesale one
        assert str(v["sale_price"]) == "39990.00"
        assert v["buy_price"] == Decimal("31200.00")
        assert v["currency"] == "RUB"
        assert v["uom"] == "шт"
        assert v["folder_external_id"] == "3a7c1e20-1a31-11ef-0a80-0d5b000001e1"
        assert v["min_stock"] is None
        assert v["archived"] is False
        assert map_record("products", buds).values["sale_price"] == Decimal("6990.00")

    def test_service_and_min_stock(self) -> None:
        raw = {**rows("product_list_page2.json")[0], "minimumBalance": 4.0}
        record = map_record("services", raw)
        assert record.values["kind"] == "service"
        assert record.values["min_stock"] == Decimal("4.0")
        no_prices = {k: v for k, v in raw.items() if k not in ("salePrices", "buyPrice")}
        assert map_record("products", no_prices).values["sale_price"] is None

    def test_folders(self) -> None:
        records = [map_record("product_folders", r) for r in rows("productfolder_list.json")]
        assert [r.values["name"] for r in records] == ["Электроника", "Аксессуары"]
        assert all(r.target == "product_folder" and r.values["parent_external_id"] is None for r in records)
        child = {
            **rows("productfolder_list.json")[1],
            "productFolder": rows("product_list_page1.json")[0]["productFolder"],
        }
        assert (
            map_record("product_folders", child).values["parent_external_id"]
            == "3a7c1e20-1a31-11ef-0a80-0d5b000001e1"
        )

    def test_store(self) -> None:
        record = map_record("stores", rows("store_list.json")[0])
        assert record.target == "store"
        assert record.values["name"] == "Основной склад"
        assert record.values["address"].startswith("109316")


class TestCounterparties:
    def by_type(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in rows("counterparty_list.json")}

    def test_kinds(self) -> None:
        cps = self.by_type()
        legal = map_record("counterparties", cps['ООО "Ромашка"'])
        assert legal.target == "company"
        assert legal.values["kind"] == "legal_entity"
        assert legal.values["inn"] == "7724123458"
        assert legal.values["kpp"] == "772401001"
        assert legal.values["phone"] == "+74951234567"
        assert "invalid_inn" not in legal.warnings
        # The fixture's OGRN fails its check digit: kept as it came and flagged.
        assert legal.values["ogrn"] == cps['ООО "Ромашка"']["ogrn"]
        assert legal.warnings == ["invalid_ogrn"]
        sole = map_record("counterparties", cps["ИП Смирнова Анна Викторовна"])
        assert sole.target == "company"
        assert sole.values["kind"] == "sole_proprietor"
        assert sole.values["ogrn"] == "318502700012345"
        assert sole.values["tags"] == ["розница"]
        person = map_record("counterparties", cps["Петров Сергей Иванович"])
        assert person.target == "contact"
        assert person.external_id == "9e3e8f01-1a34-11ef-0a80-0d5b00000258"
        assert person.values["full_name"] == "Петров Сергей Иванович"
        assert person.values["phone"] == "+79037778899"
        assert person.values["phone_raw"] == "+7 903 777-88-99"
        assert person.values["email"] == "s.petrov@mail.ru"
        assert person.values["gender"] == "male"
        assert person.warnings == []

    def test_invalid_values_kept_and_flagged(self) -> None:
        raw = copy.deepcopy(self.by_type()['ООО "ТехноИмпорт"'])
        raw.update(inn="7839012346", phone="звонить секретарю", email="sales at technoimport")
        record = map_record("counterparties", raw)
        assert record.values["inn"] == "7839012346"
        assert record.values["phone"] == "звонить секретарю"
        assert record.values["email"] == "sales at technoimport"
        assert {"invalid_inn", "invalid_phone", "invalid_email"} <= set(record.warnings)
        person = copy.deepcopy(self.by_type()["Петров Сергей Иванович"])
        person["phone"] = "12"
        contact = map_record("counterparties", person)
        assert (contact.values["phone"], contact.values["phone_raw"]) == (None, "12")
        assert contact.warnings == ["invalid_phone"]

    def test_too_long_value_is_cut_and_flagged(self) -> None:
        raw = {**self.by_type()['ООО "ТехноИмпорт"'], "inn": "78390123451234567"}
        record = map_record("counterparties", raw)
        assert record.values["inn"] == "783901234512"
        assert {"invalid_inn", "truncated_inn"} <= set(record.warnings)

    def test_region_and_unknown_types(self) -> None:
        raw = self.by_type()['ООО "Ромашка"']
        assert (
            map_record("counterparties", {**raw, "companyType": "legalKZ"}).values["kind"] == "legal_entity"
        )
        assert map_record("counterparties", {**raw, "companyType": "individualUZ"}).target == "contact"
        odd = map_record("counterparties", {**raw, "companyType": "martian"})
        assert odd.values["kind"] == "legal_entity"
        assert "unknown_company_type" in odd.warnings
        missing = {k: v for k, v in raw.items() if k != "companyType"}
        assert map_record("counterparties", missing).values["kind"] == "legal_entity"


class TestDocuments:
    def test_customer_order(self) -> None:
        order = rows("customerorder_list.json")[0]
        record = map_record("customer_orders", order)
        assert record.target == "sales_document"
        v = record.values
        assert v["kind"] == "customer_order"
        assert v["number"] == "00017"
        assert v["total_amount"] == Decimal("379155.00")
        assert v["moment"] == datetime(2024, 5, 22, 7, 30, tzinfo=UTC)
        assert v["counterparty_external_id"] == "9e3b7a12-1a34-11ef-0a80-0d5b00000250"
        assert v["store_external_id"] == "1fa3e0b6-0b7e-11ef-0a80-0d5b00000049"
        assert v["state"] is None  # a bare state link; the sync asks for `expand=state`
        assert v["applicable"] is True
        assert record.children == []  # positions not embedded in this payload
        with_lines = {**order, "positions": fixture("customerorder_positions.json")}
        lines = map_record("customer_orders", with_lines).children
        assert lines[1] == {
            "product_external_id": "5c12d9a3-1a32-11ef-0a80-0d5b00000209",
            "quantity": Decimal("10"),
            "price": Decimal("1490.00"),
            "discount": Decimal("5"),
            "vat": Decimal("20"),
            "cost": None,
        }
        expanded_state = {**order, "state": fixture("customerorder_metadata.json")["states"][2]}
        assert map_record("customer_orders", expanded_state).values["state"] == "Отгружен"

    def test_demand_with_inline_positions(self) -> None:
        record = map_record("demands", rows("demand_list.json")[0])
        assert record.target == "sales_document"
        assert record.values["kind"] == "demand"
        assert [c["price"] for c in record.children] == [Decimal("36500.00"), Decimal("1490.00")]
        gross = sum(c["quantity"] * c["price"] * (1 - c["discount"] / 100) for c in record.children)
        assert gross == record.values["total_amount"]

    @pytest.mark.parametrize(
        ("entity", "name", "kind"),
        [
            ("supplies", "supply_list.json", "supply"),
            ("purchase_orders", "purchaseorder_list.json", "purchase_order"),
        ],
    )
    def test_purchases(self, entity: str, name: str, kind: str) -> None:
        record = map_record(entity, rows(name)[0])
        assert record.target == "purchase_document"
        assert record.values["kind"] == kind
        assert record.values["total_amount"] == Decimal("1560000.00")
        assert record.values["counterparty_external_id"] == "9e40b2c7-1a34-11ef-0a80-0d5b0000025c"


class TestStock:
    def test_line(self) -> None:
        line = {**fixture("stock_bystore_current.json")[0], "reserve": 1.0, "inTransit": 0.0}
        record = map_record("stock", line)
        assert record.target == "stock_level"
        assert (
            record.external_id == "5c0e8a11-1a32-11ef-0a80-0d5b00000201:1fa3e0b6-0b7e-11ef-0a80-0d5b00000049"
        )
        assert record.values == {
            "product_external_id": "5c0e8a11-1a32-11ef-0a80-0d5b00000201",
            "store_external_id": "1fa3e0b6-0b7e-11ef-0a80-0d5b00000049",
            "stock": Decimal("30.0"),
            "reserve": Decimal("1.0"),
            "in_transit": Decimal("0.0"),
        }

    def test_broken_line(self) -> None:
        with pytest.raises(BadRecord, match="no product or store"):
            map_record("stock", {"assortmentId": "x", "storeId": None, "stock": 1})
        with pytest.raises(BadRecord, match="stock must be a number"):
            map_record("stock", {"assortmentId": "x", "storeId": "y", "stock": "many"})


class TestBadRecords:
    @pytest.mark.parametrize(
        ("entity", "change", "message"),
        [
            ("products", {"id": None}, "record has no id"),
            ("products", {"id": 17}, "record has no id"),
            ("products", {"name": 12345}, "name must be a string"),
            ("products", {"name": None}, "name is missing"),
            ("products", {"salePrices": "39990"}, "salePrices must be a list"),
            ("products", {"buyPrice": {"value": "много"}}, "value must be a number"),
            ("products", {"archived": "no"}, "archived must be a boolean"),
            ("products", {"productFolder": "3a7c"}, "productFolder must be a link"),
            ("products", {"updated": "вчера"}, "updated is not a date-time"),
        ],
    )
    def test_structurally_broken(self, entity: str, change: dict[str, Any], message: str) -> None:
        raw = {**rows("product_list_page1.json")[0], **change}
        with pytest.raises(BadRecord, match=message) as caught:
            map_record(entity, raw)
        if isinstance(raw.get("id"), str):
            assert caught.value.external_id == raw["id"]

    def test_broken_counterparty_and_document(self) -> None:
        cp = {**rows("counterparty_list.json")[0], "tags": "vip"}
        with pytest.raises(BadRecord, match="tags must be a list"):
            map_record("counterparties", cp)
        order = {**rows("customerorder_list.json")[0]}
        del order["moment"]
        with pytest.raises(BadRecord, match="moment is missing"):
            map_record("customer_orders", order)
        lines = {**rows("demand_list.json")[0]}
        lines["positions"] = {**lines["positions"], "rows": [{"quantity": 1}]}
        with pytest.raises(BadRecord, match="no quantity or price"):
            map_record("demands", lines)
        with pytest.raises(BadRecord, match="not an object"):
            map_record("stores", ["not", "a", "record"])  # type: ignore[arg-type]

from __future__ import annotations

from crm.core.errors import NotFound, UnprocessableEntity


class ProductNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Product not found")


class PriceRangeOutOfOrder(UnprocessableEntity):
    def __init__(self) -> None:
        super().__init__(
            "price_min must not be above price_max",
            errors=[{"loc": ["query", "price_min"], "msg": "above price_max", "type": "value_error"}],
        )

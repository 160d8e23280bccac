from __future__ import annotations

from crm.core.errors import NotFound, UnprocessableEntity


class PipelineNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Pipeline not found")


class PeriodOutOfOrder(UnprocessableEntity):
    def __init__(self) -> None:
        super().__init__(
            "date_from must not be after date_to",
            errors=[{"loc": ["query", "date_from"], "msg": "after date_to", "type": "value_error"}],
        )

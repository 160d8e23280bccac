from __future__ import annotations

from crm.core.errors import NotFound


class AlertNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Alert not found")

from __future__ import annotations

from crm.core.errors import NotFound


class WebhookNotFound(NotFound):
    code = "not_found"

    def __init__(self) -> None:
        super().__init__("Webhook not found")


class DeliveryNotFound(NotFound):
    code = "not_found"

    def __init__(self) -> None:
        super().__init__("Delivery not found")

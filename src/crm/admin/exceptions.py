from __future__ import annotations

from typing import Any

from crm.core.errors import Conflict, NotFound, Unauthorized, UnprocessableEntity


class IntegrationNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Integration not found")


class UnknownProviderError(UnprocessableEntity):
    code = "unknown_provider"

    def __init__(self, name: str, known: list[str]) -> None:
        msg = f"unknown provider; one of: {', '.join(known) or 'none installed'}"
        super().__init__(
            f"provider: {msg}",
            errors=[{"loc": ["body", "provider"], "msg": msg, "type": "unknown_provider"}],
        )


class InvalidIntegrationConfig(UnprocessableEntity):
    """Credentials or settings the provider's schema refuses (values are never echoed)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        super().__init__(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", errors=errors)


class IntegrationBusy(Conflict):
    code = "job_already_running"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Sync job {job_id} of this integration is still active", job_id=job_id)


class UserNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("User not found")


class CannotChangeSelf(Conflict):
    code = "cannot_change_self"

    def __init__(self) -> None:
        super().__init__("You cannot deactivate or demote yourself; ask another superuser")


class InvalidWebhookToken(Unauthorized):
    code = "invalid_webhook_token"

    def __init__(self) -> None:
        super().__init__("Unknown integration or wrong webhook token", headers={})

from __future__ import annotations

from crm.core.errors import Forbidden, NotFound, Unauthorized


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__("Invalid, expired or revoked API key", headers={"WWW-Authenticate": "ApiKey"})


class ApiKeyNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("API key not found")


class ScopesBeyondCaller(Forbidden):
    def __init__(self, scopes: list[str]) -> None:
        super().__init__(f"You cannot grant scopes you do not hold: {', '.join(scopes)}", scopes=scopes)


class ApiKeyRevoked(Unauthorized):
    """The key's creator left the organization or was deactivated: the key acts for nobody now."""

    code = "api_key_revoked"

    def __init__(self) -> None:
        super().__init__(
            "This API key's creator no longer belongs to the organization; an admin can re-issue it",
            headers={"WWW-Authenticate": "ApiKey"},
        )

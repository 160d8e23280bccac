from __future__ import annotations

from crm.core.errors import BadRequest, Conflict, Unauthorized


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    persist = True  # the failed-attempt counter must survive the error

    def __init__(self) -> None:
        super().__init__("Incorrect email or password")


class InvalidTokenError(Unauthorized):
    code = "invalid_token"

    def __init__(self, detail: str = "Invalid or expired token") -> None:
        super().__init__(detail)


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"
    persist = True  # the session stays revoked although the request fails

    def __init__(self) -> None:
        super().__init__("Refresh token was already used; the session has been revoked")


class UserEmailTaken(Conflict):
    code = "user_email_taken"

    def __init__(self) -> None:
        super().__init__("A user with this email already exists")


class InvalidPassword(BadRequest):
    code = "invalid_password"
    persist = True  # the failed-attempt counter must survive the error

    def __init__(self) -> None:
        super().__init__("The current password is wrong")

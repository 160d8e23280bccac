from __future__ import annotations

from crm.core.errors import AppError


class EmailAlreadyRegistered(AppError):
    """The shop's contract answers a duplicate sign-up with 400 (SPEC §11), not 409."""

    status, code = 400, "email_already_registered"

    def __init__(self) -> None:
        super().__init__("This email is already registered")


class RegistrationNotConfigured(AppError):
    status, code = 503, "registration_not_configured"

    def __init__(self) -> None:
        super().__init__(
            "Registration is not configured: set REGISTRATION_ORGANIZATION (or ADMIN_ORGANIZATION) "
            "to an existing organization"
        )

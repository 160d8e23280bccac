from __future__ import annotations

from crm.core.errors import Conflict


class ContactEmailTaken(Conflict):
    code = "contact_email_taken"

    def __init__(self) -> None:
        super().__init__("A contact with this email already exists")

from __future__ import annotations

from crm.core.errors import Conflict


class ContactEmailTaken(Conflict):
    code, detail = "contact_email_taken", "A contact with this email already exists"

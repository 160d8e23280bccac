from __future__ import annotations

from crm.contacts.dependencies import contact_filters
from crm.contacts.schemas import ContactCreate, ContactRead, ContactReplace, ContactUpdate
from crm.contacts.service import ContactService
from crm.records.kit import RecordKit, RouteDocs, Schemas

contacts = RecordKit(
    name="contacts",
    service=ContactService,
    docs=RouteDocs(
        create="Create a contact. The email is unique among live contacts (409 `contact_email_taken`).",
        delete="Soft-delete (restorable). A contact with open deals cannot be deleted (409).",
        restore="Bring back a deleted contact (owner/admin); 409 if its email was taken meanwhile.",
    ),
    schemas=Schemas(ContactCreate, ContactReplace, ContactUpdate, ContactRead),
    filters=contact_filters,
    delete_conflicts=True,
    fast_create=True,
)
router = contacts.router()

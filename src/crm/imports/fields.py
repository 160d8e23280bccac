"""The columns an import accepts, per entity (SPEC §8, §18 "Jobs").

Exports write these names as headers so that an exported file imports back unchanged. A header maps to a
field when it equals the field name in any case (or through the job's `mapping`); headers that match no
field are ignored. Custom field values travel in `cf.<key>` columns.

Cell conventions: lists (`tags`) are comma-separated; money is a decimal with a dot or a comma; dates are
ISO (`2026-11-23`) or `DD.MM.YYYY`; an empty cell is null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from crm.companies import service as companies
from crm.contacts import service as contacts

Entity = Literal["contacts", "companies", "deals", "projects"]

#: Prefix of the columns holding custom field values: `cf.<key>`.
CUSTOM_FIELD_PREFIX: Final = "cf."


def _columns(created: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """An entity's columns from the fields its service creates, in that order: references by their
    natural keys (the company by INN, the responsible user by email); the typed phone, custom fields
    (their own `cf.<key>` columns) and the source are not columns."""
    renamed = {"company_id": "company_inn", "owner_id": "owner_email"}
    left_out = ("phone_raw", "custom_fields", "source")
    return tuple(renamed.get(name, name) for name in created if name not in left_out)


@dataclass(frozen=True, slots=True)
class EntityFields:
    """What one entity's import understands."""

    entity: Entity
    #: Every accepted field (column) name, in the order exports write them.
    fields: tuple[str, ...]
    #: The field rows are matched on (re-imports update instead of duplicating).
    natural_key: str
    #: Fields a row must have (on create; an update may leave them out).
    required: tuple[str, ...]
    #: The `entity_type` of the records written (activities, custom fields).
    entity_type: str


CONTACTS: Final = EntityFields(
    entity="contacts",
    fields=_columns(contacts.CREATED_FIELDS),
    natural_key="email",
    required=("full_name",),
    entity_type="contact",
)

COMPANIES: Final = EntityFields(
    entity="companies",
    # `kind` defaults from the INN; `company_inn`/`owner_email`: see `_columns`.
    fields=_columns(companies.CREATED_FIELDS),
    natural_key="inn",
    required=("name",),
    entity_type="company",
)

DEALS: Final = EntityFields(
    entity="deals",
    fields=(
        "id",  # the exported deal id; rows without one are created
        "title",
        "amount",
        "currency",
        "pipeline",  # pipeline name or id; default pipeline when empty
        "stage",  # stage key or name of that pipeline; default its first stage
        "status",  # new | in_progress | won | lost
        "expected_close_date",
        "lost_reason",
        "contact_email",  # the deal's contact, matched by email
        "company_inn",  # the deal's company, matched by INN
        "owner_email",
        "notes",
    ),
    natural_key="id",
    required=("title",),
    entity_type="deal",
)

PROJECTS: Final = EntityFields(
    entity="projects",
    fields=(
        "external_code",
        "name",
        "description",
        "client_inn",  # the client company, matched by INN, created when new
        "client_name",
        "client_kind",  # default from the INN length
        "industry",  # dictionary entry by name (case-insensitive), created when new
        "district",  # dictionary entry by name (case-insensitive), created when new
        "city",
        "address",
        "own_funds_amount",
        "requested_support_amount",
        "jobs_count",
        "tax_revenue_amount",
        "status",  # normalized name or the original spelling (APPLICANTION_SHORT, …)
        "curator_email",  # a member user
    ),
    natural_key="external_code",
    required=("name",),
    entity_type="project",
)

ENTITIES: Final[dict[str, EntityFields]] = {
    spec.entity: spec for spec in (CONTACTS, COMPANIES, DEALS, PROJECTS)
}

#: Project statuses as the agency's original system spells them (PROJECTS.md), to the normalized ones.
ORIGINAL_PROJECT_STATUSES: Final[dict[str, str]] = {
    "APPLICANTION_SHORT": "draft",
    "APPLICANTION_FULL": "submitted",
    "PROJECT_IN_COMISSION": "in_committee",
    "PROJECT_ON_SUPPORT": "supported",
    "ARCHIVE": "archived",
    "ENDED": "completed",
    "FREEZE": "frozen",
    "DELETED": "withdrawn",
}


def accepts(entity: str, field: str) -> bool:
    """Whether `field` is a column the entity's import understands (custom field columns included)."""
    spec = ENTITIES.get(entity)
    if spec is None:
        return False
    if field.startswith(CUSTOM_FIELD_PREFIX):
        return len(field) > len(CUSTOM_FIELD_PREFIX)
    return field in spec.fields

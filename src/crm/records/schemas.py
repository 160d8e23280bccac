"""Schema pieces shared by the CRM records."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, TypeVar, cast

from pydantic import ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from crm.core.schemas import BIGINT_MAX, InputModel, ReadModel
from crm.core.validators import Tags

M = TypeVar("M", bound=InputModel)

#: Where a record came from; server-owned (never taken from a body): `manual`, `registration`,
#: `import`, or the name of the integration's provider (`moysklad`, `bitrix24`, `portal`, or an
#: installed plugin's, such as `kaspi`).
Source = Annotated[
    str,
    Field(
        max_length=50,
        pattern=r"^[a-z][a-z0-9_-]*$",
        description="`manual`, `registration`, `import`, or a provider's name (`moysklad`, `bitrix24`, "
        "`portal`, an installed plugin's)",
        examples=["manual"],
    ),
]


def example(schema: str) -> ConfigDict:
    """The `model_config` of a request body shown in the API docs with its example from
    `examples.json` (data, kept apart from the code; every create example is posted by a test)."""
    return ConfigDict(json_schema_extra={"examples": [_examples()[schema]]})


@functools.cache
def _examples() -> dict[str, dict[str, Any]]:
    text = resources.files(__package__).joinpath("examples.json").read_text(encoding="utf-8")
    return cast(dict[str, dict[str, Any]], json.loads(text))


#: An optional reference to another row of the organization (`company_id`, `owner_id`, ...).
RefId = Annotated[int | None, Field(ge=1, le=BIGINT_MAX)]


# The fields contacts and companies share, after their own in their bodies. A record's schema lists
# the mixin before its own fields' class (`class ContactCreate(ContactName, PartyFields, ContactDetails)`):
# pydantic orders the fields from the last base to the first, so the record's own fields come before
# these and its name last; `patch_of` takes the parts in the order its PATCH body shows them.


class PartyFields(InputModel):
    """Address, tags, owner, custom fields and notes of a contact or company body (POST, PUT)."""

    address: str | None = Field(default=None, max_length=500)
    tags: Tags = Field(default_factory=list)
    owner_id: RefId = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    notes: str | None = Field(default=None, max_length=10_000)


def party_fields(*own: type[InputModel]) -> list[str]:
    """The fields of a contact's or company's body: those of its `own` parts, then the shared ones."""
    parts: tuple[type[InputModel], ...] = (*own, PartyFields)
    return [name for part in parts for name in part.model_fields]


class PartyRead(ReadModel):
    """The shared fields of a contact or company as the API shows it, and its sync and version data."""

    address: str | None
    source: str
    tags: list[str]
    owner_id: int | None
    custom_fields: dict[str, Any]
    notes: str | None
    external_id: str | None
    sync_warnings: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


def replace_of(create: type[M], name: str, doc: str) -> type[M]:
    """A record's PUT body: the POST body's fields, named `name` in the OpenAPI document."""
    return cast("type[M]", type(name, (create,), {"__doc__": doc, "__module__": create.__module__}))


def patch_of(name: str, *parts: type[InputModel], doc: str) -> type[InputModel]:
    """A record's PATCH body: the fields of `parts` in that order, each optional and none with a
    default, so that only the fields sent change. Their constraints and checks are the POST body's;
    their descriptions are left to the POST body to show."""
    fields: dict[str, Any] = {}
    for part in parts:
        for field_name, info in part.model_fields.items():
            patched = FieldInfo(default=None)
            patched.metadata = list(info.metadata)
            annotation: Any = info.annotation
            fields[field_name] = (annotation | None, patched)
    return create_model(name, __base__=InputModel, __doc__=doc, __module__=parts[0].__module__, **fields)

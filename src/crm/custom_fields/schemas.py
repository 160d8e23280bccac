from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, model_validator

from crm.core.schemas import InputModel, ReadModel

FieldEntity = Literal["contact", "company", "deal", "project"]
FieldType = Literal["text", "number", "date", "boolean", "select", "multiselect"]
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"


class CustomFieldCreate(InputModel):
    entity: FieldEntity
    key: str = Field(pattern=KEY_PATTERN, description="lower_snake_case; used as `cf.<key>` in filters")
    label: str = Field(min_length=1, max_length=200)
    type: FieldType
    options: list[str] = Field(default_factory=list, max_length=200)
    required: StrictBool = False

    @model_validator(mode="after")
    def _options_for_selects(self) -> CustomFieldCreate:
        check_options(self.type, self.options)
        return self


class CustomFieldUpdate(InputModel):
    label: str | None = Field(default=None, min_length=1, max_length=200)
    options: list[str] | None = Field(default=None, max_length=200)
    required: StrictBool | None = None


class CustomFieldRead(ReadModel):
    id: int
    entity: str
    key: str
    label: str
    type: str
    options: list[str]
    required: bool


def check_options(field_type: str, options: list[str]) -> None:
    if field_type in ("select", "multiselect"):
        if not options:
            raise ValueError("select and multiselect fields need options")
        if len(set(options)) != len(options) or any(not o.strip() or len(o) > 200 for o in options):
            raise ValueError("options must be distinct non-empty strings of at most 200 characters")
    elif options:
        raise ValueError("only select and multiselect fields take options")

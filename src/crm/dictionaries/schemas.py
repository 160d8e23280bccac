from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, StrictBool

from crm.core.schemas import InputModel, ReadModel

Level = Literal["federal", "regional", "municipal"]
Name = Field(min_length=1, max_length=300, description="Unique in the organization, case-insensitively")


class EntryCreate(InputModel):
    name: str = Name


class EntryUpdate(InputModel):
    name: str | None = Field(default=None, min_length=1, max_length=300)


class EntryRead(ReadModel):
    id: int
    name: str
    created_at: datetime
    updated_at: datetime


class ProgramCreate(EntryCreate):
    level: Level = "regional"
    active: StrictBool = True


class ProgramUpdate(EntryUpdate):
    level: Level | None = None
    active: StrictBool | None = None


class ProgramRead(EntryRead):
    level: str
    active: bool

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

#: Plural names accepted in `?types=` (like the URL segments) and the singular `type` of a hit (SPEC §19.15).
SearchTypes = Literal["contacts", "companies", "deals", "projects"]
HitType = Literal["contact", "company", "deal", "project"]

ALL_TYPES: tuple[SearchTypes, ...] = ("contacts", "companies", "deals", "projects")
#: `?types=contacts,deals`: a comma-separated list of the values above.
TYPES_PATTERN = r"^(contacts|companies|deals|projects)(,(contacts|companies|deals|projects))*$"


class SearchHit(BaseModel):
    type: HitType
    id: int
    title: str
    subtitle: str | None = Field(
        description="A second line: email and phone, INN and industry, amount and stage, "
        "code, city and status"
    )
    rank: float = Field(description="Relevance: full-text rank plus trigram similarity; higher first")

"""Search across contacts, companies, deals and projects (SPEC §8, §19.15)."""

from __future__ import annotations

import unicodedata

from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.errors import UnprocessableEntity
from crm.organizations.dependencies import Tenant
from crm.search.repository import ENTITY_TYPES, SearchRepository
from crm.search.schemas import ALL_TYPES, SearchHit


def clean_query(q: str) -> str:
    """The query without control characters (PostgreSQL refuses NUL) and surrounding blanks;
    422 when nothing searchable is left."""
    cleaned = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in q).strip()
    if not cleaned:
        raise UnprocessableEntity(
            "q: must contain something to search for",
            errors=[{"loc": ["query", "q"], "msg": "must not be blank", "type": "value_error"}],
        )
    return cleaned


def parse_types(types: str | None) -> list[str]:
    """`contacts,deals` → the entity types to search (already checked against the allowed values)."""
    wanted = types.split(",") if types else list(ALL_TYPES)
    return [t for t in ENTITY_TYPES if t in wanted]


class SearchService:
    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        self.repo = SearchRepository(db, tenant.organization_id)

    async def search(self, q: str, types: str | None, limit: int, offset: int) -> tuple[list[SearchHit], int]:
        rows, total = await self.repo.search(clean_query(q), parse_types(types), limit, offset)
        hits = [
            SearchHit(type=r.type, id=r.id, title=r.title, subtitle=r.subtitle, rank=round(float(r.rank), 6))
            for r in rows
        ]
        return hits, total

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import Page, Paging
from crm.organizations.dependencies import Tenant, require
from crm.search.schemas import TYPES_PATTERN, SearchHit
from crm.search.service import SearchService

router = APIRouter(prefix="/search", tags=["search"])

Reader = Annotated[Tenant, Depends(require("search:read"))]


@router.get("", response_model=Page[SearchHit], responses=errors(400, 401, 403, 422))
async def search(
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Words to find, Russian or English")],
    types: Annotated[
        str | None,
        Query(
            pattern=TYPES_PATTERN,
            description="Comma-separated: contacts, companies, deals, projects (default: all).",
            examples=["contacts,companies,deals"],
        ),
    ] = None,
) -> object:
    """One ranked list of contacts, companies, deals and projects of the organization: full text
    (Russian stemming, word prefixes) plus trigram similarity of names and titles, which forgives
    typos. Items carry the singular `type` (`contact`, `company`, `deal`, `project`); best first."""
    hits, total = await SearchService(db, tenant).search(q, types, paging.limit, paging.offset)
    return paging.page(hits, total)

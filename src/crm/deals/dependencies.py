from __future__ import annotations

from crm.core.db import SessionDep
from crm.core.errors import NotFound
from crm.deals.repository import DealRepository


async def ensure_deal(db: SessionDep, organization_id: int, deal_id: int) -> None:
    """404 unless the deal is live and belongs to the organization."""
    if not await DealRepository(db, organization_id).exists(deal_id):
        raise NotFound("Deal not found")

from __future__ import annotations

from collections.abc import Sequence

from crm.core.repository import TenantRepository
from crm.models import ImportJob


class ImportJobRepository(TenantRepository[ImportJob]):
    model = ImportJob

    async def list(self, limit: int, offset: int) -> tuple[Sequence[ImportJob], int]:
        return await self.page(self.base(), [ImportJob.created_at.desc(), ImportJob.id.desc()], limit, offset)

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from crm.core.repository import TenantRepository
from crm.models import Project, SupportDecision, SupportMeasure


class SupportRepository(TenantRepository[SupportMeasure]):
    model = SupportMeasure

    async def project_exists(self, project_id: int) -> bool:
        """The project is live and of this organization."""
        found = await self.session.scalar(
            select(Project.id).where(
                Project.id == project_id,
                Project.organization_id == self.organization_id,
                Project.deleted_at.is_(None),
            )
        )
        return found is not None

    async def of_project(
        self, project_id: int, limit: int, offset: int
    ) -> tuple[Sequence[SupportMeasure], int]:
        stmt = self.base().where(SupportMeasure.project_id == project_id)
        order = [SupportMeasure.created_at.desc(), SupportMeasure.id.desc()]
        return await self.page(stmt, order, limit, offset)


class DecisionRepository(TenantRepository[SupportDecision]):
    model = SupportDecision

    async def of_support(
        self, support_id: int, limit: int, offset: int
    ) -> tuple[Sequence[SupportDecision], int]:
        stmt = self.base().where(SupportDecision.support_id == support_id)
        order = [SupportDecision.created_at.desc(), SupportDecision.id.desc()]
        return await self.page(stmt, order, limit, offset)

    async def get_of_support(self, support_id: int, decision_id: int) -> SupportDecision | None:
        stmt = self.base().where(SupportDecision.id == decision_id, SupportDecision.support_id == support_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

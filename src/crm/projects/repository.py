from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, or_, select

from crm.core.repository import TenantRepository
from crm.models import Project, ProjectMember, ProjectStatusHistory, User
from crm.records.repository import RecordFilters, RecordRepository, filter_records, like_pattern

SORTS = {
    "created_at": Project.created_at,
    "updated_at": Project.updated_at,
    "name": Project.name,
    "requested_support_amount": Project.requested_support_amount,
    "own_funds_amount": Project.own_funds_amount,
    "jobs_count": Project.jobs_count,
}


@dataclass(frozen=True)
class ProjectFilters(RecordFilters):
    """`created_from`/`created_to` and `cf.<key>` of the common filters, plus these."""

    status: str | None = None
    industry_id: int | None = None
    district_id: int | None = None
    curator_id: int | None = None
    client_id: int | None = None
    q: str | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None


class ProjectRepository(RecordRepository[Project]):
    model = Project
    sorts = SORTS

    def filtered(self, f: ProjectFilters) -> Select[tuple[Project]]:
        stmt = filter_records(self.base(), Project, f)
        equal = (
            (Project.status, f.status),
            (Project.industry_id, f.industry_id),
            (Project.district_id, f.district_id),
            (Project.curator_id, f.curator_id),
            (Project.client_id, f.client_id),
        )
        for column, value in equal:
            if value is not None:
                stmt = stmt.where(column == value)
        if f.amount_min is not None:
            stmt = stmt.where(Project.requested_support_amount >= f.amount_min)
        if f.amount_max is not None:
            stmt = stmt.where(Project.requested_support_amount <= f.amount_max)
        if f.q:
            pattern = like_pattern(f.q)
            stmt = stmt.where(
                or_(
                    Project.name.ilike(pattern),
                    Project.external_code.ilike(pattern),
                    Project.city.ilike(pattern),
                    Project.description.ilike(pattern),
                )
            )
        return stmt

    async def of_user(self, user_id: int, limit: int, offset: int) -> tuple[Sequence[Any], int]:
        """Live projects on whose team the user is, newest first, with the user's role."""
        stmt = (
            self.base()
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(ProjectMember.user_id == user_id, ProjectMember.organization_id == self.organization_id)
        )
        projects, total = await self.page(stmt, [Project.created_at.desc(), Project.id.desc()], limit, offset)
        result = await self.session.execute(
            select(ProjectMember.project_id, ProjectMember.role).where(
                ProjectMember.user_id == user_id, ProjectMember.project_id.in_([p.id for p in projects])
            )
        )
        roles = dict(result.tuples().all())
        return [(p, roles[p.id]) for p in projects], total


class TeamRepository(TenantRepository[ProjectMember]):
    model = ProjectMember

    async def member(
        self, project_id: int, user_id: int, *, for_update: bool = False
    ) -> ProjectMember | None:
        stmt = self.base().where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def role_of(self, project_id: int, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        stmt = self.base().where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
        return await self.session.scalar(stmt.with_only_columns(ProjectMember.role))

    async def of_project(self, project_id: int, limit: int, offset: int) -> tuple[Sequence[Any], int]:
        """The team with each user's name and email, in the order they were assigned."""
        stmt = (
            select(ProjectMember, User.full_name, User.email)
            .join(User, User.id == ProjectMember.user_id)
            .where(
                ProjectMember.organization_id == self.organization_id, ProjectMember.project_id == project_id
            )
        )
        count = self.base().where(ProjectMember.project_id == project_id).with_only_columns(func.count())
        total = int(await self.session.scalar(count) or 0)
        rows = await self.session.execute(
            stmt.order_by(ProjectMember.created_at, ProjectMember.id).limit(limit).offset(offset)
        )
        return list(rows.all()), total


class HistoryRepository(TenantRepository[ProjectStatusHistory]):
    model = ProjectStatusHistory

    async def of_project(
        self, project_id: int, limit: int, offset: int
    ) -> tuple[Sequence[ProjectStatusHistory], int]:
        stmt = self.base().where(ProjectStatusHistory.project_id == project_id)
        order = [ProjectStatusHistory.created_at.desc(), ProjectStatusHistory.id.desc()]
        return await self.page(stmt, order, limit, offset)

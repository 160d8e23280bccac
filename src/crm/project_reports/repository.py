"""The report's one SQL statement: rows per group and the totals, joined with UNION ALL."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Numeric,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.repository import where_equal
from crm.models import District, Industry, Project, SupportMeasure, SupportProgram, User
from crm.records.repository import like_pattern

#: Measures whose RUB amount counts as approved support (SPEC §19.14).
APPROVED_STATUSES = ("approved", "provided")


@dataclass(frozen=True, slots=True)
class ReportFilters:
    status: str | None = None
    industry_id: int | None = None
    district_id: int | None = None
    curator_id: int | None = None
    client_id: int | None = None
    q: str | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RawRow:
    is_total: bool
    key: str | None
    label: str | None
    count: int
    own_funds_amount: Decimal
    requested_support_amount: Decimal
    approved_support_amount: Decimal
    jobs_count: int
    tax_revenue_amount: Decimal


def _zero(column: Any) -> ColumnElement[Any]:
    return func.coalesce(column, 0)


def _approved_amount() -> ColumnElement[Any]:
    """A measure's amount when it is approved money, else 0."""
    return case(
        (
            and_(SupportMeasure.unit == "RUB", SupportMeasure.status.in_(APPROVED_STATUSES)),
            func.coalesce(SupportMeasure.amount, 0),
        ),
        else_=0,
    )


class ReportRepository:
    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _projects(self, f: ReportFilters) -> Any:
        """The live, filtered projects with their approved support (a CTE)."""
        approved = (
            select(SupportMeasure.project_id, func.sum(_approved_amount()).label("approved"))
            .where(SupportMeasure.organization_id == self.organization_id)
            .group_by(SupportMeasure.project_id)
            .subquery("approved")
        )
        stmt = (
            select(
                Project.id,
                Project.status,
                Project.industry_id,
                Project.district_id,
                Project.curator_id,
                _zero(Project.own_funds_amount).label("own"),
                _zero(Project.requested_support_amount).label("requested"),
                _zero(Project.jobs_count).label("jobs"),
                _zero(Project.tax_revenue_amount).label("tax"),
                _zero(approved.c.approved).label("approved"),
            )
            .select_from(Project)
            .outerjoin(approved, approved.c.project_id == Project.id)
            .where(Project.organization_id == self.organization_id, Project.deleted_at.is_(None))
        )
        stmt = where_equal(
            stmt, Project, f, "status", "industry_id", "district_id", "curator_id", "client_id"
        )
        if f.q:
            pattern = like_pattern(f.q)
            stmt = stmt.where(or_(Project.name.ilike(pattern), Project.external_code.ilike(pattern)))
        if f.amount_min is not None:
            stmt = stmt.where(Project.requested_support_amount >= f.amount_min)
        if f.amount_max is not None:
            stmt = stmt.where(Project.requested_support_amount <= f.amount_max)
        return stmt.cte("projects")

    def statement(self, group_by: str, f: ReportFilters) -> Select[Any]:
        base = self._projects(f)

        def sums(approved: Any) -> list[Any]:
            return [
                func.count(func.distinct(base.c.id)).label("count"),
                cast(_zero(func.sum(base.c.own)), Numeric(20, 2)).label("own"),
                cast(_zero(func.sum(base.c.requested)), Numeric(20, 2)).label("requested"),
                cast(_zero(func.sum(approved)), Numeric(20, 2)).label("approved"),
                cast(_zero(func.sum(base.c.jobs)), Integer).label("jobs"),
                cast(_zero(func.sum(base.c.tax)), Numeric(20, 2)).label("tax"),
            ]

        approved_col: Any = base.c.approved
        if group_by == "program":
            # One row per (project, program) pair: a project with measures in several programs is
            # counted in each of them; its approved support is split by the measures' programs.
            pairs = (
                select(
                    SupportMeasure.project_id,
                    SupportMeasure.program_id,
                    func.sum(_approved_amount()).label("approved"),
                )
                .where(SupportMeasure.organization_id == self.organization_id)
                .group_by(SupportMeasure.project_id, SupportMeasure.program_id)
                .subquery("pairs")
            )
            key: Any = pairs.c.program_id
            label: Any = SupportProgram.name
            approved_col = _zero(pairs.c.approved)
            source: Any = base.outerjoin(pairs, pairs.c.project_id == base.c.id).outerjoin(
                SupportProgram, SupportProgram.id == pairs.c.program_id
            )
        elif group_by == "status":
            key, label, source = base.c.status, base.c.status, base
        else:
            model, column = {
                "industry": (Industry, base.c.industry_id),
                "district": (District, base.c.district_id),
                "curator": (User, base.c.curator_id),
            }[group_by]
            key = column
            label = User.full_name if model is User else model.name  # type: ignore[attr-defined]
            source = base.outerjoin(model, model.id == column)  # type: ignore[attr-defined]

        rows = (
            select(
                literal(False).label("is_total"),
                cast(key, String).label("key"),
                cast(label, String).label("label"),
                *sums(approved_col),
            )
            .select_from(source)
            .group_by(key, label)
        )
        totals = select(
            literal(True).label("is_total"),
            cast(null(), String).label("key"),
            cast(null(), String).label("label"),
            *sums(base.c.approved),
        ).select_from(base)
        return union_all(rows, totals)  # type: ignore[return-value]

    async def fetch(self, group_by: str, f: ReportFilters) -> list[RawRow]:
        result = await self.session.execute(self.statement(group_by, f))
        return [RawRow(*row) for row in result.all()]

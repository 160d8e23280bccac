"""The export queries: an entity's list query (same filters, same scoping) with the columns of its
export, references resolved to what the import matches on (INN, email, names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ARRAY, ColumnElement, Date, DateTime, Integer, Numeric, Select, and_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, aliased

from crm.companies.repository import CompanyFilters, CompanyRepository
from crm.contacts.repository import ContactFilters, ContactRepository
from crm.core.repository import order_by_sort
from crm.deals.repository import DealFilters, DealRepository
from crm.models import Company, Contact, Deal, District, Industry, Pipeline, Project, User
from crm.projects.repository import ProjectFilters, ProjectRepository
from crm.records.repository import RecordFilters, RecordRepository

#: How a column's value is written: text (escaped), whole numbers, money (2 places), an ISO date, an
#: ISO timestamp in UTC, or a list of tags.
Kind = Literal["text", "int", "money", "date", "timestamp", "tags"]


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    expr: QueryableAttribute[Any]
    kind: Kind = "text"


def kind_of(expr: QueryableAttribute[Any]) -> Kind:
    """How a column is written, from its SQL type."""
    kinds: list[tuple[type[Any], Kind]] = [
        (Integer, "int"),
        (Numeric, "money"),
        (DateTime, "timestamp"),
        (Date, "date"),
        (ARRAY, "tags"),
    ]
    return next((kind for sql_type, kind in kinds if isinstance(expr.type, sql_type)), "text")


def columns(model: Any, *spec: str | tuple[str, QueryableAttribute[Any]]) -> list[Column]:
    """An export's columns in order: a string names the record's own attributes (headed by their
    names, separated by spaces), a pair a header and the joined column it shows."""
    out: list[Column] = []
    for part in spec:
        pairs = [(name, getattr(model, name)) for name in part.split()] if isinstance(part, str) else [part]
        out += [Column(header, expr, kind_of(expr)) for header, expr in pairs]
    return out


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """Fixed columns in order; the selected row ends with the record's `custom_fields` document."""

    columns: list[Column]
    statement: Select[Any]


#: A table joined to the export's query (outer join) and its join condition.
Join = tuple[Any, ColumnElement[bool]]


class ExportRepository:
    """Export statements scoped to one organization. Rows of other organizations and soft-deleted
    rows never appear (the entity repositories' base statements filter them); references to a
    deleted company or contact export as empty."""

    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _live(self, model: type[Company | Contact], fk: QueryableAttribute[Any]) -> tuple[Any, Join]:
        """A live row of the organization `fk` points at (an outer join: none shows as empty)."""
        row = aliased(model)
        on = and_(row.id == fk, row.organization_id == self.organization_id, row.deleted_at.is_(None))
        return row, (row, on)

    def _query(
        self,
        repository: type[RecordRepository[Any]],
        f: RecordFilters,
        sort: str | None,
        shown: list[Column],
        *joins: Join,
    ) -> ExportQuery:
        """The record list's query for `f`, in its `sort`, selecting the `shown` columns and then
        the record's `custom_fields`."""
        model = repository.model
        labeled = [c.expr.label(f"c{i}") for i, c in enumerate(shown)]
        statement = (
            repository(self.session, self.organization_id)
            .filtered(f)
            .with_only_columns(*labeled, model.custom_fields.label("custom_fields"))
            .order_by(*order_by_sort(sort, repository.sorts, model.id))
        )
        for table, on in joins:
            statement = statement.outerjoin(table, on)
        return ExportQuery(shown, statement)

    def contacts(self, f: ContactFilters, sort: str | None) -> ExportQuery:
        company, company_join = self._live(Company, Contact.company_id)
        owner = aliased(User)
        shown = columns(
            Contact,
            "id full_name email phone",
            ("company_inn", company.inn),
            "job_title age gender country address tags",
            ("owner_email", owner.email),
            "notes created_at updated_at",
        )
        return self._query(
            ContactRepository, f, sort, shown, company_join, (owner, owner.id == Contact.owner_id)
        )

    def companies(self, f: CompanyFilters, sort: str | None) -> ExportQuery:
        owner = aliased(User)
        shown = columns(
            Company,
            "id name kind inn kpp ogrn website industry email phone address tags",
            ("owner_email", owner.email),
            "notes created_at updated_at",
        )
        return self._query(CompanyRepository, f, sort, shown, (owner, owner.id == Company.owner_id))

    def deals(self, f: DealFilters, sort: str | None) -> ExportQuery:
        company, company_join = self._live(Company, Deal.company_id)
        contact, contact_join = self._live(Contact, Deal.contact_id)
        owner = aliased(User)
        pipeline = aliased(Pipeline)
        shown = columns(
            Deal,
            "id title amount currency",
            ("pipeline", pipeline.name),
            "stage status expected_close_date lost_reason",
            ("contact_email", contact.email),
            ("company_inn", company.inn),
            ("owner_email", owner.email),
            "notes created_at updated_at",
        )
        return self._query(
            DealRepository,
            f,
            sort,
            shown,
            (pipeline, pipeline.id == Deal.pipeline_id),
            contact_join,
            company_join,
            (owner, owner.id == Deal.owner_id),
        )

    def projects(self, f: ProjectFilters, sort: str | None) -> ExportQuery:
        client, client_join = self._live(Company, Project.client_id)
        curator = aliased(User)
        industry = aliased(Industry)
        district = aliased(District)
        org = self.organization_id
        shown = columns(
            Project,
            "id external_code name description",
            ("client_inn", client.inn),
            ("client_name", client.name),
            ("client_kind", client.kind),
            ("industry", industry.name),
            ("district", district.name),
            "city address own_funds_amount requested_support_amount jobs_count tax_revenue_amount status",
            ("curator_email", curator.email),
            "created_at updated_at",
        )
        return self._query(
            ProjectRepository,
            f,
            sort,
            shown,
            client_join,
            (industry, and_(industry.id == Project.industry_id, industry.organization_id == org)),
            (district, and_(district.id == Project.district_id, district.organization_id == org)),
            (curator, curator.id == Project.curator_id),
        )

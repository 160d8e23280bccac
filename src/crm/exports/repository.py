"""The export queries: an entity's list query (same filters, same scoping) with the columns of its
export, references resolved to what the import matches on (INN, email, names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, aliased

from crm.companies.repository import SORTS as COMPANY_SORTS
from crm.companies.repository import CompanyFilters, CompanyRepository
from crm.contacts.repository import SORTS as CONTACT_SORTS
from crm.contacts.repository import ContactFilters, ContactRepository
from crm.core.repository import order_by_sort
from crm.deals.repository import SORTS as DEAL_SORTS
from crm.deals.repository import DealFilters, DealRepository
from crm.models import Company, Contact, Deal, District, Industry, Pipeline, Project, User
from crm.projects.repository import SORTS as PROJECT_SORTS
from crm.projects.repository import ProjectFilters, ProjectRepository

#: How a column's value is written: text (escaped), whole numbers, money (2 places), an ISO date, an
#: ISO timestamp in UTC, or a list of tags.
Kind = Literal["text", "int", "money", "date", "timestamp", "tags"]


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    expr: QueryableAttribute[Any]
    kind: Kind = "text"


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """Fixed columns in order; the selected row ends with the record's `custom_fields` document."""

    columns: list[Column]
    statement: Select[Any]


def _build(
    base: Select[Any], columns: list[Column], custom_fields: QueryableAttribute[Any], order_by: list[Any]
) -> ExportQuery:
    labeled = [c.expr.label(f"c{i}") for i, c in enumerate(columns)]
    statement = base.with_only_columns(*labeled, custom_fields.label("custom_fields"))
    return ExportQuery(columns, statement.order_by(*order_by))


class ExportRepository:
    """Export statements scoped to one organization. Rows of other organizations and soft-deleted
    rows never appear (the entity repositories' base statements filter them); references to a
    deleted company or contact export as empty."""

    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _live_company(self, fk: QueryableAttribute[Any]) -> tuple[Any, ColumnElement[bool]]:
        company = aliased(Company)
        on = and_(
            company.id == fk,
            company.organization_id == self.organization_id,
            company.deleted_at.is_(None),
        )
        return company, on

    def contacts(self, f: ContactFilters, sort: str | None) -> ExportQuery:
        company, company_on = self._live_company(Contact.company_id)
        owner = aliased(User)
        base = ContactRepository(self.session, self.organization_id).filtered(f)
        columns = [
            Column("id", Contact.id, "int"),
            Column("full_name", Contact.full_name),
            Column("email", Contact.email),
            Column("phone", Contact.phone),
            Column("company_inn", company.inn),
            Column("job_title", Contact.job_title),
            Column("age", Contact.age, "int"),
            Column("gender", Contact.gender),
            Column("country", Contact.country),
            Column("address", Contact.address),
            Column("tags", Contact.tags, "tags"),
            Column("owner_email", owner.email),
            Column("notes", Contact.notes),
            Column("created_at", Contact.created_at, "timestamp"),
            Column("updated_at", Contact.updated_at, "timestamp"),
        ]
        query = _build(base, columns, Contact.custom_fields, order_by_sort(sort, CONTACT_SORTS, Contact.id))
        statement = query.statement.outerjoin(company, company_on).outerjoin(
            owner, owner.id == Contact.owner_id
        )
        return ExportQuery(columns, statement)

    def companies(self, f: CompanyFilters, sort: str | None) -> ExportQuery:
        owner = aliased(User)
        base = CompanyRepository(self.session, self.organization_id).filtered(f)
        columns = [
            Column("id", Company.id, "int"),
            Column("name", Company.name),
            Column("kind", Company.kind),
            Column("inn", Company.inn),
            Column("kpp", Company.kpp),
            Column("ogrn", Company.ogrn),
            Column("website", Company.website),
            Column("industry", Company.industry),
            Column("email", Company.email),
            Column("phone", Company.phone),
            Column("address", Company.address),
            Column("tags", Company.tags, "tags"),
            Column("owner_email", owner.email),
            Column("notes", Company.notes),
            Column("created_at", Company.created_at, "timestamp"),
            Column("updated_at", Company.updated_at, "timestamp"),
        ]
        query = _build(base, columns, Company.custom_fields, order_by_sort(sort, COMPANY_SORTS, Company.id))
        statement = query.statement.outerjoin(owner, owner.id == Company.owner_id)
        return ExportQuery(columns, statement)

    def deals(self, f: DealFilters, sort: str | None) -> ExportQuery:
        company, company_on = self._live_company(Deal.company_id)
        contact = aliased(Contact)
        contact_on = and_(
            contact.id == Deal.contact_id,
            contact.organization_id == self.organization_id,
            contact.deleted_at.is_(None),
        )
        owner = aliased(User)
        pipeline = aliased(Pipeline)
        base = DealRepository(self.session, self.organization_id).filtered(f)
        columns = [
            Column("id", Deal.id, "int"),
            Column("title", Deal.title),
            Column("amount", Deal.amount, "money"),
            Column("currency", Deal.currency),
            Column("pipeline", pipeline.name),
            Column("stage", Deal.stage),
            Column("status", Deal.status),
            Column("expected_close_date", Deal.expected_close_date, "date"),
            Column("lost_reason", Deal.lost_reason),
            Column("contact_email", contact.email),
            Column("company_inn", company.inn),
            Column("owner_email", owner.email),
            Column("notes", Deal.notes),
            Column("created_at", Deal.created_at, "timestamp"),
            Column("updated_at", Deal.updated_at, "timestamp"),
        ]
        query = _build(base, columns, Deal.custom_fields, order_by_sort(sort, DEAL_SORTS, Deal.id))
        statement = (
            query.statement.outerjoin(pipeline, pipeline.id == Deal.pipeline_id)
            .outerjoin(contact, contact_on)
            .outerjoin(company, company_on)
            .outerjoin(owner, owner.id == Deal.owner_id)
        )
        return ExportQuery(columns, statement)

    def projects(self, f: ProjectFilters, sort: str | None) -> ExportQuery:
        client, client_on = self._live_company(Project.client_id)
        curator = aliased(User)
        industry = aliased(Industry)
        district = aliased(District)
        org = self.organization_id
        base = ProjectRepository(self.session, self.organization_id).filtered(f)
        columns = [
            Column("id", Project.id, "int"),
            Column("external_code", Project.external_code),
            Column("name", Project.name),
            Column("description", Project.description),
            Column("client_inn", client.inn),
            Column("client_name", client.name),
            Column("client_kind", client.kind),
            Column("industry", industry.name),
            Column("district", district.name),
            Column("city", Project.city),
            Column("address", Project.address),
            Column("own_funds_amount", Project.own_funds_amount, "money"),
            Column("requested_support_amount", Project.requested_support_amount, "money"),
            Column("jobs_count", Project.jobs_count, "int"),
            Column("tax_revenue_amount", Project.tax_revenue_amount, "money"),
            Column("status", Project.status),
            Column("curator_email", curator.email),
            Column("created_at", Project.created_at, "timestamp"),
            Column("updated_at", Project.updated_at, "timestamp"),
        ]
        query = _build(base, columns, Project.custom_fields, order_by_sort(sort, PROJECT_SORTS, Project.id))
        statement = (
            query.statement.outerjoin(client, client_on)
            .outerjoin(industry, and_(industry.id == Project.industry_id, industry.organization_id == org))
            .outerjoin(district, and_(district.id == Project.district_id, district.organization_id == org))
            .outerjoin(curator, curator.id == Project.curator_id)
        )
        return ExportQuery(columns, statement)

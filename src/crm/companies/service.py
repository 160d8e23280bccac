"""Companies: the organizations (and sole proprietors) the organization works with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import exists, select

from crm.companies.exceptions import CompanyInnTaken
from crm.companies.repository import CompanyDealRepository, CompanyRepository
from crm.companies.schemas import CompanyCreate, CompanyDetails, CompanyName
from crm.contacts.repository import ContactFilters
from crm.contacts.service import ContactService
from crm.core.errors import Forbidden
from crm.models import Company, Contact, Deal, Project
from crm.records.crud import CrudService
from crm.records.fields import e164, invalid_field
from crm.records.schemas import party_fields
from crm.records.service import UniqueErrors

#: What the activity of a new company records: its body's fields.
CREATED_FIELDS = [*party_fields(CompanyName, CompanyDetails), "source"]
#: Digits of the INN and of the OGRN by kind of company (SPEC §18 "Companies").
INN_LENGTH = {"legal_entity": 10, "nonprofit": 10, "sole_proprietor": 12, "individual": 12}
OGRN_LENGTH = {"legal_entity": 13, "nonprofit": 13, "sole_proprietor": 15, "individual": 15}


def kind_from_inn(inn: str | None) -> str:
    """10 digits → `legal_entity`, 12 → `sole_proprietor`; `legal_entity` without an INN."""
    return "sole_proprietor" if inn is not None and len(inn) == 12 else "legal_entity"


def check_identifiers(kind: str, inn: str | None, ogrn: str | None) -> None:
    """422 when the INN or the OGRN has the wrong length for the kind of company."""
    if inn is not None and len(inn) != INN_LENGTH[kind]:
        raise invalid_field("inn", f"the INN of a {kind} has {INN_LENGTH[kind]} digits")
    if ogrn is not None and len(ogrn) != OGRN_LENGTH[kind]:
        raise invalid_field("ogrn", f"the OGRN of a {kind} has {OGRN_LENGTH[kind]} digits")


class CompanyService(CrudService[Company]):
    entity_type = "company"
    repository_class = CompanyRepository
    unique_errors: ClassVar[UniqueErrors] = {"uq_company_org_inn_live": CompanyInnTaken}
    not_null = ("name",)

    async def validated(
        self, values: dict[str, Any], existing: Company | None, *, partial: bool
    ) -> dict[str, Any]:
        await self.check_refs(user_ids={"owner_id": values.get("owner_id")})
        if "phone" in values:
            values["phone"] = e164(values["phone"])
        if not partial or existing is None:
            values["kind"] = values.get("kind") or kind_from_inn(values.get("inn"))
            check_identifiers(values["kind"], values.get("inn"), values.get("ogrn"))
        elif {"kind", "inn", "ogrn"} & values.keys():
            # Checked only when one of them is sent: a synced company may carry provider values
            # our API would refuse, and editing its notes must still work.
            inn = values.get("inn", existing.inn)
            if "kind" in values and values["kind"] is None:
                values["kind"] = kind_from_inn(inn)
            check_identifiers(values.get("kind", existing.kind), inn, values.get("ogrn", existing.ogrn))
        return values

    async def create(self, data: CompanyCreate, *, source: str = "manual") -> Company:
        values = await self.prepared(self.owned_by_creator(data), None, partial=False)
        company = Company(organization_id=self.tenant.organization_id, source=source, **values)
        return await self.insert(company, CREATED_FIELDS)

    async def check_delete(self, company: Company) -> None:
        """Soft delete by manager and up; the client of an investment project needs owner/admin."""
        may_delete_clients = self.tenant.can("companies:delete_client")
        if not may_delete_clients and await self.is_investment_project_client(company):
            raise Forbidden(
                "This company is the client of an investment project; only an owner or admin may delete it"
            )

    async def is_investment_project_client(self, company: Company) -> bool:
        """True when a live investment project has this company as its client (SPEC §18
        "Deletes by role": such a company is deleted by owner/admin only)."""
        stmt = select(
            exists().where(
                Project.organization_id == self.tenant.organization_id,
                Project.client_id == company.id,
                Project.deleted_at.is_(None),
            )
        )
        return bool(await self.db.scalar(stmt))

    async def contacts(
        self, company_id: int, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Contact], int]:
        await self.get(company_id)
        contacts = ContactService(self.db, self.tenant, self.redis)
        return await contacts.list(ContactFilters(company_id=company_id), sort, limit, offset)

    async def deals(self, company_id: int, limit: int, offset: int) -> tuple[Sequence[Deal], int]:
        await self.get(company_id)
        return await CompanyDealRepository(self.db, self.tenant.organization_id).of_company(
            company_id, limit, offset
        )

"""Projects (the agency's spreadsheet, PROJECTS.md "Moving off Excel"): matched on `external_code`;
clients matched by INN or name and created when new, industries and districts created when new. The
status is set directly (moves and their guards are the API's, `docs/imports.md`) with the status
model's own effects (`frozen_from`) and an `imported` history row."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.companies.schemas import CompanyCreate
from crm.companies.service import check_identifiers, kind_from_inn
from crm.dictionaries.schemas import EntryCreate
from crm.imports import cells
from crm.imports.fields import ORIGINAL_PROJECT_STATUSES, PROJECTS
from crm.imports.handlers.base import (
    Change,
    Handler,
    Parser,
    Row,
    choice_of,
    compared_of,
    integer_of,
    table_of,
    text_of,
    utc_now,
)
from crm.imports.handlers.companies import companies_by_inn
from crm.models import Company, District, Industry, Project, ProjectStatusHistory
from crm.models.company import UNIQUE_SOURCES
from crm.projects.schemas import ProjectCreate
from crm.projects.service import CREATED_FIELDS
from crm.projects.transitions import INITIAL_STATUS, PROJECT_STATUSES


def project_status(value: str) -> str:
    """A normalized status name or the original system's spelling, in any case."""
    original = ORIGINAL_PROJECT_STATUSES.get(value.strip().upper())
    if original is not None:
        return original
    return cells.choice(value, PROJECT_STATUSES.names)


class ProjectHandler(Handler):
    spec = PROJECTS
    model = Project
    not_null = ("name", "status")
    compared = compared_of(CREATED_FIELDS, besides=("external_code",))
    parsers: ClassVar[dict[str, Parser]] = {
        "external_code": text_of(ProjectCreate, "external_code"),
        "name": text_of(ProjectCreate, "name"),
        "description": text_of(ProjectCreate, "description"),
        "client_inn": cells.inn,
        "client_name": text_of(CompanyCreate, "name"),
        "client_kind": choice_of(CompanyCreate, "kind"),
        "industry": text_of(EntryCreate, "name"),
        "district": text_of(EntryCreate, "name"),
        "city": text_of(ProjectCreate, "city"),
        "address": text_of(ProjectCreate, "address"),
        "own_funds_amount": cells.money,
        "requested_support_amount": cells.money,
        "jobs_count": integer_of(ProjectCreate, "jobs_count"),
        "tax_revenue_amount": cells.money,
        "status": project_status,
        "curator_email": cells.email,
    }

    def check(self, number: int, values: dict[str, Any]) -> bool:
        kind = values.get("client_kind")
        if kind is None:
            return True
        inn = values.get("client_inn")
        return self.follows(number, lambda: check_identifiers(kind, inn, None), {"inn": "client_inn"})

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        clients = await self._clients(db, rows)
        industries = await self._dictionary(db, Industry, [r.values.get("industry") for r in rows])
        districts = await self._dictionary(db, District, [r.values.get("district") for r in rows])
        kept: list[Row] = []
        for row in rows:
            values = row.values
            record = {
                k: v
                for k, v in values.items()
                if k in self.compared and k not in ("client_id", "industry_id", "district_id", "curator_id")
            }
            if "client_inn" in values or "client_name" in values:
                client = _client_key(values)
                if client is None:
                    record["client_id"] = None
                elif client not in clients:
                    continue  # its error is recorded
                else:
                    record["client_id"] = clients[client]
            if "industry" in values:
                name = values["industry"]
                record["industry_id"] = industries[name.lower()] if name else None
            if "district" in values:
                name = values["district"]
                record["district_id"] = districts[name.lower()] if name else None
            if not self.user(row.number, "curator_email", values, "curator_id", record):
                continue
            row.record = record
            kept.append(row)
        return kept

    async def _clients(self, db: AsyncSession, rows: list[Row]) -> dict[tuple[str, str], int]:
        """Client companies of the chunk by ("inn", INN) or ("name", lower name); missing ones created
        (`kind` from `client_kind` or the INN length). Rows that cannot get a client are reported."""
        org = self.ctx.organization_id
        wanted: dict[tuple[str, str], Row] = {}
        for row in rows:
            key = _client_key(row.values)
            if key is not None:
                wanted.setdefault(key, row)
        inns = [v for k, v in wanted if k == "inn"]
        names = [v for k, v in wanted if k == "name"]
        found: dict[tuple[str, str], int] = {}
        if inns:
            found.update({("inn", inn): cid for inn, cid in (await companies_by_inn(db, org, inns)).items()})
        if names:
            result = await db.execute(
                select(func.lower(Company.name), Company.id)
                .where(
                    Company.organization_id == org,
                    Company.deleted_at.is_(None),
                    func.lower(Company.name).in_(names),
                )
                .order_by(Company.id)
            )
            for name, cid in result.tuples():
                found.setdefault(("name", name), cid)

        new: list[tuple[tuple[str, str], dict[str, Any]]] = []
        for key, row in wanted.items():
            if key in found:
                continue
            name, inn, kind = (
                row.values.get("client_name"),
                row.values.get("client_inn"),
                row.values.get("client_kind"),
            )
            if not name:
                self.out.error(
                    row.number, self.column("client_name"), "client_name is required to create the client"
                )
                continue
            now = utc_now()
            new.append(
                (
                    key,
                    {
                        "organization_id": org,
                        "name": name,
                        "inn": inn,
                        "kind": kind or kind_from_inn(inn),
                        "source": "import",
                        "tags": [],
                        "created_at": now,
                        "updated_at": now,
                        "version": 1,
                    },
                )
            )
        if new:
            stmt = (
                insert(table_of(Company))
                .on_conflict_do_nothing(
                    index_elements=[Company.organization_id, Company.inn],
                    index_where=text(f"deleted_at IS NULL AND inn IS NOT NULL AND {UNIQUE_SOURCES}"),
                )
                .returning(Company.id, Company.inn, Company.name)
            )
            result = await db.execute(stmt, [values for _, values in new])
            created = 0
            for cid, inn, name in result.tuples():
                created += 1
                found[("inn", inn) if inn else ("name", name.lower())] = cid
            self.out.created_by_type["company"] += created
            missing = [key for key, _ in new if key not in found and key[0] == "inn"]
            if missing:  # stored by someone else meanwhile
                again = await companies_by_inn(db, org, [v for _, v in missing])
                found.update({("inn", inn): cid for inn, cid in again.items()})
        for key, row in wanted.items():
            if key not in found and row.number not in self.out.failed_rows:
                self.out.error(row.number, self.column("client_inn"), "the client could not be stored")
        return found

    async def _dictionary(self, db: AsyncSession, model: Any, names: list[str | None]) -> dict[str, int]:
        """Dictionary entries by lower-case name, missing ones created as first spelled in the file."""
        wanted: dict[str, str] = {}
        for name in names:
            if name:
                wanted.setdefault(name.lower(), name)
        if not wanted:
            return {}
        org = self.ctx.organization_id
        now = utc_now()
        await db.execute(
            insert(model)
            .values(
                [
                    {"organization_id": org, "name": name, "created_at": now, "updated_at": now}
                    for name in wanted.values()
                ]
            )
            .on_conflict_do_nothing(index_elements=[model.organization_id, func.lower(model.name)])
        )
        result = await db.execute(
            select(func.lower(model.name), model.id).where(
                model.organization_id == org, func.lower(model.name).in_(list(wanted))
            )
        )
        return dict(result.tuples().all())

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        return await self.columns_of(
            db,
            [Project.organization_id == self.ctx.organization_id],
            Project.external_code,
            keys,
            extra=(Project.deleted_at,),
        )

    def creatable(self, row: Row) -> bool:
        if row.key is not None:
            row.record["external_code"] = row.key
        row.record["status"] = row.record.get("status") or INITIAL_STATUS
        return super().creatable(row)

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        defaults: dict[str, Any] = dict.fromkeys(self.compared)
        defaults.update(external_code=None, frozen_from=None)
        done = await self.insert_keyed(
            db,
            rows,
            defaults,
            Project.external_code,
            [Project.organization_id, Project.external_code],
            text("external_code IS NOT NULL"),
        )
        await self._history(db, [(project_id, None, row.record["status"]) for row, project_id in done])

    async def apply(self, db: AsyncSession, updates: list[Change]) -> None:
        moves: list[tuple[int, str | None, str]] = []
        for _row, current, changes in updates:
            if "status" in changes:
                moves.append((current["id"], current["status"], changes["status"]))
                PROJECT_STATUSES.settle({"status": current["status"]}, changes)  # e.g. `frozen_from`
        await super().apply(db, updates)
        await self._history(db, moves)

    async def _history(self, db: AsyncSession, moves: list[tuple[int, str | None, str]]) -> None:
        """One `imported` history row per status set by the import."""
        if not moves:
            return
        now = utc_now()
        await db.execute(
            insert(table_of(ProjectStatusHistory)),
            [
                {
                    "organization_id": self.ctx.organization_id,
                    "project_id": project_id,
                    "from_status": old,
                    "to_status": new,
                    "actor_id": self.ctx.user_id,
                    "comment": "imported",
                    "created_at": now,
                }
                for project_id, old, new in moves
            ],
        )


def _client_key(values: dict[str, Any]) -> tuple[str, str] | None:
    inn, name = values.get("client_inn"), values.get("client_name")
    if inn:
        return ("inn", inn)
    if name:
        return ("name", name.lower())
    return None

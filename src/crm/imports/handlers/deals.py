"""Deals: matched on the exported `id`; `pipeline` and `stage` by name or key. The status rules are the
deals' own (`deals/transitions.py`: a won deal has an amount, only a lost one a reason, `closed_at`), so
an imported row is refused with the API's code and message; stage and status changes write the same
history rows as the API (the funnel reads them). Moving a stage back is not checked (`docs/imports.md`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.schemas import BIGINT_MAX
from crm.deals.schemas import DealCreate
from crm.deals.service import CREATED_FIELDS
from crm.deals.transitions import DEAL_STATUSES, INITIAL_STATUS
from crm.imports import cells
from crm.imports.fields import DEALS
from crm.imports.handlers.base import (
    UNIQUE_SOURCE_LIST,
    Change,
    Handler,
    Parser,
    Row,
    compared_of,
    table_of,
    text_of,
    utc_now,
)
from crm.imports.handlers.companies import companies_by_inn
from crm.models import Contact, Deal, DealHistory, Organization, Pipeline, PipelineStage
from crm.pipelines.schemas import PipelineCreate, StageCreate
from crm.pipelines.service import ensure_default_pipeline


@dataclass
class _Stage:
    key: str
    position: int
    archived: bool


@dataclass
class _Pipeline:
    id: int
    stages: dict[str, _Stage]
    by_name: dict[str, str]

    def first(self) -> str | None:
        live = sorted((s for s in self.stages.values() if not s.archived), key=lambda s: s.position)
        return live[0].key if live else None

    def find(self, value: str) -> str | None:
        if value in self.stages:
            return value
        return self.by_name.get(value.casefold())


class DealHandler(Handler):
    spec = DEALS
    model = Deal
    not_null = ("title",)
    compared = compared_of(CREATED_FIELDS, besides=("stage", "closed_at"))
    parsers: ClassVar[dict[str, Parser]] = {
        "id": lambda v: cells.integer(v, 1, BIGINT_MAX),
        "title": text_of(DealCreate, "title"),
        "amount": cells.money,
        "currency": cells.currency,
        "pipeline": text_of(PipelineCreate, "name"),
        "stage": text_of(StageCreate, "name"),
        "status": lambda v: cells.choice(v, DEAL_STATUSES.names),
        "expected_close_date": cells.day,
        "lost_reason": text_of(DealCreate, "lost_reason"),
        "contact_email": cells.email,
        "company_inn": cells.inn,
        "owner_email": cells.email,
        "notes": text_of(DealCreate, "notes"),
    }

    async def prepare(self, db: AsyncSession) -> None:
        await super().prepare(db)
        org = self.ctx.organization_id
        await ensure_default_pipeline(db, org)
        self.currency = (
            await db.scalar(select(Organization.currency).where(Organization.id == org))
        ) or "RUB"
        self.pipelines: dict[int, _Pipeline] = {}
        self.pipeline_names: dict[str, int] = {}
        self.default_pipeline: int | None = None
        for pipeline in await db.scalars(select(Pipeline).where(Pipeline.organization_id == org)):
            self.pipelines[pipeline.id] = _Pipeline(pipeline.id, {}, {})
            self.pipeline_names.setdefault(pipeline.name.casefold(), pipeline.id)
            if pipeline.is_default:
                self.default_pipeline = pipeline.id
        for stage in await db.scalars(select(PipelineStage).where(PipelineStage.organization_id == org)):
            target = self.pipelines.get(stage.pipeline_id)
            if target is not None:
                target.stages[stage.key] = _Stage(stage.key, stage.position, stage.is_archived)
                target.by_name.setdefault(stage.name.casefold(), stage.key)

    def _pipeline(self, value: str | None) -> _Pipeline | None:
        if value is None:
            return self.pipelines.get(self.default_pipeline) if self.default_pipeline else None
        pipeline_id = self.pipeline_names.get(value.casefold())
        if pipeline_id is None and value.isdigit():
            pipeline_id = int(value)
        return self.pipelines.get(pipeline_id) if pipeline_id is not None else None

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        org = self.ctx.organization_id
        inns = {r.values["company_inn"] for r in rows if r.values.get("company_inn")}
        emails = {r.values["contact_email"] for r in rows if r.values.get("contact_email")}
        companies = await companies_by_inn(db, org, inns) if inns else {}
        contacts: dict[str, int] = {}
        if emails:
            result = await db.execute(
                select(func.lower(Contact.email), Contact.id)
                .where(
                    Contact.organization_id == org,
                    Contact.deleted_at.is_(None),
                    func.lower(Contact.email).in_(list(emails)),
                )
                .order_by(Contact.source.in_(UNIQUE_SOURCE_LIST).desc(), Contact.id)
            )
            for email, cid in result.tuples():
                contacts.setdefault(email, cid)
        kept: list[Row] = []
        for row in rows:
            values = row.values
            record = {k: v for k, v in values.items() if k in self.compared}
            ok = True
            for name, target, table, what in (
                ("company_inn", "company_id", companies, "company with INN"),
                ("contact_email", "contact_id", contacts, "contact with email"),
            ):
                if name in values:
                    ref = values[name]
                    record[target] = table.get(ref) if ref else None
                    if ref and record[target] is None:
                        self.out.error(row.number, self.column(name), f"no {what} {ref}")
                        ok = False
            if "pipeline" in values:
                pipeline = self._pipeline(values["pipeline"])
                if pipeline is None:
                    self.out.error(row.number, self.column("pipeline"), f"no pipeline {values['pipeline']}")
                    ok = False
                else:
                    record["pipeline_id"] = pipeline.id
            if ok and self.user(row.number, "owner_email", values, "owner_id", record):
                row.record = record
                kept.append(row)
        return kept

    def _place(self, row: Row, pipeline_id: int, keep: str | None) -> str | None:
        """The stage key for the row in that pipeline: the given stage (key or name, not archived),
        else `keep`, else the pipeline's first stage. None (with the error recorded) when there is none."""
        pipeline = self.pipelines[pipeline_id]
        given = row.values.get("stage")
        if given:
            key = pipeline.find(given)
            if key is None or (key != keep and pipeline.stages[key].archived):
                self.out.error(row.number, self.column("stage"), f"no stage {given} in this pipeline")
                return None
            return key
        key = keep or pipeline.first()
        if key is None:
            self.out.error(row.number, self.column("stage"), "the pipeline has no active stage")
        return key

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        found = await self.columns_of(
            db,
            [Deal.organization_id == self.ctx.organization_id, Deal.deleted_at.is_(None)],
            Deal.id,
            keys,
            extra=(Deal.closed_at, Deal.stage),
        )
        for key in keys:
            if key not in found:
                found[key] = {"missing": True}
        return found

    def diff(self, row: Row, current: dict[str, Any]) -> dict[str, Any] | None:
        changes = super().diff(row, current)
        if changes is None:
            return None
        pipeline_id = row.record.get("pipeline_id", current["pipeline_id"])
        if "stage" in row.values or pipeline_id != current["pipeline_id"]:
            stage = self._place(
                row, pipeline_id, keep=current["stage"] if pipeline_id == current["pipeline_id"] else None
            )
            if stage is None:
                return None
            if stage != current["stage"] or pipeline_id != current["pipeline_id"]:
                changes["stage"] = stage
        # The status rules see what the file says (its columns), over the stored deal.
        values = {**row.record, **changes}
        broken = DEAL_STATUSES.broken(current, values)
        if broken is not None:
            self.refuse(row.number, broken)
            return None
        return {k: v for k, v in values.items() if k in changes or (k in current and current[k] != v)}

    def creatable(self, row: Row) -> bool:
        record = row.record
        if record.get("pipeline_id") is None:
            if self.default_pipeline is None:
                self.out.error(row.number, None, "the organization has no default pipeline")
                return False
            record["pipeline_id"] = self.default_pipeline
        stage = self._place(row, record["pipeline_id"], keep=None)
        if stage is None:
            return False
        record["stage"] = stage
        record["status"] = record.get("status") or INITIAL_STATUS
        record["amount"] = record.get("amount") if record.get("amount") is not None else Decimal("0.00")
        record["currency"] = record.get("currency") or self.currency
        broken = DEAL_STATUSES.broken(None, record)
        if broken is not None:
            self.refuse(row.number, broken)
            return False
        return super().creatable(row)

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        defaults: dict[str, Any] = dict.fromkeys(self.compared)
        defaults.update(source="import", closed_at=None)
        stmt = insert(table_of(Deal)).returning(Deal.id, Deal.created_at, sort_by_parameter_order=True)
        result = await db.execute(stmt, self.new_records(rows, defaults))
        history = []
        for row, (deal_id, created_at) in zip(rows, result.tuples(), strict=True):
            history.append(
                self._history_row(
                    deal_id, row.record["pipeline_id"], "stage", None, row.record["stage"], created_at
                )
            )
        self.out.created += len(rows)
        self.out.created_by_type["deal"] += len(rows)
        await db.execute(insert(table_of(DealHistory)), history)

    async def apply(self, db: AsyncSession, updates: list[Change]) -> None:
        await super().apply(db, updates)
        now = utc_now()
        moved = [c for _r, c, ch in updates if "stage" in ch or "pipeline_id" in ch]
        if moved:
            await db.execute(
                update(DealHistory)
                .where(
                    DealHistory.organization_id == self.ctx.organization_id,
                    DealHistory.deal_id.in_([c["id"] for c in moved]),
                    DealHistory.field == "stage",
                    DealHistory.left_at.is_(None),
                )
                .values(left_at=now)
                .execution_options(synchronize_session=False)
            )
        history = []
        for _row, current, changes in updates:
            after = {**current, **changes}
            if "stage" in changes or "pipeline_id" in changes:
                history.append(
                    self._history_row(
                        current["id"], after["pipeline_id"], "stage", current["stage"], after["stage"], now
                    )
                )
            if "status" in changes:
                history.append(
                    self._history_row(
                        current["id"], after["pipeline_id"], "status", current["status"], after["status"], now
                    )
                )
        if history:
            await db.execute(insert(table_of(DealHistory)), history)

    def _history_row(
        self, deal_id: int, pipeline_id: int, name: str, old: str | None, new: str, at: datetime
    ) -> dict[str, Any]:
        return {
            "organization_id": self.ctx.organization_id,
            "deal_id": deal_id,
            "pipeline_id": pipeline_id,
            "field": name,
            "from_value": old,
            "to_value": new,
            "actor_id": self.ctx.user_id,
            "created_at": at,
            "left_at": None,
        }

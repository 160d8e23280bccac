"""Support measures and decisions: unit rules, dictionary references, status set by decisions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.activities.service import jsonable
from crm.core.redis import SafeRedis
from crm.core.rows import TenantRecord
from crm.models import SupportDecision, SupportMeasure, SupportProgram, SupportProvider
from crm.organizations.dependencies import Tenant
from crm.outbox.service import emit
from crm.records.fields import invalid_field
from crm.records.service import InvalidReference, RecordService
from crm.support.exceptions import DecisionNotFound, ProjectNotFound, SupportNotFound
from crm.support.repository import DecisionRepository, SupportRepository
from crm.support.schemas import UNITS_BY_TYPE, DecisionCreate, SupportCreate, SupportUpdate
from crm.support.transitions import INITIAL_STATUS, STATUS_BY_RESULT, SUPPORT_STATUSES

CREATED_FIELDS = [
    "project_id",
    "program_id",
    "provider_id",
    "type",
    "amount",
    "unit",
    "date_start",
    "date_end",
    "description",
    "status",
]


def check_unit(support_type: str, unit: str | None, *, unit_sent: bool) -> str:
    """The unit of a measure of this type (422 when it does not fit the type)."""
    allowed = UNITS_BY_TYPE[support_type]
    if unit is None:
        if len(allowed) == 1:
            return allowed[0]
        raise invalid_field("unit", f"{support_type} support needs a unit: {', '.join(allowed)}", "missing")
    if unit not in allowed:
        field = "unit" if unit_sent else "type"
        raise invalid_field(
            field, f"{support_type} support is measured in {' or '.join(allowed)}, not {unit}"
        )
    return unit


def check_dates(date_start: date | None, date_end: date | None) -> None:
    if date_start is not None and date_end is not None and date_end < date_start:
        raise invalid_field("date_end", "must not be before date_start")


class SupportService(RecordService[SupportMeasure]):
    entity_type = "support"
    repository_class = SupportRepository
    repo: SupportRepository

    def __init__(self, db: AsyncSession, tenant: Tenant, redis: SafeRedis) -> None:
        super().__init__(db, tenant, redis)
        self.decisions = DecisionRepository(db, tenant.organization_id)

    @property
    def not_found(self) -> SupportNotFound:
        return SupportNotFound()

    # Lookups ------------------------------------------------------------------------------------

    async def ensure_project(self, project_id: int) -> None:
        """404 unless the project is live and of this organization."""
        if not await self.repo.project_exists(project_id):
            raise ProjectNotFound()

    async def get_of_project(
        self, project_id: int, support_id: int, *, for_update: bool = False
    ) -> SupportMeasure:
        """The measure, if it belongs to this live project of the organization (else 404)."""
        await self.ensure_project(project_id)
        measure = await self.repo.get(support_id, for_update=for_update)
        if measure is None or measure.project_id != project_id:
            raise SupportNotFound()
        return measure

    async def get_live(self, support_id: int, *, for_update: bool = False) -> SupportMeasure:
        """The measure addressed alone: of this organization and on a live project (else 404)."""
        measure = await self.repo.get(support_id, for_update=for_update)
        if measure is None or not await self.repo.project_exists(measure.project_id):
            raise SupportNotFound()
        return measure

    async def _check_dictionary(self, values: dict[str, Any], existing: SupportMeasure | None) -> None:
        """`program_id` and `provider_id` must be rows of the organization's dictionaries."""
        refs: list[tuple[str, type[TenantRecord]]] = [
            ("program_id", SupportProgram),
            ("provider_id", SupportProvider),
        ]
        for field, model in refs:
            ref = values.get(field)
            if ref is None or (existing is not None and getattr(existing, field) == ref):
                continue
            found = await self.db.scalar(
                select(model.id).where(model.id == ref, model.organization_id == self.tenant.organization_id)
            )
            if found is None:
                raise InvalidReference(
                    f"{field}: no such record in this organization",
                    errors=[{"loc": ["body", field], "msg": "not found", "type": "invalid_reference"}],
                )

    # Measures -----------------------------------------------------------------------------------

    async def list(self, project_id: int, limit: int, offset: int) -> tuple[Sequence[SupportMeasure], int]:
        await self.ensure_project(project_id)
        return await self.repo.of_project(project_id, limit, offset)

    async def create(self, project_id: int, data: SupportCreate) -> SupportMeasure:
        await self.ensure_project(project_id)
        values = data.model_dump()
        values["unit"] = check_unit(values["type"], values["unit"], unit_sent=True)
        check_dates(values["date_start"], values["date_end"])
        await self._check_dictionary(values, None)
        measure = SupportMeasure(
            organization_id=self.tenant.organization_id,
            project_id=project_id,
            status=INITIAL_STATUS,
            **values,
        )
        return await self.insert(measure, CREATED_FIELDS)

    async def update(
        self, project_id: int, support_id: int, data: SupportUpdate, if_match: str | None
    ) -> SupportMeasure:
        measure = await self.get_of_project(project_id, support_id, for_update=True)
        values = data.model_dump(exclude_unset=True)
        for field in ("type", "unit"):
            if field in values and values[field] is None:
                raise invalid_field(field, "may not be null", "missing")
        if "status" in values:
            if values["status"] is None:
                raise invalid_field("status", "may not be null", "missing")
            await SUPPORT_STATUSES.check(measure.status, values["status"], self.tenant)
        support_type = values.get("type", measure.type)
        if "unit" in values or "type" in values:
            # A new type with no unit sent keeps the unit if it still fits, else takes the type's only one.
            unit = values.get("unit", measure.unit)
            if "unit" not in values and unit not in UNITS_BY_TYPE[support_type]:
                unit = None
            values["unit"] = check_unit(support_type, unit, unit_sent="unit" in values)
        check_dates(values.get("date_start", measure.date_start), values.get("date_end", measure.date_end))
        await self._check_dictionary(values, measure)
        await self.write(measure, values, if_match, payload={"project_id": project_id})
        return measure

    async def delete(self, project_id: int, support_id: int) -> None:
        """Measures are deleted for real, their decisions with them; the activity keeps the values."""
        measure = await self.get_of_project(project_id, support_id, for_update=True)
        await self.hard_delete(measure, CREATED_FIELDS)

    # Decisions ----------------------------------------------------------------------------------

    async def list_decisions(
        self, support_id: int, limit: int, offset: int
    ) -> tuple[Sequence[SupportDecision], int]:
        return await self.decisions.of_support(support_id, limit, offset)

    async def get_decision(self, support_id: int, decision_id: int) -> SupportDecision:
        decision = await self.decisions.get_of_support(support_id, decision_id)
        if decision is None:
            raise DecisionNotFound()
        return decision

    async def decide(self, measure: SupportMeasure, data: DecisionCreate) -> SupportDecision:
        """Record a decision; it moves the measure by `SUPPORT_STATUSES` (a provided one takes none)."""
        new_status = STATUS_BY_RESULT[data.result]
        await SUPPORT_STATUSES.check(measure.status, new_status, self.tenant)
        decision = SupportDecision(
            organization_id=self.tenant.organization_id,
            support_id=measure.id,
            decided_by=self.tenant.user_id,
            **data.model_dump(),
        )
        self.db.add(decision)
        status_change: list[str] | None = None
        if measure.status != new_status:
            status_change = [measure.status, new_status]
            measure.status = new_status
            measure.version += 1
            measure.updated_at = datetime.now(UTC)
        await self.db.flush()
        fields = [
            "support_id",
            "decision_type",
            "decision_date",
            "protocol_number",
            "result",
            "text",
            "decided_by",
        ]
        changes = {
            f: [None, jsonable(getattr(decision, f))] for f in fields if getattr(decision, f) is not None
        }
        payload: dict[str, Any] = {"project_id": measure.project_id}
        if status_change is not None:
            payload["support_status"] = status_change
        self.activities.record("decision", decision.id, "created", changes, payload)
        emit(
            self.db,
            self.tenant.organization_id,
            "support.decided",
            entity_type="support",
            entity_id=measure.id,
            actor_id=self.tenant.user_id,
            data={"id": measure.id, "decision_id": decision.id, "changes": changes, **payload},
        )
        self.changed()
        return decision

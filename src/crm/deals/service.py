"""Deals: what the organization sells, moving through a pipeline's stages (SPEC §6, §18, §19.4, §19.6).

Every stage change (pipeline changes included) and every status change writes a `deal_history` row.
Stage rows are stays: the deal enters `to_value` at the row's `created_at` and leaves it at its next
stage row; creating a deal writes its first stage row (`from_value` null). The funnel is computed
from them, so these semantics are a contract with analytics.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from crm.core.concurrency import check_version
from crm.deals.repository import DealFilters, DealHistoryRepository, DealRepository
from crm.deals.schemas import DealCreate, DealReplace, DealStageMove, DealStatusMove, DealUpdate
from crm.deals.transitions import DEAL_STAGES, DEAL_STATUSES, INITIAL_STATUS, StageMove
from crm.models import Deal, DealHistory, Organization
from crm.pipelines.service import DEFAULT_CURRENCY, PipelineService
from crm.records.fields import check_custom_fields, patch_values
from crm.records.service import RecordService

CREATED_FIELDS = [
    "title",
    "amount",
    "currency",
    "contact_id",
    "company_id",
    "owner_id",
    "pipeline_id",
    "stage",
    "status",
    "expected_close_date",
    "closed_at",
    "lost_reason",
    "custom_fields",
    "notes",
    "source",
]
#: Fields a PATCH may not set to null.
NOT_NULL = ("title", "amount", "currency", "pipeline_id", "stage", "status")
#: PUT keeps these when they are omitted (a deal always has a place and a status).
KEPT_WHEN_OMITTED = ("pipeline_id", "stage", "status")


class DealService(RecordService[Deal]):
    entity_type = "deal"
    repository_class = DealRepository
    repo: DealRepository

    @property
    def pipelines(self) -> PipelineService:
        return PipelineService(self.db, self.tenant, self.redis)

    # Reads ---------------------------------------------------------------------------------------

    async def list(
        self, filters: DealFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Deal], int]:
        return await self.repo.list(filters, sort, limit, offset)

    async def history(self, deal_id: int, limit: int, offset: int) -> tuple[Sequence[DealHistory], int]:
        await self.get(deal_id)
        history = DealHistoryRepository(self.db, self.tenant.organization_id)
        return await history.of_deal(deal_id, limit, offset)

    # Writes --------------------------------------------------------------------------------------

    async def create(self, data: DealCreate) -> Deal:
        values = self.owned_by_creator(data)
        await self._check_refs(values)
        place = await self.pipelines.new_deal_place(values["pipeline_id"], values["stage"])
        pipeline_id, stage, currency = place
        values.update(pipeline_id=pipeline_id, stage=stage, status=values["status"] or INITIAL_STATUS)
        if values["currency"] is None:
            values["currency"] = currency
        DEAL_STATUSES.settle(None, values)
        await check_custom_fields(
            self.db, self.tenant.organization_id, "deal", values, None, partial=False, redis=self.redis
        )
        deal = Deal(organization_id=self.tenant.organization_id, source="manual", **values)
        await self.insert(deal, CREATED_FIELDS)
        self._history(deal, "stage", None, deal.stage, at=deal.created_at)
        await self.db.flush()
        return deal

    async def replace(self, deal_id: int, data: DealReplace, if_match: str | None) -> Deal:
        deal = await self.get_for_update(deal_id)
        check_version(deal.version, if_match)
        values = data.model_dump()
        for field in KEPT_WHEN_OMITTED:
            if values[field] is None:
                del values[field]
        if values["currency"] is None:
            values["currency"] = await self._org_currency()
        return await self._change(deal, values, if_match, partial=False)

    async def update(self, deal_id: int, data: DealUpdate, if_match: str | None) -> Deal:
        deal = await self.get_for_update(deal_id)
        check_version(deal.version, if_match)
        values = patch_values(data, required=NOT_NULL, lists=())
        return await self._change(deal, values, if_match, partial=True)

    async def move_stage(self, deal_id: int, data: DealStageMove, if_match: str | None) -> Deal:
        deal = await self.get_for_update(deal_id)
        check_version(deal.version, if_match)
        return await self._change(deal, {"stage": data.stage}, if_match, partial=True)

    async def set_status(self, deal_id: int, data: DealStatusMove, if_match: str | None) -> Deal:
        deal = await self.get_for_update(deal_id)
        check_version(deal.version, if_match)
        return await self._change(deal, data.model_dump(exclude_unset=True), if_match, partial=True)

    async def delete(self, deal_id: int) -> None:
        await self.soft_delete(await self.get_for_update(deal_id))

    # Rules ---------------------------------------------------------------------------------------

    async def _change(
        self, deal: Deal, values: dict[str, Any], if_match: str | None, *, partial: bool
    ) -> Deal:
        """Validate `values` against the deal's rules, apply them and log what changed:
        one activity (`stage_changed`, `status_changed` or `updated`) and a history row per move."""
        await self._check_refs(values)
        await self._place(deal, values)
        if values.get("status", deal.status) != deal.status:
            await DEAL_STATUSES.check(deal.status, values["status"], self.tenant)
        DEAL_STATUSES.settle(_stored(deal), values)
        await check_custom_fields(
            self.db,
            self.tenant.organization_id,
            "deal",
            values,
            deal.custom_fields,
            partial=partial,
            redis=self.redis,
        )

        old_pipeline, old_stage, old_status = deal.pipeline_id, deal.stage, deal.status
        moved = values.get("pipeline_id", old_pipeline) != old_pipeline
        moved = moved or values.get("stage", old_stage) != old_stage
        status_changed = values.get("status", old_status) != old_status
        action = "stage_changed" if moved else "status_changed" if status_changed else "updated"
        await self.write(deal, values, if_match, action=action)
        if moved:
            history = DealHistoryRepository(self.db, self.tenant.organization_id)
            await history.close_stay(deal.id, deal.updated_at)
            self._history(deal, "stage", old_stage, deal.stage, at=deal.updated_at)
        if status_changed:
            self._history(deal, "status", old_status, deal.status, at=deal.updated_at)
        await self.db.flush()
        return deal

    async def _check_refs(self, values: dict[str, Any]) -> None:
        await self.check_refs(
            contact_id=values.get("contact_id"),
            company_id=values.get("company_id"),
            user_ids={"owner_id": values.get("owner_id")},
        )

    async def _place(self, deal: Deal, values: dict[str, Any]) -> None:
        """Resolve `pipeline_id`/`stage` of an update: a stage of the (new) pipeline that is not archived;
        a move within the pipeline goes by `DEAL_STAGES`. Unchanged ones are left out of `values`."""
        pipeline_id = values.get("pipeline_id", deal.pipeline_id)
        key = values.get("stage")
        if pipeline_id != deal.pipeline_id:
            pipeline = await self.pipelines.for_deal(pipeline_id)
            stage = await self.pipelines.stage_for_deal(pipeline.id, key)
        elif key is not None and key != deal.stage:
            stage = await self.pipelines.stage_for_deal(deal.pipeline_id, key)
            current = await self.pipelines.stage_position(deal.pipeline_id, deal.stage)
            move = StageMove(current, stage.position, self.tenant.permissions)
            await DEAL_STAGES.check(deal.stage, stage.key, move)
        else:
            values.pop("pipeline_id", None)
            values.pop("stage", None)
            return
        values["pipeline_id"], values["stage"] = pipeline_id, stage.key

    async def _org_currency(self) -> str:
        currency = await self.db.scalar(
            select(Organization.currency).where(Organization.id == self.tenant.organization_id)
        )
        return currency or DEFAULT_CURRENCY

    def _history(
        self, deal: Deal, field: str, from_value: str | None, to_value: str, *, at: datetime
    ) -> None:
        """A `deal_history` row, stamped with the write's own time (`created_at`/`updated_at` of the deal)."""
        self.db.add(
            DealHistory(
                organization_id=self.tenant.organization_id,
                deal_id=deal.id,
                pipeline_id=deal.pipeline_id,
                field=field,
                from_value=from_value,
                to_value=to_value,
                actor_id=self.tenant.user_id,
                created_at=at,
            )
        )


def _stored(deal: Deal) -> dict[str, Any]:
    """The stored values the status rules look at."""
    return {
        "status": deal.status,
        "lost_reason": deal.lost_reason,
        "amount": deal.amount,
        "closed_at": deal.closed_at,
    }

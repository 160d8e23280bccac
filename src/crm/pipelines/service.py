"""Pipelines and their stages (SPEC §6): stages are data, ordered by `position`.

Every organization has exactly one default pipeline (partial unique index `uq_pipeline_org_default`).
It is made with the organization and, for organizations that predate that (or were made directly in
the database), on first need by `ensure_default_pipeline`, which is safe under concurrency.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from crm.activities.service import jsonable
from crm.core.concurrency import check_version
from crm.core.errors import UnprocessableEntity
from crm.models import Pipeline, PipelineStage
from crm.pipelines.exceptions import (
    DefaultPipelineChanged,
    InvalidStage,
    PipelineHasNoStages,
    PipelineInUse,
    PipelineIsDefault,
    PositionOutOfRange,
    StageInUse,
    StageKeyTaken,
    StageNotFound,
    TooManyStages,
)
from crm.pipelines.repository import PipelineRepository, StageRepository
from crm.pipelines.schemas import MAX_STAGES, PipelineCreate, PipelineUpdate, StageCreate, StageUpdate
from crm.records.service import InvalidReference, RecordService, UniqueErrors

DEFAULT_PIPELINE_NAME = "Sales"
#: A deal's currency when neither the deal nor its organization names one.
DEFAULT_CURRENCY = "RUB"
DEFAULT_STAGES: tuple[tuple[str, str], ...] = (
    ("lead", "Lead"),
    ("qualification", "Qualification"),
    ("proposal", "Proposal"),
    ("negotiation", "Negotiation"),
)

PipelineWithStages = tuple[Pipeline, Sequence[PipelineStage]]
#: An activity's `changes`: field → [old, new].
Changes = dict[str, list[Any]]


async def ensure_default_pipeline(db: AsyncSession, organization_id: int) -> Pipeline:
    """The organization's default pipeline, created with the standard sales stages when missing."""
    pipelines = PipelineRepository(db, organization_id)
    existing = await pipelines.default()
    if existing is not None:
        return existing
    pipeline_id = await pipelines.insert_default(DEFAULT_PIPELINE_NAME)
    if pipeline_id is not None:
        db.add_all(
            PipelineStage(
                organization_id=organization_id, pipeline_id=pipeline_id, key=key, name=name, position=i
            )
            for i, (key, name) in enumerate(DEFAULT_STAGES)
        )
        await db.flush()
    created = await pipelines.default()
    assert created is not None  # inserted here, or by the concurrent caller we waited for
    return created


def _not_null(values: dict[str, Any], *fields: str) -> None:
    for field in fields:
        if field in values and values[field] is None:
            raise UnprocessableEntity(
                f"{field} cannot be null",
                errors=[{"loc": ["body", field], "msg": "cannot be null", "type": "missing"}],
            )


def _stage_state(stage: PipelineStage) -> dict[str, Any]:
    return {"name": stage.name, "position": stage.position, "is_archived": stage.is_archived}


class PipelineService(RecordService[Pipeline]):
    entity_type = "pipeline"
    repository_class = PipelineRepository
    unique_errors: ClassVar[UniqueErrors] = {
        "uq_pipeline_stage_pipeline_id_key": StageKeyTaken,
        "uq_pipeline_org_default": DefaultPipelineChanged,
    }
    repo: PipelineRepository

    @property
    def stages(self) -> StageRepository:
        return StageRepository(self.db, self.tenant.organization_id)

    # Reads ---------------------------------------------------------------------------------------

    async def default(self) -> Pipeline:
        return await ensure_default_pipeline(self.db, self.tenant.organization_id)

    async def list(
        self, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[PipelineWithStages], int]:
        await self.default()
        rows, total = await self.repo.list(sort, limit, offset)
        stages = await self.stages.of_pipelines([p.id for p in rows])
        return [(p, stages[p.id]) for p in rows], total

    async def read(self, pipeline_id: int) -> PipelineWithStages:
        pipeline = await self.get(pipeline_id)
        return pipeline, await self.stages.of_pipeline(pipeline.id)

    # For deals -----------------------------------------------------------------------------------

    async def for_deal(self, pipeline_id: int | None) -> Pipeline:
        """The pipeline a deal goes into: the given one (422 when it is not this organization's)
        or the default."""
        if pipeline_id is None:
            return await self.default()
        pipeline = await self.repo.get(pipeline_id)
        if pipeline is None:
            raise InvalidReference(
                "pipeline_id: no such pipeline in this organization",
                errors=[{"loc": ["body", "pipeline_id"], "msg": "not found", "type": "invalid_reference"}],
            )
        return pipeline

    async def new_deal_place(self, pipeline_id: int | None, key: str | None) -> tuple[int, str, str]:
        """A new deal's pipeline id, live stage key and default currency (the organization's), read
        in one statement (see `for_deal` and `stage_for_deal`, whose errors it gives)."""
        place = await self.stages.placement(pipeline_id, key)
        if place.pipeline_id is None:
            if pipeline_id is not None:
                await self.for_deal(pipeline_id)  # 422: not this organization's
            pipeline = await self.default()  # made now, for an organization that had none
            stage = await self.stage_for_deal(pipeline.id, key)
            return pipeline.id, stage.key, place.currency or DEFAULT_CURRENCY
        if place.stage is None or place.stage_archived:
            await self.stage_for_deal(place.pipeline_id, key)  # raises: no such stage, or archived
        assert place.stage is not None
        return place.pipeline_id, place.stage, place.currency or DEFAULT_CURRENCY

    async def stage_for_deal(self, pipeline_id: int, key: str | None) -> PipelineStage:
        """A live (non-archived) stage of the pipeline (its first when `key` is None), share-locked so
        that it cannot be archived or removed before the deal is stored."""
        if key is None:
            stage = await self.stages.first_active(pipeline_id, lock=True)
            if stage is None:
                raise PipelineHasNoStages("The pipeline has no active stages; add one first")
            return stage
        stage = await self.stages.by_key(pipeline_id, key, lock="share")
        if stage is None:
            raise InvalidStage(f"stage: {key!r} is not a stage of pipeline {pipeline_id}")
        if stage.is_archived:
            raise InvalidStage(f"stage: {key!r} is archived")
        return stage

    async def stage_position(self, pipeline_id: int, key: str) -> int | None:
        stage = await self.stages.by_key(pipeline_id, key)
        return None if stage is None else stage.position

    # Pipeline writes -----------------------------------------------------------------------------

    async def create(self, data: PipelineCreate) -> PipelineWithStages:
        if data.is_default:
            await self._drop_default()
        pipeline = Pipeline(
            organization_id=self.tenant.organization_id, name=data.name, is_default=data.is_default
        )
        self.repo.add(pipeline)
        await self.flush_unique()
        stages = [
            PipelineStage(
                organization_id=self.tenant.organization_id,
                pipeline_id=pipeline.id,
                key=s.key,
                name=s.name,
                position=i,
            )
            for i, s in enumerate(data.stages)
        ]
        self.db.add_all(stages)
        await self.db.flush()
        changes: Changes = {
            "name": [None, pipeline.name],
            "is_default": [None, pipeline.is_default],
        }
        if stages:
            changes["stages"] = [None, [s.key for s in stages]]
        self.activities.record(self.entity_type, pipeline.id, "created", changes)
        self.changed()
        return pipeline, stages

    async def _drop_default(self) -> None:
        """Unset the current default (callers then set the new one in the same transaction)."""
        await self.repo.lock_all()
        current = await self.repo.default()
        if current is not None:
            await self.write(current, {"is_default": False}, None)

    async def update(
        self, pipeline_id: int, data: PipelineUpdate, if_match: str | None
    ) -> PipelineWithStages:
        values = data.model_dump(exclude_unset=True)
        make_default = values.pop("is_default", None)
        if make_default:
            # Every default switch locks the organization's pipelines in id order, before anything else.
            await self.repo.lock_all()
        pipeline = await self._lock(pipeline_id)
        check_version(pipeline.version, if_match)
        _not_null(values, "name")
        if make_default is False and pipeline.is_default:
            raise PipelineIsDefault("Make another pipeline the default instead of unsetting this one")
        if make_default and not pipeline.is_default:
            await self._drop_default()
            values["is_default"] = True
        await self.write(pipeline, values, if_match)
        return pipeline, await self.stages.of_pipeline(pipeline.id)

    async def delete(self, pipeline_id: int) -> None:
        # Stages first, then the pipeline: the order a deal being stored takes them in (its stage
        # `FOR SHARE`, then the pipeline through its foreign key), so the two wait instead of deadlocking.
        await self.stages.lock_of_pipeline(pipeline_id)
        pipeline = await self.get_for_update(pipeline_id)
        if pipeline.is_default:
            raise PipelineIsDefault(
                "The default pipeline cannot be deleted; make another one the default first"
            )
        if await self.repo.has_deals(pipeline.id):
            raise PipelineInUse("Deals (deleted ones included) still use this pipeline; move them first")
        await self.hard_delete(pipeline, ["name"])

    # Stage writes --------------------------------------------------------------------------------

    async def _locked(self, pipeline_id: int, if_match: str | None) -> PipelineWithStages:
        """The pipeline row locked (stage edits of one pipeline run one at a time), version checked."""
        pipeline = await self._lock(pipeline_id)
        check_version(pipeline.version, if_match)
        return pipeline, await self.stages.of_pipeline(pipeline.id)

    async def _lock(self, pipeline_id: int) -> Pipeline:
        pipeline = await self.repo.lock(pipeline_id)
        if pipeline is None:
            raise self.not_found
        return pipeline

    def _touched(self, pipeline: Pipeline, key: str, op: str, changes: Changes) -> None:
        """A stage change is a change of the pipeline's representation: new version, one activity
        with `changes` keyed `stages.<key>` (added/removed) or `stages.<key>.<field>`."""
        pipeline.version += 1
        pipeline.updated_at = datetime.now(UTC)
        self.activities.record(
            self.entity_type, pipeline.id, "updated", jsonable(changes), {"stage": key, "op": op}
        )
        self.changed()

    @staticmethod
    def _renumber(stages: Sequence[PipelineStage]) -> None:
        for i, stage in enumerate(stages):
            if stage.position != i:
                stage.position = i

    async def add_stage(
        self, pipeline_id: int, data: StageCreate, if_match: str | None
    ) -> PipelineWithStages:
        pipeline, stages = await self._locked(pipeline_id, if_match)
        if any(s.key == data.key for s in stages):
            raise StageKeyTaken(data.key)
        if len(stages) >= MAX_STAGES:
            raise TooManyStages(f"A pipeline has at most {MAX_STAGES} stages")
        position = len(stages) if data.position is None else data.position
        if position > len(stages):
            raise PositionOutOfRange(len(stages))
        stage = PipelineStage(
            organization_id=self.tenant.organization_id,
            pipeline_id=pipeline.id,
            key=data.key,
            name=data.name,
            position=position,
        )
        ordered = [*stages[:position], stage, *stages[position:]]
        self._renumber(ordered)
        self.db.add(stage)
        await self.flush_unique()
        self._touched(pipeline, stage.key, "added", {f"stages.{stage.key}": [None, _stage_state(stage)]})
        await self.db.flush()
        return pipeline, ordered

    async def update_stage(
        self, pipeline_id: int, key: str, data: StageUpdate, if_match: str | None
    ) -> PipelineWithStages:
        pipeline, stages = await self._locked(pipeline_id, if_match)
        stage = next((s for s in stages if s.key == key), None)
        if stage is None:
            raise StageNotFound()
        values = data.model_dump(exclude_unset=True)
        _not_null(values, "name", "position", "is_archived")
        before = _stage_state(stage)
        if values.get("is_archived") and not stage.is_archived:
            await self.stages.by_key(pipeline.id, key, lock="update")  # no deal may enter it meanwhile
            in_use = await self.stages.deals_in(pipeline.id, key, include_deleted=False)
            if in_use:
                raise StageInUse(f"{in_use} live deal(s) are in stage {key!r}; move them first")
        ordered = stages
        if "position" in values and values["position"] != stage.position:
            if values["position"] > len(stages) - 1:
                raise PositionOutOfRange(len(stages) - 1)
            rest = [s for s in stages if s is not stage]
            ordered = [*rest[: values["position"]], stage, *rest[values["position"] :]]
            self._renumber(ordered)
        if "name" in values:
            stage.name = values["name"]
        if "is_archived" in values:
            stage.is_archived = values["is_archived"]
        after = _stage_state(stage)
        changes = {f: [before[f], after[f]] for f in before if before[f] != after[f]}
        if changes:
            stage.updated_at = datetime.now(UTC)
            self._touched(pipeline, key, "updated", {f"stages.{key}.{f}": v for f, v in changes.items()})
            await self.db.flush()
        return pipeline, ordered

    async def remove_stage(self, pipeline_id: int, key: str, if_match: str | None) -> None:
        pipeline, stages = await self._locked(pipeline_id, if_match)
        stage = next((s for s in stages if s.key == key), None)
        if stage is None:
            raise StageNotFound()
        await self.stages.by_key(pipeline.id, key, lock="update")
        in_use = await self.stages.deals_in(pipeline.id, key, include_deleted=True)
        if in_use:
            raise StageInUse(
                f"{in_use} deal(s), deleted ones included, are in stage {key!r}; move them first"
            )
        await self.db.delete(stage)
        self._renumber([s for s in stages if s is not stage])
        self._touched(pipeline, key, "removed", {f"stages.{key}": [_stage_state(stage), None]})
        await self.db.flush()

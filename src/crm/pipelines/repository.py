from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import func, select, text, true
from sqlalchemy.dialects.postgresql import insert

from crm.core.models import utcnow
from crm.core.repository import TenantRepository, order_by_sort
from crm.models import Deal, Organization, Pipeline, PipelineStage

SORTS = {"created_at": Pipeline.created_at, "name": Pipeline.name}


class Placement(NamedTuple):
    """`StageRepository.placement`: None for each part that is missing."""

    currency: str | None
    pipeline_id: int | None
    stage: str | None
    stage_archived: bool | None


class PipelineRepository(TenantRepository[Pipeline]):
    model = Pipeline

    async def list(self, sort: str | None, limit: int, offset: int) -> tuple[Sequence[Pipeline], int]:
        return await self.page(self.base(), order_by_sort(sort, SORTS, Pipeline.id), limit, offset)

    async def default(self, *, for_update: bool = False) -> Pipeline | None:
        stmt = self.base().where(Pipeline.is_default.is_(True))
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def insert_default(self, name: str) -> int | None:
        """Insert the default pipeline unless the organization has one (then None).

        `ON CONFLICT` on the partial unique index `uq_pipeline_org_default` makes concurrent callers
        wait for each other instead of failing: the loser does nothing and reads the winner's row."""
        now = utcnow()  # like rows made through the ORM (not the transaction's start time)
        stmt = (
            insert(Pipeline)
            .values(
                organization_id=self.organization_id,
                name=name,
                is_default=True,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["organization_id"], index_where=text("is_default"))
            .returning(Pipeline.id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def lock(self, pipeline_id: int) -> Pipeline | None:
        """The pipeline, locked against other edits of it. `FOR NO KEY UPDATE`: deals being stored
        meanwhile (their foreign key takes `KEY SHARE`) are not blocked, so no deadlock with them."""
        stmt = self.base().where(Pipeline.id == pipeline_id).with_for_update(key_share=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def lock_all(self) -> None:
        """Lock every pipeline of the organization, always in id order (switching the default
        touches two of them)."""
        stmt = (
            self.base().with_only_columns(Pipeline.id).order_by(Pipeline.id).with_for_update(key_share=True)
        )
        await self.session.execute(stmt)

    async def has_deals(self, pipeline_id: int) -> bool:
        """Any deal, deleted ones included: they can be restored and still reference the pipeline."""
        stmt = select(Deal.id).where(
            Deal.organization_id == self.organization_id, Deal.pipeline_id == pipeline_id
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None


class StageRepository(TenantRepository[PipelineStage]):
    model = PipelineStage

    async def of_pipeline(self, pipeline_id: int) -> list[PipelineStage]:
        stmt = self.base().where(PipelineStage.pipeline_id == pipeline_id)
        rows = await self.session.execute(stmt.order_by(PipelineStage.position, PipelineStage.id))
        return list(rows.scalars().all())

    async def lock_of_pipeline(self, pipeline_id: int) -> None:
        """Lock every stage of a pipeline (deals storing into one of them hold it `FOR SHARE`)."""
        stmt = (
            self.base()
            .where(PipelineStage.pipeline_id == pipeline_id)
            .with_only_columns(PipelineStage.id)
            .order_by(PipelineStage.id)
            .with_for_update()
        )
        await self.session.execute(stmt)

    async def of_pipelines(self, pipeline_ids: Sequence[int]) -> dict[int, list[PipelineStage]]:
        out: dict[int, list[PipelineStage]] = {pid: [] for pid in pipeline_ids}
        if not pipeline_ids:
            return out
        stmt = self.base().where(PipelineStage.pipeline_id.in_(pipeline_ids))
        rows = await self.session.execute(stmt.order_by(PipelineStage.position, PipelineStage.id))
        for stage in rows.scalars():
            out[stage.pipeline_id].append(stage)
        return out

    async def by_key(self, pipeline_id: int, key: str, *, lock: str | None = None) -> PipelineStage | None:
        """One stage; `lock="share"` keeps it from being archived or removed until we commit,
        `lock="update"` keeps deals from moving into it."""
        stmt = self.base().where(PipelineStage.pipeline_id == pipeline_id, PipelineStage.key == key)
        if lock == "share":
            stmt = stmt.with_for_update(read=True)
        elif lock == "update":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def placement(self, pipeline_id: int | None, key: str | None) -> Placement:
        """Where a new deal goes, in one statement: the pipeline (the given one of this
        organization, else its default), the stage (the given key, else the first live one,
        share-locked as `by_key`/`first_active` lock it) and the organization's currency. Each part
        is None when missing; the stage comes with `is_archived`."""
        pipeline = select(Pipeline.id).where(Pipeline.organization_id == self.organization_id)
        if pipeline_id is None:
            pipeline = pipeline.where(Pipeline.is_default.is_(True))
        else:
            pipeline = pipeline.where(Pipeline.id == pipeline_id)
        found = pipeline.subquery("p")
        stage = select(PipelineStage.key, PipelineStage.is_archived).where(
            PipelineStage.organization_id == self.organization_id, PipelineStage.pipeline_id == found.c.id
        )
        if key is None:
            stage = stage.where(PipelineStage.is_archived.is_(False))
        else:
            stage = stage.where(PipelineStage.key == key)
        live = (
            stage.order_by(PipelineStage.position, PipelineStage.id)
            .limit(1)
            .with_for_update(read=True)
            .lateral("s")
        )
        stmt = (
            select(Organization.currency, found.c.id, live.c.key, live.c.is_archived)
            .select_from(Organization)
            .outerjoin(found, true())
            .outerjoin(live, true())
            .where(Organization.id == self.organization_id)
        )
        row = (await self.session.execute(stmt)).one()
        return Placement(*row)

    async def first_active(self, pipeline_id: int, *, lock: bool = False) -> PipelineStage | None:
        stmt = (
            self.base()
            .where(PipelineStage.pipeline_id == pipeline_id, PipelineStage.is_archived.is_(False))
            .order_by(PipelineStage.position, PipelineStage.id)
            .limit(1)
        )
        if lock:
            stmt = stmt.with_for_update(read=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def deals_in(self, pipeline_id: int, key: str, *, include_deleted: bool) -> int:
        stmt = (
            select(func.count())
            .select_from(Deal)
            .where(
                Deal.organization_id == self.organization_id,
                Deal.pipeline_id == pipeline_id,
                Deal.stage == key,
            )
        )
        if not include_deleted:
            stmt = stmt.where(Deal.deleted_at.is_(None))
        return int(await self.session.scalar(stmt) or 0)

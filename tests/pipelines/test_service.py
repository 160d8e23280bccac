"""`ensure_default_pipeline`: every organization has exactly one default sales pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.deals.schemas import DealCreate
from crm.deals.service import DealService
from crm.models import Pipeline, PipelineStage
from crm.organizations.dependencies import Tenant
from crm.organizations.permissions import permissions_for
from crm.pipelines.exceptions import PipelineInUse, StageInUse
from crm.pipelines.schemas import PipelineCreate, PipelineUpdate, StageIn, StageUpdate
from crm.pipelines.service import PipelineService, ensure_default_pipeline
from tests.deals.support import DEFAULT_KEYS, stored_pipelines, stored_stages
from tests.factories import Factory, add_member, make_org, make_user


class TestEnsureDefaultPipeline:
    async def test_an_organization_created_over_the_api_gets_it_at_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.actor("member")

        response = await client.post("/api/v1/organizations", json={"name": "Fresh"}, headers=user.auth)

        assert response.status_code == 201, response.text
        (pipeline,) = await stored_pipelines(db, response.json()["id"])
        assert pipeline.is_default
        assert pipeline.name == "Sales"
        assert await stored_stages(db, pipeline.id) == [
            ("lead", "Lead", 0, False),
            ("qualification", "Qualification", 1, False),
            ("proposal", "Proposal", 2, False),
            ("negotiation", "Negotiation", 3, False),
        ]

    async def test_it_is_made_once_and_then_returned(self, factory: Factory, db: AsyncSession) -> None:
        org = await factory.org()

        first = await ensure_default_pipeline(db, org.id)
        second = await ensure_default_pipeline(db, org.id)

        assert first.id == second.id
        assert [p.id for p in await stored_pipelines(db, org.id)] == [first.id]
        assert [s[0] for s in await stored_stages(db, first.id)] == DEFAULT_KEYS

    async def test_an_existing_default_is_kept_as_it_is(self, factory: Factory, db: AsyncSession) -> None:
        org = await factory.org()
        own = Pipeline(organization_id=org.id, name="Own", is_default=True)
        db.add(own)
        await db.flush()

        found = await ensure_default_pipeline(db, org.id)

        assert found.id == own.id
        assert await stored_stages(db, own.id) == []

    async def test_each_organization_gets_its_own(self, factory: Factory, db: AsyncSession) -> None:
        a, b = await factory.org(), await factory.org()

        pa, pb = await ensure_default_pipeline(db, a.id), await ensure_default_pipeline(db, b.id)

        assert pa.id != pb.id
        assert (pa.organization_id, pb.organization_id) == (a.id, b.id)

    @pytest.mark.committing
    async def test_concurrent_callers_make_one_default(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        maker = app.state.sessionmaker
        async with maker() as session:
            org = await make_org(session)
            await session.commit()

        async with maker() as first, maker() as second:
            made = await ensure_default_pipeline(first, org.id)  # inserted, not committed yet
            racing = asyncio.create_task(ensure_default_pipeline(second, org.id))
            await asyncio.sleep(0.3)
            assert not racing.done(), "the second caller must wait on the partial unique index"
            await first.commit()
            found = await racing
            await second.commit()

        assert found.id == made.id
        async with maker() as session:
            pipelines = await session.scalar(
                select(func.count()).select_from(Pipeline).where(Pipeline.organization_id == org.id)
            )
            stages = await session.scalar(
                select(func.count()).select_from(PipelineStage).where(PipelineStage.organization_id == org.id)
            )
            assert (pipelines, stages) == (1, 4)


def tenant_of(organization_id: int, user_id: int, role: str = "owner") -> Tenant:
    return Tenant(organization_id, permissions_for(role), user_id=user_id, role=role)


@pytest.mark.committing
class TestStagesUnderConcurrency:
    """A deal being stored holds its stage `FOR SHARE`; archiving or removing waits for it and then
    sees the deal (409), and neither side deadlocks on the pipeline row."""

    async def _setup(self, app: Any) -> tuple[Tenant, int]:
        async with app.state.sessionmaker() as session:
            org = await make_org(session)
            user = await make_user(session)
            await add_member(session, org, user, "owner")
            pipeline = await ensure_default_pipeline(session, org.id)
            await session.commit()
        return tenant_of(org.id, user.id), pipeline.id

    async def test_archiving_waits_for_a_deal_entering_the_stage(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        tenant, pipeline_id = await self._setup(app)
        maker, redis = app.state.sessionmaker, app.state.redis

        async with maker() as first, maker() as second:
            deals = DealService(first, tenant, redis)
            await deals.pipelines.stage_for_deal(pipeline_id, "proposal")  # the deal's stage, share-locked
            racing = asyncio.create_task(
                PipelineService(second, tenant, redis).update_stage(
                    pipeline_id, "proposal", StageUpdate(is_archived=True), None
                )
            )
            await asyncio.sleep(0.3)
            assert not racing.done(), "archiving must wait for the deal that holds the stage"
            # Storing the deal checks its pipeline foreign key while the archiver holds the pipeline
            # row: that must not deadlock.
            await deals.create(DealCreate(title="In flight", stage="proposal"))
            await first.commit()
            with pytest.raises(StageInUse):
                await racing
            await second.rollback()

    async def test_deleting_a_pipeline_waits_for_a_deal_entering_it(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        tenant, _default = await self._setup(app)
        maker, redis = app.state.sessionmaker, app.state.redis
        async with maker() as session:
            other, _stages = await PipelineService(session, tenant, redis).create(
                PipelineCreate(name="Other", stages=[StageIn(key="a", name="A")])
            )
            await session.commit()

        async with maker() as first, maker() as second:
            deals = DealService(first, tenant, redis)
            await deals.pipelines.stage_for_deal(other.id, "a")
            racing = asyncio.create_task(PipelineService(second, tenant, redis).delete(other.id))
            await asyncio.sleep(0.3)
            assert not racing.done(), "deleting must wait for the deal that holds a stage of the pipeline"
            await deals.create(DealCreate(title="In flight", pipeline_id=other.id))  # no deadlock
            await first.commit()
            with pytest.raises(PipelineInUse):
                await racing
            await second.rollback()

    async def test_two_pipelines_made_default_at_once_leave_one_default(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        tenant, default_id = await self._setup(app)
        maker, redis = app.state.sessionmaker, app.state.redis
        async with maker() as session:
            service = PipelineService(session, tenant, redis)
            b, _ = await service.create(PipelineCreate(name="B"))
            c, _ = await service.create(PipelineCreate(name="C"))
            await session.commit()

        async def make_default(pipeline_id: int) -> None:
            async with maker() as session:
                await PipelineService(session, tenant, redis).update(
                    pipeline_id, PipelineUpdate(is_default=True), None
                )
                await session.commit()

        await asyncio.gather(make_default(c.id), make_default(b.id))

        async with maker() as session:
            defaults = (
                (
                    await session.execute(
                        select(Pipeline.id).where(
                            Pipeline.organization_id == tenant.organization_id, Pipeline.is_default
                        )
                    )
                )
                .scalars()
                .all()
            )
            assert len(defaults) == 1
            assert defaults[0] in (b.id, c.id)
            assert default_id not in defaults

"""`/admin/sync/*` over HTTP: start, list, inspect, cancel; permissions and tenancy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import SyncJob
from tests.factories import Factory, add_member, assert_problem, login, make_org, make_user
from tests.sync.conftest import make_integration

BASE = "/api/v1/admin/sync"


async def test_start_answers_202_with_the_queued_job(
    client: AsyncClient, factory: Factory, db: AsyncSession, toy: Path
) -> None:
    admin = await factory.actor("admin")
    assert admin.org_id is not None
    integration = await make_integration(db, admin.org_id)
    integration_id = integration.id
    await db.commit()

    response = await client.post(
        f"{BASE}/start",
        json={"integration_id": integration_id, "entities": ["stock", "products"], "full": True},
        headers=admin.headers,
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["integration_id"] == integration_id
    assert body["status"] == "queued"
    assert body["trigger"] == "manual"
    assert body["entities"] == ["products", "stock"]  # in the provider's order
    assert body["full"] is True
    assert body["counts"] == {}
    assert body["errors"] == []
    assert body["error"] is None
    assert body["started_at"] is None
    assert body["finished_at"] is None
    assert body["created_at"].endswith("Z")
    stored = await db.get(SyncJob, body["id"])
    assert stored is not None
    assert stored.status == "queued"
    assert stored.created_by_id == admin.user.id

    one = await client.get(f"{BASE}/jobs/{body['id']}", headers=admin.headers)
    assert one.status_code == 200
    assert one.json() == body

    second = await client.post(
        f"{BASE}/start", json={"integration_id": integration_id}, headers=admin.headers
    )
    problem = assert_problem(second, 409, "job_already_running")
    assert problem["job_id"] == body["id"]


async def test_unknown_entity_is_422_and_nothing_is_queued(
    client: AsyncClient, factory: Factory, db: AsyncSession, toy: Path
) -> None:
    admin = await factory.actor("admin")
    assert admin.org_id is not None
    integration = await make_integration(db, admin.org_id)
    integration_id = integration.id
    await db.commit()

    response = await client.post(
        f"{BASE}/start",
        json={"integration_id": integration_id, "entities": ["products", "planets"]},
        headers=admin.headers,
    )

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "entities"]
    assert "planets" in body["errors"][0]["msg"]
    assert (await db.scalars(select(SyncJob).where(SyncJob.integration_id == integration_id))).all() == []


async def test_another_organizations_integration_and_jobs_are_404(
    client: AsyncClient, factory: Factory, db: AsyncSession, toy: Path
) -> None:
    admin = await factory.actor("admin")
    other = await factory.actor("owner")
    assert other.org_id is not None
    integration = await make_integration(db, other.org_id)
    integration_id = integration.id
    job = SyncJob(organization_id=other.org_id, integration_id=integration_id, status="queued")
    db.add(job)
    await db.commit()
    job_id = job.id

    started = await client.post(
        f"{BASE}/start", json={"integration_id": integration_id}, headers=admin.headers
    )
    assert_problem(started, 404, "not_found")
    assert_problem(await client.get(f"{BASE}/jobs/{job_id}", headers=admin.headers), 404, "not_found")
    assert_problem(await client.post(f"{BASE}/jobs/{job_id}/cancel", headers=admin.headers), 404, "not_found")
    listed = await client.get(f"{BASE}/jobs", headers=admin.headers)
    assert listed.json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
    db.expire_all()
    assert (await db.get(SyncJob, job_id)).status == "queued"  # type: ignore[union-attr]


async def test_members_and_managers_may_not_run_syncs(
    client: AsyncClient, factory: Factory, db: AsyncSession, toy: Path
) -> None:
    owner = await factory.actor("owner")
    org = owner.org_id
    assert org is not None
    integration = await make_integration(db, org)
    integration_id = integration.id
    job = SyncJob(organization_id=org, integration_id=integration_id, status="queued")
    db.add(job)
    await db.commit()
    for role in ("member", "manager"):
        user = await make_user(db)
        from crm.models import Organization

        await add_member(db, await db.get(Organization, org), user, role)  # type: ignore[arg-type]
        await db.commit()
        actor = await login(client, user, org_id=org)
        assert_problem(
            await client.post(
                f"{BASE}/start", json={"integration_id": integration_id}, headers=actor.headers
            ),
            403,
            "permission_denied",
        )
        assert_problem(await client.get(f"{BASE}/jobs", headers=actor.headers), 403, "permission_denied")
        assert_problem(
            await client.get(f"{BASE}/jobs/{job.id}", headers=actor.headers), 403, "permission_denied"
        )
        assert_problem(
            await client.post(f"{BASE}/jobs/{job.id}/cancel", headers=actor.headers), 403, "permission_denied"
        )
    assert (await client.get(f"{BASE}/jobs")).status_code == 401


async def test_list_filters_and_cancel(
    client: AsyncClient, factory: Factory, db: AsyncSession, toy: Path
) -> None:
    admin = await factory.actor("admin")
    org = admin.org_id
    assert org is not None
    first = await make_integration(db, org)
    second = await make_integration(db, org)
    ids = (first.id, second.id)
    now = datetime.now(UTC)
    done = SyncJob(organization_id=org, integration_id=ids[0], status="succeeded", finished_at=now)
    running = SyncJob(organization_id=org, integration_id=ids[0], status="running", started_at=now)
    queued = SyncJob(organization_id=org, integration_id=ids[1], status="queued")
    db.add_all([done, running, queued])
    await db.commit()
    job_ids = (done.id, running.id, queued.id)

    everything = (await client.get(f"{BASE}/jobs", headers=admin.headers)).json()
    assert everything["total"] == 3
    assert [j["id"] for j in everything["items"]] == sorted(job_ids, reverse=True)
    by_integration = (
        await client.get(f"{BASE}/jobs", params={"integration_id": ids[0]}, headers=admin.headers)
    ).json()
    assert {j["id"] for j in by_integration["items"]} == {job_ids[0], job_ids[1]}
    by_status = (await client.get(f"{BASE}/jobs", params={"status": "queued"}, headers=admin.headers)).json()
    assert [j["id"] for j in by_status["items"]] == [job_ids[2]]
    bad = await client.get(f"{BASE}/jobs", params={"status": "sleeping"}, headers=admin.headers)
    assert_problem(bad, 422, "validation_error")

    cancelled = await client.post(f"{BASE}/jobs/{job_ids[2]}/cancel", headers=admin.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None

    asked = await client.post(f"{BASE}/jobs/{job_ids[1]}/cancel", headers=admin.headers)
    assert asked.status_code == 200
    assert asked.json()["status"] == "running"  # stops at its next page
    assert asked.json()["cancel_requested"] is True

    finished = await client.post(f"{BASE}/jobs/{job_ids[0]}/cancel", headers=admin.headers)
    assert finished.json()["status"] == "succeeded"

    db.expire_all()
    assert (await db.get(SyncJob, job_ids[2])).status == "cancelled"  # type: ignore[union-attr]
    # The integration is free again: a new start is accepted.
    again = await client.post(f"{BASE}/start", json={"integration_id": ids[1]}, headers=admin.headers)
    assert again.status_code == 202


async def test_two_concurrent_starts_one_wins(app: Any, committing_client: AsyncClient, toy: Path) -> None:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "admin")
        integration = await make_integration(session, org.id)
        integration_id = integration.id
        await session.commit()
    admin = await login(committing_client, user, org_id=org.id)

    responses = await asyncio.gather(
        *(
            committing_client.post(
                f"{BASE}/start", json={"integration_id": integration_id}, headers=admin.headers
            )
            for _ in range(2)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202, 409], [r.text for r in responses]
    accepted = next(r for r in responses if r.status_code == 202).json()
    refused = assert_problem(next(r for r in responses if r.status_code == 409), 409, "job_already_running")
    assert refused["job_id"] == accepted["id"]
    async with app.state.sessionmaker() as session:
        jobs = (await session.scalars(select(SyncJob).where(SyncJob.integration_id == integration_id))).all()
        assert [j.id for j in jobs] == [accepted["id"]]
        await session.execute(update(SyncJob).where(SyncJob.id == accepted["id"]).values(status="cancelled"))
        await session.commit()

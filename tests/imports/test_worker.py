"""An import started over HTTP is run by a real Celery worker process (sent through the real broker
after the upload commits)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from crm.config import Settings
from crm.models import Activity, Contact, ImportJob, ImportUpload
from tests.factories import add_member, login, make_org, make_user
from tests.imports.support import URL, csv_bytes, upload
from tests.workers import Worker, celery_worker


@pytest.fixture
def import_worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    """`celery worker` (prefork, one child, late acks as in production) on the test database."""
    with celery_worker(settings, tmp_path, name="imports-test") as worker:
        yield worker


async def test_a_real_worker_runs_an_uploaded_import(
    app: Any, committing_client: AsyncClient, import_worker: Worker
) -> None:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "manager")
        await session.commit()
    actor = await login(committing_client, user, org_id=org.id)
    rows: list[list[Any]] = [["full_name", "email", "phone", "tags"]]
    rows += [[f"Worker {i}", f"w{i}@example.com", f"+7 921 111-22-{i:02d}", "imported"] for i in range(25)]
    rows.append(["Broken", "not-an-email", "", ""])

    response = await upload(committing_client, actor, csv_bytes(rows), "contacts")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    deadline = time.monotonic() + 90
    status = "queued"
    while time.monotonic() < deadline:
        assert import_worker.process.poll() is None, "the worker exited early:\n" + import_worker.log()
        body = (await committing_client.get(f"{URL}/{job_id}", headers=actor.headers)).json()
        status = body["status"]
        if status in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.3)
    assert status == "succeeded", (body, import_worker.log())
    assert (body["processed_rows"], body["created"], body["failed"]) == (26, 25, 1)
    assert body["errors"][0]["row"] == 27
    assert body["finished_at"] is not None

    async with app.state.sessionmaker() as session:
        stored = (
            await session.scalars(
                select(Contact).where(Contact.organization_id == org.id).order_by(Contact.id)
            )
        ).all()
        assert [c.email for c in stored] == [f"w{i}@example.com" for i in range(25)]
        assert stored[3].phone == "+79211112203"
        assert all(c.source == "import" and c.tags == ["imported"] for c in stored)
        activities = await session.scalar(
            select(func.count())
            .select_from(Activity)
            .where(Activity.organization_id == org.id, Activity.action == "imported")
        )
        assert activities == 1
        job = await session.get(ImportJob, job_id)
        assert job is not None
        assert job.status == "succeeded"
        assert await session.scalar(select(ImportUpload.job_id).where(ImportUpload.job_id == job_id)) is None

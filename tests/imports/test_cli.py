"""`crm import` run as a real subprocess against the test database (real commits, cleaned up after)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.config import Settings
from crm.models import Contact, ImportJob, ImportUpload, Organization
from tests.imports.support import csv_bytes
from tests.system.test_cli import crm


@pytest.fixture
async def organization(app: Any) -> AsyncIterator[int]:
    engine: AsyncEngine = app.state.engine
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        org_id = await conn.scalar(
            Organization.__table__.insert()
            .values(name=f"CLI import {tag}", slug=f"cli-import-{tag}")
            .returning(Organization.__table__.c.id)
        )
    assert org_id is not None
    yield org_id
    async with engine.begin() as conn:
        await conn.execute(delete(Organization).where(Organization.id == org_id))


async def test_cli_import(app: Any, settings: Settings, organization: int, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    rows = [
        ["full_name", "email"],
        ["Cli One", "one@example.com"],
        ["Cli Two", "two@example.com"],
        ["Bad", "x@"],
    ]
    path.write_bytes(csv_bytes(rows))

    dry = crm(settings, "import", str(path), "--entity", "contacts", "--org", str(organization), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "created 2" in dry.stdout
    assert "failed 1" in dry.stdout
    assert "dry run" in dry.stdout
    assert "row 4, email" in dry.stdout

    result = crm(settings, "import", str(path), "--entity", "contacts", "--org", str(organization))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    assert "created 2" in result.stdout

    engine: AsyncEngine = app.state.engine
    async with engine.connect() as conn:
        emails = set(
            (await conn.scalars(select(Contact.email).where(Contact.organization_id == organization))).all()
        )
        jobs = (
            await conn.execute(
                select(ImportJob.status, ImportJob.dry_run).where(ImportJob.organization_id == organization)
            )
        ).all()
        uploads = (await conn.execute(select(ImportUpload.job_id))).all()
    assert emails == {"one@example.com", "two@example.com"}
    assert sorted(jobs) == [("succeeded", False), ("succeeded", True)]
    assert uploads == []

    again = crm(settings, "import", str(path), "--entity", "contacts", "--org", str(organization), "--atomic")
    assert again.returncode == 1
    assert "failed" in again.stdout

    missing = crm(settings, "import", str(path), "--entity", "contacts", "--org", "999999999")
    assert missing.returncode == 2
    assert "no organization" in missing.stdout

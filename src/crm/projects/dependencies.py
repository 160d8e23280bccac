from __future__ import annotations

from crm.core.db import SessionDep
from crm.core.errors import NotFound
from crm.projects.repository import ProjectRepository


async def ensure_project(db: SessionDep, organization_id: int, project_id: int) -> None:
    """404 unless the project is live and belongs to the organization."""
    if not await ProjectRepository(db, organization_id).exists(project_id):
        raise NotFound("Project not found")

"""Investment projects (PROJECTS.md): the records, their status moves and their teams.

The status changes only through `move`, which locks the project row (`SELECT … FOR UPDATE`) so that
concurrent moves are serialized, checks the move against `transitions.PROJECT_STATUSES`, writes a
history row and a `status_changed` activity, and tells `notify.on_status_changed` in the same
transaction. Creating a project writes its first history row (`from_status` null, `draft`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import select

from crm.core.concurrency import check_version
from crm.core.errors import NotFound
from crm.models import (
    Company,
    District,
    Industry,
    Membership,
    Project,
    ProjectMember,
    ProjectStatusHistory,
    User,
)
from crm.projects.exceptions import ProjectExternalCodeTaken
from crm.projects.notify import on_status_changed
from crm.projects.repository import HistoryRepository, ProjectRepository, TeamRepository
from crm.projects.schemas import ProjectCreate, StatusMove, TeamAssign
from crm.projects.transitions import INITIAL_STATUS, PROJECT_STATUSES, ProjectContext
from crm.records.crud import CrudService
from crm.records.service import InvalidReference, UniqueErrors
from crm.records.states import Option

CREATED_FIELDS = [
    "name",
    "description",
    "client_id",
    "industry_id",
    "district_id",
    "city",
    "address",
    "own_funds_amount",
    "requested_support_amount",
    "jobs_count",
    "tax_revenue_amount",
    "status",
    "external_code",
    "curator_id",
    "custom_fields",
]


def _invalid_reference(field: str, message: str) -> InvalidReference:
    return InvalidReference(
        f"{field}: {message}", errors=[{"loc": ["body", field], "msg": message, "type": "invalid_reference"}]
    )


class ProjectService(CrudService[Project]):
    entity_type = "project"
    repository_class = ProjectRepository
    unique_errors: ClassVar[UniqueErrors] = {"uq_project_org_external_code": ProjectExternalCodeTaken}
    repo: ProjectRepository

    not_null = ("name",)
    patch_lists = ()

    # Records -------------------------------------------------------------------------------------

    async def create(self, data: ProjectCreate) -> Project:
        # A project's owner is its curator (the responsible specialist).
        values = await self.prepared(self.owned_by_creator(data, field="curator_id"), None, partial=False)
        project = Project(organization_id=self.tenant.organization_id, status=INITIAL_STATUS, **values)
        await self.insert(project, CREATED_FIELDS)
        self._history(project, None, project.status, None)
        await self.db.flush()
        return project

    async def validated(
        self, values: dict[str, Any], existing: Project | None, *, partial: bool
    ) -> dict[str, Any]:
        await self._check_refs(values)
        return values

    async def _check_refs(self, values: dict[str, Any]) -> None:
        """422 when the client, industry or district is not of this organization, or the curator
        not a member of it."""
        org = self.tenant.organization_id
        client_id = values.get("client_id")
        if client_id is not None:
            found = await self.db.scalar(
                select(Company.id).where(
                    Company.id == client_id, Company.organization_id == org, Company.deleted_at.is_(None)
                )
            )
            if found is None:
                raise _invalid_reference("client_id", "no such company in this organization")
        for field, model in (("industry_id", Industry), ("district_id", District)):
            ref = values.get(field)
            if ref is not None:
                found = await self.db.scalar(
                    select(model.id).where(model.id == ref, model.organization_id == org)
                )
                if found is None:
                    raise _invalid_reference(field, "no such entry in this organization's dictionary")
        await self.check_refs(user_ids={"curator_id": values.get("curator_id")})

    # Status ---------------------------------------------------------------------------------------

    async def _context(self, project: Project) -> ProjectContext:
        team = TeamRepository(self.db, self.tenant.organization_id)
        role = await team.role_of(project.id, self.tenant.user_id)
        if role is None and self.tenant.user_id is not None and project.curator_id == self.tenant.user_id:
            role = "curator"  # the responsible specialist acts as the team's curator
        return ProjectContext(self.db, project, self.tenant.permissions, role)

    async def transitions(self, project_id: int) -> tuple[str, Sequence[Option]]:
        project = await self.get(project_id)
        options = await PROJECT_STATUSES.options(project.status, await self._context(project))
        return project.status, options

    async def move(self, project_id: int, data: StatusMove, if_match: str | None) -> Project:
        project = await self.get_for_update(project_id)
        check_version(project.version, if_match)
        from_status = project.status
        context = await self._context(project)
        await PROJECT_STATUSES.check(from_status, data.status, context, data.model_dump())
        to_status = data.status
        values: dict[str, Any] = {"status": to_status}
        PROJECT_STATUSES.settle({"status": from_status}, values)
        payload = {"comment": data.comment} if data.comment else None
        await self.write(project, values, if_match, action="status_changed", payload=payload)
        self._history(project, from_status, to_status, data.comment)
        await on_status_changed(
            self.db,
            project=project,
            from_status=from_status,
            to_status=to_status,
            actor_id=self.tenant.user_id,
            comment=data.comment,
        )
        await self.db.flush()
        return project

    async def history(
        self, project_id: int, limit: int, offset: int
    ) -> tuple[Sequence[ProjectStatusHistory], int]:
        await self.get(project_id)
        return await HistoryRepository(self.db, self.tenant.organization_id).of_project(
            project_id, limit, offset
        )

    def _history(
        self, project: Project, from_status: str | None, to_status: str, comment: str | None
    ) -> None:
        self.db.add(
            ProjectStatusHistory(
                organization_id=self.tenant.organization_id,
                project_id=project.id,
                from_status=from_status,
                to_status=to_status,
                actor_id=self.tenant.user_id,
                comment=comment,
                created_at=project.updated_at if from_status is not None else project.created_at,
            )
        )

    # Team -----------------------------------------------------------------------------------------

    @property
    def team_repo(self) -> TeamRepository:
        return TeamRepository(self.db, self.tenant.organization_id)

    async def team(self, project_id: int, limit: int, offset: int) -> tuple[Sequence[dict[str, Any]], int]:
        await self.get(project_id)
        rows, total = await self.team_repo.of_project(project_id, limit, offset)
        return [_member(m, full_name, email) for m, full_name, email in rows], total

    async def assign(self, project_id: int, data: TeamAssign) -> tuple[dict[str, Any], bool]:
        """Put the user on the team with the role (or change their role). True when newly added."""
        project = await self.get_for_update(project_id)  # serializes team changes of the project
        user = await self._org_user(data.user_id)
        if user is None:
            raise _invalid_reference("user_id", "not a member of this organization")
        member = await self.team_repo.member(project.id, user.id)
        created = member is None
        if member is None:
            member = ProjectMember(
                organization_id=self.tenant.organization_id,
                project_id=project.id,
                user_id=user.id,
                role=data.role,
            )
            self.db.add(member)
            self._team_changed(project, user.id, None, data.role)
        elif member.role != data.role:
            self._team_changed(project, user.id, member.role, data.role)
            member.role = data.role
        await self.db.flush()
        return _member(member, user.full_name, user.email), created

    async def unassign(self, project_id: int, user_id: int) -> None:
        project = await self.get_for_update(project_id)
        member = await self.team_repo.member(project.id, user_id)
        if member is None:
            raise NotFound("This user is not on the project's team")
        self._team_changed(project, user_id, member.role, None)
        await self.db.delete(member)
        await self.db.flush()

    async def user_projects(
        self, user_id: int, limit: int, offset: int
    ) -> tuple[Sequence[dict[str, Any]], int]:
        """The live projects the user is on the team of, with their role; 404 for a non-member."""
        if await self._org_user(user_id) is None:
            raise NotFound("User not found")
        rows, total = await self.repo.of_user(user_id, limit, offset)
        return [{**_fields(p), "team_role": role} for p, role in rows], total

    async def _org_user(self, user_id: int) -> User | None:
        stmt = (
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == self.tenant.organization_id, User.id == user_id)
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    def _team_changed(self, project: Project, user_id: int, old: str | None, new: str | None) -> None:
        """An `updated` activity on the project: `team` → [old assignment, new assignment]."""
        before = {"user_id": user_id, "role": old} if old else None
        after = {"user_id": user_id, "role": new} if new else None
        self.activities.record(self.entity_type, project.id, "updated", {"team": [before, after]})
        self.changed()


def _member(member: ProjectMember, full_name: str, email: str) -> dict[str, Any]:
    return {
        "project_id": member.project_id,
        "user_id": member.user_id,
        "role": member.role,
        "full_name": full_name,
        "email": email,
        "created_at": member.created_at,
    }


def _fields(project: Project) -> dict[str, Any]:
    return {column.key: getattr(project, column.key) for column in Project.__table__.columns}

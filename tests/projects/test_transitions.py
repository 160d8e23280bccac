"""The project status model (PROJECTS.md "Status model", SPEC §18 "Projects", §19.12):
`GET /projects/{id}/transitions`, `POST /projects/{id}/status`, `GET /projects/{id}/history`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Project, ProjectMember, ProjectStatusHistory
from tests.factories import Actor, Factory, add_member, assert_problem, login, make_org, make_user
from tests.projects.support import (
    PROJECTS,
    activities,
    complete_project,
    create_project,
    history_rows,
    if_match,
    make_support,
    org_of,
    set_status,
    stored_project,
    team,
)

STATUSES = [
    "draft",
    "submitted",
    "in_committee",
    "supported",
    "completed",
    "archived",
    "frozen",
    "rejected",
    "withdrawn",
]
#: The moves of PROJECTS.md, written out independently of the implementation's table
#: (`frozen` is resumed to `submitted` here: the project is set up as frozen from there).
MOVES = {
    ("draft", "submitted"),
    ("draft", "withdrawn"),
    ("submitted", "in_committee"),
    ("in_committee", "supported"),
    ("in_committee", "submitted"),
    ("in_committee", "rejected"),
    ("submitted", "completed"),
    ("submitted", "archived"),
    ("submitted", "frozen"),
    ("supported", "completed"),
    ("supported", "archived"),
    ("supported", "frozen"),
    ("frozen", "submitted"),
}
FINALS = ("completed", "archived", "rejected", "withdrawn")
GUARD_REASONS = [
    "client is required",
    "industry is required",
    "own_funds_amount is required",
    "requested_support_amount is required",
]
SUPPORT_REASON = "at least one support measure must have an approving decision"


async def move(client: AsyncClient, actor: Actor, project_id: int, status: str, **body: Any) -> Any:
    return await client.post(
        f"{PROJECTS}/{project_id}/status", json={"status": status, **body}, headers=actor.headers
    )


async def transitions(client: AsyncClient, actor: Actor, project_id: int) -> dict[str, Any]:
    response = await client.get(f"{PROJECTS}/{project_id}/transitions", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def project_in(
    client: AsyncClient, db: AsyncSession, actor: Actor, status: str, frozen_from: str | None = None
) -> dict[str, Any]:
    """A complete project with an approved support measure, put in `status`."""
    project = await complete_project(client, db, actor)
    await make_support(db, org_of(actor), project["id"], decision="approved")
    if status == "frozen" and frozen_from is None:
        frozen_from = "submitted"
    await set_status(db, project["id"], status, frozen_from)
    return project


class TestEveryPair:
    @pytest.mark.parametrize("source", STATUSES)
    async def test_each_move_of_the_table_is_allowed_and_every_other_is_409(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, source: str
    ) -> None:
        manager = await factory.actor("manager")
        expected_allowed = sorted(t for s, t in MOVES if s == source)
        mismatches = []
        for target in STATUSES:
            project = await project_in(client, db, manager, source)

            response = await move(client, manager, project["id"], target, comment="Протокол №5")

            stored = await stored_project(db, project["id"])
            if (source, target) in MOVES:
                ok = response.status_code == 200 and response.json()["status"] == target
                ok = ok and stored.status == target and stored.version == 2
                ok = ok and (await history_rows(db, project["id"]))[-1] == (source, target, "Протокол №5")
            else:
                ok = response.status_code == 409 and response.json()["code"] == "illegal_transition"
                ok = ok and sorted(response.json()["allowed"]) == expected_allowed
                ok = ok and stored.status == source and stored.version == 1
                ok = ok and len(await history_rows(db, project["id"])) == 1
            if not ok:
                mismatches.append((source, target, response.status_code, response.text))
        assert mismatches == []

    @pytest.mark.parametrize("source", STATUSES)
    async def test_transitions_lists_exactly_the_moves_of_the_table(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, source: str
    ) -> None:
        manager = await factory.actor("manager")
        project = await project_in(client, db, manager, source)

        body = await transitions(client, manager, project["id"])

        assert body["current"] == source
        assert sorted(t["to"] for t in body["transitions"]) == sorted(t for s, t in MOVES if s == source)
        assert all(t["allowed"] and t["reasons"] == [] for t in body["transitions"])


class TestIllegalMove:
    async def test_problem_body_lists_the_allowed_targets(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager)

        response = await move(client, manager, project["id"], "supported")

        body = assert_problem(response, 409, "illegal_transition")
        assert body["allowed"] == ["submitted", "withdrawn"]
        assert body["current"] == "draft"
        assert "draft" in body["detail"]
        assert "supported" in body["detail"]

    @pytest.mark.parametrize("final", FINALS)
    async def test_a_final_status_has_no_moves(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, final: str
    ) -> None:
        manager = await factory.actor("manager")
        project = await project_in(client, db, manager, final)

        response = await move(client, manager, project["id"], "draft")
        listed = await transitions(client, manager, project["id"])

        assert assert_problem(response, 409, "illegal_transition")["allowed"] == []
        assert listed == {"current": final, "transitions": []}

    async def test_the_same_status_is_not_a_move(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager)

        response = await move(client, manager, project["id"], "draft")

        assert_problem(response, 409, "illegal_transition")

    async def test_an_unknown_status_is_422(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager)

        response = await move(client, manager, project["id"], "APPLICANTION_FULL")

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "status"]


class TestGuards:
    async def test_submitting_an_empty_draft_names_every_missing_field(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await create_project(client, manager)

        response = await move(client, manager, project["id"], "submitted")
        listed = await transitions(client, manager, project["id"])

        body = assert_problem(response, 409, "transition_guard_failed")
        assert body["reasons"] == GUARD_REASONS
        assert (await stored_project(db, project["id"])).status == "draft"
        submit = next(t for t in listed["transitions"] if t["to"] == "submitted")
        assert submit == {
            "to": "submitted",
            "allowed": False,
            "reasons": GUARD_REASONS,
            "comment_required": False,
        }
        withdraw = next(t for t in listed["transitions"] if t["to"] == "withdrawn")
        assert withdraw["allowed"] is True

    @pytest.mark.parametrize(
        ("missing", "reason"),
        [
            ("client_id", "client is required"),
            ("industry_id", "industry is required"),
            ("own_funds_amount", "own_funds_amount is required"),
            ("requested_support_amount", "requested_support_amount is required"),
        ],
    )
    async def test_each_required_field_has_its_reason(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, missing: str, reason: str
    ) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager, **{missing: None})

        response = await move(client, manager, project["id"], "submitted")

        assert assert_problem(response, 409, "transition_guard_failed")["reasons"] == [reason]

    async def test_a_complete_draft_is_submitted(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager)

        response = await move(client, manager, project["id"], "submitted")

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "submitted"
        assert response.headers["etag"] == '"2"'
        assert await history_rows(db, project["id"]) == [(None, "draft", None), ("draft", "submitted", None)]

    async def test_support_without_an_approving_decision_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager)
        await set_status(db, project["id"], "in_committee")
        await make_support(db, org_of(manager), project["id"], status="rejected", decision="rejected")
        await make_support(db, org_of(manager), project["id"], decision="rework")

        response = await move(client, manager, project["id"], "supported")
        listed = await transitions(client, manager, project["id"])

        assert assert_problem(response, 409, "transition_guard_failed")["reasons"] == [SUPPORT_REASON]
        supported = next(t for t in listed["transitions"] if t["to"] == "supported")
        assert (supported["allowed"], supported["reasons"]) == (False, [SUPPORT_REASON])

    @pytest.mark.parametrize(
        ("measure_status", "decision"), [("requested", "approved"), ("approved", None), ("provided", None)]
    )
    async def test_an_approved_measure_or_an_approving_decision_lets_it_be_supported(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        measure_status: str,
        decision: str | None,
    ) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager)
        await set_status(db, project["id"], "in_committee")
        await make_support(db, org_of(manager), project["id"], status=measure_status, decision=decision)

        response = await move(client, manager, project["id"], "supported")

        assert response.status_code == 200, response.text
        assert (await stored_project(db, project["id"])).status == "supported"

    async def test_another_projects_approved_support_does_not_count(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager)
        other = await complete_project(client, db, manager)
        await set_status(db, project["id"], "in_committee")
        await make_support(db, org_of(manager), other["id"], status="approved")

        response = await move(client, manager, project["id"], "supported")

        assert_problem(response, 409, "transition_guard_failed")


class TestComments:
    @pytest.mark.parametrize("target", ["submitted", "rejected"])
    @pytest.mark.parametrize("body", [{}, {"comment": None}, {"comment": "   "}])
    async def test_rework_and_rejection_without_a_comment_are_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, target: str, body: dict[str, Any]
    ) -> None:
        manager = await factory.actor("manager")
        project = await project_in(client, db, manager, "in_committee")

        response = await move(client, manager, project["id"], target, **body)

        problem = assert_problem(response, 422, "validation_error")
        assert problem["errors"][0]["loc"] == ["body", "comment"]
        assert (await stored_project(db, project["id"])).status == "in_committee"
        assert len(await history_rows(db, project["id"])) == 1

    async def test_transitions_mark_the_moves_needing_a_comment(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await project_in(client, db, manager, "in_committee")

        listed = await transitions(client, manager, project["id"])

        needs = {t["to"]: t["comment_required"] for t in listed["transitions"]}
        assert needs == {"supported": False, "submitted": True, "rejected": True}

    async def test_the_comment_is_kept_in_history_and_activity(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await project_in(client, db, manager, "in_committee")

        response = await move(client, manager, project["id"], "rejected", comment="МВК: отказ, протокол 7")

        assert response.status_code == 200, response.text
        assert (await history_rows(db, project["id"]))[-1] == (
            "in_committee",
            "rejected",
            "МВК: отказ, протокол 7",
        )
        last = (await activities(db, project["id"]))[-1]
        assert last.action == "status_changed"
        assert last.changes == {"status": ["in_committee", "rejected"]}
        assert last.payload == {"comment": "МВК: отказ, протокол 7"}
        assert last.actor_id == manager.user.id


class TestFrozen:
    @pytest.mark.parametrize("source", ["submitted", "supported"])
    async def test_resumes_to_the_status_it_was_frozen_from(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, source: str
    ) -> None:
        manager = await factory.actor("manager")
        project = await project_in(client, db, manager, source)
        other = "supported" if source == "submitted" else "submitted"

        frozen = await move(client, manager, project["id"], "frozen")
        listed = await transitions(client, manager, project["id"])
        wrong = await move(client, manager, project["id"], other)
        resumed = await move(client, manager, project["id"], source)

        assert frozen.status_code == 200, frozen.text
        assert frozen.json()["frozen_from"] == source
        assert [t["to"] for t in listed["transitions"]] == [source]
        assert assert_problem(wrong, 409, "illegal_transition")["allowed"] == [source]
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["status"], resumed.json()["frozen_from"]) == (source, None)
        assert (await history_rows(db, project["id"]))[-2:] == [
            (source, "frozen", None),
            ("frozen", source, None),
        ]


class TestWhoMayMove:
    async def _project(self, client: AsyncClient, db: AsyncSession, manager: Actor) -> dict[str, Any]:
        return await complete_project(client, db, manager)

    async def _on_team(self, db: AsyncSession, project_id: int, actor: Actor, role: str) -> None:
        db.add(
            ProjectMember(
                organization_id=org_of(actor), project_id=project_id, user_id=actor.user.id, role=role
            )
        )
        await db.commit()

    async def test_a_member_without_a_team_role_is_403(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "manager", "member")
        project = await self._project(client, db, actors["manager"])

        response = await move(client, actors["member"], project["id"], "submitted")
        listed = await transitions(client, actors["member"], project["id"])

        assert_problem(response, 403, "permission_denied")
        assert (await stored_project(db, project["id"])).status == "draft"
        assert all(not t["allowed"] for t in listed["transitions"])
        assert all("projects:status" in t["reasons"][0] for t in listed["transitions"])

    async def test_a_team_viewer_is_403(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "manager", "member")
        project = await self._project(client, db, actors["manager"])
        await self._on_team(db, project["id"], actors["member"], "viewer")

        response = await move(client, actors["member"], project["id"], "submitted")

        assert_problem(response, 403, "permission_denied")

    @pytest.mark.parametrize("role", ["editor", "curator"])
    async def test_a_team_editor_or_curator_may_move(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        actors = await team(factory, "manager", "member")
        project = await self._project(client, db, actors["manager"])
        await self._on_team(db, project["id"], actors["member"], role)

        response = await move(client, actors["member"], project["id"], "submitted")

        assert response.status_code == 200, response.text
        (row,) = (
            await db.execute(
                select(ProjectStatusHistory).where(
                    ProjectStatusHistory.project_id == project["id"],
                    ProjectStatusHistory.from_status.is_not(None),
                )
            )
        ).scalars()
        assert row.actor_id == actors["member"].user.id

    async def test_the_projects_curator_may_move(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "manager", "member")
        project = await complete_project(client, db, actors["manager"], curator_id=actors["member"].user.id)

        response = await move(client, actors["member"], project["id"], "submitted")

        assert response.status_code == 200, response.text

    async def test_a_team_role_in_another_project_does_not_count(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        actors = await team(factory, "manager", "member")
        project = await self._project(client, db, actors["manager"])
        other = await self._project(client, db, actors["manager"])
        await self._on_team(db, other["id"], actors["member"], "editor")

        response = await move(client, actors["member"], project["id"], "submitted")

        assert_problem(response, 403, "permission_denied")

    @pytest.mark.parametrize("role", ["owner", "admin", "manager"])
    async def test_owner_admin_and_manager_may_move(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        actors = await team(factory, "manager", role) if role != "manager" else await team(factory, "manager")
        project = await self._project(client, db, actors["manager"])

        response = await move(client, actors[role], project["id"], "withdrawn")

        assert response.status_code == 200, response.text


class TestStatusWrites:
    async def test_status_is_not_editable_through_put_or_patch(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager)

        patched = await client.patch(
            f"{PROJECTS}/{project['id']}", json={"status": "submitted"}, headers=manager.headers
        )
        put = await client.put(
            f"{PROJECTS}/{project['id']}", json={"name": "X", "status": "submitted"}, headers=manager.headers
        )

        assert assert_problem(patched, 422, "validation_error")["errors"][0]["loc"] == ["body", "status"]
        assert_problem(put, 422, "validation_error")
        assert (await stored_project(db, project["id"])).status == "draft"

    async def test_a_stale_if_match_is_412(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager)

        stale = await client.post(
            f"{PROJECTS}/{project['id']}/status", json={"status": "submitted"}, headers=if_match(manager, 7)
        )
        fresh = await client.post(
            f"{PROJECTS}/{project['id']}/status", json={"status": "submitted"}, headers=if_match(manager, 1)
        )

        assert_problem(stale, 412, "version_mismatch")
        assert fresh.status_code == 200, fresh.text


class TestHistory:
    async def test_newest_first_with_the_creation_row_last(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager)
        await move(client, manager, project["id"], "submitted")
        await move(client, manager, project["id"], "in_committee")
        await move(client, manager, project["id"], "submitted", comment="Доработать бизнес-план")

        response = await client.get(f"{PROJECTS}/{project['id']}/history", headers=manager.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (4, 50, 0)
        moves = [(i["from_status"], i["to_status"], i["comment"]) for i in body["items"]]
        assert moves == [
            ("in_committee", "submitted", "Доработать бизнес-план"),
            ("submitted", "in_committee", None),
            ("draft", "submitted", None),
            (None, "draft", None),
        ]
        first = body["items"][0]
        assert set(first) == {"id", "from_status", "to_status", "actor_id", "comment", "created_at"}
        assert first["actor_id"] == manager.user.id
        assert first["created_at"].endswith("Z")

    async def test_pages(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        manager = await factory.actor("manager")
        project = await complete_project(client, db, manager)
        await move(client, manager, project["id"], "submitted")

        response = await client.get(
            f"{PROJECTS}/{project['id']}/history", params={"limit": 1, "offset": 1}, headers=manager.headers
        )

        body = response.json()
        assert (body["total"], len(body["items"]), body["items"][0]["to_status"]) == (2, 1, "draft")


@pytest.mark.committing
class TestConcurrentMoves:
    async def test_two_simultaneous_moves_are_serialized(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        async with app.state.sessionmaker() as session:
            user = await make_user(session)
            org = await make_org(session)
            await add_member(session, org, user, "manager")
            await session.commit()
        manager = await login(committing_client, user, org_id=org.id)
        created = await committing_client.post(PROJECTS, json={"name": "Ферма"}, headers=manager.headers)
        project_id = created.json()["id"]

        responses = await asyncio.gather(
            *(
                committing_client.post(
                    f"{PROJECTS}/{project_id}/status", json={"status": "withdrawn"}, headers=manager.headers
                )
                for _ in range(5)
            )
        )

        assert sorted(r.status_code for r in responses) == [200] + [409] * 4, [r.text for r in responses]
        async with app.state.sessionmaker() as session:
            rows = (
                (
                    await session.execute(
                        select(ProjectStatusHistory).where(ProjectStatusHistory.project_id == project_id)
                    )
                )
                .scalars()
                .all()
            )
            stored = await session.get(Project, project_id)
        assert len(rows) == 2
        assert stored is not None
        assert (stored.status, stored.version) == ("withdrawn", 2)

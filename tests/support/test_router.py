"""Support measures of a project and the decisions on them, through the HTTP API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Organization, Project, SupportDecision, SupportMeasure, SupportProgram, SupportProvider
from crm.support.schemas import UNITS_BY_TYPE
from tests.factories import Actor, Factory, assert_problem
from tests.support.helpers import (
    activities,
    make_measure,
    make_program,
    make_project,
    make_provider,
    org_of,
    stored_measures,
)

TYPES = ["finance", "credit", "land", "equipment", "technical"]
UNITS = ["RUB", "pieces", "meters", "square_meters", "cubic_meters", "hectares"]
#: The decided rule, written out by hand (PROJECTS.md) rather than read from the code.
ALLOWED = {
    ("finance", "RUB"),
    ("credit", "RUB"),
    ("equipment", "pieces"),
    ("technical", "pieces"),
    ("land", "meters"),
    ("land", "square_meters"),
    ("land", "cubic_meters"),
    ("land", "hectares"),
}


@dataclass
class World:
    manager: Actor
    project: Project
    program: SupportProgram
    provider: SupportProvider

    @property
    def path(self) -> str:
        return f"/api/v1/projects/{self.project.id}/support"


@pytest.fixture
async def world(factory: Factory, db: AsyncSession) -> World:
    manager = await factory.actor("manager")
    org = org_of(manager)
    project = await make_project(db, org, name="Гостиница «Заря»")
    program = await make_program(db, org, name="Региональный фонд")
    provider = await make_provider(db, org, name="Минэкономразвития")
    await db.commit()
    return World(manager, project, program, provider)


async def create(client: AsyncClient, world: World, **body: Any) -> dict[str, Any]:
    body = {"type": "finance", "amount": "1500000.00", **body}
    response = await client.post(world.path, json=body, headers=world.manager.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestCreate:
    async def test_a_new_measure_is_requested_with_location_etag_and_an_activity(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        response = await client.post(
            world.path,
            json={
                "type": "finance",
                "amount": 2500000,
                "program_id": world.program.id,
                "provider_id": world.provider.id,
                "date_start": "2026-01-01",
                "date_end": "2026-12-31",
                "description": "Субсидия ООО на оборудование",
            },
            headers=world.manager.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "requested"
        assert body["unit"] == "RUB"
        assert body["amount"] == "2500000.00"
        assert body["project_id"] == world.project.id
        assert body["version"] == 1
        assert response.headers["Location"] == f"{world.path}/{body['id']}"
        assert response.headers["ETag"] == '"1"'
        [stored] = await stored_measures(db, world.project.id)
        assert (stored.id, stored.status, stored.program_id, stored.provider_id) == (
            body["id"],
            "requested",
            world.program.id,
            world.provider.id,
        )
        assert stored.description == "Субсидия ООО на оборудование"
        [activity] = await activities(db, "support", body["id"])
        assert activity.action == "created"
        assert activity.actor_id == world.manager.user.id
        assert activity.changes["type"] == [None, "finance"]

    async def test_status_in_the_body_is_refused(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        response = await client.post(
            world.path, json={"type": "finance", "status": "approved"}, headers=world.manager.headers
        )
        assert_problem(response, 422, "validation_error")
        assert await stored_measures(db, world.project.id) == []

    @pytest.mark.parametrize("support_type", TYPES)
    @pytest.mark.parametrize("unit", UNITS)
    async def test_every_type_and_unit_combination(
        self, client: AsyncClient, db: AsyncSession, world: World, support_type: str, unit: str
    ) -> None:
        response = await client.post(
            world.path,
            json={"type": support_type, "unit": unit, "amount": "10"},
            headers=world.manager.headers,
        )
        if (support_type, unit) in ALLOWED:
            assert response.status_code == 201, response.text
            assert (response.json()["type"], response.json()["unit"]) == (support_type, unit)
            assert len(await stored_measures(db, world.project.id)) == 1
        else:
            body = assert_problem(response, 422, "validation_error")
            assert body["errors"][0]["loc"] == ["body", "unit"]
            assert await stored_measures(db, world.project.id) == []

    def test_the_rule_table_matches_the_documented_one(self) -> None:
        assert {(t, u) for t, units in UNITS_BY_TYPE.items() for u in units} == ALLOWED

    @pytest.mark.parametrize(
        ("support_type", "unit"),
        [("finance", "RUB"), ("credit", "RUB"), ("equipment", "pieces"), ("technical", "pieces")],
    )
    async def test_a_type_with_one_unit_takes_it_when_omitted(
        self, client: AsyncClient, world: World, support_type: str, unit: str
    ) -> None:
        body = await create(client, world, type=support_type)
        assert body["unit"] == unit

    async def test_land_without_a_unit_is_refused(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        response = await client.post(
            world.path, json={"type": "land", "amount": 3}, headers=world.manager.headers
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "unit"]
        assert await stored_measures(db, world.project.id) == []

    async def test_end_before_start_is_refused_and_the_same_day_accepted(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        response = await client.post(
            world.path,
            json={"type": "finance", "date_start": "2026-05-02", "date_end": "2026-05-01"},
            headers=world.manager.headers,
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "date_end"]
        assert await stored_measures(db, world.project.id) == []
        same_day = await create(client, world, date_start="2026-05-02", date_end="2026-05-02")
        assert (same_day["date_start"], same_day["date_end"]) == ("2026-05-02", "2026-05-02")

    async def test_program_and_provider_of_another_organization_are_refused(
        self, client: AsyncClient, db: AsyncSession, factory: Factory, world: World
    ) -> None:
        other = await factory.org()
        foreign_program = await make_program(db, other.id)
        foreign_provider = await make_provider(db, other.id)
        await db.commit()
        for field, ref in (("program_id", foreign_program.id), ("provider_id", foreign_provider.id)):
            response = await client.post(
                world.path, json={"type": "finance", field: ref}, headers=world.manager.headers
            )
            body = assert_problem(response, 422, "invalid_reference")
            assert body["errors"][0]["loc"] == ["body", field]
        response = await client.post(
            world.path, json={"type": "finance", "program_id": 10**12}, headers=world.manager.headers
        )
        assert_problem(response, 422, "invalid_reference")
        assert await stored_measures(db, world.project.id) == []

    async def test_idempotency_key_replays_the_first_response(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        headers = {**world.manager.headers, "Idempotency-Key": "support-1"}
        first = await client.post(world.path, json={"type": "credit", "amount": 5}, headers=headers)
        second = await client.post(world.path, json={"type": "credit", "amount": 5}, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert second.headers["Idempotent-Replayed"] == "true"
        assert len(await stored_measures(db, world.project.id)) == 1
        other_body = await client.post(world.path, json={"type": "credit", "amount": 6}, headers=headers)
        assert_problem(other_body, 422, "idempotency_key_reused")

    async def test_a_member_reads_but_may_not_write(
        self, client: AsyncClient, db: AsyncSession, factory: Factory, world: World
    ) -> None:
        organization = await db.get(Organization, world.project.organization_id)
        member = await factory.actor("member", org=organization)
        await make_measure(db, world.project)
        await db.commit()
        listed = await client.get(world.path, headers=member.headers)
        assert listed.status_code == 200
        assert listed.json()["total"] == 1
        refused = await client.post(world.path, json={"type": "finance"}, headers=member.headers)
        assert_problem(refused, 403, "permission_denied")
        assert len(await stored_measures(db, world.project.id)) == 1


class TestReadAndList:
    async def test_list_is_the_projects_measures_newest_first(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        other_project = await make_project(db, world.project.organization_id)
        await make_measure(db, other_project)
        await db.commit()
        first = await create(client, world)
        second = await create(client, world, type="equipment", amount=3)
        response = await client.get(world.path, params={"limit": 1}, headers=world.manager.headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (2, 1, 0)
        assert [i["id"] for i in body["items"]] == [second["id"]]
        full = await client.get(world.path, headers=world.manager.headers)
        assert [i["id"] for i in full.json()["items"]] == [second["id"], first["id"]]

    async def test_get_one_has_an_etag(self, client: AsyncClient, world: World) -> None:
        created = await create(client, world)
        response = await client.get(f"{world.path}/{created['id']}", headers=world.manager.headers)
        assert response.status_code == 200
        assert response.json() == created
        assert response.headers["ETag"] == '"1"'


class TestUpdate:
    async def test_patch_changes_the_fields_sent_and_bumps_the_version(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        created = await create(client, world, description="старое")
        url = f"{world.path}/{created['id']}"
        response = await client.patch(
            url, json={"amount": "99.50"}, headers={**world.manager.headers, "If-Match": '"1"'}
        )
        assert response.status_code == 200, response.text
        assert response.json()["amount"] == "99.50"
        assert response.json()["description"] == "старое"
        assert response.json()["version"] == 2
        assert response.headers["ETag"] == '"2"'
        [stored] = await stored_measures(db, world.project.id)
        assert str(stored.amount) == "99.50"
        actions = [a.action for a in await activities(db, "support", created["id"])]
        assert actions == ["created", "updated"]

    async def test_a_stale_if_match_is_412_and_writes_nothing(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        created = await create(client, world)
        response = await client.patch(
            f"{world.path}/{created['id']}",
            json={"amount": 1},
            headers={**world.manager.headers, "If-Match": '"7"'},
        )
        assert_problem(response, 412, "version_mismatch")
        [stored] = await stored_measures(db, world.project.id)
        assert (str(stored.amount), stored.version) == ("1500000.00", 1)

    async def test_unit_and_type_rules_apply_to_the_result(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        created = await create(client, world)
        url = f"{world.path}/{created['id']}"
        wrong_unit = await client.patch(url, json={"unit": "pieces"}, headers=world.manager.headers)
        assert_problem(wrong_unit, 422, "validation_error")
        to_land = await client.patch(url, json={"type": "land"}, headers=world.manager.headers)
        assert_problem(to_land, 422, "validation_error")
        to_equipment = await client.patch(url, json={"type": "equipment"}, headers=world.manager.headers)
        assert to_equipment.status_code == 200
        assert (to_equipment.json()["type"], to_equipment.json()["unit"]) == ("equipment", "pieces")
        to_land_ha = await client.patch(
            url, json={"type": "land", "unit": "hectares"}, headers=world.manager.headers
        )
        assert to_land_ha.status_code == 200
        null_type = await client.patch(url, json={"type": None}, headers=world.manager.headers)
        assert_problem(null_type, 422, "validation_error")
        [stored] = await stored_measures(db, world.project.id)
        assert (stored.type, stored.unit) == ("land", "hectares")

    async def test_dates_are_checked_against_the_stored_ones(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        created = await create(client, world, date_start="2026-03-01", date_end="2026-06-01")
        url = f"{world.path}/{created['id']}"
        response = await client.patch(url, json={"date_end": "2026-02-28"}, headers=world.manager.headers)
        assert_problem(response, 422, "validation_error")
        response = await client.patch(url, json={"date_start": "2026-07-01"}, headers=world.manager.headers)
        assert_problem(response, 422, "validation_error")
        [stored] = await stored_measures(db, world.project.id)
        assert (str(stored.date_start), str(stored.date_end)) == ("2026-03-01", "2026-06-01")

    async def test_provided_only_after_approval(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        created = await create(client, world)
        url = f"{world.path}/{created['id']}"
        early = await client.patch(url, json={"status": "provided"}, headers=world.manager.headers)
        assert_problem(early, 409, "support_not_approved")
        approved_by_patch = await client.patch(
            url, json={"status": "approved"}, headers=world.manager.headers
        )
        assert_problem(approved_by_patch, 422, "validation_error")
        decision = await client.post(
            f"{url}/decisions",
            json={"decision_type": "expert_group", "decision_date": "2026-02-01", "result": "approved"},
            headers=world.manager.headers,
        )
        assert decision.status_code == 201
        provided = await client.patch(url, json={"status": "provided"}, headers=world.manager.headers)
        assert provided.status_code == 200
        assert provided.json()["status"] == "provided"
        [stored] = await stored_measures(db, world.project.id)
        assert stored.status == "provided"


class TestDelete:
    async def test_delete_removes_the_measure_and_its_decisions(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        created = await create(client, world)
        url = f"{world.path}/{created['id']}"
        await client.post(
            f"{url}/decisions",
            json={"decision_type": "expert_group", "decision_date": "2026-02-01", "result": "rework"},
            headers=world.manager.headers,
        )
        response = await client.delete(url, headers=world.manager.headers)
        assert response.status_code == 204
        assert await stored_measures(db, world.project.id) == []
        assert await db.scalar(select(func.count()).select_from(SupportDecision)) == 0
        assert (await client.get(url, headers=world.manager.headers)).status_code == 404
        actions = [a.action for a in await activities(db, "support", created["id"])]
        assert actions == ["created", "deleted"]


class TestNotFound:
    async def test_a_measure_of_another_project_is_404_on_every_verb(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        other_project = await make_project(db, world.project.organization_id)
        await db.commit()
        created = await create(client, world)
        wrong = f"/api/v1/projects/{other_project.id}/support/{created['id']}"
        headers = world.manager.headers
        assert_problem(await client.get(wrong, headers=headers), 404, "not_found")
        assert_problem(await client.patch(wrong, json={"amount": 1}, headers=headers), 404, "not_found")
        assert_problem(await client.delete(wrong, headers=headers), 404, "not_found")
        assert_problem(await client.get(f"{wrong}/decisions", headers=headers), 404, "not_found")
        decision = {"decision_type": "expert_group", "decision_date": "2026-02-01", "result": "approved"}
        assert_problem(
            await client.post(f"{wrong}/decisions", json=decision, headers=headers), 404, "not_found"
        )
        [stored] = await stored_measures(db, world.project.id)
        assert (str(stored.amount), stored.status) == ("1500000.00", "requested")

    async def test_another_organizations_project_and_measure_are_404(
        self, client: AsyncClient, db: AsyncSession, factory: Factory, world: World
    ) -> None:
        stranger = await factory.actor("owner")
        foreign_project = await make_project(db, org_of(stranger))
        foreign_measure = await make_measure(db, foreign_project, amount=5)
        await db.commit()
        headers = world.manager.headers
        base = f"/api/v1/projects/{foreign_project.id}/support"
        one = f"{base}/{foreign_measure.id}"
        assert_problem(await client.get(base, headers=headers), 404, "not_found")
        assert_problem(await client.post(base, json={"type": "finance"}, headers=headers), 404, "not_found")
        assert_problem(await client.get(one, headers=headers), 404, "not_found")
        assert_problem(await client.patch(one, json={"amount": 1}, headers=headers), 404, "not_found")
        assert_problem(await client.delete(one, headers=headers), 404, "not_found")
        assert_problem(await client.get(f"{one}/decisions", headers=headers), 404, "not_found")
        assert_problem(
            await client.get(f"/api/v1/support/{foreign_measure.id}/decisions", headers=headers),
            404,
            "not_found",
        )
        # The same measure addressed through this organization's project is not found either.
        mine = f"{world.path}/{foreign_measure.id}"
        assert_problem(await client.get(mine, headers=headers), 404, "not_found")
        db.expunge_all()
        stored = await db.get(SupportMeasure, foreign_measure.id)
        assert stored is not None
        assert str(stored.amount) == "5.00"
        assert await stored_measures(db, foreign_project.id) != []

    async def test_a_deleted_project_hides_its_measures(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        measure = await make_measure(db, world.project)
        project = await db.get(Project, world.project.id)
        assert project is not None
        project.deleted_at = datetime.now(UTC)
        await db.commit()
        headers = world.manager.headers
        assert_problem(await client.get(world.path, headers=headers), 404, "not_found")
        assert_problem(await client.get(f"{world.path}/{measure.id}", headers=headers), 404, "not_found")
        assert_problem(
            await client.get(f"/api/v1/support/{measure.id}/decisions", headers=headers), 404, "not_found"
        )


class TestDecisions:
    @pytest.mark.parametrize(
        ("result", "status"), [("approved", "approved"), ("rejected", "rejected"), ("rework", "requested")]
    )
    async def test_a_decision_sets_the_measure_status(
        self, client: AsyncClient, db: AsyncSession, world: World, result: str, status: str
    ) -> None:
        measure = await make_measure(
            db, world.project, status="approved" if result == "rework" else "requested"
        )
        await db.commit()
        url = f"{world.path}/{measure.id}/decisions"
        response = await client.post(
            url,
            json={
                "decision_type": "interdepartmental_commission",
                "decision_date": "2026-03-15",
                "protocol_number": "МВК-12/2026",
                "result": result,
                "text": "ООО «Ромашка»: поддержать, МВК",
            },
            headers=world.manager.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["result"] == result
        assert body["decided_by"] == world.manager.user.id
        assert body["protocol_number"] == "МВК-12/2026"
        assert body["text"] == "ООО «Ромашка»: поддержать, МВК"
        assert response.headers["Location"] == f"{url}/{body['id']}"
        db.expunge_all()
        stored_measure = await db.get(SupportMeasure, measure.id)
        assert stored_measure is not None
        assert stored_measure.status == status
        stored = await db.get(SupportDecision, body["id"])
        assert stored is not None
        assert (stored.text, stored.protocol_number, stored.decided_by) == (
            "ООО «Ромашка»: поддержать, МВК",
            "МВК-12/2026",
            world.manager.user.id,
        )
        [activity] = await activities(db, "decision", body["id"])
        assert activity.action == "created"
        assert activity.payload["project_id"] == world.project.id

    async def test_decided_by_comes_from_the_server_never_the_body(
        self, client: AsyncClient, db: AsyncSession, factory: Factory, world: World
    ) -> None:
        other = await factory.user()
        measure = await make_measure(db, world.project)
        await db.commit()
        response = await client.post(
            f"{world.path}/{measure.id}/decisions",
            json={
                "decision_type": "expert_group",
                "decision_date": "2026-03-15",
                "result": "approved",
                "decided_by": other.id,
            },
            headers=world.manager.headers,
        )
        assert_problem(response, 422, "validation_error")
        assert await db.scalar(select(func.count()).select_from(SupportDecision)) == 0
        db.expunge_all()
        stored = await db.get(SupportMeasure, measure.id)
        assert stored is not None
        assert stored.status == "requested"

    async def test_bad_values_are_422(self, client: AsyncClient, db: AsyncSession, world: World) -> None:
        measure = await make_measure(db, world.project)
        await db.commit()
        url = f"{world.path}/{measure.id}/decisions"
        for body in (
            {"decision_type": "board", "decision_date": "2026-03-15", "result": "approved"},
            {"decision_type": "expert_group", "decision_date": "2026-03-15", "result": "maybe"},
            {"decision_type": "expert_group", "result": "approved"},
            {"decision_type": "expert_group", "decision_date": "15.03.2026", "result": "approved"},
        ):
            assert_problem(
                await client.post(url, json=body, headers=world.manager.headers), 422, "validation_error"
            )
        assert await db.scalar(select(func.count()).select_from(SupportDecision)) == 0

    async def test_both_lists_show_the_decisions_newest_first(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        measure = await make_measure(db, world.project)
        await db.commit()
        url = f"{world.path}/{measure.id}/decisions"
        ids = []
        for result in ("rework", "approved"):
            response = await client.post(
                url,
                json={"decision_type": "expert_group", "decision_date": "2026-03-15", "result": result},
                headers=world.manager.headers,
            )
            ids.append(response.json()["id"])
        nested = await client.get(url, headers=world.manager.headers)
        alone = await client.get(f"/api/v1/support/{measure.id}/decisions", headers=world.manager.headers)
        assert nested.status_code == alone.status_code == 200
        assert nested.json() == alone.json()
        assert nested.json()["total"] == 2
        assert [d["id"] for d in nested.json()["items"]] == ids[::-1]
        one = await client.get(f"{url}/{ids[0]}", headers=world.manager.headers)
        assert one.status_code == 200
        assert one.json()["result"] == "rework"

    async def test_a_provided_measure_takes_no_more_decisions(
        self, client: AsyncClient, db: AsyncSession, world: World
    ) -> None:
        measure = await make_measure(db, world.project, status="provided")
        await db.commit()
        response = await client.post(
            f"{world.path}/{measure.id}/decisions",
            json={"decision_type": "expert_group", "decision_date": "2026-03-15", "result": "rejected"},
            headers=world.manager.headers,
        )
        assert_problem(response, 409, "support_already_provided")
        assert await db.scalar(select(func.count()).select_from(SupportDecision)) == 0

    async def test_a_member_may_not_record_a_decision(
        self, client: AsyncClient, db: AsyncSession, factory: Factory, world: World
    ) -> None:
        organization = await db.get(Organization, world.project.organization_id)
        member = await factory.actor("member", org=organization)
        measure = await make_measure(db, world.project)
        await db.commit()
        response = await client.post(
            f"{world.path}/{measure.id}/decisions",
            json={"decision_type": "expert_group", "decision_date": "2026-03-15", "result": "approved"},
            headers=member.headers,
        )
        assert_problem(response, 403, "permission_denied")
        listed = await client.get(f"/api/v1/support/{measure.id}/decisions", headers=member.headers)
        assert listed.status_code == 200
        assert listed.json()["total"] == 0


class TestDatabaseRules:
    @pytest.mark.parametrize(
        "fields",
        [
            {"type": "finance", "unit": "pieces"},
            {"type": "land", "unit": "RUB"},
            {"type": "equipment", "unit": "hectares"},
            {"type": "credit", "unit": "RUB", "date_start": date(2026, 5, 2), "date_end": date(2026, 5, 1)},
            {"type": "credit", "unit": "RUB", "status": "lost"},
        ],
    )
    async def test_the_table_refuses_what_the_api_refuses(
        self, db: AsyncSession, world: World, fields: dict[str, Any]
    ) -> None:
        with pytest.raises(IntegrityError):
            async with db.begin_nested():
                await make_measure(db, world.project, **fields)

"""`/api/v1/pipelines`: pipelines and their stages (SPEC §6)."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from tests.deals.support import (
    DEFAULT_KEYS,
    PIPELINES,
    activities,
    assert_invalid,
    assert_problem,
    create_deal,
    create_pipeline,
    default_pipeline,
    org_of,
    stored_pipelines,
    stored_stages,
)
from tests.factories import Actor, Factory, add_member, make_org

DEFAULT_NAMES = ["Lead", "Qualification", "Proposal", "Negotiation"]


async def team(factory: Factory, *roles: str) -> dict[str, Actor]:
    """One actor per role, all in one fresh organization."""
    org = await factory.org()
    return {role: await factory.actor(role, org=org) for role in roles}


def keys(pipeline: dict[str, Any]) -> list[str]:
    return [s["key"] for s in pipeline["stages"]]


class TestListPipelines:
    async def test_an_organization_made_without_one_gets_the_default_pipeline_on_first_read(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        member = await factory.actor("member")
        assert await stored_pipelines(db, org_of(member)) == []

        response = await client.get(PIPELINES, headers=member.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 1
        assert body["limit"] == 50
        assert body["offset"] == 0
        (pipeline,) = body["items"]
        assert pipeline["is_default"] is True
        assert pipeline["stages"] == [
            {"key": k, "name": n, "position": i, "is_archived": False}
            for i, (k, n) in enumerate(zip(DEFAULT_KEYS, DEFAULT_NAMES, strict=True))
        ]
        (stored,) = await stored_pipelines(db, org_of(member))
        assert stored.id == pipeline["id"]
        assert stored.is_default
        assert [s[0] for s in await stored_stages(db, stored.id)] == DEFAULT_KEYS

    async def test_reading_twice_does_not_make_a_second_default(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")

        first = await client.get(PIPELINES, headers=owner.headers)
        second = await client.get(PIPELINES, headers=owner.headers)

        assert first.json()["items"] == second.json()["items"]
        assert len(await stored_pipelines(db, org_of(owner))) == 1

    async def test_newest_first_by_default_and_sorted_by_name_on_request(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        admin = await factory.actor("admin")
        await default_pipeline(client, admin)
        await create_pipeline(client, admin, "a", name="Alpha")
        await create_pipeline(client, admin, "b", name="Beta")

        newest = await client.get(PIPELINES, headers=admin.headers)
        by_name = await client.get(PIPELINES, params={"sort": "name"}, headers=admin.headers)

        assert [p["name"] for p in newest.json()["items"]] == ["Beta", "Alpha", "Sales"]
        assert [p["name"] for p in by_name.json()["items"]] == ["Alpha", "Beta", "Sales"]

    async def test_paging(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        await default_pipeline(client, admin)
        await create_pipeline(client, admin, "a", name="Alpha")

        response = await client.get(PIPELINES, params={"limit": 1, "offset": 1}, headers=admin.headers)

        body = response.json()
        assert body["total"] == 2
        assert body["limit"] == 1
        assert body["offset"] == 1
        assert [p["name"] for p in body["items"]] == ["Sales"]

    async def test_unknown_sort_is_422(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")

        response = await client.get(PIPELINES, params={"sort": "is_default"}, headers=admin.headers)

        assert_problem(response, 422, "validation_error")

    async def test_another_organizations_pipelines_are_not_listed(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        mine, theirs = await factory.actor("admin"), await factory.actor("admin")
        await create_pipeline(client, theirs, "x", name="Theirs")

        response = await client.get(PIPELINES, headers=mine.headers)

        assert [p["name"] for p in response.json()["items"]] == ["Sales"]

    async def test_without_the_organization_header_is_400(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        """A member of several organizations must name one (§20.1)."""
        admin = await factory.actor("admin")
        await add_member(factory.db, await make_org(factory.db), admin.user, "admin")
        await factory.db.commit()

        response = await client.get(PIPELINES, headers=admin.auth)

        assert_problem(response, 400, "organization_required")


class TestCreatePipeline:
    async def test_admin_creates_one_with_ordered_initial_stages(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        body = {
            "name": "Projects",
            "stages": [{"key": "brief", "name": "Brief"}, {"key": "build", "name": "Build"}],
        }

        response = await client.post(PIPELINES, json=body, headers=admin.headers)

        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["location"] == f"{PIPELINES}/{created['id']}"
        assert response.headers["etag"] == '"1"'
        assert created["name"] == "Projects"
        assert created["is_default"] is False
        assert created["version"] == 1
        assert created["stages"] == [
            {"key": "brief", "name": "Brief", "position": 0, "is_archived": False},
            {"key": "build", "name": "Build", "position": 1, "is_archived": False},
        ]
        assert await stored_stages(db, created["id"]) == [
            ("brief", "Brief", 0, False),
            ("build", "Build", 1, False),
        ]
        (activity,) = await activities(db, "pipeline", created["id"])
        assert activity.action == "created"
        assert activity.actor_id == admin.user.id
        assert activity.changes["stages"] == [None, ["brief", "build"]]

    async def test_without_stages_it_starts_empty(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")

        response = await client.post(PIPELINES, json={"name": "Empty"}, headers=admin.headers)

        assert response.status_code == 201, response.text
        assert response.json()["stages"] == []

    async def test_as_default_it_takes_over_from_the_previous_default(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        old = await default_pipeline(client, admin)

        created = await create_pipeline(client, admin, "a", is_default=True)

        assert created["is_default"] is True
        stored = {p.id: p for p in await stored_pipelines(db, org_of(admin))}
        assert stored[created["id"]].is_default
        assert not stored[old["id"]].is_default
        assert stored[old["id"]].version == old["version"] + 1

    @pytest.mark.parametrize("role", ["manager", "member"])
    async def test_below_admin_is_403_and_nothing_is_stored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, role: str
    ) -> None:
        actor = await factory.actor(role)

        response = await client.post(PIPELINES, json={"name": "Nope"}, headers=actor.headers)

        assert_problem(response, 403, "permission_denied")
        assert await stored_pipelines(db, org_of(actor)) == []

    @pytest.mark.parametrize(
        "stages",
        [
            [{"key": "a", "name": "A"}, {"key": "a", "name": "Again"}],
            [{"key": "Not A Key", "name": "A"}],
            [{"key": "", "name": "A"}],
            [{"key": "a", "name": ""}],
            [{"key": "a"}],
        ],
    )
    async def test_invalid_stages_are_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, stages: list[dict[str, str]]
    ) -> None:
        admin = await factory.actor("admin")

        response = await client.post(PIPELINES, json={"name": "Bad", "stages": stages}, headers=admin.headers)

        assert_problem(response, 422, "validation_error")
        assert await stored_pipelines(db, org_of(admin)) == []

    async def test_server_owned_fields_are_refused(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")

        response = await client.post(PIPELINES, json={"name": "X", "version": 7}, headers=admin.headers)

        assert_problem(response, 422, "validation_error")

    async def test_a_repeated_idempotency_key_replays_the_first_answer(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        headers = {**admin.headers, "Idempotency-Key": "pipe-1"}

        first = await client.post(PIPELINES, json={"name": "Once"}, headers=headers)
        second = await client.post(PIPELINES, json={"name": "Once"}, headers=headers)

        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert len(await stored_pipelines(db, org_of(admin))) == 1


class TestGetPipeline:
    async def test_returns_the_pipeline_with_its_ordered_stages_and_etag(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        member = await factory.actor("member")
        default = await default_pipeline(client, member)

        response = await client.get(f"{PIPELINES}/{default['id']}", headers=member.headers)

        assert response.status_code == 200, response.text
        assert response.json() == default
        assert response.headers["etag"] == f'"{default["version"]}"'

    async def test_another_organizations_pipeline_is_404(self, client: AsyncClient, factory: Factory) -> None:
        mine, theirs = await factory.actor("owner"), await factory.actor("owner")
        foreign = await default_pipeline(client, theirs)

        response = await client.get(f"{PIPELINES}/{foreign['id']}", headers=mine.headers)

        assert_problem(response, 404, "not_found")


class TestUpdatePipeline:
    async def test_rename_bumps_the_version_and_logs_it(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a")

        response = await client.patch(
            f"{PIPELINES}/{created['id']}",
            json={"name": "Renamed"},
            headers={**admin.headers, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert response.json()["name"] == "Renamed"
        assert response.json()["version"] == 2
        assert response.headers["etag"] == '"2"'
        (stored,) = [p for p in await stored_pipelines(db, org_of(admin)) if p.id == created["id"]]
        assert stored.name == "Renamed"
        assert (await activities(db, "pipeline", created["id"]))[-1].changes == {
            "name": ["Projects", "Renamed"]
        }

    async def test_making_it_the_default_unsets_the_old_one(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        old = await default_pipeline(client, admin)
        created = await create_pipeline(client, admin, "a")

        response = await client.patch(
            f"{PIPELINES}/{created['id']}", json={"is_default": True}, headers=admin.headers
        )

        assert response.status_code == 200, response.text
        assert response.json()["is_default"] is True
        defaults = [p.id for p in await stored_pipelines(db, org_of(admin)) if p.is_default]
        assert defaults == [created["id"]]
        deal = await create_deal(client, admin)
        assert deal["pipeline_id"] == created["id"]
        assert deal["stage"] == "a"
        assert old["id"] != created["id"]

    async def test_unsetting_the_default_is_409(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)

        response = await client.patch(
            f"{PIPELINES}/{default['id']}", json={"is_default": False}, headers=admin.headers
        )

        assert_problem(response, 409, "pipeline_is_default")
        assert [p.is_default for p in await stored_pipelines(db, org_of(admin))] == [True]

    async def test_a_stale_if_match_is_412_and_nothing_changes(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a")
        await client.patch(f"{PIPELINES}/{created['id']}", json={"name": "Second"}, headers=admin.headers)

        response = await client.patch(
            f"{PIPELINES}/{created['id']}",
            json={"name": "Third"},
            headers={**admin.headers, "If-Match": '"1"'},
        )

        assert_problem(response, 412, "version_mismatch")
        names = [p.name for p in await stored_pipelines(db, org_of(admin))]
        assert "Second" in names
        assert "Third" not in names

    async def test_null_name_is_422(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a")

        response = await client.patch(
            f"{PIPELINES}/{created['id']}", json={"name": None}, headers=admin.headers
        )

        assert_invalid(response, "validation_error", "body", "name")

    async def test_a_manager_is_403(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "admin", "manager")
        created = await create_pipeline(client, actors["admin"], "a")

        response = await client.patch(
            f"{PIPELINES}/{created['id']}", json={"name": "Mine"}, headers=actors["manager"].headers
        )

        assert_problem(response, 403, "permission_denied")

    async def test_another_organizations_pipeline_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        mine, theirs = await factory.actor("owner"), await factory.actor("owner")
        foreign = await create_pipeline(client, theirs, "a")

        response = await client.patch(
            f"{PIPELINES}/{foreign['id']}", json={"is_default": True}, headers=mine.headers
        )

        assert_problem(response, 404, "not_found")
        assert [p.is_default for p in await stored_pipelines(db, org_of(theirs))] == [False]


class TestDeletePipeline:
    async def test_deletes_it_with_its_stages(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a", "b")

        response = await client.delete(f"{PIPELINES}/{created['id']}", headers=admin.headers)

        assert response.status_code == 204, response.text
        assert created["id"] not in [p.id for p in await stored_pipelines(db, org_of(admin))]
        assert await stored_stages(db, created["id"]) == []
        assert (await activities(db, "pipeline", created["id"]))[-1].action == "deleted"
        assert (await client.get(f"{PIPELINES}/{created['id']}", headers=admin.headers)).status_code == 404

    async def test_the_default_pipeline_is_409(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)

        response = await client.delete(f"{PIPELINES}/{default['id']}", headers=admin.headers)

        assert_problem(response, 409, "pipeline_is_default")
        assert len(await stored_pipelines(db, org_of(admin))) == 1

    @pytest.mark.parametrize("deleted", [False, True])
    async def test_a_pipeline_with_deals_is_409(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, deleted: bool
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a")
        deal = await create_deal(client, admin, pipeline_id=created["id"])
        if deleted:
            assert (
                await client.delete(f"/api/v1/deals/{deal['id']}", headers=admin.headers)
            ).status_code == 204

        response = await client.delete(f"{PIPELINES}/{created['id']}", headers=admin.headers)

        assert_problem(response, 409, "pipeline_in_use")
        assert await stored_stages(db, created["id"]) == [("a", "A", 0, False)]

    async def test_a_manager_is_403(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "admin", "manager")
        created = await create_pipeline(client, actors["admin"], "a")

        response = await client.delete(f"{PIPELINES}/{created['id']}", headers=actors["manager"].headers)

        assert_problem(response, 403, "permission_denied")

    async def test_another_organizations_pipeline_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        mine, theirs = await factory.actor("owner"), await factory.actor("owner")
        foreign = await create_pipeline(client, theirs, "a")

        response = await client.delete(f"{PIPELINES}/{foreign['id']}", headers=mine.headers)

        assert_problem(response, 404, "not_found")
        assert await stored_stages(db, foreign["id"]) == [("a", "A", 0, False)]


class TestAddStage:
    async def test_appends_it_last_by_default(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a", "b")

        response = await client.post(
            f"{PIPELINES}/{created['id']}/stages", json={"key": "c", "name": "C"}, headers=admin.headers
        )

        assert response.status_code == 201, response.text
        assert keys(response.json()) == ["a", "b", "c"]
        assert response.json()["version"] == 2
        assert response.headers["etag"] == '"2"'
        assert await stored_stages(db, created["id"]) == [
            ("a", "A", 0, False),
            ("b", "B", 1, False),
            ("c", "C", 2, False),
        ]
        activity = (await activities(db, "pipeline", created["id"]))[-1]
        assert activity.action == "updated"
        assert activity.payload == {"stage": "c", "op": "added"}

    async def test_inserts_it_at_a_position_moving_later_stages_down(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a", "b")

        response = await client.post(
            f"{PIPELINES}/{created['id']}/stages",
            json={"key": "first", "name": "First", "position": 0},
            headers=admin.headers,
        )

        assert response.status_code == 201, response.text
        assert [(s["key"], s["position"]) for s in response.json()["stages"]] == [
            ("first", 0),
            ("a", 1),
            ("b", 2),
        ]
        assert [s[:3:2] for s in await stored_stages(db, created["id"])] == [("first", 0), ("a", 1), ("b", 2)]

    async def test_a_key_the_pipeline_has_is_409(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)

        response = await client.post(
            f"{PIPELINES}/{default['id']}/stages",
            json={"key": "proposal", "name": "Again"},
            headers=admin.headers,
        )

        assert_problem(response, 409, "pipeline_stage_key_taken")
        assert [s[0] for s in await stored_stages(db, default["id"])] == DEFAULT_KEYS

    async def test_a_position_past_the_end_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a")

        response = await client.post(
            f"{PIPELINES}/{created['id']}/stages",
            json={"key": "z", "name": "Z", "position": 5},
            headers=admin.headers,
        )

        assert_invalid(response, "validation_error", "body", "position")
        assert await stored_stages(db, created["id"]) == [("a", "A", 0, False)]

    async def test_a_stale_if_match_is_412(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_pipeline(client, admin, "a")

        response = await client.post(
            f"{PIPELINES}/{created['id']}/stages",
            json={"key": "z", "name": "Z"},
            headers={**admin.headers, "If-Match": '"7"'},
        )

        assert_problem(response, 412, "version_mismatch")
        assert await stored_stages(db, created["id"]) == [("a", "A", 0, False)]

    async def test_a_manager_is_403(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "admin", "manager")
        default = await default_pipeline(client, actors["admin"])

        response = await client.post(
            f"{PIPELINES}/{default['id']}/stages",
            json={"key": "z", "name": "Z"},
            headers=actors["manager"].headers,
        )

        assert_problem(response, 403, "permission_denied")

    async def test_another_organizations_pipeline_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        mine, theirs = await factory.actor("owner"), await factory.actor("owner")
        foreign = await create_pipeline(client, theirs, "a")

        response = await client.post(
            f"{PIPELINES}/{foreign['id']}/stages", json={"key": "z", "name": "Z"}, headers=mine.headers
        )

        assert_problem(response, 404, "not_found")
        assert await stored_stages(db, foreign["id"]) == [("a", "A", 0, False)]


class TestUpdateStage:
    async def test_renames_it(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)

        response = await client.patch(
            f"{PIPELINES}/{default['id']}/stages/lead",
            json={"name": "Inbound"},
            headers={**admin.headers, "If-Match": f'"{default["version"]}"'},
        )

        assert response.status_code == 200, response.text
        assert response.json()["stages"][0] == {
            "key": "lead",
            "name": "Inbound",
            "position": 0,
            "is_archived": False,
        }
        assert response.json()["version"] == default["version"] + 1
        assert (await stored_stages(db, default["id"]))[0] == ("lead", "Inbound", 0, False)
        activity = (await activities(db, "pipeline", default["id"]))[-1]
        assert activity.changes == {"stages.lead.name": ["Lead", "Inbound"]}

    async def test_moves_it_to_another_position(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)

        response = await client.patch(
            f"{PIPELINES}/{default['id']}/stages/negotiation", json={"position": 1}, headers=admin.headers
        )

        assert response.status_code == 200, response.text
        expected = ["lead", "negotiation", "qualification", "proposal"]
        assert keys(response.json()) == expected
        assert [s["position"] for s in response.json()["stages"]] == [0, 1, 2, 3]
        assert [s[0] for s in await stored_stages(db, default["id"])] == expected

    async def test_archives_and_unarchives_an_unused_stage(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)
        url = f"{PIPELINES}/{default['id']}/stages/proposal"

        archived = await client.patch(url, json={"is_archived": True}, headers=admin.headers)
        blocked = await client.post(
            "/api/v1/deals", json={"title": "X", "stage": "proposal"}, headers=admin.headers
        )
        restored = await client.patch(url, json={"is_archived": False}, headers=admin.headers)

        assert archived.status_code == 200, archived.text
        assert archived.json()["stages"][2] == {
            "key": "proposal",
            "name": "Proposal",
            "position": 2,
            "is_archived": True,
        }
        assert_invalid(blocked, "invalid_stage", "body", "stage")
        assert restored.status_code == 200, restored.text
        assert (await stored_stages(db, default["id"]))[2] == ("proposal", "Proposal", 2, False)

    async def test_a_stage_with_live_deals_cannot_be_archived(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)
        await create_deal(client, admin, stage="proposal")

        response = await client.patch(
            f"{PIPELINES}/{default['id']}/stages/proposal",
            json={"is_archived": True, "name": "Gone"},
            headers=admin.headers,
        )

        assert_problem(response, 409, "stage_in_use")
        assert (await stored_stages(db, default["id"]))[2] == ("proposal", "Proposal", 2, False)

    async def test_a_stage_with_only_deleted_deals_can_be_archived(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)
        deal = await create_deal(client, admin, stage="proposal")
        await client.delete(f"/api/v1/deals/{deal['id']}", headers=admin.headers)

        response = await client.patch(
            f"{PIPELINES}/{default['id']}/stages/proposal", json={"is_archived": True}, headers=admin.headers
        )

        assert response.status_code == 200, response.text

    async def test_a_position_past_the_end_is_422(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)

        response = await client.patch(
            f"{PIPELINES}/{default['id']}/stages/lead", json={"position": 4}, headers=admin.headers
        )

        assert_invalid(response, "validation_error", "body", "position")

    async def test_an_unknown_key_is_404(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)

        response = await client.patch(
            f"{PIPELINES}/{default['id']}/stages/nope", json={"name": "X"}, headers=admin.headers
        )

        assert_problem(response, 404, "not_found")

    async def test_a_manager_is_403(self, client: AsyncClient, factory: Factory) -> None:
        actors = await team(factory, "admin", "manager")
        default = await default_pipeline(client, actors["admin"])

        response = await client.patch(
            f"{PIPELINES}/{default['id']}/stages/lead", json={"name": "X"}, headers=actors["manager"].headers
        )

        assert_problem(response, 403, "permission_denied")

    async def test_another_organizations_pipeline_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        mine, theirs = await factory.actor("owner"), await factory.actor("owner")
        foreign = await default_pipeline(client, theirs)

        response = await client.patch(
            f"{PIPELINES}/{foreign['id']}/stages/lead", json={"is_archived": True}, headers=mine.headers
        )

        assert_problem(response, 404, "not_found")
        assert (await stored_stages(db, foreign["id"]))[0] == ("lead", "Lead", 0, False)


class TestRemoveStage:
    async def test_removes_it_and_closes_the_gap(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)

        response = await client.delete(
            f"{PIPELINES}/{default['id']}/stages/qualification", headers=admin.headers
        )

        assert response.status_code == 204, response.text
        assert [s[:3:2] for s in await stored_stages(db, default["id"])] == [
            ("lead", 0),
            ("proposal", 1),
            ("negotiation", 2),
        ]
        activity = (await activities(db, "pipeline", default["id"]))[-1]
        assert activity.payload == {"stage": "qualification", "op": "removed"}

    @pytest.mark.parametrize("deleted", [False, True])
    async def test_a_stage_in_use_cannot_be_removed(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, deleted: bool
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)
        deal = await create_deal(client, admin, stage="qualification")
        if deleted:  # a deleted deal can come back, so its stage stays
            await client.delete(f"/api/v1/deals/{deal['id']}", headers=admin.headers)

        response = await client.delete(
            f"{PIPELINES}/{default['id']}/stages/qualification", headers=admin.headers
        )

        assert_problem(response, 409, "stage_in_use")
        assert [s[0] for s in await stored_stages(db, default["id"])] == DEFAULT_KEYS

    async def test_another_organizations_pipeline_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        mine, theirs = await factory.actor("owner"), await factory.actor("owner")
        foreign = await default_pipeline(client, theirs)

        response = await client.delete(f"{PIPELINES}/{foreign['id']}/stages/lead", headers=mine.headers)

        assert_problem(response, 404, "not_found")
        assert [s[0] for s in await stored_stages(db, foreign["id"])] == DEFAULT_KEYS


class TestAnalyticsCache:
    async def test_a_pipeline_write_bumps_the_organizations_cache_generation(
        self, client: AsyncClient, factory: Factory, redis: Redis
    ) -> None:
        admin = await factory.actor("admin")
        default = await default_pipeline(client, admin)
        before = int(await redis.get(f"gen:{admin.org_id}") or 0)

        await client.patch(
            f"{PIPELINES}/{default['id']}/stages/lead", json={"name": "New"}, headers=admin.headers
        )

        assert int(await redis.get(f"gen:{admin.org_id}") or 0) == before + 1

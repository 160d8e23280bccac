"""Custom field definitions are cached per organization in each API process; a change made through
one process is enforced by every other process's next request (two live API processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import update

from crm.config import Settings
from crm.models import CustomField
from tests.factories import PASSWORD, add_member, make_org, make_user
from tests.live_server import LiveServer, run_live_server

CONTACTS = "/api/v1/contacts"
FIELDS = "/api/v1/custom-fields"


@pytest.fixture
def two_processes(settings: Settings, tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    with (
        run_live_server(settings, tmp_path / "a.log") as a,
        run_live_server(settings, tmp_path / "b.log") as b,
    ):
        yield a, b


def codes(response: httpx.Response) -> list[tuple[str, str]]:
    return [(e["loc"][-1], e["type"]) for e in response.json().get("errors", [])]


@pytest.mark.committing
async def test_a_definition_changed_in_one_process_is_enforced_by_the_other_at_once(
    app: Any, committing_client: AsyncClient, two_processes: tuple[LiveServer, LiveServer], redis: Redis
) -> None:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "owner")
        await session.commit()
        email, org_id = user.email, org.id
    a_server, b_server = two_processes

    async with (
        httpx.AsyncClient(base_url=a_server.base, timeout=30) as a,
        httpx.AsyncClient(base_url=b_server.base, timeout=30) as b,
    ):
        login = await a.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        headers = {
            "Authorization": f"Bearer {login.json()['access_token']}",
            "X-Organization-ID": str(org_id),
        }

        async def contact_on_b(custom_fields: dict[str, Any]) -> httpx.Response:
            return await b.post(
                CONTACTS, json={"full_name": "Иван", "custom_fields": custom_fields}, headers=headers
            )

        # B caches the organization's definitions: none yet.
        unknown = await contact_on_b({"tier": "gold"})
        assert unknown.status_code == 422, unknown.text
        assert codes(unknown) == [("tier", "custom_field_unknown")]
        assert (await contact_on_b({})).status_code == 201

        # Defined through A: B's very next request knows it.
        created = await a.post(
            FIELDS,
            json={
                "entity": "contact",
                "key": "tier",
                "label": "Tier",
                "type": "select",
                "options": ["gold", "silver"],
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        assert (await contact_on_b({"tier": "gold"})).status_code == 201
        wrong = await contact_on_b({"tier": "bronze"})
        assert wrong.status_code == 422
        assert codes(wrong) == [("tier", "custom_field_type")]

        # Made required through A.
        required = await a.patch(f"{FIELDS}/{created.json()['id']}", json={"required": True}, headers=headers)
        assert required.status_code == 200, required.text
        missing = await contact_on_b({})
        assert missing.status_code == 422
        assert codes(missing) == [("tier", "missing")]

        # An option added through A.
        widened = await a.patch(
            f"{FIELDS}/{created.json()['id']}",
            json={"options": ["gold", "silver", "bronze"]},
            headers=headers,
        )
        assert widened.status_code == 200, widened.text
        assert (await contact_on_b({"tier": "bronze"})).status_code == 201

        # Deleted through A: unknown again on B.
        deleted = await a.delete(f"{FIELDS}/{created.json()['id']}", headers=headers)
        assert deleted.status_code == 204, deleted.text
        gone = await contact_on_b({"tier": "gold"})
        assert gone.status_code == 422
        assert codes(gone) == [("tier", "custom_field_unknown")]

        # Redis lost its generation (restart, flush): B does not trust what it cached before.
        recreated = await a.post(
            FIELDS,
            json={"entity": "contact", "key": "tier", "label": "Tier", "type": "number"},
            headers=headers,
        )
        assert recreated.status_code == 201, recreated.text
        assert (await contact_on_b({"tier": 3})).status_code == 201
        async with app.state.sessionmaker() as session:
            # Changed behind every process's back (no generation change), then Redis forgets.
            await session.execute(
                update(CustomField).where(CustomField.organization_id == org_id).values(type="text")
            )
            await session.commit()
        await redis.delete(f"cfgen:{org_id}")
        as_text = await contact_on_b({"tier": 3})
        assert as_text.status_code == 422
        assert codes(as_text) == [("tier", "custom_field_type")]

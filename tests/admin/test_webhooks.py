from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.admin.webhooks import match_entities
from crm.models import SyncJob
from tests.admin.conftest import create_integration, stored
from tests.admin.probe_provider import ProbeProvider
from tests.factories import Factory, assert_problem

FIXTURES = Path("/work/shared/fixtures")
if not FIXTURES.exists():  # CI: shared/ beside the checkout
    FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"

pytestmark = pytest.mark.usefixtures("probe")


def hook_path(integration: dict[str, Any]) -> str:
    return f"/api/v1/integrations/{integration['id']}/webhook"


async def jobs(db: AsyncSession, integration_id: int) -> list[SyncJob]:
    db.expunge_all()
    return list((await db.scalars(select(SyncJob).where(SyncJob.integration_id == integration_id))).all())


class TestMoySkladEvents:
    async def test_right_token_queues_targeted_sync(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        integration = await create_integration(client, admin)
        secret = (await stored(db, integration["id"])).webhook_secret
        body = (FIXTURES / "moysklad" / "webhook_update.json").read_bytes()

        response = await client.post(
            integration["webhook_url"].removeprefix("http://testserver"),
            content=body,
            headers={"Content-Type": "application/json"},
        )

        assert response.status_code == 200, response.text
        created = await jobs(db, integration["id"])
        assert len(created) == 1
        job = created[0]
        assert response.json() == {
            "queued": True,
            "job_id": job.id,
            "entities": ["customer_orders"],
            "duplicate": False,
        }
        assert job.trigger == "webhook"
        assert job.entities == ["customer_orders"]
        assert job.status == "queued"
        assert job.organization_id == admin.org_id
        assert secret in integration["webhook_url"]

    async def test_running_job_acknowledged_without_new_job(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        integration = await create_integration(client, admin)
        running = SyncJob(organization_id=admin.org_id, integration_id=integration["id"], status="running")
        db.add(running)
        await db.flush()
        body = (FIXTURES / "moysklad" / "webhook_create_demand.json").read_bytes()

        response = await client.post(integration["webhook_url"], content=body)

        assert response.status_code == 200
        assert response.json() == {
            "queued": False,
            "job_id": running.id,
            "entities": ["demands"],
            "duplicate": False,
        }
        assert [j.id for j in await jobs(db, integration["id"])] == [running.id]

    async def test_stock_notification(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        admin = await factory.actor("admin")
        integration = await create_integration(client, admin)
        body = (FIXTURES / "moysklad" / "webhookstock_notification.json").read_bytes()
        response = await client.post(integration["webhook_url"], content=body)
        assert response.status_code == 200
        assert response.json()["entities"] == ["stock"]

    @pytest.mark.parametrize("token", [None, "", "wrong-token"])
    async def test_wrong_or_missing_token(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, token: str | None
    ) -> None:
        admin = await factory.actor("admin")
        integration = await create_integration(client, admin)
        params = {} if token is None else {"token": token}
        body = (FIXTURES / "moysklad" / "webhook_update.json").read_bytes()
        response = await client.post(hook_path(integration), params=params, content=body)
        assert_problem(response, 401, "invalid_webhook_token")
        assert await jobs(db, integration["id"]) == []

    async def test_unknown_integration_looks_the_same(self, client: AsyncClient) -> None:
        response = await client.post(
            "/api/v1/integrations/987654321/webhook", params={"token": "x"}, content=b"{}"
        )
        assert_problem(response, 401, "invalid_webhook_token")

    async def test_another_integrations_token(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        first = await create_integration(client, admin)
        second = await create_integration(client, admin)
        token = first["webhook_url"].split("token=")[1]
        response = await client.post(hook_path(second), params={"token": token}, content=b"{}")
        assert_problem(response, 401, "invalid_webhook_token")

    async def test_nothing_to_sync_and_disabled(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        integration = await create_integration(client, admin)
        for body in (b"", b"not json", b'{"events": [{"meta": {"type": "webhook"}}]}', b"[1,2]"):
            response = await client.post(integration["webhook_url"], content=body)
            assert response.status_code == 200
            assert response.json() == {"queued": False, "job_id": None, "entities": [], "duplicate": False}
        disabled = await create_integration(client, admin, enabled=False)
        body = (FIXTURES / "moysklad" / "webhook_update.json").read_bytes()
        response = await client.post(disabled["webhook_url"], content=body)
        assert response.json()["queued"] is False
        assert await jobs(db, integration["id"]) == []
        assert await jobs(db, disabled["id"]) == []

    async def test_body_cap(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        integration = await create_integration(client, admin)
        response = await client.post(integration["webhook_url"], content=b"x" * (300 * 1024))
        assert_problem(response, 413, "payload_too_large")


class TestReplays:
    async def test_moysklad_retry_with_same_request_id_queues_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        integration = await create_integration(client, admin)
        body = (FIXTURES / "moysklad" / "webhook_update.json").read_bytes()
        url = integration["webhook_url"] + "&requestId=5f0c0e1e-1a40-11ef-0a80-0d5b00000999"

        first = await client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert first.status_code == 200, first.text
        assert first.json()["queued"] is True
        # The job finishes; MoySklad retries the same delivery (it did not see our answer in time).
        job = (await jobs(db, integration["id"]))[0]
        job.status = "succeeded"
        await db.flush()
        for _ in range(3):
            again = await client.post(url, content=body, headers={"Content-Type": "application/json"})
            assert again.status_code == 200
            assert again.json() == {
                "queued": False,
                "job_id": None,
                "entities": ["customer_orders"],
                "duplicate": True,
            }
        assert len(await jobs(db, integration["id"])) == 1
        # Another delivery (a new requestId) is a new event.
        other = integration["webhook_url"] + "&requestId=another-delivery"
        response = await client.post(other, content=body, headers={"Content-Type": "application/json"})
        assert response.json()["queued"] is True
        assert len(await jobs(db, integration["id"])) == 2

    async def test_bitrix_replay_is_harmless_and_forgery_queues_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Any
    ) -> None:
        admin = await factory.actor("admin")
        integration = await create_integration(
            client,
            admin,
            provider="bitrix24",
            base_url="http://127.0.0.1:9",
            settings={},
            credentials={
                "webhook_user_id": "1",
                "webhook_secret": "bitrix-secret-1",
                "application_token": "q8w2e5r7t1y9u3i6o0p4a2s8d6f1g3h7",
            },
        )
        body = (FIXTURES / "bitrix24" / "event_ONCRMDEALUPDATE.txt").read_bytes()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        forged = body.replace(b"q8w2e5r7t1y9u3i6o0p4a2s8d6f1g3h7", b"q8w2e5r7t1y9u3i6o0p4a2s8d6f1g3h8")

        response = await client.post(hook_path(integration), content=forged, headers=form)
        assert_problem(response, 401, "invalid_webhook_token")
        assert await jobs(db, integration["id"]) == []
        assert await redis.smembers(f"crm:sync:pending:{integration['id']}:deals") == set()

        response = await client.post(hook_path(integration), content=body, headers=form)
        assert response.status_code == 202
        assert response.json()["queued"] is True
        assert await redis.smembers(f"crm:sync:pending:{integration['id']}:deals") == {"1245"}
        replay = await client.post(hook_path(integration), content=body, headers=form)
        assert replay.status_code == 202
        assert replay.json()["duplicate"] is True
        assert replay.json()["queued"] is False
        assert len(await jobs(db, integration["id"])) == 1


class TestBitrix24Events:
    async def bitrix(self, client: AsyncClient, factory: Factory, **credentials: Any) -> dict[str, Any]:
        admin = await factory.actor("admin")
        return await create_integration(
            client,
            admin,
            provider="bitrix24",
            base_url="http://127.0.0.1:9",
            settings={},
            credentials={"webhook_user_id": "1", "webhook_secret": "bitrix-secret-1", **credentials},
        )

    async def test_application_token_checked(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        integration = await self.bitrix(client, factory, application_token="q8w2e5r7t1y9u3i6o0p4a2s8d6f1g3h7")
        body = (FIXTURES / "bitrix24" / "event_ONCRMDEALUPDATE.txt").read_bytes()
        form = {"Content-Type": "application/x-www-form-urlencoded"}

        response = await client.post(hook_path(integration), content=body, headers=form)

        assert response.status_code == 202, response.text
        assert response.json()["queued"] is True
        assert response.json()["entities"] == ["deals"]
        job = (await jobs(db, integration["id"]))[0]
        assert job.trigger == "webhook"
        assert job.entities == ["deals"]

    async def test_wrong_application_token(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        integration = await self.bitrix(client, factory, application_token="another-application-token")
        body = (FIXTURES / "bitrix24" / "event_ONCRMCONTACTADD.txt").read_bytes()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        # Even the URL token does not stand in for a configured application token.
        response = await client.post(integration["webhook_url"], content=body, headers=form)
        assert_problem(response, 401, "invalid_webhook_token")
        assert await jobs(db, integration["id"]) == []

    async def test_without_application_token_the_url_token_counts(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        integration = await self.bitrix(client, factory)
        body = (FIXTURES / "bitrix24" / "event_ONCRMCONTACTADD.txt").read_bytes()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        response = await client.post(hook_path(integration), content=body, headers=form)
        assert_problem(response, 401, "invalid_webhook_token")
        response = await client.post(integration["webhook_url"], content=body, headers=form)
        assert response.status_code == 202
        assert response.json()["entities"] == ["contacts"]


def test_match_entities() -> None:
    entities = ProbeProvider.entities
    assert match_entities(["productfolder", "product", "counterparty"], entities) == [
        "product_folders",
        "products",
        "counterparties",
    ]
    assert match_entities(["customerorder", "demand", "stock"], entities) == [
        "stock",
        "customer_orders",
        "demands",
    ]
    assert match_entities(["webhook", "nothing"], entities) == []
    assert match_entities(["demand"], ("shipments",)) == ["shipments"]

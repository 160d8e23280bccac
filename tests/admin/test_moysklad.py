"""The admin API with the built-in MoySklad provider, against the local fake MoySklad server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations.crypto import decrypt_credentials
from crm.integrations.registry import provider_names
from crm.models import SyncJob
from tests.admin.conftest import API, stored
from tests.admin.test_webhooks import FIXTURES
from tests.factories import Factory, assert_problem
from tests.fakes.moysklad import FakeConfig, FakeMoySklad, running

pytestmark = pytest.mark.skipif("moysklad" not in provider_names(), reason="MoySklad provider not installed")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMoySklad]:
    with running(FakeMoySklad(FakeConfig(products=3, counterparties=2, documents=1))) as server:
        yield server


def moysklad_body(fake: FakeMoySklad, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "moysklad",
        "name": "Tehnomir",
        "base_url": fake.base_url,
        "credentials": {"token": FakeConfig.token},
        "settings": {},
        "enabled": True,
    }
    body.update(overrides)
    return body


async def test_create_with_defaults(client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
    admin = await factory.actor("admin")
    body = {"provider": "moysklad", "name": "Shop", "credentials": {"login": "a@b", "password": "pw-1234"}}
    response = await client.post(API, json=body, headers=admin.headers)

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["base_url"] == "https://api.moysklad.ru/api/remap/1.2"
    assert created["credentials"] == {"login": "***", "password": "***"}
    assert created["sync_interval_minutes"] == 15
    row = await stored(db, created["id"])
    assert decrypt_credentials(row.credentials_encrypted) == {"login": "a@b", "password": "pw-1234"}


async def test_credentials_schema(client: AsyncClient, factory: Factory, fake: FakeMoySklad) -> None:
    admin = await factory.actor("admin")
    for credentials in (
        {},
        {"token": "t", "login": "a@b", "password": "p"},
        {"login": "a@b"},
        {"api_key": "x"},
    ):
        response = await client.post(
            API, json=moysklad_body(fake, credentials=credentials), headers=admin.headers
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"][:2] == ["body", "credentials"]
    response = await client.post(
        API, json=moysklad_body(fake, settings={"page_size": 0}), headers=admin.headers
    )
    assert_problem(response, 422, "validation_error")


async def test_connection_test_against_fake(
    client: AsyncClient, factory: Factory, fake: FakeMoySklad
) -> None:
    admin = await factory.actor("admin")
    response = await client.post(f"{API}/test", json=moysklad_body(fake), headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["ok"] is True

    wrong = moysklad_body(fake, credentials={"token": "definitely-not-the-token"})
    response = await client.post(f"{API}/test", json=wrong, headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert "definitely-not-the-token" not in response.text

    response = await client.post(API, json=moysklad_body(fake), headers=admin.headers)
    saved = response.json()
    response = await client.post(f"{API}/{saved['id']}/test", headers=admin.headers)
    assert response.json()["ok"] is True
    assert FakeConfig.token not in response.text


async def test_login_password_connection(client: AsyncClient, factory: Factory, fake: FakeMoySklad) -> None:
    admin = await factory.actor("admin")
    body = moysklad_body(fake, credentials={"login": FakeConfig.login, "password": FakeConfig.password})
    response = await client.post(f"{API}/test", json=body, headers=admin.headers)
    assert response.json()["ok"] is True
    body = moysklad_body(fake, credentials={"login": FakeConfig.login, "password": "wrong-password"})
    response = await client.post(f"{API}/test", json=body, headers=admin.headers)
    assert response.json()["ok"] is False
    assert "wrong-password" not in response.text


async def test_webhook_queues_moysklad_entities(
    client: AsyncClient, factory: Factory, fake: FakeMoySklad, db: AsyncSession
) -> None:
    admin = await factory.actor("admin")
    created = (await client.post(API, json=moysklad_body(fake), headers=admin.headers)).json()
    body = (FIXTURES / "moysklad" / "webhook_create_demand.json").read_bytes()
    response = await client.post(
        created["webhook_url"], content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["entities"] == ["demands"]
    db.expunge_all()
    job = await db.scalar(select(SyncJob).where(SyncJob.integration_id == created["id"]))
    assert job is not None
    assert job.entities == ["demands"]
    assert job.trigger == "webhook"

"""Connecting a portal with the inbound webhook URL exactly as Bitrix24 shows it: the user and the
secret in it become credentials (encrypted, shown as `***`), never part of the stored address."""

from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations.crypto import decrypt_credentials
from crm.models import Integration
from tests.factories import Factory, assert_problem

API = "/api/v1/admin/integrations"
SECRET = "x8a2k4m9q1w7e3r5"


async def stored(db: AsyncSession, integration_id: int) -> Integration:
    integration = await db.scalar(select(Integration).where(Integration.id == integration_id))
    assert integration is not None
    await db.refresh(integration)
    return integration


async def test_the_whole_webhook_url_is_split_into_address_and_credentials(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    admin = await factory.actor("admin")

    created = await client.post(
        API,
        json={"provider": "bitrix24", "name": "Portal", "base_url": f"http://127.0.0.1:9/rest/7/{SECRET}/"},
        headers=admin.headers,
    )

    assert created.status_code == 201, created.text
    assert SECRET not in created.text
    assert created.json()["base_url"] == "http://127.0.0.1:9"
    assert created.json()["credentials"] == {"webhook_user_id": "***", "webhook_secret": "***"}
    integration = await stored(db, created.json()["id"])
    assert integration.base_url == "http://127.0.0.1:9"
    assert decrypt_credentials(integration.credentials_encrypted) == {
        "webhook_user_id": "7",
        "webhook_secret": SECRET,
    }

    # Later the admin adds the events' token, then pastes a regenerated webhook URL: each keeps the rest.
    current = await client.get(f"{API}/{created.json()['id']}", headers=admin.headers)
    token = await client.patch(
        f"{API}/{created.json()['id']}",
        json={
            "credentials": {"webhook_user_id": "***", "webhook_secret": "***", "application_token": "tok123"}
        },
        headers={**admin.headers, "If-Match": current.headers["etag"]},
    )
    assert token.status_code == 200, token.text
    moved = await client.patch(
        f"{API}/{created.json()['id']}",
        json={"base_url": "http://127.0.0.1:9/rest/7/newsecret42/"},
        headers={**admin.headers, "If-Match": token.headers["etag"]},
    )
    assert moved.status_code == 200, moved.text
    assert "newsecret42" not in moved.text
    assert moved.json()["base_url"] == "http://127.0.0.1:9"
    integration = await stored(db, created.json()["id"])
    assert decrypt_credentials(integration.credentials_encrypted) == {
        "webhook_user_id": "7",
        "webhook_secret": "newsecret42",
        "application_token": "tok123",
    }


async def test_a_url_and_credentials_that_disagree_are_refused(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    admin = await factory.actor("admin")

    response = await client.post(
        API,
        json={
            "provider": "bitrix24",
            "name": "Portal",
            "base_url": f"http://127.0.0.1:9/rest/7/{SECRET}/",
            "credentials": {"webhook_user_id": "7", "webhook_secret": "another"},
        },
        headers={**admin.headers, "Accept-Language": "ru"},
    )

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "credentials", "webhook_secret"]
    assert body["errors"][0]["msg"] == "не совпадает со значением в base_url"
    assert SECRET not in response.text
    assert "another" not in response.text
    assert (await db.scalars(select(Integration))).all() == []

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from crm.admin.jobs import rotate_all_credentials
from crm.integrations.crypto import decrypt_credentials
from tests.admin.conftest import API, SECRET_KEY, create_integration, stored
from tests.factories import Factory

pytestmark = pytest.mark.usefixtures("probe")


class TestKeyRotation:
    async def test_old_key_still_reads_and_rotation_reencrypts(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Any
    ) -> None:
        old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        override_settings(encryption_key=old)
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        token = bytes((await stored(db, created["id"])).credentials_encrypted)
        assert Fernet(old.encode()).decrypt(token)

        override_settings(encryption_key=f"{new},{old}")
        response = await client.get(f"{API}/{created['id']}", headers=admin.headers)
        assert response.json()["credentials"] == {"api_key": "***", "account": "***"}
        response = await client.post(f"{API}/{created['id']}/test", headers=admin.headers)
        assert response.json()["ok"] is True

        assert await rotate_all_credentials(db) == (1, 0)
        rotated = bytes((await stored(db, created["id"])).credentials_encrypted)
        assert rotated != token
        assert Fernet(new.encode()).decrypt(rotated)

        override_settings(encryption_key=new)  # the old key retired
        assert decrypt_credentials(rotated) == {"api_key": SECRET_KEY, "account": "acme-account"}

    async def test_new_writes_use_first_key(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Any
    ) -> None:
        old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        override_settings(encryption_key=f"{new},{old}")
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        token = bytes((await stored(db, created["id"])).credentials_encrypted)
        assert Fernet(new.encode()).decrypt(token)

    async def test_unreadable_credentials_are_masked_empty_and_test_fails_softly(
        self, client: AsyncClient, factory: Factory, override_settings: Any
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        override_settings(encryption_key=Fernet.generate_key().decode())
        response = await client.get(f"{API}/{created['id']}", headers=admin.headers)
        assert response.status_code == 200
        assert response.json()["credentials"] == {}
        response = await client.post(f"{API}/{created['id']}/test", headers=admin.headers)
        assert response.json() == {"ok": False, "detail": "the stored credentials cannot be decrypted"}

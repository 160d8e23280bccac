"""`crm.auth.dependencies`: who is calling, seen through `GET /auth/me`."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import User
from tests.auth.support import ME, assert_unauthorized, bearer, login_pair
from tests.factories import Factory


class TestGetClaims:
    @pytest.mark.parametrize(
        "authorization",
        [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"],
        ids=["absent", "empty", "scheme-only", "scheme-and-space", "basic", "other-scheme"],
    )
    async def test_missing_bearer_token_is_401(self, client: AsyncClient, authorization: str | None) -> None:
        headers = {} if authorization is None else {"Authorization": authorization}

        response = await client.get(ME, headers=headers)

        assert_unauthorized(response, "not_authenticated")

    async def test_scheme_is_case_insensitive(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)

        response = await client.get(ME, headers={"Authorization": f"bearer {pair['access_token']}"})

        assert response.status_code == 200, response.text


class TestGetCurrentAuth:
    async def test_deleted_user_is_401(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        await db.execute(delete(User).where(User.id == user.id))
        await db.commit()

        response = await client.get(ME, headers=bearer(pair["access_token"]))

        assert_unauthorized(response)

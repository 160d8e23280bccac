"""`crm.auth.revocation`: session liveness cached in Redis, PostgreSQL behind it, and Redis down."""

from __future__ import annotations

from datetime import UTC, datetime

from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.auth.revocation import ALIVE_TTL
from crm.config import Settings
from crm.models import UserSession
from tests.auth.support import (
    LOGIN,
    LOGOUT,
    ME,
    PASSWORD_URL,
    REFRESH,
    age_spent_tokens,
    assert_unauthorized,
    bearer,
    claims,
    login_pair,
    session_count,
    stored_session,
)
from tests.factories import PASSWORD, Factory

NEW_PASSWORD = "Another-Unusual-Passw0rd-7"


class TestSessionAlive:
    async def test_alive_mark_is_cached_briefly(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Redis
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        sid = claims(pair["access_token"])["sid"]

        response = await client.get(ME, headers=bearer(pair["access_token"]))

        assert response.status_code == 200
        assert await redis.get(f"sess:{sid}") == "1"
        assert 0 < await redis.ttl(f"sess:{sid}") <= ALIVE_TTL

    async def test_revoked_mark_outlives_the_access_tokens(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Redis, settings: Settings
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        sid = claims(pair["access_token"])["sid"]

        await client.post(LOGOUT, headers=bearer(pair["access_token"]))

        assert await redis.get(f"sess:{sid}") == "0"
        assert await redis.ttl(f"sess:{sid}") > settings.access_token_expire_minutes * 60 + 30

    async def test_revocation_missed_by_redis_is_read_from_postgres(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Redis
    ) -> None:
        """Revoked while Redis was away: once the alive mark is gone, PostgreSQL answers (and is cached)."""
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        sid = claims(pair["access_token"])["sid"]
        await db.execute(
            update(UserSession).where(UserSession.id == sid).values(revoked_at=datetime.now(UTC))
        )
        await db.commit()

        response = await client.get(ME, headers=bearer(pair["access_token"]))

        assert_unauthorized(response)
        assert await redis.get(f"sess:{sid}") == "0"

    async def test_revoked_mark_wins_over_the_database(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Redis
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        sid = claims(pair["access_token"])["sid"]
        await redis.set(f"sess:{sid}", "0")

        response = await client.get(ME, headers=bearer(pair["access_token"]))

        assert_unauthorized(response)
        assert (await stored_session(db, sid)).revoked_at is None


class TestRedisDown:
    async def test_ready_reports_degraded(self, redis_down_client: AsyncClient) -> None:
        response = await redis_down_client.get("/ready")

        assert response.status_code == 200
        assert response.json() == {"status": "degraded", "database": "ok", "redis": "down"}

    async def test_login_and_me_work(
        self, redis_down_client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()

        login = await redis_down_client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
        me = await redis_down_client.get(ME, headers=bearer(login.json()["access_token"]))

        assert login.status_code == 200, login.text
        assert me.status_code == 200, me.text
        assert me.json()["id"] == user.id
        assert await session_count(db, user.id) == 1

    async def test_logout_revokes_through_postgres(
        self, redis_down_client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(redis_down_client, user.email)
        assert (await redis_down_client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200

        response = await redis_down_client.post(LOGOUT, headers=bearer(pair["access_token"]))

        assert response.status_code == 204
        assert_unauthorized(await redis_down_client.get(ME, headers=bearer(pair["access_token"])))
        assert_unauthorized(
            await redis_down_client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
        )
        assert (await stored_session(db, claims(pair["access_token"])["sid"])).revoked_reason == "logout"

    async def test_refresh_reuse_revokes_through_postgres(
        self, redis_down_client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        first = await login_pair(redis_down_client, user.email)
        second = (
            await redis_down_client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
        ).json()
        await age_spent_tokens(db, claims(first["access_token"])["sid"])

        reuse = await redis_down_client.post(REFRESH, json={"refresh_token": first["refresh_token"]})

        assert_unauthorized(reuse, "refresh_token_reused")
        assert_unauthorized(await redis_down_client.get(ME, headers=bearer(second["access_token"])))
        assert (
            await stored_session(db, claims(first["access_token"])["sid"])
        ).revoked_reason == "refresh_reuse"

    async def test_password_change_revokes_other_sessions(
        self, redis_down_client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        here = await login_pair(redis_down_client, user.email)
        elsewhere = await login_pair(redis_down_client, user.email)

        response = await redis_down_client.post(
            PASSWORD_URL,
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(here["access_token"]),
        )

        assert response.status_code == 204, response.text
        assert (await redis_down_client.get(ME, headers=bearer(here["access_token"]))).status_code == 200
        assert_unauthorized(await redis_down_client.get(ME, headers=bearer(elsewhere["access_token"])))

"""`crm.core.ratelimit` on the auth endpoints: per IP, per account (failures only), the IETF draft
headers, trusted proxies, and the PostgreSQL fallback when Redis is down.

Limits are set per test with `override_settings`; windows are an hour so that no test straddles one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from httpx import AsyncClient, Response
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import RateLimitCounter, User
from tests.auth.support import (
    LOGIN,
    REFRESH,
    REGISTER,
    TOKEN,
    assert_problem,
    assert_unauthorized,
    claims,
    login_pair,
    session_count,
    stored_session,
    user_count,
)
from tests.factories import PASSWORD, Factory

Override = Callable[..., None]
WRONG = "Wrong-Passw0rd-1"


def assert_rate_limited(response: Response, name: str, limit: int, window: int) -> int:
    """A 429 with `Retry-After` and the draft's headers; returns the seconds to wait."""
    assert_problem(response, 429, "rate_limited")
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= window
    assert response.headers["ratelimit-policy"] == f'"{name}";q={limit};w={window}'
    assert response.headers["ratelimit"] == f'"{name}";r=0;t={retry_after}'
    return retry_after


def remaining(response: Response, name: str) -> int:
    match = re.fullmatch(rf'"{name}";r=(\d+);t=(\d+)', response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return int(match[1])


class TestLoginPerIp:
    async def test_429_once_the_window_is_full(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_ip="3/hour")
        user = await factory.user()
        await db.commit()
        answers = [
            await client.post(LOGIN, json={"email": user.email, "password": password})
            for password in (PASSWORD, WRONG, PASSWORD)
        ]
        assert [a.status_code for a in answers] == [200, 401, 200]
        assert answers[0].headers["ratelimit-policy"] == '"login";q=3;w=3600'
        assert remaining(answers[0], "login") == 2
        assert remaining(answers[2], "login") == 0
        assert "retry-after" not in answers[0].headers

        response = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})

        assert_rate_limited(response, "login", 3, 3600)
        assert await session_count(db, user.id) == 2

    async def test_token_endpoint_shares_the_login_window(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_ip="2/hour")
        user = await factory.user()
        await db.commit()
        await login_pair(client, user.email)
        await login_pair(client, user.email)

        response = await client.post(TOKEN, data={"username": user.email, "password": PASSWORD})

        assert_rate_limited(response, "login", 2, 3600)
        assert await session_count(db, user.id) == 2

    async def test_trusted_proxy_forwards_the_client_address(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_ip="1/hour", trusted_proxies="127.0.0.0/8")
        user = await factory.user()
        await db.commit()
        first = await login_pair(client, user.email, **{"X-Forwarded-For": "198.51.100.7, 203.0.113.1"})

        same_client = await client.post(
            LOGIN,
            json={"email": user.email, "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.1"},
        )
        other_client = await client.post(
            LOGIN,
            json={"email": user.email, "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.2"},
        )

        assert_rate_limited(same_client, "login", 1, 3600)
        assert other_client.status_code == 200, other_client.text
        assert (await stored_session(db, claims(first["access_token"])["sid"])).ip == "203.0.113.1"
        assert (
            await stored_session(db, claims(other_client.json()["access_token"])["sid"])
        ).ip == "203.0.113.2"

    async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_ip="1/hour", trusted_proxies="")
        user = await factory.user()
        await db.commit()
        first = await login_pair(client, user.email, **{"X-Forwarded-For": "203.0.113.1"})

        spoofed = await client.post(
            LOGIN,
            json={"email": user.email, "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )

        assert_rate_limited(spoofed, "login", 1, 3600)
        assert (await stored_session(db, claims(first["access_token"])["sid"])).ip == "127.0.0.1"

    async def test_off_disables_the_limit(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_ip="off")
        user = await factory.user()
        await db.commit()

        answers = [
            await client.post(LOGIN, json={"email": user.email, "password": PASSWORD}) for _ in range(4)
        ]

        assert [a.status_code for a in answers] == [200] * 4
        assert "ratelimit" not in answers[-1].headers
        assert await session_count(db, user.id) == 4


class TestLoginPerAccount:
    async def test_failed_logins_lock_the_account(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_account="3/hour")
        user = await factory.user()
        await db.commit()
        for _ in range(3):
            failed = await client.post(LOGIN, json={"email": user.email, "password": WRONG})
            assert_unauthorized(failed, "invalid_credentials")

        # Even the right password is refused until the window ends.
        response = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})

        assert_rate_limited(response, "login-account", 3, 3600)
        assert await session_count(db, user.id) == 0

    async def test_only_failures_count(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_account="2/hour")
        user = await factory.user()
        await db.commit()
        await client.post(LOGIN, json={"email": user.email, "password": WRONG})

        answers = [
            await client.post(LOGIN, json={"email": user.email, "password": PASSWORD}) for _ in range(4)
        ]

        assert [a.status_code for a in answers] == [200] * 4
        assert await session_count(db, user.id) == 4

    async def test_other_accounts_are_not_affected(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_account="2/hour")
        locked = await factory.user()
        other = await factory.user()
        await db.commit()
        for _ in range(2):
            await client.post(LOGIN, json={"email": locked.email, "password": WRONG})

        response = await client.post(LOGIN, json={"email": other.email, "password": PASSWORD})

        assert response.status_code == 200, response.text
        assert_rate_limited(
            await client.post(LOGIN, json={"email": locked.email, "password": PASSWORD}),
            "login-account",
            2,
            3600,
        )

    async def test_counts_the_email_in_any_case_and_unknown_ones_too(
        self, client: AsyncClient, override_settings: Override
    ) -> None:
        override_settings(rate_limit_login_per_account="2/hour")
        await client.post(LOGIN, json={"email": "Ghost@Example.com", "password": WRONG})
        await client.post(LOGIN, json={"email": "GHOST@EXAMPLE.COM", "password": WRONG})

        response = await client.post(TOKEN, data={"username": "ghost@example.com", "password": WRONG})

        assert_rate_limited(response, "login-account", 2, 3600)

    async def test_keeps_counting_while_locked(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        redis: Redis,
        override_settings: Override,
    ) -> None:
        """A locked account's attempts are refused before the password is checked: nothing more is counted."""
        override_settings(rate_limit_login_per_account="1/hour")
        user = await factory.user()
        await db.commit()
        await client.post(LOGIN, json={"email": user.email, "password": WRONG})

        for _ in range(3):
            assert (
                await client.post(LOGIN, json={"email": user.email, "password": WRONG})
            ).status_code == 429

        [key] = await redis.keys("rl:login-account:*")
        assert key.startswith(f"rl:login-account:{user.email}:")
        assert await redis.get(key) == "1"


class TestRegisterPerIp:
    async def test_429_once_the_window_is_full(
        self, client: AsyncClient, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_register_per_ip="2/hour")
        for n in range(2):
            created = await client.post(
                REGISTER, json={"email": f"signup{n}@example.com", "password": PASSWORD, "full_name": "S"}
            )
            assert created.status_code == 201, created.text
        before = await user_count(db)

        response = await client.post(
            REGISTER, json={"email": "signup9@example.com", "password": PASSWORD, "full_name": "S"}
        )

        assert_rate_limited(response, "register", 2, 3600)
        assert await user_count(db) == before
        assert (await db.execute(select(User).where(User.email == "signup9@example.com"))).first() is None


class TestRefreshPerIp:
    async def test_429_once_the_window_is_full(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Override
    ) -> None:
        override_settings(rate_limit_refresh_per_ip="1/hour")
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        rotated = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
        assert rotated.status_code == 200, rotated.text

        response = await client.post(REFRESH, json={"refresh_token": rotated.json()["refresh_token"]})

        assert_rate_limited(response, "refresh", 1, 3600)
        # Refused before the token was looked at: it is still the live one.
        session = await stored_session(db, claims(pair["refresh_token"])["sid"])
        assert session.refresh_jti == claims(rotated.json()["refresh_token"])["jti"]
        assert session.revoked_at is None


class TestPostgresFallback:
    async def test_login_limit_counts_in_postgres(
        self,
        redis_down_client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        override_settings: Override,
    ) -> None:
        override_settings(rate_limit_login_per_ip="2/hour")
        user = await factory.user()
        await db.commit()
        for _ in range(2):
            ok = await redis_down_client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
            assert ok.status_code == 200, ok.text

        response = await redis_down_client.post(LOGIN, json={"email": user.email, "password": PASSWORD})

        assert_rate_limited(response, "login", 2, 3600)
        assert await session_count(db, user.id) == 2
        db.expunge_all()
        [counter] = (
            await db.execute(select(RateLimitCounter).where(RateLimitCounter.key.like("rl:login:ip:%")))
        ).scalars()
        assert counter.key.startswith("rl:login:ip:127.0.0.1:")
        assert counter.count == 3

    async def test_failed_logins_lock_the_account_in_postgres(
        self,
        redis_down_client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        override_settings: Override,
    ) -> None:
        override_settings(rate_limit_login_per_account="2/hour")
        user = await factory.user()
        await db.commit()
        for _ in range(2):
            failed = await redis_down_client.post(LOGIN, json={"email": user.email, "password": WRONG})
            assert_unauthorized(failed, "invalid_credentials")

        response = await redis_down_client.post(LOGIN, json={"email": user.email, "password": PASSWORD})

        assert_rate_limited(response, "login-account", 2, 3600)
        assert await session_count(db, user.id) == 0

    async def test_long_keys_are_hashed(self, redis_down_client: AsyncClient, db: AsyncSession) -> None:
        email = "x" * 300 + "@example.com"

        response = await redis_down_client.post(LOGIN, json={"email": email, "password": WRONG})

        assert_unauthorized(response, "invalid_credentials")
        db.expunge_all()
        [counter] = (
            await db.execute(select(RateLimitCounter).where(RateLimitCounter.key.like("rl:login-account:%")))
        ).scalars()
        assert counter.key.startswith("rl:login-account:sha256:")
        assert len(counter.key) < 300
        assert counter.count == 1

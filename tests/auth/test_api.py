"""The `/api/v1/auth` endpoints over HTTP, against the real database and Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.security import password_hash
from crm.models import User, UserSession
from tests.auth.support import (
    LOGIN,
    LOGOUT,
    ME,
    PASSWORD_URL,
    REFRESH,
    REGISTER,
    SESSIONS,
    TOKEN,
    age_spent_tokens,
    assert_problem,
    assert_unauthorized,
    assert_validation_error,
    bearer,
    claims,
    login_pair,
    session_count,
    stored_session,
    stored_user,
    user_count,
)
from tests.factories import PASSWORD, Factory, add_member

NEW_PASSWORD = "Another-Unusual-Passw0rd-7"


async def _deactivate(db: AsyncSession, user_id: int) -> None:
    await db.execute(update(User).where(User.id == user_id).values(is_active=False))
    await db.commit()


class TestRegister:
    async def test_creates_user_without_tokens(self, client: AsyncClient, db: AsyncSession) -> None:
        response = await client.post(
            REGISTER, json={"email": "New.User@Example.COM", "password": PASSWORD, "full_name": "New User"}
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"id", "email", "full_name", "is_active", "is_superuser", "created_at"}
        assert body["email"] == "new.user@example.com"
        assert body["full_name"] == "New User"
        assert body["is_active"] is True
        assert body["is_superuser"] is False
        assert body["created_at"].endswith("Z")
        assert response.headers["location"] == "/api/v1/auth/me"
        assert response.headers["cache-control"] == "no-store"
        user = await stored_user(db, body["id"])
        assert user.email == "new.user@example.com"
        assert user.password_hash.startswith("$argon2id$")
        assert password_hash.verify(PASSWORD, user.password_hash)
        assert await session_count(db, user.id) == 0

    async def test_new_user_can_log_in(self, client: AsyncClient, db: AsyncSession) -> None:
        await client.post(
            REGISTER, json={"email": "fresh@example.com", "password": PASSWORD, "full_name": "F"}
        )

        response = await client.post(LOGIN, json={"email": "FRESH@example.com", "password": PASSWORD})

        assert response.status_code == 200, response.text
        user = (await db.execute(select(User).where(User.email == "fresh@example.com"))).scalar_one()
        assert await session_count(db, user.id) == 1

    async def test_email_taken_in_other_case_is_409(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        await factory.user(email="taken@example.com", full_name="First")
        await db.commit()
        before = await user_count(db)

        response = await client.post(
            REGISTER, json={"email": "Taken@EXAMPLE.com", "password": PASSWORD, "full_name": "Second"}
        )

        assert_problem(response, 409, "user_email_taken")
        assert await user_count(db) == before
        stored = (await db.execute(select(User).where(User.email == "taken@example.com"))).scalar_one()
        assert stored.full_name == "First"

    async def test_password_too_short_is_422(self, client: AsyncClient, db: AsyncSession) -> None:
        before = await user_count(db)

        response = await client.post(
            REGISTER, json={"email": "short@example.com", "password": "Xk3#pq7", "full_name": "S"}
        )

        [error] = assert_validation_error(response, "body", "password")
        assert error["type"] == "string_too_short"
        assert await user_count(db) == before

    async def test_password_too_long_is_422(self, client: AsyncClient, db: AsyncSession) -> None:
        before = await user_count(db)

        response = await client.post(
            REGISTER, json={"email": "long@example.com", "password": "Xk3#" * 32 + "z", "full_name": "L"}
        )

        [error] = assert_validation_error(response, "body", "password")
        assert error["type"] == "string_too_long"
        assert await user_count(db) == before

    async def test_common_password_is_422(self, client: AsyncClient, db: AsyncSession) -> None:
        before = await user_count(db)

        response = await client.post(
            REGISTER, json={"email": "common@example.com", "password": "Password123", "full_name": "C"}
        )

        [error] = assert_validation_error(response, "body", "password")
        assert "too common" in error["msg"]
        assert await user_count(db) == before

    async def test_blank_password_is_422(self, client: AsyncClient, db: AsyncSession) -> None:
        before = await user_count(db)

        response = await client.post(
            REGISTER, json={"email": "blank@example.com", "password": " " * 12, "full_name": "B"}
        )

        assert_validation_error(response, "body", "password")
        assert await user_count(db) == before

    async def test_password_is_kept_exactly_as_typed(self, client: AsyncClient, db: AsyncSession) -> None:
        typed = "  Spaced-Unusual-Passw0rd  "
        response = await client.post(
            REGISTER, json={"email": "spaces@example.com", "password": typed, "full_name": "S"}
        )
        assert response.status_code == 201, response.text

        stripped = await client.post(LOGIN, json={"email": "spaces@example.com", "password": typed.strip()})
        exact = await client.post(LOGIN, json={"email": "spaces@example.com", "password": typed})

        assert_unauthorized(stripped, "invalid_credentials")
        assert exact.status_code == 200, exact.text
        user = await stored_user(db, response.json()["id"])
        assert password_hash.verify(typed, user.password_hash)

    async def test_unknown_field_is_422(self, client: AsyncClient, db: AsyncSession) -> None:
        before = await user_count(db)

        response = await client.post(
            REGISTER,
            json={"email": "mass@example.com", "password": PASSWORD, "full_name": "M", "is_superuser": True},
        )

        [error] = assert_validation_error(response, "body", "is_superuser")
        assert error["type"] == "extra_forbidden"
        assert await user_count(db) == before

    async def test_invalid_email_is_422(self, client: AsyncClient, db: AsyncSession) -> None:
        before = await user_count(db)

        response = await client.post(
            REGISTER, json={"email": "not-an-email", "password": PASSWORD, "full_name": "N"}
        )

        assert_validation_error(response, "body", "email")
        assert await user_count(db) == before

    async def test_blank_full_name_is_422(self, client: AsyncClient, db: AsyncSession) -> None:
        before = await user_count(db)

        response = await client.post(
            REGISTER, json={"email": "noname@example.com", "password": PASSWORD, "full_name": "   "}
        )

        assert_validation_error(response, "body", "full_name")
        assert await user_count(db) == before


class TestLogin:
    async def test_returns_token_pair(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        user = await factory.user()
        await db.commit()

        response = await client.post(
            LOGIN, json={"email": user.email, "password": PASSWORD}, headers={"User-Agent": "pytest-agent"}
        )

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        access, refresh = claims(body["access_token"]), claims(body["refresh_token"])
        assert access["type"] == "access"
        assert refresh["type"] == "refresh"
        assert access["sub"] == refresh["sub"] == str(user.id)
        assert access["sid"] == refresh["sid"]
        assert access["exp"] - access["iat"] == 900
        assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
        assert access["iss"] == "crm"
        assert access["aud"] == "crm-api"
        assert access["jti"] != refresh["jti"]
        session = await stored_session(db, access["sid"])
        assert session.user_id == user.id
        assert session.refresh_jti == refresh["jti"]
        assert session.revoked_at is None
        assert session.user_agent == "pytest-agent"
        assert session.ip == "127.0.0.1"
        assert session.expires_at > datetime.now(UTC) + timedelta(days=6)
        assert (await stored_user(db, user.id)).last_login_at is not None

    async def test_email_is_case_insensitive(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user(email="mixed@example.com")
        await db.commit()

        response = await client.post(LOGIN, json={"email": "  MIXED@Example.com ", "password": PASSWORD})

        assert response.status_code == 200, response.text
        assert claims(response.json()["access_token"])["sub"] == str(user.id)

    async def test_unknown_email_and_wrong_password_answer_alike(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()

        unknown = await client.post(LOGIN, json={"email": "nobody@example.com", "password": PASSWORD})
        wrong = await client.post(LOGIN, json={"email": user.email, "password": "Wrong-Passw0rd-1"})

        assert_unauthorized(unknown, "invalid_credentials")
        assert_unauthorized(wrong, "invalid_credentials")
        assert unknown.json() == wrong.json()
        assert await session_count(db, user.id) == 0
        assert (await stored_user(db, user.id)).last_login_at is None

    async def test_unknown_email_takes_as_long_as_a_wrong_password(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()

        async def fastest(email: str) -> float:
            times = []
            for _ in range(3):
                start = time.perf_counter()
                response = await client.post(LOGIN, json={"email": email, "password": "Wrong-Passw0rd-1"})
                times.append(time.perf_counter() - start)
                assert response.status_code == 401
            return min(times)

        unknown, wrong = await fastest("nobody@example.com"), await fastest(user.email)

        # Both run one Argon2 verification; without the dummy hash an unknown email is ~10x faster.
        assert unknown > wrong * 0.5

    async def test_inactive_user_is_401(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user(is_active=False)
        await db.commit()

        response = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})

        body = assert_unauthorized(response, "invalid_credentials")
        assert body["detail"] == "Incorrect email or password"
        assert await session_count(db, user.id) == 0

    async def test_unknown_field_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()

        response = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD, "otp": "1"})

        assert_validation_error(response, "body", "otp")
        assert await session_count(db, user.id) == 0

    async def test_missing_password_is_422(self, client: AsyncClient) -> None:
        response = await client.post(LOGIN, json={"email": "someone@example.com"})

        assert_validation_error(response, "body", "password")


class TestToken:
    async def test_form_returns_token_pair(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()

        response = await client.post(
            TOKEN, data={"username": user.email.upper(), "password": PASSWORD, "grant_type": "password"}
        )

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        sid = claims(body["access_token"])["sid"]
        assert (await stored_session(db, sid)).user_id == user.id
        me = await client.get(ME, headers=bearer(body["access_token"]))
        assert me.json()["id"] == user.id

    async def test_wrong_password_answers_like_login(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()

        form = await client.post(TOKEN, data={"username": user.email, "password": "Wrong-Passw0rd-1"})
        unknown = await client.post(TOKEN, data={"username": "nobody@example.com", "password": PASSWORD})
        json_login = await client.post(LOGIN, json={"email": user.email, "password": "Wrong-Passw0rd-1"})

        assert_unauthorized(form, "invalid_credentials")
        assert form.json() == unknown.json() == json_login.json()
        assert await session_count(db, user.id) == 0

    async def test_blank_username_is_422(self, client: AsyncClient) -> None:
        response = await client.post(TOKEN, data={"username": "   ", "password": PASSWORD})

        assert_validation_error(response, "body", "username")

    async def test_missing_fields_are_422(self, client: AsyncClient) -> None:
        response = await client.post(TOKEN, data={})

        assert_validation_error(response, "body", "username")
        assert_validation_error(response, "body", "password")

    async def test_overlong_password_is_refused_not_truncated(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        exact = "Q" * 127 + "7"
        user = await factory.user(password_hash=password_hash.hash(exact))
        await db.commit()

        response = await client.post(TOKEN, data={"username": user.email, "password": exact + "-and-more"})

        assert_validation_error(response, "body", "password")
        assert await session_count(db, user.id) == 0


class TestRefresh:
    async def test_rotation_issues_a_new_pair(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        first = await login_pair(client, user.email)
        sid = claims(first["refresh_token"])["sid"]
        before = await stored_session(db, sid)

        response = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        second = response.json()
        assert second["token_type"] == "bearer"
        assert second["expires_in"] == 900
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        new_refresh = claims(second["refresh_token"])
        assert new_refresh["sid"] == sid
        after = await stored_session(db, sid)
        assert after.refresh_jti == new_refresh["jti"] != before.refresh_jti
        assert after.last_used_at > before.last_used_at
        assert after.revoked_at is None
        me = await client.get(ME, headers=bearer(second["access_token"]))
        assert me.status_code == 200

    async def test_reusing_a_spent_token_revokes_the_session(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Redis
    ) -> None:
        user = await factory.user()
        await db.commit()
        first = await login_pair(client, user.email)
        sid = claims(first["refresh_token"])["sid"]
        second = (await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})).json()
        assert (await client.get(ME, headers=bearer(second["access_token"]))).status_code == 200
        await age_spent_tokens(db, sid)  # spent 11 s ago: past the grace for a second tab

        reuse = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})

        assert_unauthorized(reuse, "refresh_token_reused")
        # The revocation survived the error response: the newer tokens are dead too.
        newer_refresh = await client.post(REFRESH, json={"refresh_token": second["refresh_token"]})
        assert_unauthorized(newer_refresh)
        assert_unauthorized(await client.get(ME, headers=bearer(second["access_token"])))
        assert_unauthorized(await client.get(ME, headers=bearer(first["access_token"])))
        session = await stored_session(db, sid)
        assert session.revoked_at is not None
        assert session.revoked_reason == "refresh_reuse"
        assert await redis.get(f"sess:{sid}") == "0"

    async def test_reuse_leaves_other_sessions_alone(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        stolen = await login_pair(client, user.email)
        other = await login_pair(client, user.email)
        await client.post(REFRESH, json={"refresh_token": stolen["refresh_token"]})
        await age_spent_tokens(db, claims(stolen["refresh_token"])["sid"])

        reuse = await client.post(REFRESH, json={"refresh_token": stolen["refresh_token"]})

        assert_unauthorized(reuse, "refresh_token_reused")
        assert (await client.get(ME, headers=bearer(other["access_token"]))).status_code == 200
        assert (await stored_session(db, claims(other["access_token"])["sid"])).revoked_at is None

    async def test_access_token_is_not_a_refresh_token(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        sid = claims(pair["access_token"])["sid"]

        response = await client.post(REFRESH, json={"refresh_token": pair["access_token"]})

        assert_unauthorized(response)
        session = await stored_session(db, sid)
        assert session.refresh_jti == claims(pair["refresh_token"])["jti"]
        assert session.revoked_at is None

    async def test_refresh_token_is_not_an_access_token(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)

        response = await client.get(ME, headers=bearer(pair["refresh_token"]))

        assert_unauthorized(response)

    async def test_garbage_is_401(self, client: AsyncClient) -> None:
        response = await client.post(REFRESH, json={"refresh_token": "not.a.jwt"})

        assert_unauthorized(response)

    async def test_inactive_user_cannot_refresh(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        sid = claims(pair["refresh_token"])["sid"]
        await _deactivate(db, user.id)

        response = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})

        assert_unauthorized(response)
        # The rotation was rolled back with the error.
        assert (await stored_session(db, sid)).refresh_jti == claims(pair["refresh_token"])["jti"]

    async def test_expired_session_is_401_not_reuse(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        sid = claims(pair["refresh_token"])["sid"]
        await db.execute(
            update(UserSession)
            .where(UserSession.id == sid)
            .values(expires_at=datetime.now(UTC) - timedelta(1))
        )
        await db.commit()

        response = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})

        assert_unauthorized(response)
        session = await stored_session(db, sid)
        assert session.revoked_at is None
        assert session.refresh_jti == claims(pair["refresh_token"])["jti"]

    async def test_unknown_field_is_422(self, client: AsyncClient) -> None:
        response = await client.post(REFRESH, json={"refresh_token": "x", "access_token": "y"})

        assert_validation_error(response, "body", "access_token")


class TestLogout:
    async def test_revokes_the_session_at_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Redis
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        sid = claims(pair["access_token"])["sid"]
        # The alive mark is cached in Redis now; logout must override it.
        assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
        assert await redis.get(f"sess:{sid}") == "1"

        response = await client.post(LOGOUT, headers=bearer(pair["access_token"]))

        assert response.status_code == 204
        assert response.content == b""
        assert_unauthorized(await client.get(ME, headers=bearer(pair["access_token"])))
        assert_unauthorized(await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]}))
        session = await stored_session(db, sid)
        assert session.revoked_at is not None
        assert session.revoked_reason == "logout"
        assert await redis.get(f"sess:{sid}") == "0"

    async def test_other_sessions_stay(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        user = await factory.user()
        await db.commit()
        phone = await login_pair(client, user.email)
        laptop = await login_pair(client, user.email)

        await client.post(LOGOUT, headers=bearer(phone["access_token"]))

        assert (await client.get(ME, headers=bearer(laptop["access_token"]))).status_code == 200
        assert (await stored_session(db, claims(laptop["access_token"])["sid"])).revoked_at is None

    async def test_without_token_is_401(self, client: AsyncClient) -> None:
        response = await client.post(LOGOUT)

        assert_unauthorized(response, "not_authenticated")

    async def test_twice_is_401(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        await client.post(LOGOUT, headers=bearer(pair["access_token"]))

        response = await client.post(LOGOUT, headers=bearer(pair["access_token"]))

        assert_unauthorized(response)


class TestMe:
    async def test_returns_user_with_memberships(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user(full_name="Maria Ivanova")
        owned = await factory.org(owner=user, name="Owned Org")
        joined = await factory.org(name="Joined Org")
        await add_member(db, joined, user, "manager")
        gone = await factory.org(name="Deleted Org", deleted_at=datetime.now(UTC))
        await add_member(db, gone, user, "admin")
        await factory.org(name="Not Mine")
        await db.commit()
        pair = await login_pair(client, user.email)

        response = await client.get(ME, headers=bearer(pair["access_token"]))

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["id"] == user.id
        assert body["email"] == user.email
        assert body["full_name"] == "Maria Ivanova"
        assert body["is_active"] is True
        assert body["is_superuser"] is False
        assert body["created_at"].endswith("Z")
        assert body["memberships"] == [
            {"organization_id": owned.id, "name": "Owned Org", "role": "owner"},
            {"organization_id": joined.id, "name": "Joined Org", "role": "manager"},
        ]
        assert "password_hash" not in body

    async def test_without_memberships_is_an_empty_list(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)

        response = await client.get(ME, headers=bearer(pair["access_token"]))

        assert response.status_code == 200
        assert response.json()["memberships"] == []

    async def test_without_token_is_401(self, client: AsyncClient) -> None:
        response = await client.get(ME)

        assert_unauthorized(response, "not_authenticated")

    async def test_deactivated_user_is_401_at_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
        await _deactivate(db, user.id)

        response = await client.get(ME, headers=bearer(pair["access_token"]))

        assert_unauthorized(response)


class TestSessions:
    async def test_lists_my_active_sessions(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        stranger = await factory.user()
        await db.commit()
        old = await login_pair(client, user.email, **{"User-Agent": "Phone"})
        gone = await login_pair(client, user.email, **{"User-Agent": "Lost laptop"})
        await client.post(LOGOUT, headers=bearer(gone["access_token"]))
        current = await login_pair(client, user.email, **{"User-Agent": "Desktop"})
        await login_pair(client, stranger.email)

        response = await client.get(SESSIONS, headers=bearer(current["access_token"]))

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["total"] == 2
        assert body["limit"] == 50
        assert body["offset"] == 0
        items = body["items"]
        assert [i["id"] for i in items] == [
            claims(current["access_token"])["sid"],
            claims(old["access_token"])["sid"],
        ]
        assert set(items[0]) == {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}
        assert [i["current"] for i in items] == [True, False]
        assert [i["user_agent"] for i in items] == ["Desktop", "Phone"]
        assert items[0]["ip"] == "127.0.0.1"
        assert items[0]["created_at"].endswith("Z")
        assert items[0]["last_used_at"].endswith("Z")

    async def test_pages(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        user = await factory.user()
        await db.commit()
        pairs = [await login_pair(client, user.email) for _ in range(3)]

        response = await client.get(
            SESSIONS, params={"limit": 1, "offset": 1}, headers=bearer(pairs[-1]["access_token"])
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 3
        assert body["limit"] == 1
        assert body["offset"] == 1
        assert [i["id"] for i in body["items"]] == [claims(pairs[1]["access_token"])["sid"]]

    async def test_limit_out_of_range_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)

        response = await client.get(SESSIONS, params={"limit": 201}, headers=bearer(pair["access_token"]))

        assert_validation_error(response, "query", "limit")

    async def test_without_token_is_401(self, client: AsyncClient) -> None:
        assert_unauthorized(await client.get(SESSIONS), "not_authenticated")


class TestRevokeSession:
    async def test_revokes_one_of_my_sessions(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, redis: Redis
    ) -> None:
        user = await factory.user()
        await db.commit()
        mine = await login_pair(client, user.email)
        lost = await login_pair(client, user.email)
        lost_sid = claims(lost["access_token"])["sid"]
        assert (await client.get(ME, headers=bearer(lost["access_token"]))).status_code == 200

        response = await client.delete(f"{SESSIONS}/{lost_sid}", headers=bearer(mine["access_token"]))

        assert response.status_code == 204
        assert response.content == b""
        assert_unauthorized(await client.get(ME, headers=bearer(lost["access_token"])))
        assert_unauthorized(await client.post(REFRESH, json={"refresh_token": lost["refresh_token"]}))
        assert (await client.get(ME, headers=bearer(mine["access_token"]))).status_code == 200
        session = await stored_session(db, lost_sid)
        assert session.revoked_at is not None
        assert session.revoked_reason == "revoked_by_user"
        assert await redis.get(f"sess:{lost_sid}") == "0"

    async def test_another_users_session_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        other = await factory.user()
        await db.commit()
        mine = await login_pair(client, user.email)
        theirs = await login_pair(client, other.email)
        their_sid = claims(theirs["access_token"])["sid"]

        response = await client.delete(f"{SESSIONS}/{their_sid}", headers=bearer(mine["access_token"]))

        assert_problem(response, 404, "not_found")
        assert (await stored_session(db, their_sid)).revoked_at is None
        assert (await client.get(ME, headers=bearer(theirs["access_token"]))).status_code == 200

    async def test_nonexistent_is_404(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)

        response = await client.delete(f"{SESSIONS}/987654321", headers=bearer(pair["access_token"]))

        assert_problem(response, 404, "not_found")

    async def test_already_revoked_is_404(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        mine = await login_pair(client, user.email)
        old = await login_pair(client, user.email)
        await client.post(LOGOUT, headers=bearer(old["access_token"]))

        response = await client.delete(
            f"{SESSIONS}/{claims(old['access_token'])['sid']}", headers=bearer(mine["access_token"])
        )

        assert_problem(response, 404, "not_found")

    async def test_out_of_range_id_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)

        huge = await client.delete(f"{SESSIONS}/{2**63}", headers=bearer(pair["access_token"]))
        zero = await client.delete(f"{SESSIONS}/0", headers=bearer(pair["access_token"]))

        assert_validation_error(huge, "path", "session_id")
        assert_validation_error(zero, "path", "session_id")
        assert (await stored_session(db, claims(pair["access_token"])["sid"])).revoked_at is None


class TestChangePassword:
    async def test_changes_password_and_revokes_my_other_sessions(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        here = await login_pair(client, user.email)
        elsewhere = await login_pair(client, user.email)
        assert (await client.get(ME, headers=bearer(elsewhere["access_token"]))).status_code == 200

        response = await client.post(
            PASSWORD_URL,
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(here["access_token"]),
        )

        assert response.status_code == 204, response.text
        assert response.content == b""
        assert (await client.get(ME, headers=bearer(here["access_token"]))).status_code == 200
        assert_unauthorized(await client.get(ME, headers=bearer(elsewhere["access_token"])))
        assert_unauthorized(await client.post(REFRESH, json={"refresh_token": elsewhere["refresh_token"]}))
        assert (await client.post(REFRESH, json={"refresh_token": here["refresh_token"]})).status_code == 200
        stored = await stored_user(db, user.id)
        assert password_hash.verify(NEW_PASSWORD, stored.password_hash)
        assert not password_hash.verify(PASSWORD, stored.password_hash)
        other_session = await stored_session(db, claims(elsewhere["access_token"])["sid"])
        assert other_session.revoked_reason == "password_changed"
        assert (await stored_session(db, claims(here["access_token"])["sid"])).revoked_at is None
        old_login = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
        assert_unauthorized(old_login, "invalid_credentials")
        assert (
            await client.post(LOGIN, json={"email": user.email, "password": NEW_PASSWORD})
        ).status_code == 200

    async def test_wrong_current_password_is_400(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        here = await login_pair(client, user.email)
        elsewhere = await login_pair(client, user.email)
        before = (await stored_user(db, user.id)).password_hash

        response = await client.post(
            PASSWORD_URL,
            json={"current_password": "Wrong-Passw0rd-1", "new_password": NEW_PASSWORD},
            headers=bearer(here["access_token"]),
        )

        assert_problem(response, 400, "invalid_password")
        assert (await stored_user(db, user.id)).password_hash == before
        assert (await client.get(ME, headers=bearer(elsewhere["access_token"]))).status_code == 200

    async def test_weak_new_password_is_422(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        pair = await login_pair(client, user.email)
        before = (await stored_user(db, user.id)).password_hash

        common = await client.post(
            PASSWORD_URL,
            json={"current_password": PASSWORD, "new_password": "qwerty123"},
            headers=bearer(pair["access_token"]),
        )
        short = await client.post(
            PASSWORD_URL,
            json={"current_password": PASSWORD, "new_password": "Xk3#pq7"},
            headers=bearer(pair["access_token"]),
        )

        [error] = assert_validation_error(common, "body", "new_password")
        assert "too common" in error["msg"]
        assert_validation_error(short, "body", "new_password")
        assert (await stored_user(db, user.id)).password_hash == before

    async def test_without_token_is_401(self, client: AsyncClient) -> None:
        response = await client.post(
            PASSWORD_URL, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        )

        assert_unauthorized(response, "not_authenticated")


class TestChangePasswordGuessing:
    async def test_wrong_current_passwords_are_limited_like_failed_logins(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings
    ) -> None:
        override_settings(rate_limit_login_per_account="2/minute")
        owner = await factory.actor("owner")
        body = {"current_password": "not-my-password-1", "new_password": "Another-Strong-Pass-77"}
        for _ in range(2):
            response = await client.post("/api/v1/auth/password", json=body, headers=owner.auth)
            assert response.status_code == 400
            assert response.json()["code"] == "invalid_password"

        blocked = await client.post(
            "/api/v1/auth/password", json={**body, "current_password": PASSWORD}, headers=owner.auth
        )
        assert blocked.status_code == 429
        assert blocked.json()["code"] == "rate_limited"
        assert int(blocked.headers["Retry-After"]) > 0
        # The password was not changed, and the same account bucket now refuses logins too.
        db.expunge_all()
        stored = await db.scalar(select(User).where(User.id == owner.user.id))
        assert password_hash.verify(PASSWORD, stored.password_hash)
        login = await client.post(
            "/api/v1/auth/login", json={"email": owner.user.email, "password": PASSWORD}
        )
        assert login.status_code == 429

"""`crm.core.security`: JWT checks (seen through `GET /auth/me`) and Argon2id hashing."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from httpx import AsyncClient
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import Settings
from crm.core.security import password_hash
from tests.auth.support import LOGIN, ME, assert_unauthorized, bearer, claims, login_pair, stored_user
from tests.factories import PASSWORD, Factory

CURRENT_PARAMS = "$argon2id$v=19$m=19456,t=2,p=1$"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _sign(settings: Settings, payload: dict[str, Any], *, key: str | None = None, alg: str = "HS256") -> str:
    return jwt.encode(payload, key or settings.secret_key, algorithm=alg)


# Each case turns a genuine access token's payload into a token the API must refuse.
Tamper = Callable[[Settings, dict[str, Any]], str]

REFUSED: dict[str, Tamper] = {
    "alg-none": lambda s, p: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(p)}.",
    "alg-none-signed-anyway": lambda s, p: jwt.encode(p, None, algorithm="none") + "c2ln",
    "wrong-key": lambda s, p: _sign(s, p, key="another-secret-that-is-long-enough-0123456789"),
    "algorithm-not-allowed": lambda s, p: _sign(s, p, alg="HS512"),
    "expired": lambda s, p: _sign(s, {**p, "exp": int(time.time()) - 60}),
    "wrong-type": lambda s, p: _sign(s, {**p, "type": "refresh"}),
    "unknown-type": lambda s, p: _sign(s, {**p, "type": "admin"}),
    "wrong-audience": lambda s, p: _sign(s, {**p, "aud": "someone-else"}),
    "wrong-issuer": lambda s, p: _sign(s, {**p, "iss": "evil"}),
    "no-session": lambda s, p: _sign(s, {k: v for k, v in p.items() if k != "sid"}),
    "no-jti": lambda s, p: _sign(s, {k: v for k, v in p.items() if k != "jti"}),
    "no-exp": lambda s, p: _sign(s, {k: v for k, v in p.items() if k != "exp"}),
    "issued-in-the-future": lambda s, p: _sign(s, {**p, "iat": int(time.time()) + 3600}),
    "malformed-subject": lambda s, p: _sign(s, {**p, "sub": "abc"}),
    "other-session": lambda s, p: _sign(s, {**p, "sid": p["sid"] + 10_000}),
    "kid-path": lambda s, p: jwt.encode(p, "x" * 40, algorithm="HS256", headers={"kid": "../../dev/null"}),
    "signature-stripped": lambda s, p: _sign(s, p).rsplit(".", 1)[0] + ".",
    "garbage": lambda s, p: "garbage",
    "empty-segments": lambda s, p: "..",
}


class TestDecodeToken:
    async def test_genuine_claims_resigned_are_accepted(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, settings: Settings
    ) -> None:
        """The control for the refusals below: re-signing the same claims gives a working token."""
        user = await factory.user()
        await db.commit()
        payload = claims((await login_pair(client, user.email))["access_token"])

        response = await client.get(ME, headers=bearer(_sign(settings, payload)))

        assert response.status_code == 200, response.text
        assert response.json()["id"] == user.id

    # HS512 with our (HS256-sized) key is the point of "algorithm-not-allowed".
    @pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
    @pytest.mark.parametrize("tamper", REFUSED.values(), ids=REFUSED.keys())
    async def test_bad_token_is_401(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, settings: Settings, tamper: Tamper
    ) -> None:
        user = await factory.user()
        await db.commit()
        payload = claims((await login_pair(client, user.email))["access_token"])

        response = await client.get(ME, headers=bearer(tamper(settings, payload)))

        body = assert_unauthorized(response)
        assert "Traceback" not in body["detail"]

    async def test_expiry_has_30_seconds_leeway(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, settings: Settings
    ) -> None:
        user = await factory.user()
        await db.commit()
        payload = claims((await login_pair(client, user.email))["access_token"])

        just_expired = await client.get(
            ME, headers=bearer(_sign(settings, {**payload, "exp": int(time.time()) - 10}))
        )

        assert just_expired.status_code == 200, just_expired.text


class TestHashPassword:
    async def test_uses_argon2id_with_owasp_parameters(self, client: AsyncClient, db: AsyncSession) -> None:
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": "hash@example.com", "password": PASSWORD, "full_name": "H"},
        )

        stored = (await stored_user(db, response.json()["id"])).password_hash
        assert stored.startswith(CURRENT_PARAMS)
        assert PASSWORD not in stored


class TestVerifyPassword:
    async def test_weaker_argon2_hash_is_rehashed_on_login(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        weak = PasswordHash((Argon2Hasher(memory_cost=8192, time_cost=1, parallelism=1),)).hash(PASSWORD)
        user = await factory.user(password_hash=weak)
        await db.commit()

        response = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})

        assert response.status_code == 200, response.text
        stored = (await stored_user(db, user.id)).password_hash
        assert stored != weak
        assert stored.startswith(CURRENT_PARAMS)
        assert password_hash.verify(PASSWORD, stored)
        again = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
        assert again.status_code == 200

    async def test_current_hash_is_kept(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        await db.commit()
        before = user.password_hash

        await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})

        assert (await stored_user(db, user.id)).password_hash == before

    async def test_weak_hash_is_not_rehashed_on_a_failed_login(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        weak = PasswordHash((Argon2Hasher(memory_cost=8192, time_cost=1, parallelism=1),)).hash(PASSWORD)
        user = await factory.user(password_hash=weak)
        await db.commit()

        response = await client.post(LOGIN, json={"email": user.email, "password": "Wrong-Passw0rd-1"})

        assert_unauthorized(response, "invalid_credentials")
        assert (await stored_user(db, user.id)).password_hash == weak

    @pytest.mark.parametrize(
        "stored",
        ["not-a-hash", "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5Q7GgeOP7hUZLHhOpzKOtVXHkrYyFvK", ""],
        ids=["garbage", "bcrypt", "empty"],
    )
    async def test_unreadable_hash_is_a_failed_login(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, stored: str
    ) -> None:
        user = await factory.user(password_hash=stored)
        await db.commit()

        response = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})

        assert_unauthorized(response, "invalid_credentials")

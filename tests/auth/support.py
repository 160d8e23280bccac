"""Helpers shared by the auth tests: problem assertions, token inspection, stored rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
from httpx import AsyncClient, Response
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import RefreshToken, User, UserSession
from tests.factories import PASSWORD

LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"
REGISTER = "/api/v1/auth/register"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
SESSIONS = "/api/v1/auth/sessions"
PASSWORD_URL = "/api/v1/auth/password"


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 answer with our `code`; returns the body for further checks."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://crm.example/problems/{code.replace('_', '-')}"
    assert body["title"]
    assert body["detail"]
    return body


def assert_unauthorized(response: Response, code: str = "invalid_token") -> dict[str, Any]:
    body = assert_problem(response, 401, code)
    assert response.headers["www-authenticate"] == "Bearer"
    return body


def assert_validation_error(response: Response, *loc: str | int) -> list[dict[str, Any]]:
    """A 422 whose `errors` array names `loc`; returns the errors for that location."""
    body = assert_problem(response, 422, "validation_error")
    matching = [e for e in body["errors"] if tuple(e["loc"]) == loc]
    assert matching, body["errors"]
    for error in body["errors"]:
        assert set(error) >= {"loc", "msg", "type"}
    return matching


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(token: str) -> dict[str, Any]:
    """A token's payload, read without checking it (tests inspect what the server issued)."""
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


async def login_pair(
    client: AsyncClient, email: str, password: str = PASSWORD, **headers: str
) -> dict[str, Any]:
    response = await client.post(LOGIN, json={"email": email, "password": password}, headers=headers)
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


async def stored_user(db: AsyncSession, user_id: int) -> User:
    """The user row as stored now (not the identity map's copy)."""
    db.expunge_all()
    return (await db.execute(select(User).where(User.id == user_id))).scalar_one()


async def stored_session(db: AsyncSession, session_id: int) -> UserSession:
    db.expunge_all()
    return (await db.execute(select(UserSession).where(UserSession.id == session_id))).scalar_one()


async def session_count(db: AsyncSession, user_id: int) -> int:
    db.expunge_all()
    count = await db.scalar(
        select(func.count()).select_from(UserSession).where(UserSession.user_id == user_id)
    )
    return int(count or 0)


async def user_count(db: AsyncSession) -> int:
    db.expunge_all()
    return int(await db.scalar(select(func.count()).select_from(User)) or 0)


async def age_spent_tokens(db: AsyncSession, session_id: int, seconds: float = 11) -> None:
    """Move the session's spent refresh tokens `seconds` into the past (beyond the 10 s grace)."""
    await db.execute(
        update(RefreshToken)
        .where(RefreshToken.session_id == session_id, RefreshToken.spent_at.is_not(None))
        .values(spent_at=RefreshToken.spent_at - timedelta(seconds=seconds))
    )
    await db.commit()

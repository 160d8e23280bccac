"""Small async factories and helpers shared by the tests."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.core.security import hash_password, sha256_hex
from crm.models import ApiKey, Membership, Organization, User

PASSWORD = "Unusual-Passw0rd-42"
_HASH = hash_password(PASSWORD)
_seq = itertools.count(1)


@dataclass
class Actor:
    """A logged-in user: ids, tokens and ready-made headers."""

    user: User
    access_token: str
    refresh_token: str
    org_id: int | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def headers(self) -> dict[str, str]:
        headers = self.auth
        if self.org_id is not None:
            headers["X-Organization-ID"] = str(self.org_id)
        return headers


async def make_user(db: AsyncSession, **overrides: object) -> User:
    n = next(_seq)
    values: dict[str, object] = {
        "email": f"user{n}@example.com",
        "full_name": f"User {n}",
        "password_hash": _HASH,
    }
    values.update(overrides)
    user = User(**values)
    db.add(user)
    await db.flush()
    return user


async def make_org(db: AsyncSession, owner: User | None = None, **overrides: object) -> Organization:
    n = next(_seq)
    values: dict[str, object] = {"name": f"Org {n}", "slug": f"org-{n}"}
    values.update(overrides)
    org = Organization(**values)
    db.add(org)
    await db.flush()
    if owner is not None:
        await add_member(db, org, owner, "owner")
    return org


async def add_member(db: AsyncSession, org: Organization, user: User, role: str) -> Membership:
    membership = Membership(organization_id=org.id, user_id=user.id, role=role)
    db.add(membership)
    await db.flush()
    return membership


async def login(
    client: AsyncClient, user: User, password: str = PASSWORD, org_id: int | None = None
) -> Actor:
    response = await client.post("/api/v1/auth/login", json={"email": user.email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return Actor(
        user=user, access_token=body["access_token"], refresh_token=body["refresh_token"], org_id=org_id
    )


async def committed_owner(maker: async_sessionmaker[AsyncSession], client: AsyncClient) -> Actor:
    """The logged-in owner of a fresh organization, committed through `maker` (for tests whose
    requests commit, against workers or jobs that read on their own connections)."""
    async with maker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "owner")
        await session.commit()
    return await login(client, user, org_id=org.id)


@pytest.fixture
def factory(db: AsyncSession, client: AsyncClient) -> Factory:
    return Factory(db, client)


class Factory:
    """`await factory.actor("admin")` → a user with that role in a fresh (or given) organization."""

    def __init__(self, db: AsyncSession, client: AsyncClient) -> None:
        self.db = db
        self.client = client

    async def user(self, **overrides: object) -> User:
        return await make_user(self.db, **overrides)

    async def org(self, owner: User | None = None, **overrides: object) -> Organization:
        return await make_org(self.db, owner, **overrides)

    async def actor(
        self, role: str = "owner", org: Organization | None = None, **user_fields: object
    ) -> Actor:
        user = await make_user(self.db, **user_fields)
        if org is None:
            org = await make_org(self.db)
        await add_member(self.db, org, user, role)
        await self.db.commit()
        return await login(self.client, user, org_id=org.id)


async def make_api_key(
    db: AsyncSession, org: Organization, scopes: list[str], **overrides: object
) -> tuple[ApiKey, str]:
    """An API key stored the way the service stores it; returns the row and the raw secret. Unless
    `created_by_id` is given, the key acts for a new owner of the organization (a key acts for its
    creator and stops working without one)."""
    if "created_by_id" not in overrides:
        creator = await make_user(db, full_name="Key creator")
        await add_member(db, org, creator, "owner")
        overrides["created_by_id"] = creator.id
    prefix = secrets.token_hex(6)
    raw = f"crm_{prefix}_{secrets.token_urlsafe(32)}"
    values: dict[str, object] = {
        "organization_id": org.id,
        "name": f"Key {next(_seq)}",
        "scopes": scopes,
        "prefix": prefix,
        "key_hash": sha256_hex(raw),
    }
    values.update(overrides)
    key = ApiKey(**values)
    db.add(key)
    await db.flush()
    return key, raw


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and `code`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["detail"]
    return body


async def join_another_org(db: AsyncSession, user: User, role: str = "member") -> Organization:
    """Make `user` a member of one more (new) organization, so a request without `X-Organization-ID`
    must name one (§20.1); committed."""
    org = await make_org(db)
    await add_member(db, org, user, role)
    await db.commit()
    return org

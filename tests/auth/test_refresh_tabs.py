"""Refresh from several tabs: a refresh token spent moments ago still works (each such call gets its
own new token), every token handed out is single-use, and a token spent earlier revokes the session.
These run on real commits: the concurrent refreshes are separate transactions on separate
connections, as they would be in separate API processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import RefreshToken, UserSession
from tests.auth.support import ME, REFRESH, age_spent_tokens, assert_unauthorized, bearer, claims, login_pair
from tests.factories import make_user


@pytest.fixture
async def real_db(app: Any) -> AsyncIterator[AsyncSession]:
    async with app.state.sessionmaker() as session:
        yield session


async def new_login(real_db: AsyncSession, client: AsyncClient) -> dict[str, Any]:
    user = await make_user(real_db)
    await real_db.commit()
    return await login_pair(client, user.email)


async def session_row(db: AsyncSession, sid: int) -> UserSession:
    db.expire_all()
    row = await db.get(UserSession, sid)
    assert row is not None
    return row


async def refresh(client: AsyncClient, token: str) -> Any:
    return await client.post(REFRESH, json={"refresh_token": token})


class TestTwoTabs:
    async def test_five_parallel_refreshes_all_succeed_and_every_token_works(
        self, committing_client: AsyncClient, real_db: AsyncSession
    ) -> None:
        pair = await new_login(real_db, committing_client)
        sid = claims(pair["refresh_token"])["sid"]

        answers = await asyncio.gather(*(refresh(committing_client, pair["refresh_token"]) for _ in range(5)))

        assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
        pairs = [a.json() for a in answers]
        refresh_jtis = {claims(p["refresh_token"])["jti"] for p in pairs}
        assert len(refresh_jtis) == 5  # each tab got its own token
        assert all(claims(p["refresh_token"])["sid"] == sid for p in pairs)
        for p in pairs:
            me = await committing_client.get(ME, headers=bearer(p["access_token"]))
            assert me.status_code == 200, me.text
        session = await session_row(real_db, sid)
        assert session.revoked_at is None
        stored = dict(
            (
                await real_db.execute(
                    select(RefreshToken.jti, RefreshToken.spent_at).where(RefreshToken.session_id == sid)
                )
            )
            .tuples()
            .all()
        )
        assert stored[claims(pair["refresh_token"])["jti"]] is not None  # spent once, by the first
        assert all(stored[jti] is None for jti in refresh_jtis)  # live, unspent

        # Each of the five new tokens is good for its own refresh.
        again = await asyncio.gather(*(refresh(committing_client, p["refresh_token"]) for p in pairs))
        assert [a.status_code for a in again] == [200] * 5, [a.text for a in again]
        assert (await session_row(real_db, sid)).revoked_at is None

    async def test_two_tabs_one_after_the_other_within_the_grace(
        self, committing_client: AsyncClient, real_db: AsyncSession
    ) -> None:
        pair = await new_login(real_db, committing_client)
        sid = claims(pair["refresh_token"])["sid"]

        first = await refresh(committing_client, pair["refresh_token"])
        second = await refresh(committing_client, pair["refresh_token"])

        assert first.status_code == second.status_code == 200, second.text
        assert first.json()["refresh_token"] != second.json()["refresh_token"]
        for answer in (first, second):
            assert (
                await committing_client.get(ME, headers=bearer(answer.json()["access_token"]))
            ).status_code == 200
        assert (await session_row(real_db, sid)).revoked_at is None

    async def test_a_spent_token_after_the_grace_revokes_the_whole_session(
        self, committing_client: AsyncClient, real_db: AsyncSession
    ) -> None:
        pair = await new_login(real_db, committing_client)
        sid = claims(pair["refresh_token"])["sid"]
        tabs = await asyncio.gather(*(refresh(committing_client, pair["refresh_token"]) for _ in range(2)))
        assert [t.status_code for t in tabs] == [200, 200]
        # One tab's token is spent as usual; eleven seconds later a copy of it comes back.
        later = await refresh(committing_client, tabs[0].json()["refresh_token"])
        assert later.status_code == 200
        await age_spent_tokens(real_db, sid)

        reuse = await refresh(committing_client, tabs[0].json()["refresh_token"])

        assert_unauthorized(reuse, "refresh_token_reused")
        session = await session_row(real_db, sid)
        assert session.revoked_at is not None
        assert session.revoked_reason == "refresh_reuse"
        # Every token of the family is dead: the other tab's, the newest, all access tokens.
        assert_unauthorized(await refresh(committing_client, tabs[1].json()["refresh_token"]))
        assert_unauthorized(await refresh(committing_client, later.json()["refresh_token"]))
        for token in (pair, tabs[0].json(), tabs[1].json(), later.json()):
            assert_unauthorized(await committing_client.get(ME, headers=bearer(token["access_token"])))

    async def test_the_grace_is_configurable(
        self, committing_client: AsyncClient, real_db: AsyncSession, override_settings: Any
    ) -> None:
        override_settings(refresh_reuse_grace_seconds=0)
        pair = await new_login(real_db, committing_client)
        sid = claims(pair["refresh_token"])["sid"]
        assert (await refresh(committing_client, pair["refresh_token"])).status_code == 200

        reuse = await refresh(committing_client, pair["refresh_token"])

        assert_unauthorized(reuse, "refresh_token_reused")
        assert (await session_row(real_db, sid)).revoked_reason == "refresh_reuse"

    async def test_spent_tokens_are_forgotten_after_the_grace(
        self, committing_client: AsyncClient, real_db: AsyncSession
    ) -> None:
        pair = await new_login(real_db, committing_client)
        sid = claims(pair["refresh_token"])["sid"]
        current = pair["refresh_token"]
        for _ in range(3):
            answer = await refresh(committing_client, current)
            assert answer.status_code == 200
            await age_spent_tokens(real_db, sid)
            current = answer.json()["refresh_token"]
        await refresh(committing_client, current)

        rows = await real_db.scalar(
            select(func.count()).select_from(RefreshToken).where(RefreshToken.session_id == sid)
        )
        assert rows == 2  # the one spent just now (within the grace) and the live one

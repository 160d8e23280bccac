"""The record tests' organization: an owner and a member, logged in, committed."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.factories import add_member, login, make_org, make_user
from tests.records.support import Org


@pytest.fixture
async def org(app: Any, committing_client: AsyncClient) -> Org:
    async with app.state.sessionmaker() as session:
        org = await make_org(session)
        owner, member = await make_user(session), await make_user(session)
        await add_member(session, org, owner, "owner")
        await add_member(session, org, member, "member")
        await session.commit()
    return Org(
        org.id,
        await login(committing_client, owner, org_id=org.id),
        await login(committing_client, member, org_id=org.id),
    )

"""Search finds what people type (SPEC §20.13): the exact and prefix name matches first, phones in
any common format."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from tests.analytics.support import make_company, make_contact
from tests.factories import Factory
from tests.search.test_router import found, search


async def test_exact_then_prefix_above_fuzzy(client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
    actor = await factory.actor("member")
    assert actor.org_id is not None
    for n in range(1, 120):
        await make_company(db, actor.org_id, f"Товар {n}")
    await make_company(db, actor.org_id, "Товары и услуги 77")
    await db.commit()

    body = await search(client, actor, "Товар 77", limit=5)

    titles = [title for _, title in found(body)]
    assert titles[0] == "Товар 77"
    assert body["total"] >= 2
    lowered = await search(client, actor, "  товар   77 ", limit=1)
    assert found(lowered) == [("company", "Товар 77")]


async def test_prefix_ranks_above_a_fuzzy_match(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    actor = await factory.actor("member")
    assert actor.org_id is not None
    await make_contact(db, actor.org_id, "Анна Смирнова")
    await make_contact(db, actor.org_id, "Смирнов Андрей")
    await db.commit()

    body = await search(client, actor, "Смирнов")

    assert found(body)[0] == ("contact", "Смирнов Андрей")


@pytest.mark.parametrize(
    "typed",
    ["912 345-67-89", "8 (912) 345-67-89", "+7 912 345 67 89", "89123456789", "9123456789", "345-67-89"],
)
async def test_a_phone_in_any_common_format_finds_the_contact(
    client: AsyncClient, factory: Factory, db: AsyncSession, typed: str
) -> None:
    actor = await factory.actor("member")
    assert actor.org_id is not None
    await make_contact(db, actor.org_id, "Иванов Иван", phone="+79123456789")
    await make_contact(db, actor.org_id, "Петров Пётр", phone="+79213451948")
    await db.commit()

    body = await search(client, actor, typed)

    assert found(body) == [("contact", "Иванов Иван")]
    assert body["items"][0]["subtitle"] == "+79123456789"


async def test_phone_search_stays_in_the_organization(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    actor = await factory.actor("member")
    other = await factory.actor("member")
    assert other.org_id is not None
    await make_contact(db, other.org_id, "Чужой", phone="+79123456789")
    await db.commit()

    assert found(await search(client, actor, "912 345-67-89")) == []

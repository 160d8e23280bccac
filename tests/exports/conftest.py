"""A small organization holding every exportable record, with custom fields, references, a deleted
record of each kind, and a second organization with records of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from httpx import AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Company, Contact, Deal, District, Industry, Organization, Project
from tests.exports.support import inn10, org_of, post
from tests.factories import Actor, Factory, add_member, make_user


@dataclass
class World:
    owner: Actor
    org: Organization
    #: entity → ids of the live records, newest first (the export's default order).
    ids: dict[str, list[int]] = field(default_factory=dict)
    #: entity → id of a soft-deleted record.
    deleted: dict[str, int] = field(default_factory=dict)
    #: entity → the custom field keys, in creation order.
    cf: dict[str, list[str]] = field(default_factory=dict)


async def _custom_fields(client: AsyncClient, owner: Actor) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for entity, plural in (
        ("contact", "contacts"),
        ("company", "companies"),
        ("deal", "deals"),
        ("project", "projects"),
    ):
        await post(client, owner, "custom-fields", entity=entity, key="segment", label="Segment", type="text")
        await post(client, owner, "custom-fields", entity=entity, key="score", label="Score", type="number")
        await post(
            client,
            owner,
            "custom-fields",
            entity=entity,
            key="channels",
            label="Channels",
            type="multiselect",
            options=["web", "phone", "mail"],
        )
        await post(client, owner, "custom-fields", entity=entity, key="vip", label="VIP", type="boolean")
        keys[plural] = ["segment", "score", "channels", "vip"]
    return keys


async def _soft_delete(
    db: AsyncSession, model: type[Company | Contact | Deal | Project], row_id: int
) -> None:
    await db.execute(update(model).where(model.id == row_id).values(deleted_at=datetime.now(UTC)))
    await db.commit()


async def populate(client: AsyncClient, factory: Factory, db: AsyncSession, owner: Actor, tag: str) -> World:
    """Records of every kind in the owner's organization; `tag` makes names and INNs distinct."""
    org = await db.get(Organization, org_of(owner))
    assert org is not None
    curator = await make_user(db, email=f"curator-{tag}@example.com")
    await add_member(db, org, curator, "manager")
    await db.commit()
    world = World(owner=owner, org=org, cf=await _custom_fields(client, owner))
    n = int.from_bytes(tag.encode(), "big") % 1000

    acme = await post(
        client,
        owner,
        "companies",
        name=f"ООО «Ромашка» {tag}",
        inn=inn10(n * 1000 + 1),
        kpp="771301001",
        industry="Tourism",
        email=f"info-{tag}@romashka.ru",
        phone="8 (812) 123-45-67",
        tags=["b2b", "vip"],
        owner_id=curator.id,
        notes="=cmd|' /C calc'!A0",
        custom_fields={"segment": "+gold", "score": -5},
    )
    beta = await post(
        client,
        owner,
        "companies",
        name=f"ИП Петров {tag}",
        inn=inn10(n * 1000 + 2),
        website="https://petrov.example",
        custom_fields={"score": 2.5, "vip": True, "channels": ["web", "mail"]},
    )
    gone_company = await post(client, owner, "companies", name=f"Gone {tag}", inn=inn10(n * 1000 + 3))

    ivan = await post(
        client,
        owner,
        "contacts",
        full_name="Иван Петров",
        email=f"ivan-{tag}@example.com",
        phone="8 921 345-19-48",
        company_id=acme["id"],
        job_title="@director",
        age=42,
        gender="male",
        country="RU",
        address="Невский, 1",
        tags=["lead", "moscow"],
        owner_id=curator.id,
        notes='line 1\nline 2, "quoted"',
        custom_fields={"segment": "-minus", "score": 10, "vip": False, "channels": ["phone"]},
    )
    anna = await post(
        client,
        owner,
        "contacts",
        full_name="Anna Smith",
        email=f"anna-{tag}@example.com",
        company_id=gone_company["id"],
        custom_fields={"segment": "'=quoted"},
    )
    gone_contact = await post(
        client, owner, "contacts", full_name=f"Gone {tag}", email=f"gone-{tag}@example.com"
    )

    deal1 = await post(
        client,
        owner,
        "deals",
        title='=HYPERLINK("http://evil")',
        amount="150000.50",
        currency="RUB",
        contact_id=ivan["id"],
        company_id=acme["id"],
        owner_id=curator.id,
        expected_close_date="2026-12-31",
        custom_fields={"score": 7, "segment": "alpha"},
    )
    deal2 = await post(client, owner, "deals", title="Small deal", amount="0", contact_id=gone_contact["id"])
    gone_deal = await post(client, owner, "deals", title=f"Gone {tag}", amount="1")

    industry = Industry(organization_id=org.id, name=f"Туризм {tag}")
    district = District(organization_id=org.id, name=f"Выборгский район {tag}")
    db.add_all([industry, district])
    await db.commit()
    p1 = await post(
        client,
        owner,
        "projects",
        name="Гостиничный комплекс",
        description="+ 120 номеров",
        client_id=acme["id"],
        industry_id=industry.id,
        district_id=district.id,
        city="Выборг",
        address="ул. Ленина, 5",
        own_funds_amount="25000000.00",
        requested_support_amount="12000000.50",
        jobs_count=85,
        tax_revenue_amount="3400000",
        external_code=f"INV-{tag}-001",
        curator_id=curator.id,
        custom_fields={"score": 3, "channels": ["web"]},
    )
    p2 = await post(
        client,
        owner,
        "projects",
        name="Ферма",
        client_id=beta["id"],
        requested_support_amount="500000",
        external_code=f"INV-{tag}-002",
    )
    gone_project = await post(client, owner, "projects", name=f"Gone {tag}", external_code=f"INV-{tag}-009")
    await db.execute(update(Project).where(Project.id == p2["id"]).values(status="submitted"))
    # Text the API would trim, as a sync or an old import may have stored it.
    await db.execute(update(Deal).where(Deal.id == deal1["id"]).values(notes="\tTabbed\x0b"))
    await db.commit()

    await _soft_delete(db, Company, gone_company["id"])
    await _soft_delete(db, Contact, gone_contact["id"])
    await _soft_delete(db, Deal, gone_deal["id"])
    await _soft_delete(db, Project, gone_project["id"])
    world.ids = {
        "companies": [beta["id"], acme["id"]],
        "contacts": [anna["id"], ivan["id"]],
        "deals": [deal2["id"], deal1["id"]],
        "projects": [p2["id"], p1["id"]],
    }
    world.deleted = {
        "companies": gone_company["id"],
        "contacts": gone_contact["id"],
        "deals": gone_deal["id"],
        "projects": gone_project["id"],
    }
    return world


@pytest.fixture
async def world(client: AsyncClient, factory: Factory, db: AsyncSession) -> World:
    owner = await factory.actor("owner")
    return await populate(client, factory, db, owner, "main")


@pytest.fixture
async def other_world(client: AsyncClient, factory: Factory, db: AsyncSession) -> World:
    """A second organization with the same kinds of records."""
    owner = await factory.actor("owner")
    return await populate(client, factory, db, owner, "other")

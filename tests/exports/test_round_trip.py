"""Export → `POST /imports` → the same data: into a fresh organization (companies, contacts,
projects), and back into the same one (nothing changes, deals included)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.models import Company, Contact, Membership, Organization, Project, User
from tests.exports.conftest import World, _custom_fields
from tests.exports.support import export, org_of, stored_rows
from tests.factories import Factory, add_member
from tests.imports.support import import_file

FORMATS = ("csv", "xlsx")
#: What the importing organization assigns itself.
OWN = {"id", "created_at", "updated_at"}
MODELS: dict[str, Any] = {"companies": Company, "contacts": Contact, "projects": Project}


async def _ids(db: AsyncSession, entity: str, org_id: int, order_by: Any) -> list[int]:
    model = MODELS[entity]
    rows = await db.scalars(
        select(model.id).where(model.organization_id == org_id, model.deleted_at.is_(None)).order_by(order_by)
    )
    return list(rows)


def _without_own(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in OWN} for row in rows]


class TestIntoAFreshOrganization:
    @pytest.mark.parametrize("fmt", FORMATS)
    async def test_same_data(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        factory: Factory,
        world: World,
        fmt: str,
    ) -> None:
        target = await factory.actor("owner")
        target_org = await db.get(Organization, org_of(target))
        assert target_org is not None
        # The same people and custom field definitions exist there (users are matched by email);
        # the exporting owner too: records created without an owner are theirs (§20.12).
        members = await db.scalars(
            select(User).join(Membership).where(Membership.organization_id == world.org.id)
        )
        for user in members:
            await add_member(db, target_org, user, "manager")
        await db.commit()
        await _custom_fields(client, target)

        # Companies first: contacts and projects refer to them by INN.
        for entity in ("companies", "contacts", "projects"):
            content = (await export(client, world.owner, entity, fmt)).content
            job = await import_file(
                client, app, test_maker, target, content, entity, filename=f"{entity}.{fmt}"
            )
            assert job["status"] == "succeeded", job
            assert job["errors"] == []
            assert job["failed"] == 0

        for entity, order in (
            ("companies", Company.name),
            ("contacts", Contact.full_name),
            ("projects", Project.external_code),
        ):
            source_ids = await _ids(db, entity, world.org.id, order)
            target_ids = await _ids(db, entity, target_org.id, order)
            source = await stored_rows(db, entity, source_ids, world.cf[entity])
            copied = await stored_rows(db, entity, target_ids, world.cf[entity])
            # Field by field, as stored: every exported value came back.
            assert _without_own(copied) == _without_own(source), entity
            assert not set(source_ids) & set(target_ids)

        # The projects' clients and dictionary entries were matched, not duplicated.
        clients = await db.scalars(
            select(Company.inn).where(Company.organization_id == target_org.id, Company.deleted_at.is_(None))
        )
        inns = list(clients)
        assert len(inns) == len(set(inns)) == len(world.ids["companies"])


class TestIntoTheSameOrganization:
    """Re-importing an export changes nothing, except what the import normalizes: a reference to a
    deleted record (written empty) is cleared, and text is trimmed as the API trims it."""

    #: entity → records the re-import rewrites: Anna (her company is deleted); the small deal (its
    #: contact is deleted) and the big one (notes stored with surrounding whitespace).
    UPDATED: ClassVar[dict[str, int]] = {"contacts": 1, "companies": 0, "deals": 2, "projects": 0}

    @pytest.mark.parametrize("fmt", FORMATS)
    @pytest.mark.parametrize("entity", ["contacts", "companies", "deals", "projects"])
    async def test_nothing_changes(
        self,
        client: AsyncClient,
        app: Any,
        test_maker: async_sessionmaker[AsyncSession],
        db: AsyncSession,
        world: World,
        entity: str,
        fmt: str,
    ) -> None:
        before = await stored_rows(db, entity, world.ids[entity], world.cf[entity])
        content = (await export(client, world.owner, entity, fmt)).content

        job = await import_file(client, app, test_maker, world.owner, content, entity, filename=f"x.{fmt}")

        assert job["status"] == "succeeded", job
        assert job["errors"] == []
        assert (job["created"], job["updated"], job["failed"]) == (0, self.UPDATED[entity], 0)
        assert job["skipped"] == len(world.ids[entity]) - self.UPDATED[entity]
        after = await stored_rows(db, entity, world.ids[entity], world.cf[entity])
        if entity == "deals":
            assert after[1]["notes"] == "Tabbed"
            after[1]["notes"] = before[1]["notes"]
        changed = {"updated_at"}
        assert [{k: v for k, v in r.items() if k not in changed} for r in after] == [
            {k: v for k, v in r.items() if k not in changed} for r in before
        ]

"""Invariants of `OrganizationService` that need real, concurrent transactions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from crm.models import Membership, OrganizationRole
from crm.organizations.dependencies import Tenant
from crm.organizations.exceptions import LastOwner, RoleInUse
from crm.organizations.permissions import permissions_for
from crm.organizations.schemas import MemberAdd, MemberUpdate
from crm.organizations.service import OrganizationService, RoleService
from tests.factories import add_member, make_org, make_user


def owner_tenant(organization_id: int, user_id: int) -> Tenant:
    return Tenant(organization_id, permissions_for("owner"), user_id=user_id, role="owner")


@pytest.mark.committing
class TestLastOwnerUnderConcurrency:
    async def test_two_owners_demoting_each_other_at_once_keep_one_owner(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        maker = app.state.sessionmaker
        async with maker() as session:
            org = await make_org(session)
            a, b = await make_user(session), await make_user(session)
            await add_member(session, org, a, "owner")
            await add_member(session, org, b, "owner")
            await session.commit()

        async with maker() as first, maker() as second:
            # Both requests already passed authorization as owners; the first holds the owner rows.
            await OrganizationService(first).change_role(
                owner_tenant(org.id, a.id), b.id, MemberUpdate(role="admin")
            )
            racing = asyncio.create_task(
                OrganizationService(second).change_role(
                    owner_tenant(org.id, b.id), a.id, MemberUpdate(role="admin")
                )
            )
            await asyncio.sleep(0.3)
            assert not racing.done(), "the second demotion must wait for the first one's locks"
            await first.commit()
            with pytest.raises(LastOwner):
                await racing
            await second.rollback()

        async with maker() as session:
            rows = await session.execute(
                select(Membership.user_id, Membership.role).where(Membership.organization_id == org.id)
            )
            assert dict(rows.all()) == {a.id: "owner", b.id: "admin"}

    async def test_an_owner_leaving_while_the_other_is_demoted_keeps_one_owner(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        maker = app.state.sessionmaker
        async with maker() as session:
            org = await make_org(session)
            a, b = await make_user(session), await make_user(session)
            await add_member(session, org, a, "owner")
            await add_member(session, org, b, "owner")
            await session.commit()

        async with maker() as first, maker() as second:
            await OrganizationService(first).remove_member(owner_tenant(org.id, a.id), a.id)  # a leaves
            racing = asyncio.create_task(
                OrganizationService(second).change_role(
                    owner_tenant(org.id, b.id), b.id, MemberUpdate(role="member")
                )
            )
            await asyncio.sleep(0.3)
            assert not racing.done()
            await first.commit()
            with pytest.raises(LastOwner):
                await racing
            await second.rollback()

        async with maker() as session:
            rows = await session.execute(
                select(Membership.user_id, Membership.role).where(Membership.organization_id == org.id)
            )
            assert dict(rows.all()) == {b.id: "owner"}


@pytest.mark.committing
class TestCustomRoleUnderConcurrency:
    async def test_a_role_being_given_cannot_be_deleted_meanwhile(
        self, app: Any, committing_client: AsyncClient
    ) -> None:
        maker = app.state.sessionmaker
        async with maker() as session:
            org = await make_org(session)
            owner, newcomer = await make_user(session), await make_user(session)
            await add_member(session, org, owner, "owner")
            role = OrganizationRole(organization_id=org.id, name="auditor", permissions=["audit:read"])
            session.add(role)
            await session.commit()
        tenant = owner_tenant(org.id, owner.id)

        async with maker() as first, maker() as second:
            await OrganizationService(first).add_member(
                tenant, MemberAdd(email=newcomer.email, role="auditor")
            )
            racing = asyncio.create_task(RoleService(second, tenant).delete(role.id))
            await asyncio.sleep(0.3)
            assert not racing.done(), "the delete must wait for the member being given the role"
            await first.commit()
            with pytest.raises(RoleInUse):
                await racing
            await second.rollback()

        async with maker() as session:
            rows = await session.execute(
                select(Membership.user_id, Membership.role).where(Membership.organization_id == org.id)
            )
            assert dict(rows.all()) == {owner.id: "owner", newcomer.id: "auditor"}
            assert await session.get(OrganizationRole, role.id) is not None

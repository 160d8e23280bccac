"""`CREATE_ADMIN_ON_STARTUP`: the lifespan creates the superuser and their organization (bootstrap.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.config import Settings
from crm.core.security import verify_password
from crm.main import create_app
from crm.models import Membership, Organization, User

PASSWORD = "Bootstrap-Passw0rd-91"


@pytest.fixture
async def bootstrap_settings(app: object, settings: Settings) -> AsyncIterator[Settings]:
    tag = uuid.uuid4().hex[:10]
    email, org_name = f"boot-{tag}@example.com", f"Boot Org {tag}"
    yield settings.model_copy(
        update={
            "create_admin_on_startup": True,
            "admin_email": email,
            "admin_password": PASSWORD,
            "admin_name": "Boot Admin",
            "admin_organization": org_name,
        }
    )
    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.execute(delete(Organization).where(Organization.name == org_name))
        await conn.execute(delete(User).where(User.email == email))


async def start_and_stop(settings: Settings) -> None:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        pass


async def test_admin_created_once(app: object, bootstrap_settings: Settings) -> None:
    await start_and_stop(bootstrap_settings)
    await start_and_stop(bootstrap_settings)

    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        users = (await conn.execute(select(User).where(User.email == bootstrap_settings.admin_email))).all()
        assert len(users) == 1
        user = users[0]
        assert user.is_superuser
        assert user.full_name == "Boot Admin"
        assert verify_password(PASSWORD, user.password_hash)[0]
        orgs = (
            await conn.execute(
                select(Organization).where(Organization.name == bootstrap_settings.admin_organization)
            )
        ).all()
        assert len(orgs) == 1
        roles = (await conn.execute(select(Membership.role).where(Membership.user_id == user.id))).scalars()
        assert list(roles) == ["owner"]


async def test_off_by_default_creates_nothing(app: object, bootstrap_settings: Settings) -> None:
    await start_and_stop(bootstrap_settings.model_copy(update={"create_admin_on_startup": False}))
    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        found = await conn.scalar(select(User.id).where(User.email == bootstrap_settings.admin_email))
    assert found is None

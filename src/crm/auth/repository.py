from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.models import utcnow
from crm.models import Membership, Organization, User, UserSession


def live_session(session_id: Any, user_id: Any) -> Select[tuple[int]]:
    """The session's id when it is neither revoked nor expired and its user is active. Takes values
    or bound parameters (`crm.core.hot_reads` embeds it)."""
    return (
        select(UserSession.id)
        .join(User, User.id == UserSession.user_id)
        .where(
            UserSession.id == session_id,
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > func.now(),
            User.is_active.is_(True),
        )
    )


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()

    async def memberships(self, user_id: int) -> Sequence[tuple[int, str, str]]:
        result = await self.session.execute(
            select(Membership.organization_id, Organization.name, Membership.role)
            .join(Organization, Organization.id == Membership.organization_id)
            .where(Membership.user_id == user_id, Organization.deleted_at.is_(None))
            .order_by(Membership.organization_id)
        )
        return [(org_id, name, role) for org_id, name, role in result.tuples().all()]


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_user(self, session_id: int, user_id: int) -> UserSession | None:
        result = await self.session.execute(
            select(UserSession).where(UserSession.id == session_id, UserSession.user_id == user_id)
        )
        return result.scalar_one_or_none()

    async def rotate(self, session_id: int, user_id: int, old_jti: str, new_jti: str) -> UserSession | None:
        """Swap the refresh jti only if `old_jti` is still the live one (atomic)."""
        result = await self.session.execute(
            update(UserSession)
            .where(
                UserSession.id == session_id,
                UserSession.user_id == user_id,
                UserSession.refresh_jti == old_jti,
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > func.now(),
            )
            # The app's clock, like `created_at`: PostgreSQL's now() is the transaction's start.
            .values(refresh_jti=new_jti, last_used_at=utcnow())
            .returning(UserSession)
        )
        return result.scalar_one_or_none()

    async def list_active(self, user_id: int, limit: int, offset: int) -> tuple[Sequence[UserSession], int]:
        """A page of the user's live sessions, newest first, and how many there are."""
        live = (
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > func.now(),
        )
        total = await self.session.scalar(select(func.count()).select_from(UserSession).where(*live))
        result = await self.session.execute(
            select(UserSession)
            .where(*live)
            .order_by(UserSession.created_at.desc(), UserSession.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return result.scalars().all(), int(total or 0)

    async def revoke(
        self,
        *,
        user_id: int,
        reason: str,
        session_ids: Sequence[int] | None = None,
        except_id: int | None = None,
        now: datetime | None = None,
    ) -> list[int]:
        """Revoke sessions of a user (all, a subset, or all but one); returns the revoked ids."""
        stmt = update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        if session_ids is not None:
            stmt = stmt.where(UserSession.id.in_(session_ids))
        if except_id is not None:
            stmt = stmt.where(UserSession.id != except_id)
        result = await self.session.execute(
            stmt.values(revoked_at=now or func.now(), revoked_reason=reason).returning(UserSession.id)
        )
        return list(result.scalars().all())

    async def is_active(self, session_id: int, user_id: int) -> bool:
        result = await self.session.execute(live_session(session_id, user_id))
        return result.scalar_one_or_none() is not None

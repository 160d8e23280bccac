from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.models import utcnow
from crm.models import Membership, Organization, RefreshToken, User, UserSession


def live_session(session_id: Any, user_id: Any) -> Select[tuple[int]]:
    """The session's id when it is neither revoked nor expired and its user is active. Takes values
    or bound parameters (`crm.records.fast_read` embeds it)."""
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

    def add_refresh_token(self, session_id: int, jti: str) -> None:
        self.session.add(RefreshToken(jti=jti, session_id=session_id, issued_at=utcnow()))

    async def lock_for_refresh(self, session_id: int, user_id: int) -> UserSession | None:
        """The session row, locked until the transaction ends: refreshes of one session take turns,
        in every API process alike."""
        result = await self.session.execute(
            select(UserSession)
            .where(UserSession.id == session_id, UserSession.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def spend_refresh_token(self, session_id: int, jti: str, grace: timedelta) -> bool:
        """Spend `jti`: true when it was unspent, or spent less than `grace` ago (a second tab)."""
        now = utcnow()
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.jti == jti,
                RefreshToken.session_id == session_id,
                or_(RefreshToken.spent_at.is_(None), RefreshToken.spent_at > now - grace),
            )
            .values(spent_at=func.coalesce(RefreshToken.spent_at, now))
            .returning(RefreshToken.jti)
        )
        return result.scalar_one_or_none() is not None

    async def rotate(self, session: UserSession, new_jti: str, grace: timedelta) -> None:
        """Hand out `new_jti` for the (locked) session and forget tokens spent before the grace period:
        a signed token of the session without a row is a spent one."""
        now = utcnow()
        self.add_refresh_token(session.id, new_jti)
        # The app's clock, like `created_at`: PostgreSQL's now() is the transaction's start.
        session.refresh_jti = new_jti
        session.last_used_at = now
        await self.session.execute(
            delete(RefreshToken).where(
                RefreshToken.session_id == session.id, RefreshToken.spent_at <= now - grace
            )
        )
        await self.session.flush()

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

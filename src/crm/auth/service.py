"""Registration, login, token rotation, sessions and passwords."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.auth.exceptions import (
    InvalidCredentials,
    InvalidPassword,
    InvalidTokenError,
    RefreshTokenReused,
    UserEmailTaken,
)
from crm.auth.repository import SessionRepository, UserRepository
from crm.auth.revocation import revoke_after_commit
from crm.auth.schemas import LoginRequest, PasswordChange, TokenPair, UserRegister
from crm.config import Settings
from crm.core.errors import NotFound
from crm.core.ratelimit import Rate, RateLimiter
from crm.core.redis import SafeRedis
from crm.core.security import (
    InvalidToken,
    create_token,
    decode_token,
    hash_password,
    verify_password,
)
from crm.models import User, UserSession


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    user_agent: str | None


class AuthService:
    def __init__(self, db: AsyncSession, redis: SafeRedis, settings: Settings) -> None:
        self.db = db
        self.redis = redis
        self.settings = settings
        self.users = UserRepository(db)
        self.sessions = SessionRepository(db)

    async def register(self, data: UserRegister) -> User:
        return await self.create_user(data.email, data.password, data.full_name)

    async def create_user(
        self, email: str, password: str, full_name: str, *, is_superuser: bool = False
    ) -> User:
        user = User(
            email=email.lower(),
            full_name=full_name,
            password_hash=hash_password(password),
            is_superuser=is_superuser,
        )
        try:
            async with self.db.begin_nested():
                self.db.add(user)
        except IntegrityError:
            raise UserEmailTaken() from None
        return user

    async def login(self, data: LoginRequest, client: ClientInfo, limiter: RateLimiter) -> TokenPair:
        email = data.email.strip().lower()
        await self._check_account_limit(limiter, email)
        user = await self.users.get_by_email(email)
        ok, new_hash = verify_password(data.password, user.password_hash if user else None)
        if user is None or not ok or not user.is_active:
            await self._count_failure(limiter, email)
            raise InvalidCredentials()
        if new_hash:
            user.password_hash = new_hash
        user.last_login_at = datetime.now(UTC)
        return await self._open_session(user, client)

    async def _open_session(self, user: User, client: ClientInfo) -> TokenPair:
        jti = uuid.uuid4().hex
        session = UserSession(
            user_id=user.id,
            refresh_jti=jti,
            expires_at=datetime.now(UTC) + timedelta(days=self.settings.refresh_token_expire_days),
            user_agent=(client.user_agent or "")[:500] or None,
            ip=client.ip[:64],
        )
        self.db.add(session)
        await self.db.flush()
        self.sessions.add_refresh_token(session.id, jti)
        await self.db.flush()
        return self._pair(user.id, session.id, jti)

    def _pair(self, user_id: int, session_id: int, refresh_jti: str) -> TokenPair:
        access, _ = create_token(self.settings, user_id=user_id, session_id=session_id, type="access")
        refresh, _ = create_token(
            self.settings, user_id=user_id, session_id=session_id, type="refresh", jti=refresh_jti
        )
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=self.settings.access_token_expire_minutes * 60,
        )

    async def refresh(self, token: str) -> TokenPair:
        """Spend a refresh token for a new pair. Each handed-out token is spent once, but a token
        spent less than `refresh_reuse_grace_seconds` ago still works (two tabs refreshing at once),
        each such call getting its own new token. A token spent earlier is reuse: someone holds a
        copy, and the whole session is revoked."""
        try:
            claims = decode_token(self.settings, token, "refresh")
        except InvalidToken:
            raise InvalidTokenError("Invalid or expired refresh token") from None
        # Refreshes of one session take turns on the session row (across API processes too).
        session = await self.sessions.lock_for_refresh(claims.session_id, claims.user_id)
        if session is None or session.revoked_at is not None or session.expires_at <= datetime.now(UTC):
            raise InvalidTokenError("Session expired or revoked")
        grace = timedelta(seconds=self.settings.refresh_reuse_grace_seconds)
        if not await self.sessions.spend_refresh_token(session.id, claims.jti, grace):
            # A spent token of a live session came back: someone holds a copy. Kill the family.
            await self.revoke_sessions(claims.user_id, "refresh_reuse", [session.id])
            raise RefreshTokenReused()
        user = await self.users.get(claims.user_id)
        if user is None or not user.is_active:
            raise InvalidTokenError("User is inactive")
        new_jti = uuid.uuid4().hex
        await self.sessions.rotate(session, new_jti, grace)
        return self._pair(user.id, session.id, new_jti)

    async def revoke_sessions(
        self,
        user_id: int,
        reason: str,
        session_ids: Sequence[int] | None = None,
        *,
        except_id: int | None = None,
    ) -> list[int]:
        revoked = await self.sessions.revoke(
            user_id=user_id, reason=reason, session_ids=session_ids, except_id=except_id
        )
        revoke_after_commit(self.db, self.redis, revoked)
        return revoked

    async def logout(self, user_id: int, session_id: int) -> None:
        await self.revoke_sessions(user_id, "logout", [session_id])

    async def memberships(self, user_id: int) -> Sequence[tuple[int, str, str]]:
        """(organization_id, name, role) of every live organization the user belongs to."""
        return await self.users.memberships(user_id)

    async def list_sessions(self, user_id: int, limit: int, offset: int) -> tuple[Sequence[UserSession], int]:
        return await self.sessions.list_active(user_id, limit, offset)

    async def revoke_one(self, user_id: int, session_id: int) -> None:
        session = await self.sessions.get_for_user(session_id, user_id)
        if session is None or session.revoked_at is not None:
            raise NotFound("Session not found")
        await self.revoke_sessions(user_id, "revoked_by_user", [session_id])

    async def _check_account_limit(self, limiter: RateLimiter, email: str) -> None:
        """429 once the account's failed password checks fill the window (`RATE_LIMIT_LOGIN_PER_ACCOUNT`)."""
        rate = Rate.parse(self.settings.rate_limit_login_per_account)
        usage = await limiter.peek("login-account", email, rate)
        if usage is not None and usage.count >= usage.rate.limit:
            # Only failed attempts count against an account; report the window as exhausted.
            raise dataclasses.replace(usage, count=usage.rate.limit + 1).error()

    async def _count_failure(self, limiter: RateLimiter, email: str) -> None:
        await limiter.add_failure(
            "login-account", email, Rate.parse(self.settings.rate_limit_login_per_account)
        )

    async def change_password(
        self, user: User, current_session_id: int, data: PasswordChange, limiter: RateLimiter
    ) -> None:
        # A wrong current password is a failed password check of the account, like a failed login: a
        # stolen access token cannot be used to guess the password faster than the login form allows.
        await self._check_account_limit(limiter, user.email)
        ok, _ = verify_password(data.current_password, user.password_hash)
        if not ok:
            await self._count_failure(limiter, user.email)
            raise InvalidPassword()
        user.password_hash = hash_password(data.new_password)
        await self.revoke_sessions(user.id, "password_changed", except_id=current_session_id)

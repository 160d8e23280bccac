from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, utcnow


class UserSession(IdMixin, Base):
    """A login: one refresh-token family. Revoking it kills its access tokens too."""

    __tablename__ = "user_session"

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="CASCADE"), index=True)
    #: jti of the newest refresh token of this family (every live one is a `refresh_token` row).
    refresh_jti: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(50))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    ip: Mapped[str | None] = mapped_column(String(64))

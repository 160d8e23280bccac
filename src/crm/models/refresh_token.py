from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, utcnow


class RefreshToken(Base):
    """A refresh token handed out for a session. Each is spent once; a spent one is kept only for the
    grace period in which a second tab may still present it (docs/platform.md, "Sessions")."""

    __tablename__ = "refresh_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("user_session.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    spent_at: Mapped[datetime | None]

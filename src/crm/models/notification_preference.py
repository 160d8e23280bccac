from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, TimestampMixin


class NotificationPreference(TimestampMixin, Base):
    """What one user wants to hear about: kinds muted in the app, kinds also sent by email."""

    __tablename__ = "notification_preference"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    muted_kinds: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list, server_default="{}")
    email_kinds: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list, server_default="{}")

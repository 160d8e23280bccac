from __future__ import annotations

from crm.core.schemas import ReadModel


class PortalUser(ReadModel):
    """The corporate portal's user shape (§11): exactly these three fields."""

    id: int
    name: str
    email: str

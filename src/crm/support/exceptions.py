from __future__ import annotations

from crm.core.errors import Conflict, NotFound


class ProjectNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Project not found")


class SupportNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Support measure not found")


class DecisionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Decision not found")


class SupportNotApproved(Conflict):
    code = "support_not_approved"


class SupportAlreadyProvided(Conflict):
    code = "support_already_provided"

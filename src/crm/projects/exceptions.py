from __future__ import annotations

from crm.core.errors import Conflict


class ProjectExternalCodeTaken(Conflict):
    code = "project_external_code_taken"

    def __init__(self) -> None:
        super().__init__("A project with this external_code already exists")

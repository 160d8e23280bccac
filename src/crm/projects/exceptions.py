from __future__ import annotations

from crm.core.errors import Conflict


class ProjectExternalCodeTaken(Conflict):
    code, detail = "project_external_code_taken", "A project with this external_code already exists"

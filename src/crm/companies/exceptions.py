from __future__ import annotations

from crm.core.errors import Conflict


class CompanyInnTaken(Conflict):
    code = "company_inn_taken"

    def __init__(self) -> None:
        super().__init__("A company with this INN already exists")

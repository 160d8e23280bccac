from __future__ import annotations

from crm.core.errors import Conflict


class CompanyInnTaken(Conflict):
    code, detail = "company_inn_taken", "A company with this INN already exists"

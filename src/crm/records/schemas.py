"""Schema pieces shared by the CRM records."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from crm.core.schemas import BIGINT_MAX

#: Where a record came from; server-owned (never taken from a body).
Source = Literal["manual", "registration", "import", "moysklad", "bitrix24", "portal"]

#: An optional reference to another row of the organization (`company_id`, `owner_id`, ...).
RefId = Annotated[int | None, Field(ge=1, le=BIGINT_MAX)]

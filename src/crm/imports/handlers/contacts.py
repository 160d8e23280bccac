"""Contacts: matched on `email` (case-insensitive) among the live contacts its unique index covers;
new ones are sent by binary COPY into a temporary table and stored by one INSERT … SELECT."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm.contacts.schemas import ContactCreate
from crm.contacts.service import CREATED_FIELDS
from crm.imports import cells
from crm.imports.fields import CONTACTS
from crm.imports.handlers.base import Handler, Parser, Row, compared_of, integer_of, text_of
from crm.imports.handlers.companies import companies_by_inn
from crm.models import Contact
from crm.models.company import UNIQUE_SOURCES


class ContactHandler(Handler):
    spec = CONTACTS
    model = Contact
    not_null = ("full_name",)
    compared = compared_of(CREATED_FIELDS, besides=("phone_raw",))
    parsers: ClassVar[dict[str, Parser]] = {
        "full_name": text_of(ContactCreate, "full_name"),
        "email": cells.email,
        "phone": lambda v: (cells.phone(v), v),
        "company_inn": cells.inn,
        "job_title": text_of(ContactCreate, "job_title"),
        "age": integer_of(ContactCreate, "age"),
        "gender": text_of(ContactCreate, "gender"),
        "country": text_of(ContactCreate, "country"),
        "address": text_of(ContactCreate, "address"),
        "tags": cells.tags,
        "owner_email": cells.email,
        "notes": text_of(ContactCreate, "notes"),
    }

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        inns = {r.values["company_inn"] for r in rows if r.values.get("company_inn")}
        companies = await companies_by_inn(db, self.ctx.organization_id, inns) if inns else {}
        kept: list[Row] = []
        for row in rows:
            values = row.values
            record: dict[str, Any] = {}
            for name in self.compared:
                if name in values and name not in ("phone", "tags"):
                    record[name] = values[name]
            if "tags" in values:
                record["tags"] = values["tags"] or []
            if "phone" in values:
                record["phone"], record["phone_raw"] = values["phone"] or (None, None)
            if "company_inn" in values:
                inn = values["company_inn"]
                record["company_id"] = companies.get(inn) if inn else None
                if inn and record["company_id"] is None:
                    self.out.error(row.number, self.column("company_inn"), f"no company with INN {inn}")
                    continue
            if not self.user(row.number, "owner_email", values, "owner_id", record):
                continue
            row.record = record
            kept.append(row)
        return kept

    def diff(self, row: Row, current: dict[str, Any]) -> dict[str, Any] | None:
        changes = super().diff(row, current)
        if changes and "phone" in changes:
            changes["phone_raw"] = row.record["phone_raw"]
        return changes

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        return await self.live_unique(db, Contact.email, func.lower(Contact.email), keys)

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        """Binary COPY of the new rows into a temporary table, then one INSERT … SELECT … ON CONFLICT DO
        NOTHING on the email's partial unique index (a row stored meanwhile by someone else is reported).
        Both run on the job's connection, inside its transaction."""
        names = _CONTACT_COPIED[1:-1]
        records = []
        for ordinal, row in enumerate(rows):
            record, custom = row.record, row.record["custom_fields"]
            records.append(
                (
                    ordinal,
                    *[record.get(name) for name in names],
                    json.dumps(custom, ensure_ascii=False) if custom else "{}",
                )
            )
        await db.execute(_CONTACT_STAGING)
        connection = await (await db.connection()).get_raw_connection()
        driver = connection.driver_connection
        assert driver is not None
        await driver.copy_records_to_table("import_contact", records=records, columns=_CONTACT_COPIED)
        # Columns equal for the whole chunk are parameters of the INSERT, not copied per row.
        result = await db.execute(_CONTACT_MERGE, {"source": "import", **self.base_record()})
        stored = {key for (key,) in result.tuples() if key is not None}
        await db.execute(text("TRUNCATE import_contact"))
        created = 0
        for row in rows:
            if row.key is None or row.key in stored:
                created += 1
            else:
                self.out.error(
                    row.number,
                    self.column("email"),
                    f"email {row.key} was stored by someone else meanwhile",
                )
        self.out.created += created
        self.out.created_by_type[self.spec.entity_type] += created


#: Columns of a new contact that vary by row, in COPY order, custom fields last (the others:
#: `_CONTACT_MERGE`).
_CONTACT_COPIED = (
    "ordinal",
    *(name for name in CREATED_FIELDS if name not in ("custom_fields", "source")),
    "custom_fields",
)
_CONTACT_STAGING = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_contact ON COMMIT DROP AS "  # noqa: S608 - constants
    f"SELECT 0 AS ordinal, {', '.join(_CONTACT_COPIED[1:-1])}, custom_fields::text AS custom_fields "
    "FROM contact WITH NO DATA"
)
_CONTACT_SELECTED = {"tags": "coalesce(tags, '{}')", "custom_fields": "custom_fields::jsonb"}
_CONTACT_MERGE = text(
    "INSERT INTO contact (organization_id, created_at, updated_at, version, source, "  # noqa: S608 - constants
    f"{', '.join(_CONTACT_COPIED[1:])}) "
    "SELECT CAST(:organization_id AS bigint), CAST(:created_at AS timestamptz), "
    "CAST(:updated_at AS timestamptz), CAST(:version AS integer), CAST(:source AS varchar), "
    f"{', '.join(_CONTACT_SELECTED.get(name, name) for name in _CONTACT_COPIED[1:])} "
    "FROM import_contact ORDER BY ordinal "
    "ON CONFLICT (organization_id, lower(email)) "
    f"WHERE deleted_at IS NULL AND email IS NOT NULL AND {UNIQUE_SOURCES} DO NOTHING "
    "RETURNING lower(email)"
)

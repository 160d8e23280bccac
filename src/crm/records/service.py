from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.activities.service import ActivityService, apply_changes, snapshot
from crm.config import get_settings
from crm.core.cache import OrgCache, invalidate_after_commit
from crm.core.concurrency import check_version
from crm.core.errors import Conflict, NotFound, UnprocessableEntity
from crm.core.models import Base
from crm.core.redis import SafeRedis
from crm.core.repository import TenantRepository
from crm.models import Company, Contact, Deal, Membership
from crm.organizations.dependencies import Tenant
from crm.outbox.service import emit_record_write

M = TypeVar("M", bound=Base)


class InvalidReference(UnprocessableEntity):
    code = "invalid_reference"


class RecordService(Generic[M]):
    """Create/update/delete/restore of one kind of record, with an activity for every write and
    the organization's analytics cache invalidated after commit."""

    entity_type: ClassVar[str]
    repository_class: ClassVar[type[TenantRepository[Any]]]
    #: Unique index name → (code, message) for a 409 when it is violated.
    unique_errors: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, db: AsyncSession, tenant: Tenant, redis: SafeRedis) -> None:
        self.db = db
        self.tenant = tenant
        self.redis = redis
        self.repo: TenantRepository[M] = self.repository_class(db, tenant.organization_id)
        cache = OrgCache(redis, get_settings().cache_ttl_seconds)
        self.repo.total_cache = lambda signature, compute: cache.count(
            tenant.organization_id, self.entity_type, {"query": signature}, compute
        )
        self.activities = ActivityService(db, tenant.organization_id, tenant.user_id)

    def owned_by_creator(self, data: BaseModel, *, field: str = "owner_id") -> dict[str, Any]:
        """The create body's values; a record created by a user without `field` sent belongs to
        that user (§20.12). An API key or a sync creates it without an owner."""
        values = data.model_dump()
        if field not in data.model_fields_set and values.get(field) is None and self.tenant.user_id:
            values[field] = self.tenant.user_id
        return values

    @property
    def not_found(self) -> NotFound:
        return NotFound(f"{self.entity_type.capitalize()} not found")

    async def get(self, row_id: int) -> M:
        row = await self.repo.get(row_id)
        if row is None:
            raise self.not_found
        return row

    async def get_for_update(self, row_id: int) -> M:
        row = await self.repo.get(row_id, for_update=True)
        if row is None:
            raise self.not_found
        return row

    def changed(self) -> None:
        invalidate_after_commit(self.db, self.redis, self.tenant.organization_id)

    def log(
        self,
        row: M | None,
        row_id: int,
        action: str,
        changes: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """The activity of a write and its domain events (the outbox), in the write's transaction."""
        self.activities.record(self.entity_type, row_id, action, changes, payload)
        emit_record_write(
            self.db,
            self.tenant.organization_id,
            self.tenant.user_id,
            self.entity_type,
            action,
            row,
            row_id,
            changes,
        )

    async def flush_unique(self) -> None:
        """Flush, turning a unique-index violation into the 409 the feature declares."""
        try:
            async with self.db.begin_nested():
                await self.db.flush()
        except IntegrityError as exc:
            message = str(exc.orig)
            for index, (code, detail) in self.unique_errors.items():
                if index in message:
                    raise Conflict(detail, code=code) from None
            raise

    async def insert(self, row: M, fields: list[str]) -> M:
        self.repo.add(row)
        await self.flush_unique()
        self.log(row, row.id, "created", snapshot(row, fields))  # type: ignore[attr-defined]
        self.changed()
        return row

    async def write(
        self,
        row: M,
        values: Mapping[str, Any],
        if_match: str | None,
        *,
        action: str = "updated",
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, list[Any]]:
        """Apply `values` under `If-Match`; bump the version and log the change when anything changed."""
        check_version(row.version, if_match)  # type: ignore[attr-defined]
        changes = apply_changes(row, values)
        if changes:
            row.version += 1  # type: ignore[attr-defined]
            row.updated_at = datetime.now(UTC)  # type: ignore[attr-defined]
            await self.flush_unique()
            self.log(row, row.id, action, changes, payload)  # type: ignore[attr-defined]
            self.changed()
        return changes

    async def soft_delete(self, row: M) -> None:
        row.deleted_at = datetime.now(UTC)  # type: ignore[attr-defined]
        row.version += 1  # type: ignore[attr-defined]
        await self.db.flush()
        self.log(row, row.id, "deleted")  # type: ignore[attr-defined]
        self.changed()

    async def hard_delete(self, row: M, fields: list[str] | None = None) -> None:
        """Delete for real (records without soft delete, such as tasks). The `deleted` activity keeps
        the removed values of `fields` as `{field: [value, null]}`, since the row itself is gone."""
        row_id: int = row.id  # type: ignore[attr-defined]
        removed = {f: [old, None] for f, (_, old) in snapshot(row, fields or []).items()}
        await self.db.delete(row)
        await self.db.flush()
        self.log(None, row_id, "deleted", removed)
        self.changed()

    async def restore(self, row_id: int) -> M:
        row = await self.repo.get(row_id, include_deleted=True, for_update=True)
        if row is None or row.deleted_at is None:  # type: ignore[attr-defined]
            raise self.not_found
        row.deleted_at = None  # type: ignore[attr-defined]
        row.version += 1  # type: ignore[attr-defined]
        await self.flush_unique()
        self.log(row, row.id, "restored")  # type: ignore[attr-defined]
        self.changed()
        return row

    # Reference checks ------------------------------------------------------------------------

    async def check_refs(
        self,
        *,
        company_id: int | None = None,
        contact_id: int | None = None,
        deal_id: int | None = None,
        user_ids: Mapping[str, int | None] | None = None,
    ) -> None:
        """422 when a referenced record is missing, deleted or of another organization."""
        org = self.tenant.organization_id
        checks: list[tuple[str, Any, int | None]] = [
            ("company_id", Company, company_id),
            ("contact_id", Contact, contact_id),
            ("deal_id", Deal, deal_id),
        ]
        for field, model, ref in checks:
            if ref is None:
                continue
            found = await self.db.scalar(
                select(model.id).where(
                    model.id == ref, model.organization_id == org, model.deleted_at.is_(None)
                )
            )
            if found is None:
                raise InvalidReference(
                    f"{field}: no such record in this organization",
                    errors=[{"loc": ["body", field], "msg": "not found", "type": "invalid_reference"}],
                )
        for field, user_id in (user_ids or {}).items():
            if user_id is None:
                continue
            found = await self.db.scalar(
                select(Membership.id).where(Membership.organization_id == org, Membership.user_id == user_id)
            )
            if found is None:
                raise InvalidReference(
                    f"{field}: not a member of this organization",
                    errors=[{"loc": ["body", field], "msg": "not a member", "type": "invalid_reference"}],
                )

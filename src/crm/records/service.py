from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

from pydantic import BaseModel
from sqlalchemy import Executable, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict, instance_state, set_committed_value

from crm.activities.service import ActivityService, apply_changes, jsonable, snapshot
from crm.config import get_settings
from crm.core.cache import OrgCache, invalidate_after_commit
from crm.core.concurrency import check_version
from crm.core.errors import AppError, NotFound, UnprocessableEntity
from crm.core.redis import SafeRedis
from crm.core.repository import TenantRepository
from crm.core.rows import Versioned, VersionedRecord, soft_deletable
from crm.models import Company, Contact, Deal, Membership
from crm.organizations.dependencies import Tenant
from crm.outbox.service import emit_record_write, record_write_events, snapshot_values
from crm.records.writes import Log, insert_values, plan_of, write_params, write_statement

M = TypeVar("M", bound=VersionedRecord)


def _bump(row: Versioned) -> None:
    row.version += 1
    row.updated_at = datetime.now(UTC)


class InvalidReference(UnprocessableEntity):
    code = "invalid_reference"


#: Unique index name → the 409 answered when it is violated.
UniqueErrors = dict[str, Callable[[], AppError]]


class RecordService(Generic[M]):
    """Create/update/delete/restore of one kind of record, with an activity for every write and
    the organization's analytics cache invalidated after commit."""

    entity_type: ClassVar[str]
    repository_class: ClassVar[type[TenantRepository[Any]]]
    unique_errors: ClassVar[UniqueErrors] = {}

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
        """The activity of a write and its domain events (the outbox), added to the session: they
        are written by its next flush, in the write's transaction. The writes below put them in the
        row's own statement instead (`crm.records.writes`)."""
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

    def _log(
        self,
        action: str,
        changes: Mapping[str, Any] | None,
        payload: Mapping[str, Any] | None,
        values: Mapping[str, Any],
    ) -> Log:
        """What `log` would add, for the row's statement; `values` are the row's column values."""
        changes = changes or {}
        return Log(
            activity=self.activities.values(self.entity_type, action, changes, payload),
            events=record_write_events(self.db, self.entity_type, action, changes),
            entity_type=self.entity_type,
            organization_id=self.tenant.organization_id,
            actor_id=self.tenant.user_id,
            changes=jsonable(dict(changes)),
            object=snapshot_values(values),
        )

    def _unique_conflict(self, exc: IntegrityError) -> NoReturn:
        """The 409 the feature declares for the violated unique index; any other error as it is."""
        message = str(exc.orig)
        for index, error in self.unique_errors.items():
            if index in message:
                raise error() from None
        raise exc

    async def flush_unique(self) -> None:
        """Flush, turning a unique-index violation into the 409 the feature declares. (No SAVEPOINT:
        the 409 rolls the transaction back.)"""
        try:
            await self.db.flush()
        except IntegrityError as exc:
            self._unique_conflict(exc)

    async def _execute(self, statement: Executable, params: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            return dict((await self.db.execute(statement, params)).mappings().one())
        except IntegrityError as exc:
            self._unique_conflict(exc)

    def _others_pending(self, row: object | None) -> bool:
        """Whether the session holds unwritten changes besides `row`: they are flushed first, so
        rows (and activities) are written in the order they were made."""
        db = self.db
        return bool(db.new or db.deleted) or any(other is not row for other in db.dirty)

    async def insert(self, row: M, fields: list[str]) -> M:
        """Insert a new record (a transient object), its `created` activity and events with one
        statement; the object becomes persistent in the session, as after a flush."""
        if self._others_pending(None):
            await self.flush_unique()
        plan = plan_of(type(row))
        values = insert_values(plan, instance_dict(row))
        for key, value in values.items():
            set_committed_value(row, key, value)
        log = self._log("created", snapshot(row, fields), None, values)
        statement = write_statement(plan, "insert", list(values), log)
        generated = await self._execute(statement, write_params(values, log))
        for key, value in generated.items():
            set_committed_value(row, key, value)
        make_transient_to_detached(row)
        self.db.add(row)
        self.changed()
        return row

    async def _update(
        self,
        row: M,
        action: str,
        changes: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the row's changed columns, its activity and events with one statement (409 on a
        unique violation)."""
        state = instance_state(row)
        plan = plan_of(type(row))
        modified = list(state.committed_state)
        if self._others_pending(row) or not all(key in plan.by_key for key in modified):
            await self.flush_unique()  # then the statement writes the log only
            values: dict[str, Any] = {}
        else:
            values = {key: state.dict[key] for key in modified}
            for column in plan.columns:
                if column.onupdate is not None and column.key not in values:
                    values[column.key] = column.onupdate()
        current = {key: state.dict[key] for key in plan.by_key if key in state.dict}
        log = self._log(action, changes, payload, {**current, **values})
        statement = write_statement(plan, "update" if values else "log", list(values), log)
        generated = await self._execute(statement, write_params(values, log, row.id))
        for key, value in {**values, **generated}.items():
            set_committed_value(row, key, value)

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
        check_version(row.version, if_match)
        changes = apply_changes(row, values)
        if changes:
            _bump(row)
            await self._update(row, action, changes, payload)
            self.changed()
        return changes

    async def soft_delete(self, row: M) -> None:
        soft = soft_deletable(row)
        soft.deleted_at = datetime.now(UTC)
        soft.version += 1
        await self._update(row, "deleted")
        self.changed()

    async def hard_delete(self, row: M, fields: list[str] | None = None) -> None:
        """Delete for real (records without soft delete, such as tasks). The `deleted` activity keeps
        the removed values of `fields` as `{field: [value, null]}`, since the row itself is gone."""
        row_id = row.id
        removed = {f: [old, None] for f, (_, old) in snapshot(row, fields or []).items()}
        await self.db.delete(row)
        await self.db.flush()
        self.log(None, row_id, "deleted", removed)
        self.changed()

    async def restore(self, row_id: int) -> M:
        row = await self.repo.get(row_id, include_deleted=True, for_update=True)
        if row is None or soft_deletable(row).deleted_at is None:
            raise self.not_found
        soft = soft_deletable(row)
        soft.deleted_at = None
        soft.version += 1
        await self._update(row, "restored")
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
        """422 when a referenced record is missing, deleted or of another organization, or a
        referenced user is not a member. One query answers every reference sent."""
        org = self.tenant.organization_id
        checks: list[tuple[str, str, Any]] = []
        for field, model, ref in (
            ("company_id", Company, company_id),
            ("contact_id", Contact, contact_id),
            ("deal_id", Deal, deal_id),
        ):
            if ref is not None:
                found = exists().where(
                    model.id == ref, model.organization_id == org, model.deleted_at.is_(None)
                )
                checks.append((field, "record", found))
        for field, user_id in (user_ids or {}).items():
            if user_id is not None:
                found = exists().where(Membership.organization_id == org, Membership.user_id == user_id)
                checks.append((field, "member", found))
        if not checks:
            return
        row = (
            await self.db.execute(
                select(*(found.label(f"ref_{n}") for n, (_, _, found) in enumerate(checks)))
            )
        ).one()
        for (field, kind, _), present in zip(checks, row, strict=True):
            if not present:
                if kind == "record":
                    raise InvalidReference(
                        f"{field}: no such record in this organization",
                        errors=[{"loc": ["body", field], "msg": "not found", "type": "invalid_reference"}],
                    )
                raise InvalidReference(
                    f"{field}: not a member of this organization",
                    errors=[{"loc": ["body", field], "msg": "not a member", "type": "invalid_reference"}],
                )

"""Route pieces shared by the CRM records: list filters and the idempotent create."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request, Response

from crm.core.concurrency import set_etag
from crm.core.db import SessionDep
from crm.core.idempotency import Idempotency
from crm.core.idempotent import create_once
from crm.core.request_checks import takes_custom_field_filters
from crm.core.schemas import BIGINT_MAX, ReadModel, UtcDatetime
from crm.custom_fields.service import CustomFieldService
from crm.organizations.dependencies import Tenant, TenantDep, principal_of
from crm.records.fields import check_range, check_source
from crm.records.repository import RecordFilters
from crm.records.schemas import Source

R = TypeVar("R", bound=RecordFilters)

OptionalId = Annotated[int | None, Query(ge=1, le=BIGINT_MAX)]
#: A money bound in a list filter (`amount_min`, `amount_max`).
AmountBound = Annotated[Decimal | None, Query(ge=0, lt=Decimal("1e16"), description="Decimal, e.g. 1000.50")]


async def custom_field_filters(
    request: Request,
    db: SessionDep,
    tenant: Tenant,
    entity: str,
    created_from: datetime | None,
    created_to: datetime | None,
) -> dict[str, Any]:
    """The checks every record list makes: the created range (422 when inverted) and its
    `cf.<key>=value` filters (422 for an unknown custom field or a value of the wrong type)."""
    check_range(created_from, created_to)
    return await CustomFieldService(db, tenant.organization_id).filters(entity, request.query_params)


def list_filters(
    entity: str, filters: Callable[..., R]
) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[R]]]:
    """Decorator of a record list's filters dependency that declares its query parameters only
    (after `request`, `db` and `tenant`), each named like a field of `filters`: the dependency checks
    the created range and reads the `cf.<key>=value` filters, then builds `filters` from them all."""

    def decorate(declared: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[R]]:
        @takes_custom_field_filters
        @functools.wraps(declared)
        async def dependency(request: Request, db: SessionDep, tenant: Tenant, **params: Any) -> R:
            created = params.get("created_from"), params.get("created_to")
            cf = await custom_field_filters(request, db, tenant, entity, *created)
            return filters(**params, custom_fields=cf)

        return dependency

    return decorate


def record_filters(entity: str) -> Callable[..., Awaitable[RecordFilters]]:
    """Dependency: the filters every record list takes, `cf.<key>=value` included (422 for an
    unknown custom field or a value of the wrong type)."""

    @takes_custom_field_filters
    async def dependency(
        request: Request,
        db: SessionDep,
        tenant: TenantDep,
        tag: Annotated[str | None, Query(max_length=50)] = None,
        owner_id: OptionalId = None,
        source: Source | None = None,
        created_from: Annotated[UtcDatetime | None, Query(description="Created at or after")] = None,
        created_to: Annotated[UtcDatetime | None, Query(description="Created at or before")] = None,
    ) -> RecordFilters:
        check_source(source)
        cf = await custom_field_filters(request, db, tenant, entity, created_from, created_to)
        return RecordFilters(tag, owner_id, source, created_from, created_to, cf)

    dependency.__name__ = f"{entity}_filters"
    return dependency


async def idempotent_create(
    idem: Idempotency,
    tenant: Tenant,
    response: Response,
    create: Callable[[], Awaitable[Any]],
    read_model: type[ReadModel],
    collection_path: str,
) -> object:
    """Create a record under `Idempotency-Key` (SPEC §3, §19.9): a repeat replays the first response.
    Sets `Location` and `ETag` and stores the response in the record's transaction."""

    async def created() -> ReadModel:
        row = await create()
        response.headers["Location"] = f"{collection_path}/{row.id}"
        set_etag(response, row.version)
        return read_model.model_validate(row)

    return await create_once(idem, principal_of(tenant), response, created)

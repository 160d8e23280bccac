"""`GET /exports/{contacts|companies|deals|projects}?format=csv|xlsx` with the list's filters: the
same filters dependency the record type declares for its list (`crm.records.kit.RecordKit.filters`)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Receive, Scope, Send

from crm.companies.router import companies
from crm.contacts.router import contacts
from crm.core.db import SessionDep, get_session
from crm.core.openapi import errors
from crm.core.schemas import sort_param
from crm.deals.router import deals
from crm.exports.dependencies import exporter, known_params_only
from crm.exports.service import MEDIA_TYPES, Entity, ExportService, Format, stream
from crm.organizations.dependencies import Tenant
from crm.projects.router import projects
from crm.records.kit import RecordKit

router = APIRouter(prefix="/exports", tags=["exports"])

#: The session the rows are streamed from: it lives until the response has been sent (the request's
#: other session is committed and closed when the handler returns).
StreamSession = Annotated[AsyncSession, Depends(get_session, scope="request")]
KnownParams = Annotated[None, Depends(known_params_only)]
FormatParam = Annotated[Format, Query(alias="format", description="`csv` (UTF-8 with BOM) or `xlsx`")]

FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, as an attachment named `<entity>-<YYYY-MM-DD>.<format>`",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            MEDIA_TYPES["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **errors(400, 401, 403, 422),
}


class ExportResponse(StreamingResponse):
    """A file streamed from a query that runs (and yields its first rows) when the response starts,
    before the status line is sent: the request's own session is committed by then, and a query
    that fails is still answered as a problem (422, 503) instead of a 200 broken off mid-file."""

    def __init__(self, open_body: Callable[[], Awaitable[AsyncIterator[bytes]]], **kwargs: Any) -> None:
        super().__init__(iter(()), **kwargs)
        self._open_body = open_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.body_iterator = await self._open_body()
        await super().__call__(scope, receive, send)


async def _export(
    entity: Entity,
    db: AsyncSession,
    stream_db: AsyncSession,
    tenant: Tenant,
    fmt: Format,
    filters: object,
    sort: str | None,
) -> ExportResponse:
    plan = await ExportService(db, tenant).plan(entity, fmt, filters, sort)
    return ExportResponse(
        lambda: stream(stream_db, plan),
        media_type=plan.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{plan.filename}"',
            "Cache-Control": "no-store",
        },
    )


def add_export(kit: RecordKit[Any], doc: str) -> None:
    """`GET /exports/{name}`: the record type's list, with its filters and sorts, as a file."""

    async def endpoint(
        tenant: Tenant,
        _: KnownParams,
        filters: object,
        db: SessionDep,
        stream_db: StreamSession,
        fmt: FormatParam = "csv",
        sort: str | None = None,
    ) -> StreamingResponse:
        return await _export(cast(Entity, kit.name), db, stream_db, tenant, fmt, filters, sort)

    types = {
        "tenant": Annotated[Tenant, Depends(exporter(kit.permission("read")))],
        "filters": Annotated[object, Depends(kit.filters)],
        "sort": sort_param(*kit.sorts),
    }
    signature = inspect.signature(endpoint)
    params = [p.replace(annotation=types.get(p.name, p.annotation)) for p in signature.parameters.values()]
    setattr(endpoint, "__signature__", signature.replace(parameters=params))  # noqa: B010 (read by inspect.signature)
    router.add_api_route(
        f"/{kit.name}",
        endpoint,
        methods=["GET"],
        name=f"export_{kit.name}",
        description=inspect.cleandoc(doc),
        response_class=StreamingResponse,
        responses=FILE_RESPONSES,
    )


add_export(
    contacts,
    """Every contact matching the filters of `GET /contacts` (custom fields as `cf.<key>=value`), in
    the columns the contacts import reads. Needs `exports:run`.""",
)
add_export(
    companies,
    """Every company matching the filters of `GET /companies`, in the columns the companies import
    reads. Needs `exports:run`.""",
)
add_export(
    deals,
    """Every deal matching the filters of `GET /deals`, with its `id` (what the deals import
    matches on). Needs `exports:run`.""",
)
add_export(
    projects,
    """Every project matching the filters of `GET /projects`, denormalized the way the projects
    import reads it (client by INN and name, industry and district by name, curator by email).
    Needs `exports:run`.""",
)

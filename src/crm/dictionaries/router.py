"""`/api/v1/dictionaries/{industries,districts,support-programs,providers}`: everyone reads, holders of
`dictionaries:write` edit. The four share one set of routes, made by `add_dictionary_routes`."""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.idempotent import create_once
from crm.core.openapi import creates, errors
from crm.core.schemas import Id, Page, Paging, sort_param
from crm.dictionaries.schemas import (
    EntryCreate,
    EntryRead,
    EntryUpdate,
    Level,
    ProgramCreate,
    ProgramRead,
    ProgramUpdate,
)
from crm.dictionaries.service import (
    DISTRICTS,
    INDUSTRIES,
    PROGRAMS,
    PROVIDERS,
    Dictionary,
    DictionaryService,
)
from crm.organizations.dependencies import Tenant, principal_of, require

router = APIRouter(prefix="/dictionaries", tags=["dictionaries"])

Reader = Annotated[Tenant, Depends(require("dictionaries:read"))]
Writer = Annotated[Tenant, Depends(require("dictionaries:write"))]
Q = Annotated[str | None, Query(max_length=200, description="Part of the name, any case")]
if TYPE_CHECKING:
    EntrySort = str | None
else:
    EntrySort = sort_param("created_at", "name")


async def no_filters() -> dict[str, Any]:
    return {}


async def program_filters(level: Level | None = None, active: bool | None = None) -> dict[str, Any]:
    return {"level": level, "active": active}


def add_dictionary_routes(
    dictionary: Dictionary,
    create_model: type[EntryCreate],
    update_model: type[EntryUpdate],
    read_model: type[EntryRead],
    filters: Callable[..., Awaitable[dict[str, Any]]] = no_filters,
) -> None:
    """GET list, POST, GET/PATCH/DELETE one entry of a dictionary."""
    path = f"/{dictionary.slug}"
    label = dictionary.label.lower()
    name = dictionary.entity

    def service(db: SessionDep, tenant: Tenant) -> DictionaryService:
        return DictionaryService(db, tenant.organization_id, dictionary)

    @router.get(
        path,
        response_model=Page[read_model],  # type: ignore[valid-type]
        responses=errors(400, 401, 403, 422),
        name=f"list_{name}",
        summary=f"List {dictionary.slug.replace('-', ' ')}",
    )
    async def list_entries(
        tenant: Reader,
        db: SessionDep,
        paging: Paging,
        extra: Annotated[dict[str, Any], Depends(filters)],
        q: Q = None,
        sort: EntrySort = None,
    ) -> object:
        rows, total = await service(db, tenant).list(q, extra, sort, paging.limit, paging.offset)
        return paging.page(rows, total)

    @creates(
        router, path, read_model, 400, 401, 403, 409, 422, name=f"create_{name}", summary=f"Add a {label}"
    )
    async def create_entry(
        data: create_model,  # type: ignore[valid-type]
        tenant: Writer,
        db: SessionDep,
        response: Response,
        idem: IdempotencyDep,
    ) -> object:
        """The name is unique in the organization, case-insensitively (409 `<dictionary>_name_taken`)."""

        async def create() -> EntryRead:
            entry = await service(db, tenant).create(data)
            response.headers["Location"] = f"/api/v1/dictionaries{path}/{entry.id}"
            return read_model.model_validate(entry)

        return await create_once(idem, principal_of(tenant), response, create)

    @router.get(
        f"{path}/{{entry_id}}",
        response_model=read_model,
        responses=errors(400, 401, 403, 404, 422),
        name=f"get_{name}",
        summary=f"One {label}",
    )
    async def get_entry(entry_id: Id, tenant: Reader, db: SessionDep) -> object:
        return await service(db, tenant).get(entry_id)

    @router.patch(
        f"{path}/{{entry_id}}",
        response_model=read_model,
        responses=errors(400, 401, 403, 404, 409, 422),
        name=f"update_{name}",
        summary=f"Change a {label}",
    )
    async def update_entry(
        entry_id: Id,
        data: update_model,  # type: ignore[valid-type]
        tenant: Writer,
        db: SessionDep,
    ) -> object:
        """Change the fields sent; a name taken by another entry is 409."""
        return await service(db, tenant).update(entry_id, data)

    @router.delete(
        f"{path}/{{entry_id}}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=errors(400, 401, 403, 404, 409, 422),
        name=f"delete_{name}",
        summary=f"Delete a {label}",
    )
    async def delete_entry(entry_id: Id, tenant: Writer, db: SessionDep) -> None:
        """Delete for real; an entry referenced by a project or a support measure (deleted projects
        included) is 409 `dictionary_entry_in_use`."""
        await service(db, tenant).delete(entry_id)


add_dictionary_routes(INDUSTRIES, EntryCreate, EntryUpdate, EntryRead)
add_dictionary_routes(DISTRICTS, EntryCreate, EntryUpdate, EntryRead)
add_dictionary_routes(PROGRAMS, ProgramCreate, ProgramUpdate, ProgramRead, program_filters)
add_dictionary_routes(PROVIDERS, EntryCreate, EntryUpdate, EntryRead)

"""The record kit: a record type (contacts, companies, deals, projects) is declared once, and its
routes are produced from the declaration.

A declaration names the service (which already knows the entity, the model, the repository with its
sorts and the unique-index errors), the four schemas, the list's filters and the texts of the routes.
`RecordKit.router` then gives the feature an `APIRouter` with

    GET    /{name}                  list (filters, sort, paging; `Page[Read]`)
    POST   /{name}                  create (Idempotency-Key, Location, ETag)
    GET    /{name}/{entity}_id      one record (ETag)
    PUT    /{name}/{entity}_id      replace (If-Match → 412 when stale)
    PATCH  /{name}/{entity}_id      update (If-Match → 412 when stale)
    DELETE /{name}/{entity}_id      soft delete
    POST   /{name}/{entity}_id/restore
    POST   /{name}/{entity}_id/comments, GET /{name}/{entity}_id/activities (the timeline)

to which the feature adds the routes it keeps for itself (a deal's `/stage`, a project's team),
with `add_change` and `add_page` where they have one of those shapes.
Operation ids, summaries and parameter names are the ones hand-written routes would get
(`list_contacts`, `get_contact`, `contact_id`), so the OpenAPI document reads as before.
See docs/records.md for how to add a record type.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Generic, Protocol, TypeVar, cast

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel

from crm.activities.router import add_timeline_routes
from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.errors import NotFound
from crm.core.idempotency import IdempotencyDep
from crm.core.openapi import errors
from crm.core.redis import SafeRedis
from crm.core.schemas import Id, Page, Paging, ReadModel, sort_param
from crm.organizations.dependencies import Tenant, TenantDep, require
from crm.records.fast_read import fast_read
from crm.records.fast_write import FastCreate, fast_create
from crm.records.repository import RecordRepository
from crm.records.router import idempotent_create

API_PREFIX = "/api/v1"

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class ServiceClass(Protocol[S_co]):
    """A feature's service class: built from the session, the tenant and Redis."""

    def __call__(self, db: Any, tenant: Tenant, redis: SafeRedis, /) -> S_co: ...


class RecordServiceClass(ServiceClass[S_co], Protocol[S_co]):
    """A record type's service class, with the repository of its records."""

    @property
    def entity_type(self) -> str: ...

    @property
    def repository_class(self) -> type[RecordRepository[Any]]: ...


def provide(service_class: ServiceClass[S]) -> Callable[..., Awaitable[S]]:
    """Dependency: the feature's service for this request (its session, tenant and Redis).

    `Annotated[DealService, Depends(provide(DealService))]` stands in every route that needs it."""

    async def dependency(request: Request, db: SessionDep, tenant: TenantDep) -> S:
        return service_class(db, tenant, request.app.state.redis)

    dependency.__name__ = f"provide_{getattr(service_class, '__name__', 'service')}"
    return dependency


class RecordFlows(Protocol):
    """The service methods the kit's routes call (`crm.records.crud.CrudService` has them all)."""

    async def list(self, filters: Any, sort: str | None, limit: int, offset: int) -> tuple[Any, int]: ...
    async def create(self, data: Any) -> Any: ...
    async def get(self, row_id: int) -> Any: ...
    async def replace(self, row_id: int, data: Any, if_match: str | None) -> Any: ...
    async def update(self, row_id: int, data: Any, if_match: str | None) -> Any: ...
    async def delete(self, row_id: int) -> None: ...
    async def restore(self, row_id: int) -> Any: ...


@dataclass(frozen=True)
class RouteDocs:
    """The OpenAPI description of each generated route; `{Plural}` and `{entity}` are filled in.
    A record type overrides the ones that say something of its own."""

    list: str = "{Plural}, newest first. Custom fields filter as `cf.<key>=value`."
    create: str = "Create a {entity}."
    get: str = "One {entity}; its `ETag` is the version to send back in `If-Match`."
    replace: str = "Replace every editable field. Honours `If-Match` (412 when stale)."
    update: str = "Change the fields sent. Honours `If-Match` (412 when stale)."
    delete: str = "Soft-delete (restorable)."
    restore: str = "Bring back a deleted {entity} (owner/admin)."


@dataclass(frozen=True)
class Schemas:
    """A record type's bodies (`POST`, `PUT`, `PATCH`) and its answer."""

    create: type[BaseModel]
    replace: type[BaseModel]
    update: type[BaseModel]
    read: type[ReadModel]


@dataclass(frozen=True)
class RecordKit(Generic[S]):
    """One record type, declared once. `name` is the URL segment and permission prefix
    (`contacts` → `/contacts`, `contacts:read`). The service brings the rest: its `entity_type` is the
    singular used in ids, activities and custom fields (`contact` → `contact_id`), its repository's
    `sorts` the `sort` values the list accepts."""

    name: str
    service: RecordServiceClass[S]
    schemas: Schemas
    #: The list's filters: a dependency returning the filters object the service's `list` takes.
    #: The export of the record type uses the same one (`crm.exports.router`).
    filters: Callable[..., Awaitable[Any]]
    docs: RouteDocs = field(default_factory=RouteDocs)
    #: A delete may be refused with 409 (a contact with open deals).
    delete_conflicts: bool = False
    #: `GET /{name}/{id}` is also served by the fast read path (see `_get_route`), as every record
    #: type's is unless it declares otherwise.
    fast_read: bool = True
    #: `POST /{name}` is also served by the fast create path (see `_create_route`); the service
    #: gives `quick_values`, `references` and `created_fields`.
    fast_create: bool = False

    # Names -----------------------------------------------------------------------------------

    @property
    def entity(self) -> str:
        return self.service.entity_type

    @property
    def sorts(self) -> list[str]:
        """The `sort` values the list accepts (each also as `-field`)."""
        return list(self.service.repository_class.sorts)

    @property
    def read(self) -> type[ReadModel]:
        return self.schemas.read

    @property
    def path(self) -> str:
        """The collection's path under the API root (for `Location`)."""
        return f"{API_PREFIX}/{self.name}"

    @property
    def id_name(self) -> str:
        return f"{self.entity}_id"

    def permission(self, action: str) -> str:
        return f"{self.name}:{action}"

    def provide(self) -> Callable[..., Awaitable[S]]:
        return provide(self.service)

    async def ensure_exists(self, db: SessionDep, organization_id: int, record_id: int) -> None:
        """404 unless the record is live and belongs to the organization (the timeline's check)."""
        repository = self.service.repository_class(db, organization_id)
        if not await repository.exists(record_id):
            raise NotFound(f"{self.entity.capitalize()} not found")

    # Routes ----------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        """The record type's router with the generated routes and the timeline; the feature adds its
        own routes (a deal's `/stage`, a company's `/contacts`) to it."""
        router = APIRouter(prefix=f"/{self.name}", tags=[self.name])
        self._list_route(router)
        self._create_route(router)
        self._get_route(router)
        self._write_routes(router)
        self._delete_routes(router)
        add_timeline_routes(router, self.entity, self.permission("read"), self.ensure_exists)
        return router

    def add_page(
        self,
        router: APIRouter,
        suffix: str,
        read: type[BaseModel],
        fetch: Callable[[S, int, int, int], Awaitable[tuple[Sequence[Any], int]]],
        *,
        name: str,
        doc: str,
        needs: Sequence[str] = (),
    ) -> None:
        """`GET /{name}/{id}/{suffix}`: a page of rows that belong to the record (a deal's history, a
        project's team), read by `fetch(service, record_id, limit, offset)`. Needs the record type's
        read permission, and the `needs` permissions too."""

        async def endpoint(
            record_id: Id, tenant: Tenant, service: Any, paging: Paging, **more: Tenant
        ) -> object:
            rows, total = await fetch(service, record_id, paging.limit, paging.offset)
            return paging.page(rows, total)

        signature = inspect.signature(endpoint)
        extra = [
            inspect.Parameter(
                f"_{p.split(':')[0]}", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=self._tenant_for(p)
            )
            for p in needs
        ]
        params = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        params[2:2] = extra
        setattr(endpoint, "__signature__", signature.replace(parameters=params))  # noqa: B010
        types = {"tenant": self._tenant("read"), "service": Annotated[Any, Depends(self.provide())]}
        self._add(
            router,
            f"/{{{self.id_name}}}/{suffix}",
            endpoint,
            method="GET",
            name=name,
            doc=doc,
            codes=(400, 401, 403, 404, 422),
            types=types,
            response_model=page_of(read),
        )

    def _text(self, template: str) -> str:
        return inspect.cleandoc(template.format(Plural=self.name.capitalize(), entity=self.entity))

    def _add(
        self,
        router: APIRouter,
        path: str,
        endpoint: Callable[..., Awaitable[Any]],
        *,
        method: str,
        name: str,
        doc: str,
        codes: Sequence[int],
        types: Mapping[str, Any],
        mark: Callable[[Any], Any] | None = None,
        **options: Any,
    ) -> None:
        """Add `endpoint` with the record type's names and types: its `record_id` parameter is
        published as `{entity}_id`, and `types` gives the annotations only the declaration knows
        (the body schema, the permission, the filters)."""
        signature = inspect.signature(endpoint)
        params = [
            p.replace(
                name=self.id_name if p.name == "record_id" else p.name,
                annotation=types.get(p.name, p.annotation),
            )
            for p in signature.parameters.values()
        ]
        id_name = self.id_name

        async def route(**kwargs: Any) -> Any:
            if id_name in kwargs:
                kwargs["record_id"] = kwargs.pop(id_name)
            return await endpoint(**kwargs)

        setattr(route, "__signature__", signature.replace(parameters=params))  # noqa: B010 (read by inspect.signature)
        route.__name__ = name
        if mark is not None:
            mark(route)
        router.add_api_route(
            path,
            route,
            methods=[method],
            name=name,
            description=self._text(doc),
            responses=errors(*codes),
            **options,
        )

    def _tenant(self, action: str) -> Any:
        return self._tenant_for("records:restore" if action == "restore" else self.permission(action))

    @staticmethod
    def _tenant_for(permission: str) -> Any:
        return Annotated[Tenant, Depends(require(permission))]

    def _service(self) -> Any:
        return Annotated[RecordFlows, Depends(self.provide())]

    def _list_route(self, router: APIRouter) -> None:
        async def endpoint(
            tenant: Tenant, service: RecordFlows, paging: Paging, filters: Any, sort: str | None = None
        ) -> object:
            rows, total = await service.list(filters, sort, paging.limit, paging.offset)
            return paging.page(rows, total)

        types = {
            "tenant": self._tenant("read"),
            "service": self._service(),
            "filters": Annotated[Any, Depends(self.filters)],
            "sort": sort_param(*self.sorts),
        }
        self._add(
            router,
            "",
            endpoint,
            method="GET",
            name=f"list_{self.name}",
            doc=self.docs.list,
            codes=(400, 401, 403, 422),
            types=types,
            response_model=page_of(self.read),
        )

    def _create_route(self, router: APIRouter) -> None:
        """`POST /{name}`. A declaration with `fast_create` has this route answered by the fast create
        path (`crm.records.fast_write`) whenever the answer is a 201 it can give."""
        path, read = self.path, self.read

        async def endpoint(
            data: BaseModel, tenant: Tenant, service: RecordFlows, response: Response, idem: IdempotencyDep
        ) -> object:
            return await idempotent_create(idem, tenant, response, lambda: service.create(data), read, path)

        types = {"data": self.schemas.create, "tenant": self._tenant("write"), "service": self._service()}
        mark = None
        if self.fast_create:
            service: Any = self.service
            declaration = FastCreate(
                model=self.service.repository_class.model,
                entity_type=self.entity,
                permission=self.permission("write"),
                create_model=self.schemas.create,
                read_model=read,
                values=service.quick_values,
                references=service.references,
                logged=service.created_fields,
            )
            mark = fast_create(declaration)
        self._add(
            router,
            "",
            endpoint,
            method="POST",
            name=f"create_{self.entity}",
            doc=self.docs.create,
            codes=(400, 401, 403, 409, 422),
            types=types,
            mark=mark,
            status_code=status.HTTP_201_CREATED,
            response_model=read,
        )

    def _get_route(self, router: APIRouter) -> None:
        """`GET /{name}/{id}`: the one place the record read is created. A declaration with
        `fast_read` has this route answered by the fast read path (`crm.records.fast_read`) whenever
        the answer is a 200; the route stays the contract and serves every other case."""

        async def endpoint(record_id: Id, tenant: Tenant, service: RecordFlows, response: Response) -> object:
            row = await service.get(record_id)
            set_etag(response, row.version)
            return row

        types = {"tenant": self._tenant("read"), "service": self._service()}
        model = self.service.repository_class.model
        self._add(
            router,
            f"/{{{self.id_name}}}",
            endpoint,
            method="GET",
            name=f"get_{self.entity}",
            doc=self.docs.get,
            codes=(400, 401, 403, 404, 422),
            types=types,
            mark=fast_read(model, self.permission("read"), self.read) if self.fast_read else None,
            response_model=self.read,
        )

    def _write_routes(self, router: APIRouter) -> None:
        """`PUT` (replace) and `PATCH` (update) of the record, each calling the service's method."""
        for method, action in (("PUT", "replace"), ("PATCH", "update")):
            self.add_change(
                router,
                method,
                "",
                getattr(self.schemas, action),
                partial(_call, action),
                name=f"{action}_{self.entity}",
                doc=getattr(self.docs, action),
            )

    def add_change(
        self,
        router: APIRouter,
        method: str,
        suffix: str,
        body: type[BaseModel],
        apply: Callable[[Any, int, Any, str | None], Awaitable[Any]],
        *,
        name: str,
        doc: str,
        permission: str = "write",
    ) -> None:
        """`{method} /{name}/{id}{suffix}`: a change of the record under `If-Match` (412 when stale),
        made by `apply(service, record_id, body, if_match)`; answers the record with its new `ETag`.
        The kit's PUT and PATCH are two; a deal's `/stage` and `/status` are others."""

        async def endpoint(
            record_id: Id,
            data: BaseModel,
            tenant: Tenant,
            service: RecordFlows,
            response: Response,
            if_match: IfMatch = None,
        ) -> object:
            row = await apply(service, record_id, data, if_match)
            set_etag(response, row.version)
            return row

        self._add(
            router,
            f"/{{{self.id_name}}}{suffix}",
            endpoint,
            method=method,
            name=name,
            doc=doc,
            codes=(400, 401, 403, 404, 409, 412, 422),
            types={"tenant": self._tenant(permission), "service": self._service(), "data": body},
            response_model=self.read,
        )

    def _delete_routes(self, router: APIRouter) -> None:
        async def delete(record_id: Id, tenant: Tenant, service: RecordFlows) -> None:
            await service.delete(record_id)

        async def restore(record_id: Id, tenant: Tenant, service: RecordFlows, response: Response) -> object:
            row = await service.restore(record_id)
            set_etag(response, row.version)
            return row

        conflict = (409,) if self.delete_conflicts else ()
        self._add(
            router,
            f"/{{{self.id_name}}}",
            delete,
            method="DELETE",
            name=f"delete_{self.entity}",
            doc=self.docs.delete,
            codes=(400, 401, 403, 404, *conflict, 422),
            types={"tenant": self._tenant("delete"), "service": self._service()},
            status_code=status.HTTP_204_NO_CONTENT,
        )
        self._add(
            router,
            f"/{{{self.id_name}}}/restore",
            restore,
            method="POST",
            name=f"restore_{self.entity}",
            doc=self.docs.restore,
            codes=(400, 401, 403, 404, 409, 422),
            types={"tenant": self._tenant("restore"), "service": self._service()},
            response_model=self.read,
        )


async def _call(action: str, service: Any, record_id: int, data: Any, if_match: str | None) -> Any:
    """The service's `replace` or `update` of the record."""
    return await getattr(service, action)(record_id, data, if_match)


def page_of(read: type[BaseModel]) -> Any:
    """`Page[read]` for a read model known at run time."""
    return cast(Any, Page)[read]

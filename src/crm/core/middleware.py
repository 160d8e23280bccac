"""One pure-ASGI middleware for every request: request id, access log, metrics, body cap,
security headers (`nosniff`; `Cache-Control: no-store` on the API's answers) and trailing-slash folding."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import secrets
import time
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm.core import i18n
from crm.core.errors import problem_response
from crm.core.metrics import IN_FLIGHT, LATENCY, REQUESTS

log = structlog.get_logger("crm.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Paths whose answers carry records, personal data or tokens: no cache (browser, proxy) may keep them
#: unless the route chose its own `Cache-Control`.
NO_STORE_PREFIXES = ("/api/v1", "/users", "/register")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")
#: Request ids made here: a random prefix per process and a counter (unique, and cheaper than
#: random bytes per request; they are labels, not secrets).
_ID_PREFIX = secrets.token_hex(8)
_ids = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):016x}"


def _fresh_request_ids() -> None:
    """A forked process numbers its requests under a prefix of its own."""
    global _ID_PREFIX, _ids
    _ID_PREFIX = secrets.token_hex(8)
    _ids = itertools.count(1)


os.register_at_fork(after_in_child=_fresh_request_ids)


class _BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the cap; rendered as 413 problem+json."""

    def __init__(self, cap: int) -> None:
        super().__init__(413, f"The request body exceeds {cap} bytes")


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body: int, max_import_body: int, import_prefix: str = "/api/v1/imports"
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_import_body = max_import_body
        self.import_prefix = import_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # `/contacts/` and `/contacts` are the same resource; no redirect.
            path = scope["path"] = path.rstrip("/") or "/"
            if scope.get("raw_path"):
                scope["raw_path"] = scope["raw_path"].rstrip(b"/") or b"/"

        incoming = length = accept_language = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"accept-language":
                accept_language = value
        request_id = incoming if incoming is not None and _REQUEST_ID.match(incoming) else _new_request_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        cap = self.max_import_body if path.startswith(self.import_prefix) else self.max_body
        added = [(b"x-request-id", request_id.encode()), _NOSNIFF]
        no_store = path.startswith(NO_STORE_PREFIXES)
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                headers_out = [*message.get("headers", ()), *added]
                if no_store and not any(name.lower() == b"cache-control" for name, _ in headers_out):
                    headers_out.append(_NO_STORE)
                message["headers"] = headers_out
            await send(message)

        method = scope["method"]
        start = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            if length is not None and length.isdigit() and int(length) > cap:
                await self._too_large(send_wrapper, cap, accept_language)
                return
            if chunked:
                # A declared length is kept to by the server; a chunked body is counted as it comes.
                receive = _capped(receive, cap)
            try:
                await self.app(scope, receive, send_wrapper)
            except _BodyTooLarge:
                if not started:
                    await self._too_large(send_wrapper, cap, accept_language)
        finally:
            IN_FLIGHT.dec()
            elapsed = time.perf_counter() - start
            template = _route_template(scope, status)
            requests, latency = _series(method, template, status)
            requests.inc()
            latency.observe(elapsed)
            if log.is_enabled_for(logging.INFO):
                self._log(scope, method, path, template, status, elapsed)

    @staticmethod
    def _log(scope: Scope, method: str, path: str, template: str, status: int, elapsed: float) -> None:
        log.info(
            "request",
            method=method,
            path=path,
            route=template,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            client=(scope.get("client") or ("-",))[0],
        )

    async def _too_large(self, send: Send, cap: int, accept_language: bytes | None) -> None:
        language = i18n.negotiate(accept_language.decode("latin-1") if accept_language else None)
        response = problem_response(
            413, "payload_too_large", f"The request body exceeds {cap} bytes", language=language
        )
        await response({"type": "http"}, _empty_receive, send)


def _capped(receive: Receive, cap: int) -> Receive:
    """`receive` raising `_BodyTooLarge` once more than `cap` body bytes have come."""
    received = 0

    async def capped_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > cap:
                raise _BodyTooLarge(cap)
        return message

    return capped_receive


@functools.lru_cache(maxsize=4096)
def _series(method: str, template: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one label set (few: templates, not paths)."""
    return REQUESTS.labels(method, template, str(status)), LATENCY.labels(method, template)


def _route_template(scope: Scope, status: int) -> str:
    """The matched route's path template (`/api/v1/organizations/{organization_id}`), never the raw
    path of an unmatched request, so metric labels stay few."""
    # FastAPI includes routers by reference: `scope["route"]` is the route as declared in its router
    # (without the prefixes); the effective route context carries the full template.
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(context, "path_format", None)
    if not template:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if template:
        return str(template)
    # Plain Starlette routes (/docs, /openapi.json) leave no trace in the scope; only a path that
    # answered successfully is a real route.
    return str(scope["path"]) if status < 400 else "<unmatched>"


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}

"""Domain errors and their rendering as RFC 9457 problem details."""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm.core import i18n

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)


class AppError(Exception):
    """Base of every error the API answers with; rendered as problem+json."""

    status: int = 400
    code: str = "bad_request"
    #: The message when the raise gives none (without one either: the status phrase).
    detail: str = ""
    title: str | None = None
    #: Commit the request's session before answering (e.g. a revoked session must stay revoked).
    persist: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.detail = detail or self.detail or HTTPStatus(self.status).phrase
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(self.detail)


class BadRequest(AppError):
    status, code = 400, "bad_request"


class Unauthorized(AppError):
    status, code = 401, "not_authenticated"

    def __init__(self, detail: str = "Not authenticated", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(AppError):
    status, code = 403, "permission_denied"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class PreconditionFailed(AppError):
    status, code = 412, "version_mismatch"


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class UnprocessableEntity(AppError):
    status, code = 422, "validation_error"


class RateLimited(AppError):
    status, code = 429, "rate_limited"
    persist = True


class ServiceUnavailable(AppError):
    status, code = 503, "service_unavailable"


def language_of(request: Request) -> str:
    """The language of the answer to `request`, from its `Accept-Language` (English by default)."""
    return i18n.negotiate(request.headers.get("accept-language"))


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    language: str = i18n.DEFAULT_LANGUAGE,
) -> Response:
    """A problem+json answer; `title`, `detail`, each `errors[].msg` and `reasons` (written in
    English) are translated into `language` at this point; `code`, `status`, `errors[].loc/type` and
    the rest stay as they are. It says its language (`Content-Language`, `Vary: Accept-Language`)."""
    title = title or HTTPStatus(status).phrase
    if language != i18n.DEFAULT_LANGUAGE:
        title = i18n.translate(title, language)
        detail = i18n.translate(detail, language)
        if extra:
            extra = i18n.translate_extra(extra, language)
    return _render(status, code, detail, title=title, headers=headers, extra=extra, language=language)


def _render(
    status: int,
    code: str,
    detail: str,
    *,
    title: str,
    headers: Mapping[str, str] | None,
    extra: Mapping[str, Any] | None,
    language: str,
) -> Response:
    body: dict[str, Any] = {
        "type": f"https://crm.example/problems/{code.replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        body.update(extra)
    out = dict(headers or {})
    out["Content-Language"] = language
    vary = out.get("Vary")
    out["Vary"] = f"{vary}, Accept-Language" if vary else "Accept-Language"
    return Response(orjson.dumps(body, default=str), status_code=status, media_type=PROBLEM_JSON, headers=out)


def _http_code(status: int) -> str:
    return {
        400: "bad_request",
        401: "not_authenticated",
        403: "permission_denied",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        429: "rate_limited",
    }.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_"))


def _clean_errors(errors: Any, language: str) -> list[dict[str, Any]]:
    """Validation errors as answered: `loc`, `msg` (in `language`, from the error's type and
    context), `type` and `ctx` as text."""
    messages = i18n.catalog(language) if language != i18n.DEFAULT_LANGUAGE else None
    cleaned = []
    for err in errors:
        error_type = err.get("type", "")
        msg = err.get("msg", "")
        ctx = err.get("ctx")
        if messages is not None:
            msg = messages.validation(error_type, msg, ctx)
        item = {"loc": list(err.get("loc", ())), "msg": msg, "type": error_type}
        if ctx:
            item["ctx"] = {k: str(v) for k, v in ctx.items()}
        cleaned.append(item)
    return cleaned


def install_error_handlers(app: FastAPI) -> None:
    i18n.load()  # the message catalogs are read once, when the app is built

    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return problem_response(
            exc.status,
            exc.code,
            exc.detail,
            title=exc.title,
            headers=exc.headers,
            extra=exc.extra,
            language=language_of(request),
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers 400 for a JSON body that is not UTF-8; it is invalid input like any other.
            error = {"loc": ["body"], "msg": "The body is not valid UTF-8 JSON", "type": "json_invalid"}
            return problem_response(
                422,
                "validation_error",
                "body: The body is not valid UTF-8 JSON",
                extra={"errors": [error]},
                language=language_of(request),
            )
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            allowed = _allowed_methods(request.app, request.scope["path"])
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return problem_response(
            exc.status_code,
            _http_code(exc.status_code),
            detail,
            headers=headers,
            language=language_of(request),
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        language = language_of(request)
        errors = _clean_errors(exc.errors(), language)
        first = errors[0] if errors else None
        if first:
            detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        else:
            detail = i18n.translate("Invalid request", language)
        title = i18n.translate(HTTPStatus(422).phrase, language)
        return _render(
            422,
            "validation_error",
            detail,
            title=title,
            headers=None,
            extra={"errors": errors},
            language=language,
        )

    async def database_down(request: Request, exc: Exception) -> Response:
        log.error("database_unavailable", error=type(exc).__name__)
        return problem_response(
            503,
            "database_unavailable",
            "The database is not reachable; try again shortly.",
            headers={"Retry-After": "5"},
            language=language_of(request),
        )

    async def connection_error(request: Request, exc: Exception) -> Response:
        if _is_connection_error(exc):
            return await database_down(request, exc)
        log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
        return problem_response(
            500, "internal_error", "An unexpected error occurred.", language=language_of(request)
        )

    async def unstorable_text(request: Request, exc: Exception) -> Response:
        if not _is_unstorable_text(exc):
            raise exc  # answered by `unexpected` as before
        error = {"loc": ["query"], "msg": "text with a NUL character", "type": "value_error"}
        return problem_response(
            422,
            "validation_error",
            "The request holds text with a NUL character",
            extra={"errors": [error]},
            language=language_of(request),
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        if _is_connection_error(exc):
            return await database_down(request, exc)
        log.exception("unhandled_error", error=type(exc).__name__)
        return problem_response(
            500, "internal_error", "An unexpected error occurred.", language=language_of(request)
        )

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(OperationalError, database_down)
    app.add_exception_handler(InterfaceError, database_down)
    app.add_exception_handler(DBAPIError, unstorable_text)  # e.g. a NUL in a query parameter → 422
    # Registered by class so that they are answered here rather than by the catch-all `Exception`
    # handler, which Starlette runs in its outermost middleware and then re-raises to the server.
    app.add_exception_handler(OSError, connection_error)  # ConnectionRefusedError, TimeoutError, ...
    app.add_exception_handler(SQLAlchemyTimeoutError, database_down)  # connection pool exhausted
    app.add_exception_handler(Exception, unexpected)


_HTTP_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


def _allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """Every method the OpenAPI document declares for `path`.

    Starlette's 405 lists only the methods of the first route whose path matched, so
    `OPTIONS /organizations/1` would advertise `GET` alone although `PUT` and `DELETE` exist too.
    A literal segment wins over a `{parameter}`, as in routing."""
    patterns: list[tuple[int, re.Pattern[str], frozenset[str]]] | None = getattr(
        app.state, "allow_patterns", None
    )
    if patterns is None:
        try:
            paths: dict[str, dict[str, Any]] = app.openapi().get("paths", {})
        except Exception:  # a broken document must not turn a 405 into a 500
            return None
        patterns = []
        for template, operations in paths.items():
            regex = re.sub(r"\\\{[^{}/]*?\\\}", "[^/]+", re.escape(template))
            methods = frozenset(m.upper() for m in operations if m.upper() in _HTTP_METHODS)
            patterns.append((template.count("{"), re.compile(f"^{regex}$"), methods))
        app.state.allow_patterns = patterns
    matches = [(params, methods) for params, regex, methods in patterns if regex.match(path)]
    if not matches:
        return None
    fewest = min(params for params, _ in matches)
    return sorted(set().union(*(methods for params, methods in matches if params == fewest)))


#: PostgreSQL's "character not in repertoire" and "untranslatable character": text it cannot store,
#: such as a NUL in a query parameter (bodies refuse it before, see `InputModel`).
_UNSTORABLE_TEXT_STATES = frozenset({"22021", "22P05"})


def _is_unstorable_text(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and state in _UNSTORABLE_TEXT_STATES


def _is_connection_error(exc: BaseException) -> bool:
    """True when the error means PostgreSQL cannot be reached (not a bad query)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, OSError, TimeoutError)):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        name = type(current).__name__
        if name in {"CannotConnectNowError", "ConnectionDoesNotExistError", "InterfaceError"}:
            return True
        current = current.__cause__ or current.__context__
    return False

"""OpenAPI helpers: declare the problem+json answers an operation can give."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.types import DecoratedCallable
from pydantic import BaseModel

from crm.core.errors import PROBLEM_JSON


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str


class ValidationItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(Problem):
    errors: list[ValidationItem]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=errors(404, 409)` documents those problem answers for an operation."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model = ValidationProblem if code == 422 else Problem
        out[code] = {
            "description": HTTPStatus(code).phrase,
            "model": model,
            "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    return out


# --- The finished document (SPEC §20.10) ---------------------------------------------------------

#: The tenant header's security scheme (declared by the tenant dependency) and the caller schemes.
ORGANIZATION_SCHEME = "Organization"
BEARER_SCHEME = "OAuth2PasswordBearer"
API_KEY_SCHEME = "APIKeyHeader"
_UNUSED_SCHEMAS = ("HTTPValidationError", "ValidationError")


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """What FastAPI generates, made useful to clients (changed in place and returned):

    * the organization is a security scheme that goes with the bearer token (one requirement
      `{bearer, organization}`, or the API key alone), so Swagger UI's Authorize sets it once;
    * every error answer is documented as `application/problem+json` only, as it is sent;
    * every JSON request body has an example that validates against its schema (what Swagger UI's
      Try it out sends by default): a model's own `examples`, else one built from its schema.
    """
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, ValidationItem, ValidationProblem):
        schemas.setdefault(
            model.__name__, model.model_json_schema(ref_template="#/components/schemas/{model}")
        )
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            _checked_request_answers(path, operation)
            _security(operation)
            _problem_responses(operation)
            _request_example(operation, schemas)
    text = orjson.dumps(document)
    for name in _UNUSED_SCHEMAS:
        if f'"#/components/schemas/{name}"'.encode() not in text:
            schemas.pop(name, None)
    return document


#: Every `/api/v1` operation may answer 503 (`database_unavailable`, with `Retry-After`).
_UNAVAILABLE = (
    "Service Unavailable: the database does not answer (`database_unavailable`) or the outcome of a "
    "write is unknown (`outcome_unknown`); retry after `Retry-After` seconds, with the same "
    "`Idempotency-Key` for a write"
)


def _checked_request_answers(path: str, operation: dict[str, Any]) -> None:
    """The answers of `core.request_checks`: 422 (unknown query parameter) on every `/api/v1`
    operation, 415 on those taking a JSON body; and 503, which any of them may give."""
    if not path.startswith("/api/v1/"):
        return
    responses = operation.setdefault("responses", {})
    responses.setdefault("422", {"description": "Unprocessable Entity"})
    responses.setdefault("503", {"description": _UNAVAILABLE})
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        responses.setdefault("415", {"description": "Unsupported Media Type"})


def _security(operation: dict[str, Any]) -> None:
    requirements: list[dict[str, list[str]]] | None = operation.get("security")
    if not requirements:
        return
    names = {name for requirement in requirements for name in requirement}
    if ORGANIZATION_SCHEME not in names:
        return
    combined: list[dict[str, list[str]]] = []
    if BEARER_SCHEME in names:
        combined.append({BEARER_SCHEME: [], ORGANIZATION_SCHEME: []})
    if API_KEY_SCHEME in names:
        combined.append({API_KEY_SCHEME: []})
    operation["security"] = combined or [{ORGANIZATION_SCHEME: []}]


def _problem_responses(operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        if str(status)[:1] not in ("4", "5"):
            continue
        model = ValidationProblem if str(status) == "422" else Problem
        response["content"] = {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def _request_example(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    media = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if media is None or "example" in media or "examples" in media:
        return
    schema = _deref(media.get("schema", {}), schemas)
    own = schema.get("examples")
    example = own[0] if isinstance(own, list) and own else build_example(schema, schemas)
    if example is not None:
        media["example"] = example


def _deref(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 20:
        schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        seen += 1
    return schema


#: Sample text for a string property by name (else by format, else a neutral word).
_SAMPLE_TEXT = {
    "email": "anna.petrova@example.com",
    "phone": "+79123456789",
    "password": "Correct-Horse-42",
    "new_password": "Correct-Horse-43",
    "current_password": "Correct-Horse-42",
    "full_name": "Anna Petrova",
    "name": "Example",
    "title": "Example",
    "currency": "RUB",
    "country": "RU",
    "text": "Called back, sent the offer.",
    "website": "https://example.com",
    "base_url": "https://example.com",
}
_SAMPLE_FORMAT = {
    "email": "anna.petrova@example.com",
    "date": "2026-12-31",
    "date-time": "2026-12-31T12:00:00Z",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def build_example(schema: dict[str, Any], schemas: dict[str, Any], name: str = "") -> Any:
    """A value valid against `schema`: objects carry their required properties only."""
    schema = _deref(schema, schemas)
    if "examples" in schema and isinstance(schema["examples"], list) and schema["examples"]:
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if _deref(o, schemas).get("type") != "null"]
            return build_example(options[0], schemas, name) if options else None
    if "allOf" in schema:
        return build_example(schema["allOf"][0], schemas, name)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties: dict[str, Any] = schema.get("properties", {})
        return {
            key: build_example(properties[key], schemas, key)
            for key in schema.get("required", [])
            if key in properties
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [
            build_example(schema.get("items", {}), schemas, name)
            for _ in range(max(count, 1 if count else 0))
        ]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return False
    if kind == "string":
        text = _SAMPLE_TEXT.get(name) or _SAMPLE_FORMAT.get(schema.get("format", "")) or "example"
        minimum = int(schema.get("minLength", 0))
        if len(text) < minimum:
            text = text + "x" * (minimum - len(text))
        return text[: int(schema.get("maxLength", len(text)))]
    return None


def creates(
    router: APIRouter, path: str, model: Any, *codes: int, **options: Any
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """Decorator of a create: `POST path` answering 201 with `model`, its problem answers `codes`."""
    return router.post(
        path, status_code=HTTPStatus.CREATED, response_model=model, responses=errors(*codes), **options
    )

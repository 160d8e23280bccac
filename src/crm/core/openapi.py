"""OpenAPI helpers: declare the problem+json answers an operation can give."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

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

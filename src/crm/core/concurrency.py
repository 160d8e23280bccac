"""Optimistic concurrency: `version` columns, `ETag` and `If-Match`."""

from __future__ import annotations

from typing import Annotated, Protocol, TypeVar

from fastapi import Header, Response

from crm.core.errors import PreconditionFailed

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=200,
        description='The ETag from a GET (`"<version>"`); a stale one answers 412 and writes nothing.',
    ),
]


def etag(version: int) -> str:
    return f'"{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=Versioned)


def with_etag(response: Response, row: V) -> V:
    """`row`, with its version set as the response's `ETag`."""
    set_etag(response, row.version)
    return row


def check_version(current: int, if_match: str | None) -> None:
    """Raise 412 unless `If-Match` is absent, `*`, or lists the current version."""
    if if_match is None or if_match.strip() == "*":
        return
    tags = {t.strip().removeprefix("W/").strip('"') for t in if_match.split(",")}
    if str(current) not in tags:
        raise PreconditionFailed(
            "The record was changed by someone else; reload it and try again",
            current_version=current,
        )

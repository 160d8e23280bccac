"""A create under `Idempotency-Key`: the first request creates, a repeat replays its answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Response, status
from pydantic import BaseModel

from crm.core.idempotency import Idempotency


async def create_once(
    idem: Idempotency, principal: str, response: Response, create: Callable[[], Awaitable[BaseModel]]
) -> object:
    """Claim the key for `principal`; a repeat gets the stored answer back. Otherwise `create()` makes
    the record, sets its headers (`Location`, `ETag`, ...) on `response` and returns the body, which
    is stored for repeats in the record's own transaction."""
    await idem.claim(principal)
    if idem.replay is not None:
        return idem.replay
    body = await create()
    await idem.save(response, status.HTTP_201_CREATED, body)
    return body

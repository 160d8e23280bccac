"""`Idempotency-Key` on create endpoints (SPEC §3, §19.9).

The key's row is inserted in the request's own transaction, before the work, and completed with
the response in the same transaction. A concurrent repeat blocks on the unique index until the
first request ends: then it finds the stored response and replays it (or, if the first rolled back,
goes ahead itself). Waiting is capped at 10 s by `lock_timeout`, then 409 `idempotency_in_progress`.
A fresh key costs two statements: the claim (`INSERT ... ON CONFLICT DO NOTHING RETURNING`, which
also sets and resets the lock timeout) and the stored response.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.db import SessionDep
from crm.core.errors import Conflict, UnprocessableEntity
from crm.models import IdempotencyKey

TTL = timedelta(hours=24)
WAIT_SECONDS = 10
_REPLAYED_HEADERS = ("location", "etag")
#: Back to no lock timeout (`SET LOCAL lock_timeout = 0`) once the claim has stopped waiting.
_NO_WAIT = func.set_config("lock_timeout", "0", True)

KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat-safe creates: the same key and body within 24 h return the first response.",
    ),
]


class Idempotency:
    def __init__(self, db: AsyncSession, route: str, key: str | None, request_hash: str) -> None:
        self.db = db
        self.route = route
        self.scope = route
        self.key = key
        self.request_hash = request_hash
        self.replay: Response | None = None
        self._row_id: int | None = None

    async def claim(self, principal: str) -> None:
        """Reserve the key for (principal, method, path); sets `replay` when it was used before.

        The common case is one statement: the INSERT sets the lock timeout for its own wait on a
        concurrent claim and resets it in its RETURNING (`set_config(..., true)` is `SET LOCAL`)."""
        if self.key is None:
            return
        self.scope = f"{principal}|{self.route}"
        now = datetime.now(UTC)
        try:
            for _ in range(2):
                waiting = func.set_config("lock_timeout", f"{WAIT_SECONDS}s", True)
                claimed = (
                    insert(IdempotencyKey)
                    .from_select(
                        ["scope", "key", "request_hash", "expires_at"],
                        select(
                            literal(self.scope, IdempotencyKey.scope.type),
                            literal(self.key, IdempotencyKey.key.type),
                            literal(self.request_hash, IdempotencyKey.request_hash.type),
                            literal(now + TTL, IdempotencyKey.expires_at.type),
                        ).where(waiting.is_not(None)),
                    )
                    .on_conflict_do_nothing(index_elements=["scope", "key"])
                    .returning(IdempotencyKey.id, _NO_WAIT)
                )
                row_id = (await self.db.execute(claimed)).scalar_one_or_none()
                if row_id is not None:
                    self._row_id = row_id
                    return
                found = (
                    await self.db.execute(
                        select(IdempotencyKey, _NO_WAIT).where(
                            IdempotencyKey.scope == self.scope, IdempotencyKey.key == self.key
                        )
                    )
                ).first()
                if found is None:
                    continue  # the other request rolled back meanwhile; claim it ourselves
                existing = found[0]
                if existing.expires_at <= now:
                    await self.db.execute(delete(IdempotencyKey).where(IdempotencyKey.id == existing.id))
                    continue
                if existing.request_hash != self.request_hash:
                    raise UnprocessableEntity(
                        "This Idempotency-Key was used with a different request body",
                        code="idempotency_key_reused",
                        errors=[
                            {
                                "loc": ["header", "Idempotency-Key"],
                                "msg": "used with a different body",
                                "type": "idempotency_key_reused",
                            }
                        ],
                    )
                self.replay = Response(
                    content=existing.body or b"",
                    status_code=existing.status_code or 200,
                    media_type="application/json",
                    headers={**existing.headers, "Idempotent-Replayed": "true"},
                )
                return
        except DBAPIError as exc:
            if "lock timeout" in str(exc.orig).lower() or "LockNotAvailable" in type(exc.orig).__name__:
                raise Conflict(
                    "A request with this Idempotency-Key is still being processed",
                    code="idempotency_in_progress",
                ) from None
            raise
        # Two rounds lost to a concurrent claim; the request fails and its transaction rolls back.
        raise Conflict("Could not claim the Idempotency-Key; retry", code="idempotency_in_progress")

    async def save(self, response: Response, status_code: int, body: BaseModel | Any) -> None:
        """Store the response the client got, in the same transaction as the created record."""
        if self._row_id is None:
            return
        payload = (
            body.model_dump_json().encode()
            if isinstance(body, BaseModel)
            else orjson.dumps(body, default=str)
        )
        headers = {k: v for k, v in response.headers.items() if k.lower() in _REPLAYED_HEADERS}
        await self.db.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == self._row_id)
            .values(status_code=status_code, body=payload, headers=headers)
            .execution_options(synchronize_session=False)
        )


async def get_idempotency(request: Request, db: SessionDep, key: KeyHeader = None) -> Idempotency:
    """Prepared but unclaimed: the route claims it once it knows the caller (`await idem.claim(...)`)."""
    body = await request.body() if key else b""
    return Idempotency(db, f"{request.method}|{request.url.path}", key, hashlib.sha256(body).hexdigest())


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]

"""Counting what a request asks of PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.core.redis import SafeRedis
from tests.factories import Actor


class Org:
    """An organization of the tests with an owner and a member, both logged in."""

    def __init__(self, org_id: int, owner: Actor, member: Actor) -> None:
        self.id, self.owner, self.member = org_id, owner, member


@contextlib.contextmanager
def framework_only(app: Any) -> Iterator[None]:
    """The fast paths switched off: every request goes to the routers."""
    pool = app.state.hot_read_pool
    size, pool.size = pool.size, 0
    try:
        yield
    finally:
        pool.size = size


class RoundTrips:
    """Statements and transaction commands sent on `engine` while the block runs. Every one is a
    round trip (statements are prepared once per connection, then only executed)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.log: list[str] = []

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.log.append(statement.split(None, 3)[:3][0] + " " + " ".join(statement.split()[1:3]))

    def _begin(self, conn: Any) -> None:
        self.log.append("BEGIN")

    def _commit(self, conn: Any) -> None:
        self.log.append("COMMIT")

    def _rollback(self, conn: Any) -> None:
        self.log.append("ROLLBACK")

    def _hooks(self) -> list[tuple[str, Any]]:
        return [
            ("before_cursor_execute", self._statement),
            ("begin", self._begin),
            ("commit", self._commit),
            ("rollback", self._rollback),
        ]

    def __enter__(self) -> RoundTrips:
        for name, fn in self._hooks():
            event.listen(self.engine, name, fn)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        for name, fn in self._hooks():
            event.remove(self.engine, name, fn)

    @property
    def count(self) -> int:
        return len(self.log)

    @property
    def statements(self) -> list[str]:
        return [entry for entry in self.log if entry not in ("BEGIN", "COMMIT", "ROLLBACK")]


class RedisTrips:
    """Round trips to Redis made through the app's `SafeRedis` while the block runs, each named by
    the client method it called (`mget`, `incr`, `pipeline`, ...). The commands still run."""

    def __init__(self, redis: SafeRedis) -> None:
        self.redis = redis
        self.log: list[str] = []

    def __enter__(self) -> RedisTrips:
        original = type(self.redis).run.__get__(self.redis)
        log = self.log

        class Naming:
            def __init__(self, client: Any) -> None:
                self.client = client

            def __getattr__(self, name: str) -> Any:
                log.append(name)
                return getattr(self.client, name)

        async def run(op: Callable[[Any], Awaitable[Any]]) -> Any:
            return await original(lambda client: op(Naming(client)))

        self.redis.run = run  # type: ignore[method-assign]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        del self.redis.run

"""`GET /notifications/stream` (SSE): a notification made through one API process reaches a stream
served by a second, separately started API process (Redis pub/sub); `Last-Event-ID` resumes;
heartbeats; stream tickets (one stream and its reconnects); 503 when Redis is away while rows are
still stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import delete, select

from crm.models import Membership, Notification
from crm.outbox import consumers  # noqa: F401  (registers the relay's consumers)
from crm.outbox.relay import relay
from tests.factories import Actor, add_member, assert_problem, login, make_org, make_user
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SECOND_API_PORT = free_port()
SPARE_REDIS_PORT = free_port()
STREAM = "/api/v1/notifications/stream"


@pytest.fixture(scope="module")
def second_api(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another API process (uvicorn) on the same database and Redis."""
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "NOTIFICATION_STREAM_HEARTBEAT_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "crm.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(SECOND_API_PORT),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{SECOND_API_PORT}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the second API did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def people(app: Any, client: AsyncClient) -> tuple[Actor, Actor]:
    async with app.state.sessionmaker() as session:
        boss = await make_user(session)
        me = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, boss, "admin")
        await add_member(session, org, me, "manager")
        await session.commit()
    return await login(client, boss, org_id=org.id), await login(client, me, org_id=org.id)


async def assign(app: Any, client: AsyncClient, boss: Actor, me: Actor, title: str) -> None:
    response = await client.post(
        "/api/v1/tasks", json={"title": title, "assignee_id": me.user.id}, headers=boss.headers
    )
    assert response.status_code == 201, response.text
    await relay(app.state.sessionmaker)


class Listener:
    """Reads an SSE response in the background: events (id, data) and comment lines."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.comments: list[str] = []
        #: The last `id` the stream sent (what a browser sends back as `Last-Event-ID`).
        self.last_id: int | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        event_id: int | None = None
        data: bytes | None = None
        async for line in self.response.aiter_lines():
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("id: "):
                event_id = self.last_id = int(line[4:])
            elif line.startswith("data: "):
                data = line[6:].encode()
            elif line == "" and event_id is not None and data is not None:
                await self.events.put((event_id, orjson.loads(data)))
                event_id, data = None, None

    async def next(self, wait: float = 3.0) -> tuple[int, dict[str, Any]]:
        return await asyncio.wait_for(self.events.get(), wait)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self.task


@contextlib.asynccontextmanager
async def listen(base: str, **kwargs: Any) -> AsyncIterator[Listener]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10.0, read=30.0)) as http,
        http.stream("GET", STREAM, **kwargs) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-store"
        listener = Listener(response)
        try:
            yield listener
        finally:
            await listener.close()


class TestStream:
    async def test_a_second_process_streams_and_resumes_by_last_event_id(
        self, app: Any, committing_client: AsyncClient, second_api: str
    ) -> None:
        boss, me = await people(app, committing_client)
        async with listen(second_api, headers=me.headers) as listener:
            await asyncio.sleep(0.3)  # subscribed
            started = time.monotonic()
            await assign(app, committing_client, boss, me, "Позвонить клиенту")
            first_id, first = await listener.next()
            assert time.monotonic() - started < 2.0
            assert first["kind"] == "task_assigned"
            assert first["title"] == "Task assigned to you: Позвонить клиенту"
            await asyncio.sleep(1.5)
            assert ": heartbeat" in listener.comments

        # While nobody listens, two more arrive; resuming after the first gets exactly those.
        await assign(app, committing_client, boss, me, "Second")
        await assign(app, committing_client, boss, me, "Third")
        async with listen(second_api, headers={**me.headers, "Last-Event-ID": str(first_id)}) as listener:
            got = [await listener.next(), await listener.next()]
            assert [e["title"] for _, e in got] == [
                "Task assigned to you: Second",
                "Task assigned to you: Third",
            ]
            assert got[0][0] > first_id
            with pytest.raises(TimeoutError):
                await listener.next(wait=0.5)
        # The boss (the actor) got nothing.
        async with app.state.sessionmaker() as session:
            kinds = (await session.scalars(select(Notification.user_id))).all()
            assert set(kinds) == {me.user.id}

    async def test_a_ticket_opens_one_stream_once(
        self, app: Any, committing_client: AsyncClient, second_api: str
    ) -> None:
        boss, me = await people(app, committing_client)
        issued = await committing_client.post("/api/v1/notifications/stream-ticket", headers=me.headers)
        assert issued.status_code == 201, issued.text
        ticket = issued.json()["ticket"]
        assert issued.json()["expires_in"] == 60
        async with listen(second_api, params={"ticket": ticket}) as listener:
            await asyncio.sleep(0.3)
            await assign(app, committing_client, boss, me, "By ticket")
            _, event = await listener.next()
            assert event["title"] == "Task assigned to you: By ticket"
        async with httpx.AsyncClient(base_url=second_api) as http:
            again = await http.get(STREAM, params={"ticket": ticket})
            assert_problem(again, 401, "not_authenticated")
            nothing = await http.get(STREAM)
            assert nothing.status_code == 401

    async def test_a_ticket_serves_its_streams_reconnects_with_last_event_id(
        self, app: Any, committing_client: AsyncClient, second_api: str, settings: Any
    ) -> None:
        """What a browser's `EventSource` does after a drop: the same URL again, with the last id
        it saw as `Last-Event-ID`."""
        boss, me = await people(app, committing_client)
        issued = await committing_client.post("/api/v1/notifications/stream-ticket", headers=me.headers)
        ticket = issued.json()["ticket"]
        async with listen(second_api, params={"ticket": ticket}) as first:
            await asyncio.sleep(0.3)
            assert first.last_id is not None  # sent at once, before any notification
            await assign(app, committing_client, boss, me, "Before the drop")
            seen, event = await first.next()
            assert event["title"] == "Task assigned to you: Before the drop"
            await asyncio.sleep(1.5)  # heartbeats keep the ticket good while the stream is open
        # The connection drops; a notification comes while the client is away.
        await assign(app, committing_client, boss, me, "While away")
        resume = {"Last-Event-ID": str(first.last_id)}
        async with listen(second_api, params={"ticket": ticket}, headers=resume) as second:
            _, missed = await second.next()
            assert missed["title"] == "Task assigned to you: While away"
            await asyncio.sleep(0.3)
            await assign(app, committing_client, boss, me, "After the reconnect")
            _, live = await second.next()
            assert live["title"] == "Task assigned to you: After the reconnect"
            assert second.last_id is not None
            assert second.last_id > seen

        async with httpx.AsyncClient(base_url=second_api) as http:
            # Not a reconnect (no Last-Event-ID): the used ticket opens nothing.
            fresh = await http.get(STREAM, params={"ticket": ticket})
            assert_problem(fresh, 401, "not_authenticated")
            # Another token's ticket string is not this one; a made-up one opens nothing either.
            made_up = await http.get(STREAM, params={"ticket": "x" * 43}, headers=resume)
            assert_problem(made_up, 401, "not_authenticated")
            # Past its reconnect window (shortened here) the ticket is gone.
            redis = Redis.from_url(settings.redis_url)
            try:
                assert await redis.ttl(f"crm:stream-ticket-used:{ticket}") > 0
                await redis.expire(f"crm:stream-ticket-used:{ticket}", 1)
            finally:
                await redis.aclose()
            await asyncio.sleep(1.5)
            late = await http.get(STREAM, params={"ticket": ticket}, headers=resume)
            assert_problem(late, 401, "not_authenticated")

    async def test_a_ticket_of_a_removed_member_does_not_reconnect(
        self, app: Any, committing_client: AsyncClient, second_api: str
    ) -> None:
        _boss, me = await people(app, committing_client)
        issued = await committing_client.post("/api/v1/notifications/stream-ticket", headers=me.headers)
        ticket = issued.json()["ticket"]
        async with listen(second_api, params={"ticket": ticket}) as first:
            await asyncio.sleep(0.3)
            last = first.last_id
        async with app.state.sessionmaker() as session:
            await session.execute(
                delete(Membership).where(
                    Membership.user_id == me.user.id, Membership.organization_id == me.org_id
                )
            )
            await session.commit()
        async with httpx.AsyncClient(base_url=second_api) as http:
            again = await http.get(STREAM, params={"ticket": ticket}, headers={"Last-Event-ID": str(last)})
            assert_problem(again, 401, "not_authenticated")

    async def test_another_users_stream_gets_nothing(
        self, app: Any, committing_client: AsyncClient, second_api: str
    ) -> None:
        boss, me = await people(app, committing_client)
        async with listen(second_api, headers=boss.headers) as listener:
            await asyncio.sleep(0.3)
            await assign(app, committing_client, boss, me, "Not for the boss")
            with pytest.raises(TimeoutError):
                await listener.next(wait=1.0)


@pytest.fixture
def spare_redis() -> Iterator[subprocess.Popen[bytes]]:
    """A Redis of its own for this test, so stopping it harms nobody else."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(SPARE_REDIS_PORT), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            __import__("socket").create_connection(("127.0.0.1", SPARE_REDIS_PORT), 0.2),
        ):
            break
        time.sleep(0.05)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


class TestRedisAway:
    async def test_503_problem_while_rows_are_still_stored(
        self,
        app: Any,
        committing_client: AsyncClient,
        spare_redis: subprocess.Popen[bytes],
        override_settings: Any,
    ) -> None:
        boss, me = await people(app, committing_client)
        override_settings(redis_url=f"redis://127.0.0.1:{SPARE_REDIS_PORT}/0")
        spare_redis.terminate()
        spare_redis.wait(timeout=10)
        response = await committing_client.get(STREAM, headers=me.headers)
        assert_problem(response, 503, "stream_unavailable")
        await assign(app, committing_client, boss, me, "Stored anyway")
        async with app.state.sessionmaker() as session:
            titles = (
                await session.scalars(select(Notification.title).where(Notification.user_id == me.user.id))
            ).all()
            assert titles == ["Task assigned to you: Stored anyway"]
        listed = await committing_client.get("/api/v1/notifications", headers=me.headers)
        assert listed.status_code == 200
        assert listed.json()["total"] == 1

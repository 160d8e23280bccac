"""The HTTP/1.1 client of webhook deliveries against real local servers: one connection kept for
many posts, responses of every framing, a kept connection the server dropped, the SSRF check at
every connect (and never a connection reused across the address rule)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from crm.integrations.ssrf import UrlNotAllowed
from crm.webhooks import client as client_module
from crm.webhooks.client import WebhookClient
from tests.fakes.webhook_receiver import Receiver

Answer = Callable[[int, int, bytes], Awaitable[bytes | None]]


@dataclass
class Server:
    """A raw HTTP/1.1 server: `answer(connection number, request number on it, request)` gives
    the bytes to send back (None: close without answering; an HTTP/1.0 or `connection: close`
    answer closes after it)."""

    answer: Answer
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                n += 1
                reply = await self.answer(number, n, request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if reply.startswith(b"HTTP/1.0") or b"connection: close" in reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[Server]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


async def ok(_: int, __: int, ___: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def post(client: WebhookClient, url: str, *, allow_private: bool = True, limit: float = 5.0) -> int:
    headers = {"webhook-id": "msg_1", "content-type": "application/json"}
    return await client.post(
        url, headers, b'{"a": 1}', timeout=limit, connect_timeout=3.0, allow_private=allow_private
    )


async def test_one_kept_connection_carries_many_posts_each_in_full() -> None:
    client = WebhookClient()
    async with serving(ok) as server:
        for _ in range(5):
            assert await post(client, f"http://127.0.0.1:{server.port}/hooks/a?x=1") == 200
    await client.aclose()
    assert server.connections == 1
    assert len(server.requests) == 5
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hooks/a?x=1 HTTP/1.1"
    assert f"host: 127.0.0.1:{server.port}".encode() in lines
    assert b"webhook-id: msg_1" in lines
    assert b"content-length: 8" in lines
    assert body == b'{"a": 1}'


@pytest.mark.parametrize(
    ("reply", "reused"),
    [
        (b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n", True),
        (b"HTTP/1.1 500 Oops\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfail", False),
    ],
)
async def test_responses_of_every_framing(reply: bytes, reused: bool) -> None:
    async def answer(_: int, __: int, ___: bytes) -> bytes:
        return reply

    client = WebhookClient()
    async with serving(answer) as server:
        status = int(reply.rsplit(b"HTTP/1.1 ", 1)[1].split(b" ")[0])
        assert await post(client, f"http://127.0.0.1:{server.port}/h") == status
        assert await post(client, f"http://127.0.0.1:{server.port}/h") == status
    await client.aclose()
    assert server.connections == (1 if reused else 2)


async def test_a_body_read_until_the_server_closes() -> None:
    async def answer(_: int, __: int, ___: bytes) -> bytes | None:
        return b"HTTP/1.0 200 OK\r\n\r\nno length given"

    client = WebhookClient()
    async with serving(answer) as server:
        assert await post(client, f"http://127.0.0.1:{server.port}/h") == 200
    await client.aclose()


async def test_a_huge_response_body_is_not_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_BODY", 1000)

    async def answer(_: int, __: int, ___: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100_000

    client = WebhookClient()
    async with serving(answer) as server:
        assert await post(client, f"http://127.0.0.1:{server.port}/h") == 200
        assert await post(client, f"http://127.0.0.1:{server.port}/h") == 200
    await client.aclose()
    assert server.connections == 2  # the first connection was dropped, not drained


async def test_a_kept_connection_the_server_dropped_is_replaced_once() -> None:
    async def answer(_: int, n: int, __: bytes) -> bytes | None:
        # Every connection answers its first request only, then closes on the next one unanswered
        # (as a server does whose keep-alive ran out just as the request came).
        return await ok(0, 0, b"") if n == 1 else None

    client = WebhookClient()
    async with serving(answer) as server:
        url = f"http://127.0.0.1:{server.port}/h"
        assert await post(client, url) == 200
        assert await post(client, url) == 200  # sent on the kept one, dropped, sent again on a new one
    await client.aclose()
    assert server.connections == 2
    assert len(server.requests) == 3


async def test_a_fresh_connection_closed_without_an_answer_is_a_failure() -> None:
    async def answer(_: int, __: int, ___: bytes) -> bytes | None:
        return None

    client = WebhookClient()
    async with serving(answer) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await post(client, f"http://127.0.0.1:{server.port}/h")
    await client.aclose()
    assert len(server.requests) == 1  # not sent twice


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    async def answer(_: int, n: int, __: bytes) -> bytes:
        if n == 1:
            await asyncio.sleep(2)
        return await ok(0, 0, b"")

    client = WebhookClient()
    async with serving(answer) as server:
        url = f"http://127.0.0.1:{server.port}/h"
        with pytest.raises(httpx.TimeoutException):
            await post(client, url, limit=0.3)
        assert await post(client, url) == 200
    await client.aclose()
    assert server.connections == 2


async def test_refused_connection_is_a_connect_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    client = WebhookClient()
    with pytest.raises(httpx.ConnectError):
        await post(client, f"http://127.0.0.1:{port}/h")


async def test_every_connect_checks_the_addresses_and_the_rule_is_never_crossed(
    receiver: Receiver,
) -> None:
    client = WebhookClient()
    port = int(receiver.base_url.rsplit(":", 1)[1])
    url = f"http://localhost:{port}/hooks/ssrf"  # a name: only its resolved addresses tell
    assert await post(client, url, allow_private=True) == 200
    # A connection to it is kept, but one made where private addresses were allowed is never
    # used where they are not: the name is resolved and its loopback address refused.
    with pytest.raises(UrlNotAllowed, match="loopback"):
        await post(client, url, allow_private=False)
    await client.aclose()
    assert len(receiver.received("ssrf")) == 1


async def test_tls_is_verified_against_the_host_name(receiver: Receiver) -> None:
    client = WebhookClient()
    port = int(receiver.base_url.rsplit(":", 1)[1])
    # A plain-HTTP server behind an https URL: the handshake fails, as a connect error.
    with pytest.raises(httpx.ConnectError):
        await post(client, f"https://127.0.0.1:{port}/hooks/tls")
    await client.aclose()
    assert receiver.received("tls") == []

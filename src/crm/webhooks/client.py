"""The HTTP/1.1 client of webhook deliveries: a `POST` on a kept-alive connection, written in one
piece and read by a C parser (`httptools`), since a delivery is small and the client's own work
would otherwise cost more than the exchange.

Connections go only to addresses that passed the SSRF check: the host is resolved when a
connection is made, every address it has is checked (`crm.integrations.ssrf.checked_addresses`)
and the socket is opened to a checked address, never to a second answer from DNS. TLS uses the
host name (SNI, certificate verification). A connection is kept per host, port and address rule
(a change of `ALLOW_PRIVATE_INTEGRATION_URLS` never reuses one made under the other rule), for
`KEEPALIVE_SECONDS` at most while idle. No redirect is followed, no proxy is used.

Errors are httpx's exception classes, so that callers read them as they read httpx's:
`ConnectError`, `ConnectTimeout`, `ReadTimeout`, `RemoteProtocolError`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import NamedTuple, cast

import httpcore
import httptools
import httpx

from crm.integrations.ssrf import checked_addresses

#: An idle connection is let go after this long (servers commonly close theirs after 5 s).
KEEPALIVE_SECONDS = 4.0
#: Idle connections kept per host and port.
MAX_IDLE = 20
#: A response body is read up to this size; past it the connection is closed (the status is kept).
MAX_BODY = 1 << 20


class Target(NamedTuple):
    """What a URL becomes on the wire, parsed once per URL."""

    https: bool
    host: str
    port: int
    start: bytes  # the request line and the Host header


_targets: dict[str, Target] = {}


def target(url: str) -> Target:
    found = _targets.get(url)
    if found is None:
        parsed = httpx.URL(url)
        https = parsed.scheme == "https"
        port = parsed.port or (443 if https else 80)
        raw_host = parsed.raw_host
        host_header = b"[" + raw_host + b"]" if b":" in raw_host else raw_host
        if parsed.port is not None:
            host_header += b":%d" % port
        start = b"POST " + (parsed.raw_path or b"/") + b" HTTP/1.1\r\nhost: " + host_header + b"\r\n"
        found = Target(https, raw_host.decode("ascii"), port, start)
        if len(_targets) >= 1000:
            _targets.clear()
        _targets[url] = found
    return found


class _Connection(asyncio.Protocol):
    """One connection, one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False
        self.reusable = True
        self.status = 0
        self.headers_done = False
        self.received = False
        self.body_size = 0
        self.idle_since = 0.0

    # The transport's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.close()
            self._fail(httpx.RemoteProtocolError(f"invalid response: {exc}"))

    def eof_received(self) -> bool:
        self._lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    # The parser's side.

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > MAX_BODY:
            self.close()
            self._finish()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (`100 Continue`): the final one follows
            self.status, self.headers_done = 0, False
            return
        if not self.parser.should_keep_alive():
            self.reusable = False
        self._finish()

    # Ours.

    def _lost(self, exc: Exception | None = None) -> None:
        self.closed = True
        self.reusable = False
        if self.headers_done:
            self._finish()  # a body read until the connection closes
        elif exc is not None:
            self._fail(httpx.ReadError(f"{type(exc).__name__}: {exc}"))
        else:
            self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))

    def _finish(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.status)

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.status, self.headers_done, self.received, self.body_size = 0, False, False, 0
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None


class WebhookClient:
    """Posts one message per request, over connections kept per host (see the module docstring)."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context(verify=self._verify, trust_env=False)
        return self._ssl

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - one limit for the whole exchange
        connect_timeout: float,
        allow_private: bool,
    ) -> int:
        """POST `body`; the response's status code (its body is read and dropped)."""
        where = target(url)
        request = b"".join(
            (
                where.start,
                *(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()),
                b"content-length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        key = (where.host, where.port, allow_private)
        started = time.monotonic()
        conn = self._take(key)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(where, allow_private, connect_timeout)
        try:
            try:
                async with asyncio.timeout(max(0.0, timeout - (time.monotonic() - started))):
                    status = await conn.exchange(request)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                if not reused or conn.received:
                    raise
                # A kept connection the server closed as it was reused: once more on a new one.
                conn.close()
                conn = await self._connect(where, allow_private, connect_timeout)
                async with asyncio.timeout(max(0.0, timeout - (time.monotonic() - started))):
                    status = await conn.exchange(request)
        except TimeoutError:
            conn.close()
            raise httpx.ReadTimeout("timeout") from None
        except BaseException:
            conn.close()
            raise
        self._give_back(key, conn)
        return status

    def _take(self, key: tuple[str, int, bool]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_SECONDS:
                return conn
            conn.close()
        return None

    def _give_back(self, key: tuple[str, int, bool], conn: _Connection) -> None:
        if not conn.reusable or conn.closed:
            conn.close()
            return
        idle = self._idle.setdefault(key, [])
        if len(idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, where: Target, allow_private: bool, timeout: float) -> _Connection:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                try:
                    addresses = await checked_addresses(where.host, where.port, allow_private=allow_private)
                except httpcore.ConnectError as exc:
                    raise httpx.ConnectError(str(exc)) from exc
                last: Exception | None = None
                for ip in addresses:
                    try:
                        _, conn = await loop.create_connection(
                            _Connection,
                            str(ip),
                            where.port,
                            ssl=self._ssl_context() if where.https else None,
                            server_hostname=where.host if where.https else None,
                        )
                        return conn
                    except (OSError, ssl.SSLError) as exc:
                        last = exc
                raise httpx.ConnectError(f"{type(last).__name__}: {last}" if last else "no address")
        except TimeoutError:
            raise httpx.ConnectTimeout("timeout") from None

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

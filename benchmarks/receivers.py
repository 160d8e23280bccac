#!/usr/bin/env python3
"""Webhook receivers for `benchmarks/webhooks.py`: one process listening on several ports (one
subscriber each), every delivery's Standard Webhooks signature verified as it arrives.

They stand in for subscribers on other hosts, so they cost as little CPU as a receiver can: a
plain asyncio protocol on uvloop, the request parsed by httptools (the C parser uvicorn uses), a
fixed `200 ok` answered on the kept connection. `GET /_stats` on any port gives that port's counts:
`{"/hooks/bench": {"count", "ids", "latency", "bad_signatures", "out_of_order", "after_later_id"}}`
(latency: seconds from the event's `timestamp` to the arrival; out of order: events that came after a
later event of the same record; after a later id: events of concurrent transactions published in
commit order rather than id order).

    python benchmarks/receivers.py --ports 8160-8169 --secret whsec_...
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from datetime import datetime

import httptools
import orjson
import uvloop

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"


@dataclass
class Port:
    """What one subscriber received: (webhook-id, arrival, body) per delivery."""

    key: bytes
    received: list[tuple[str, float, bytes]] = field(default_factory=list)
    bad_signatures: int = 0

    def verify(self, headers: dict[bytes, bytes], body: bytes) -> bool:
        msg_id, stamp = headers.get(b"webhook-id", b""), headers.get(b"webhook-timestamp", b"")
        digest = hmac.new(self.key, b"%s.%s.%s" % (msg_id, stamp, body), hashlib.sha256).digest()
        expected = b"v1," + base64.b64encode(digest)
        return any(
            hmac.compare_digest(expected, given) for given in headers.get(b"webhook-signature", b"").split()
        )

    def stats(self) -> bytes:
        latency: list[float] = []
        # Events of one record must come in order; across records the order is the one their
        # transactions were published in (a transaction that commits late comes later).
        last_of_record: dict[object, int] = {}
        out_of_order = after_later_id = last = 0
        for _, at, body in self.received:
            message = orjson.loads(body)
            sent = message["timestamp"].replace("Z", "+00:00")
            latency.append(at - datetime.fromisoformat(sent).timestamp())
            event = int(message["id"].removeprefix("evt_"))
            record = (message["type"].split(".")[0], message["data"].get("id"))
            out_of_order += event < last_of_record.get(record, 0)
            last_of_record[record] = event
            after_later_id += event < last
            last = max(last, event)
        entry = {
            "count": len(self.received),
            "ids": [msg_id for msg_id, _, _ in self.received],
            "latency": latency,
            "bad_signatures": self.bad_signatures,
            "out_of_order": out_of_order,
            "after_later_id": after_later_id,
        }
        return orjson.dumps({"/hooks/bench": entry})


class Receiver(asyncio.Protocol):
    def __init__(self, port: Port) -> None:
        self.port = port
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.url.startswith(b"/_stats"):
            stats = self.port.stats()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(stats), stats)
            )
            return
        body = b"".join(self.body)
        if not self.port.verify(self.headers, body):
            self.port.bad_signatures += 1
        self.port.received.append((self.headers.get(b"webhook-id", b"").decode(), time.time(), body))
        self.transport.write(OK)


async def serve(ports: list[int], secret: str) -> None:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    loop = asyncio.get_running_loop()
    servers = []
    for number in ports:
        port = Port(key)
        servers.append(
            await loop.create_server(lambda port=port: Receiver(port), "127.0.0.1", number, backlog=256)
        )
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ports", required=True, help="first-last, e.g. 8160-8169")
    parser.add_argument("--secret", required=True, help="the subscriptions' whsec_… secret")
    args = parser.parse_args()
    low, _, high = args.ports.partition("-")
    uvloop.run(serve(list(range(int(low), int(high or low) + 1)), args.secret))


if __name__ == "__main__":
    main()

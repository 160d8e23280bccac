"""A local webhook receiver: records every POST (headers, body, arrival time) per path and answers
with the statuses a test scripts for that path (200 by default), optionally after a delay.

In tests: `with running(Receiver(), port) as r: ... r.url("a") ... r.received("a")`.
Standalone (benchmarks): `python -m tests.fakes.webhook_receiver --port 18610`; `GET /_stats` gives
the counts and arrival times per path.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import uvicorn


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, deque[int]] = field(default_factory=lambda: defaultdict(deque))
    delays: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    def script(self, name: str, *statuses: int) -> None:
        """The next answers to `name` (then 200 again)."""
        with self.lock:
            self.scripts[f"/hooks/{name}"].extend(statuses)

    def received(self, name: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == f"/hooks/{name}"]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.scripts.clear()
            self.delays.clear()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/_stats":
            with self.lock:
                stats: dict[str, Any] = {}
                for r in self.requests:
                    entry = stats.setdefault(r.path, {"count": 0, "ids": [], "latency": []})
                    entry["count"] += 1
                    entry["ids"].append(r.headers.get("webhook-id"))
                    try:  # seconds from the event (written with the change) to its arrival here
                        sent = orjson.loads(r.body)["timestamp"].replace("Z", "+00:00")
                        entry["latency"].append(r.at - datetime.fromisoformat(sent).timestamp())
                    except (ValueError, KeyError, TypeError):
                        pass
            await _answer(send, 200, orjson.dumps(stats))
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self.lock:
            self.requests.append(Received(path, headers, body, time.time()))
            script = self.scripts.get(path)
            status = script.popleft() if script else 200
            delay = self.delays.get(path, 0.0)
        if delay:
            await asyncio.sleep(delay)
        if 300 <= status < 400:
            await _answer(send, status, b"", [(b"location", b"http://169.254.169.254/")])
            return
        await _answer(send, status, b"ok")


async def _answer(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), *(extra or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def running(receiver: Receiver, port: int) -> Iterator[Receiver]:
    server = uvicorn.Server(
        uvicorn.Config(
            receiver.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            interface="asgi3",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the webhook receiver did not start on port {port}")
        time.sleep(0.01)
    receiver.base_url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description="Local webhook receiver")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    receiver = Receiver()
    uvicorn.run(
        receiver.app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        interface="asgi3",
    )


if __name__ == "__main__":
    main()

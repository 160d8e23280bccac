"""A fake corporate portal (its directory API; see `docs/portal.md`): `GET /users` with `X-API-Key`,
`limit` (1..200, default 50) / `offset`, a bare JSON list ordered by id and `X-Total-Count`; a bad key
→ 401 problem+json; `force_429(n, retry_after)` answers 429 with `Retry-After`, and `early_requests`
counts requests that came before that time had passed.

By hand: `python -m tests.fakes.portal --port 18502 --users 500`
In tests: `with running(FakePortal()) as portal: portal.base_url ...`
"""

from __future__ import annotations

import argparse
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.serving import serving

STAFF = (
    {"id": 1, "name": "Игорь Соколов", "email": "i.sokolov@tehnomir.ru"},
    {"id": 2, "name": "Мария Кузнецова", "email": "m.kuznetsova@tehnomir.ru"},
    {"id": 3, "name": "Алексей Волков", "email": "a.volkov@tehnomir.ru"},
)


class FakePortal:
    def __init__(self, users: int = 3, api_key: str = "portal-key-7f3a9c") -> None:
        self.api_key = api_key
        self.users: dict[int, dict[str, Any]] = {}
        for n in range(1, users + 1):
            if n <= len(STAFF):
                self.users[n] = dict(STAFF[n - 1])
            else:
                self.users[n] = {"id": n, "name": f"Сотрудник {n}", "email": f"employee{n}@tehnomir.ru"}
        self.base_url = ""
        self.requests = 0
        self.early_requests = 0
        self._forced: list[float] = []
        self._not_before = 0.0
        self._lock = threading.Lock()

    def force_429(self, n: int, retry_after: float = 1.0) -> None:
        self._forced = [retry_after] * n

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = self._handle(request)
        await response(scope, receive, send)

    @staticmethod
    def _problem(
        status: int, title: str, detail: str, code: str, headers: dict[str, str] | None = None
    ) -> Response:
        body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
        return Response(orjson.dumps(body), status, headers=headers, media_type="application/problem+json")

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self.requests += 1
            now = time.monotonic()
            if now < self._not_before:
                self.early_requests += 1
            if request.url.path.rstrip("/") != "/users" or request.method != "GET":
                return self._problem(404, "Not Found", "No such resource", "not_found")
            given = request.headers.get("x-api-key", "")
            if not secrets.compare_digest(given.encode(), self.api_key.encode()):
                return self._problem(401, "Unauthorized", "Invalid or missing API key", "invalid_api_key")
            if self._forced:
                wait = self._forced.pop()
                self._not_before = now + wait
                return self._problem(
                    429,
                    "Too Many Requests",
                    "Rate limit exceeded",
                    "rate_limited",
                    {"Retry-After": f"{wait:g}", "RateLimit-Policy": '"users";q=60;w=60'},
                )
        try:
            limit = int(request.query_params.get("limit", 50))
            offset = int(request.query_params.get("offset", 0))
        except ValueError:
            return self._problem(
                422, "Unprocessable Entity", "limit and offset are integers", "validation_error"
            )
        if not 1 <= limit <= 200 or offset < 0:
            return self._problem(422, "Unprocessable Entity", "limit 1..200, offset ≥ 0", "validation_error")
        rows = [self.users[k] for k in sorted(self.users)]
        page = rows[offset : offset + limit]
        return Response(
            orjson.dumps(page), 200, headers={"X-Total-Count": str(len(rows))}, media_type="application/json"
        )


@contextmanager
def running(fake: FakePortal) -> Iterator[FakePortal]:
    with serving(fake.app, "the fake portal") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake corporate portal user directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18502)
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--api-key", default="portal-key-7f3a9c")
    args = parser.parse_args()
    fake = FakePortal(args.users, args.api_key)
    print(f"Fake portal at http://{args.host}:{args.port} (X-API-Key {args.api_key})")
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", interface="asgi3")


if __name__ == "__main__":
    main()

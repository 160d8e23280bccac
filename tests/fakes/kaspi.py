"""A fake Kaspi.kz Shop API (as Kaspi documents it; see `plugins/crm-kaspi`): `X-Auth-Token` and the JSON:API
content type required; `GET /shop/api/v2/orders` with required `page[number]`, `page[size]` (≤ 100) and
`filter[orders][creationDate][$ge]`, a window of at most 14 days (400 otherwise), `state` filter,
`data` + `meta {pageCount, totalCount}`; `GET /orders/{id}/entries`. Epoch-ms times, tenge as floats,
base64 ids (order id = base64 of its code, customer id = base64 of the phone).

By hand: `python -m tests.fakes.kaspi --port 18503 --orders 200`
"""

from __future__ import annotations

import argparse
import base64
import re
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

PREFIX = "/shop/api/v2"
DAY_MS = 24 * 3600 * 1000
STATES = ("NEW", "DELIVERY", "KASPI_DELIVERY", "PICKUP", "ARCHIVE")
STATUSES = ("APPROVED_BY_BANK", "ACCEPTED_BY_MERCHANT", "COMPLETED", "CANCELLED")


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


class FakeKaspi:
    def __init__(self, orders: int = 30, token: str = "kaspi-token-QWxtYXR5", days: int = 20) -> None:  # noqa: S107
        self.token = token
        now = int(time.time() * 1000)
        self.orders: dict[str, dict[str, Any]] = {}
        self.entries: dict[str, list[dict[str, Any]]] = {}
        for n in range(orders):
            code = str(512340000 + n)
            phone = f"777{1000000 + n % 7:07d}"  # seven customers, each with several orders
            created = now - int(days * DAY_MS * (n + 1) / (orders + 1))
            oid = _b64(code)
            lines = [
                {
                    "type": "orderentries",
                    "id": _b64(f"{code}##{k}"),
                    "attributes": {
                        "quantity": 1 + k,
                        "basePrice": 4990.0 + k * 1000,
                        "totalPrice": (4990.0 + k * 1000) * (1 + k),
                        "entryNumber": k,
                        "unitType": "PIECES",
                        "offer": {"code": f"SKU-{n % 5}-{k}", "name": f"Товар {k}"},
                    },
                }
                for k in range(1 + n % 3)
            ]
            self.entries[oid] = lines
            self.orders[oid] = {
                "type": "orders",
                "id": oid,
                "attributes": {
                    "code": code,
                    "totalPrice": sum(line["attributes"]["totalPrice"] for line in lines),
                    "paymentMode": "PREPAID",
                    "creationDate": created,
                    "state": STATES[n % len(STATES)],
                    "status": STATUSES[n % len(STATUSES)],
                    "deliveryCost": 0.0,
                    "customer": {
                        "id": _b64(phone),
                        "name": f"Покупатель {n % 7}",
                        "firstName": "Айгерим" if n % 2 else "Нурлан",
                        "lastName": f"Сейткали {n % 7}",
                        "cellPhone": phone,
                    },
                },
                "relationships": {"user": {"data": {"type": "customers", "id": _b64(phone)}}},
            }
        self.base_url = ""
        self.requests = 0
        self.bad_requests: list[str] = []
        self._lock = threading.Lock()

    @staticmethod
    def _error(status: int, title: str) -> Response:
        return Response(
            orjson.dumps({"errors": [{"title": title}]}), status, media_type="application/vnd.api+json"
        )

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        response = self._handle(Request(scope, receive))
        await response(scope, receive, send)

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self.requests += 1
        if request.headers.get("x-auth-token") != self.token:
            return self._error(401, "Unauthorized")
        if "application/vnd.api+json" not in request.headers.get("content-type", ""):
            self.bad_requests.append("content-type")
            return self._error(415, "Unsupported Media Type")
        path = request.url.path.removeprefix(PREFIX)
        match = re.fullmatch(r"/orders/([^/]+)/entries", path)
        if match:
            lines = self.entries.get(match.group(1))
            if lines is None:
                return self._error(404, "Not Found")
            return self._json({"data": lines, "meta": {"totalCount": len(lines)}})
        if path != "/orders":
            return self._error(404, "Not Found")
        q = request.query_params
        try:
            number, size = int(q["page[number]"]), int(q["page[size]"])
            start = int(q["filter[orders][creationDate][$ge]"])
            end = int(q.get("filter[orders][creationDate][$le]", str(int(time.time() * 1000))))
        except (KeyError, ValueError):
            self.bad_requests.append("paging or window")
            return self._error(
                400, "page[number], page[size] and filter[orders][creationDate][$ge] are required"
            )
        if size > 100 or number < 0 or size < 1:
            self.bad_requests.append("page size")
            return self._error(400, "page[size] must be 1..100")
        if end - start > 14 * DAY_MS:
            self.bad_requests.append("window")
            return self._error(400, "The period must not exceed 14 days")
        state = q.get("filter[orders][state]")
        rows = [
            o
            for o in sorted(self.orders.values(), key=lambda o: o["attributes"]["creationDate"])
            if start <= o["attributes"]["creationDate"] <= end
            and (state is None or o["attributes"]["state"] == state)
        ]
        pages = (len(rows) + size - 1) // size
        return self._json(
            {
                "data": rows[number * size : (number + 1) * size],
                "included": [],
                "meta": {"pageCount": pages, "totalCount": len(rows)},
            }
        )

    @staticmethod
    def _json(body: Any) -> Response:
        return Response(orjson.dumps(body), 200, media_type="application/vnd.api+json")


@contextmanager
def running(fake: FakeKaspi) -> Iterator[FakeKaspi]:
    with serving(fake.app, "the fake Kaspi") as port:
        fake.base_url = f"http://127.0.0.1:{port}{PREFIX}"
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Kaspi.kz Shop API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18503)
    parser.add_argument("--orders", type=int, default=30)
    parser.add_argument("--token", default="kaspi-token-QWxtYXR5")
    args = parser.parse_args()
    fake = FakeKaspi(args.orders, args.token)
    print(f"Fake Kaspi at http://{args.host}:{args.port}{PREFIX} (X-Auth-Token {args.token})")
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", interface="asgi3")


if __name__ == "__main__":
    main()

"""A fake Bitrix24 REST API (ASGI) serving generated, deterministic CRM data in the real shapes.

Like the real REST API (see `docs/bitrix24.md`): inbound-webhook URLs
`/rest/<user>/<secret>/<method>[.json]`; JSON, form-encoded and query-string parameters in PHP bracket
notation with case-insensitive top-level keys; lists of 50 with `start` / `next` / `total` (`start=-1`:
no count); the filter operators the sync uses (`ID`, `>ID`, `>=ID`, `@ID`, `>DATE_MODIFY`,
`>=DATE_MODIFY`, `CATEGORY_ID`, `ENTITY_ID`, `ENTITY_TYPE_ID`, `@ENTITY_ID`); ids and money as strings,
multifields only when selected and omitted when empty, dates with the portal's offset, a `time` block on
every answer; `batch` (≤ 50 commands, `$result[cmd][…]` references, the five result maps); the leaky
bucket (503 `QUERY_LIMIT_EXCEEDED`), `OPERATION_TIME_LIMIT` (429) on demand; `INVALID_CREDENTIALS`,
`expired_token`, `insufficient_scope`.

Test hooks: `touch(entity, id, **fields)` (change a row, bump `DATE_MODIFY`), `add(entity, **fields)`,
`delete(entity, id)`, `force_503(n)`, `force_429(n)`, `expired`, `scopes`, `event_body(event, id)` /
`emit(url, event, id)` (an outbound event as Bitrix24 posts it), and counters `requests`,
`http_requests`, `early_requests` (requests that came sooner than `min_gap` seconds after a 503 or 429
was answered), `max_rate` (most requests seen in any one-second window).

By hand: `python -m tests.fakes.bitrix24 --port 18501 --contacts 50000 --companies 20000 --deals 50000`
"""

from __future__ import annotations

import argparse
import bisect
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.serving import serving

BASE_MODIFY = datetime(2024, 5, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=3)))
STAGES = (
    ("NEW", "Новая", None),
    ("PREPARATION", "Подготовка документов", None),
    ("PREPAYMENT_INVOICE", "Счёт на предоплату", None),
    ("EXECUTING", "В работе", None),
    ("FINAL_INVOICE", "Финальный счёт", None),
    ("WON", "Сделка успешна", "S"),
    ("LOSE", "Сделка провалена", "F"),
    ("APOLOGY", "Анализ причины провала", "F"),
)
FIRST_NAMES = ("Сергей", "Анна", "Дмитрий", "Ольга", "Игорь", "Мария", "Алексей", "Елена")
LAST_NAMES = ("Петров", "Смирнова", "Козлов", "Новикова", "Морозов", "Лебедева", "Волков", "Соколова")
ENTITIES = ("contact", "company", "deal")
USERS = (
    {"ID": "1", "NAME": "Игорь", "LAST_NAME": "Соколов", "EMAIL": "i.sokolov@tehnomir.ru"},
    {"ID": "7", "NAME": "Мария", "LAST_NAME": "Кузнецова", "EMAIL": "m.kuznetsova@tehnomir.ru"},
    {"ID": "9", "NAME": "Алексей", "LAST_NAME": "Волков", "EMAIL": "a.volkov@tehnomir.ru"},
)
PAGE = 50


def _inn(seed: int) -> str:
    """A 10-digit INN with valid check digit."""
    digits = [int(c) for c in f"{(seed * 7919) % 10**9:09d}"]
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    check = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11 % 10
    return "".join(map(str, digits)) + str(check)


def _ogrn(seed: int) -> str:
    """A 13-digit OGRN with valid check digit (12 digits mod 11, last digit)."""
    body = f"{seed // 10 % 10**12:012d}"
    return body + str(int(body) % 11 % 10)


def php_parse(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][c]=1&a[]=x` pairs → nested dicts and lists (PHP style)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"\[([^\]]*)\]", key)
        head = key.split("[", 1)[0]
        path = [head, *parts]
        node: Any = root
        for index, part in enumerate(path):
            last = index == len(path) - 1
            if isinstance(node, list):
                if last:
                    node.append(value)
                    break
                child: Any = [] if path[index + 1] == "" else {}
                node.append(child)
                node = child
                continue
            if last:
                node[part] = value
                break
            nxt = path[index + 1]
            if part not in node or not isinstance(node[part], dict | list):
                node[part] = [] if nxt == "" else {}
            node = node[part]
    return root


def php_query(params: dict[str, Any]) -> str:
    """The inverse of `php_parse` (what `http_build_query` makes)."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}[{k}]", v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(f"{prefix}[]", v)
        else:
            pairs.append((prefix, "" if value is None else str(value)))

    for key, value in params.items():
        walk(key, value)
    return urlencode(pairs)


def _iso(moment: datetime, offset: timezone) -> str:
    return moment.astimezone(offset).replace(microsecond=0).isoformat()


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        if re.fullmatch(r"\d\d\.\d\d\.\d{4}( \d\d:\d\d:\d\d)?", value):
            parsed = datetime.strptime(value if " " in value else value + " 00:00:00", "%d.%m.%Y %H:%M:%S")
            return parsed.replace(tzinfo=BASE_MODIFY.tzinfo)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=BASE_MODIFY.tzinfo)


class _Fault(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        self.status, self.error, self.description = status, error, description


@dataclass
class FakeConfig:
    contacts: int = 60
    companies: int = 20
    deals: int = 40
    user_id: str = "1"
    secret: str = "x8a2k4m9q1w7e3r5"
    application_token: str = "q8w2e5r7t1y9u3i6o0p4a2s8d6f1g3h7"
    domain: str = "tehnomir.bitrix24.ru"
    utc_offset_hours: int = 3
    #: Leaky bucket: `burst` requests, draining `rate` per second; `limit=False` switches it off.
    limit: bool = True
    burst: float = 50
    rate: float = 2.0
    #: A request sooner than this after a 503/429 answer counts as early.
    min_gap: float = 0.5
    scopes: tuple[str, ...] = ("crm", "user")


@dataclass
class _Table:
    count: int
    ids: list[int] = field(default_factory=list)
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # changed or added rows
    deleted: set[int] = field(default_factory=set)


class FakeBitrix24:
    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self.tz = timezone(timedelta(hours=self.config.utc_offset_hours))
        self.tables = {
            "contact": _Table(self.config.contacts, list(range(1, self.config.contacts + 1))),
            "company": _Table(self.config.companies, list(range(1, self.config.companies + 1))),
            "deal": _Table(self.config.deals, list(range(1, self.config.deals + 1))),
        }
        self.base_url = ""
        self.expired = False
        self.scopes = set(self.config.scopes)
        self.requests = 0  # method calls (batch commands count one each)
        self.http_requests = 0
        self.early_requests = 0
        self.limited = 0  # 503/429 answers
        self.methods: deque[str] = deque(maxlen=200)
        self._forced_503 = 0
        self._forced_429 = 0
        self._bucket = 0.0
        self._bucket_at = time.monotonic()
        self._refused_at = -1e9
        self._window: deque[float] = deque()
        self.max_rate = 0
        self._lock = threading.Lock()

    # -- data -----------------------------------------------------------------------------------------

    def _generated(self, entity: str, i: int) -> dict[str, Any]:
        modify = _iso(BASE_MODIFY + timedelta(seconds=i), self.tz)
        create = _iso(BASE_MODIFY - timedelta(days=30) + timedelta(seconds=i), self.tz)
        companies = self.config.companies
        if entity == "contact":
            phones = [
                {"ID": str(i * 10 + 1), "VALUE_TYPE": "WORK", "VALUE": f"+7916{i:07d}", "TYPE_ID": "PHONE"}
            ]
            if i % 4 == 0:
                phones.insert(
                    0,
                    {
                        "ID": str(i * 10 + 2),
                        "VALUE_TYPE": "MOBILE",
                        "VALUE": f"8 (903) {i % 1000:03d}-00-{i % 100:02d}",
                        "TYPE_ID": "PHONE",
                    },
                )
            if i % 7 == 0:
                phones = []
            emails = [
                {
                    "ID": str(i * 10 + 3),
                    "VALUE_TYPE": "WORK",
                    "VALUE": f"c{i}@work.example",
                    "TYPE_ID": "EMAIL",
                }
            ]
            if i % 5 == 0:
                emails.insert(
                    0,
                    {
                        "ID": str(i * 10 + 4),
                        "VALUE_TYPE": "HOME",
                        "VALUE": f"c{i}@home.example",
                        "TYPE_ID": "EMAIL",
                    },
                )
            return {
                "ID": str(i),
                "NAME": FIRST_NAMES[i % len(FIRST_NAMES)],
                "SECOND_NAME": "",
                "LAST_NAME": f"{LAST_NAMES[i % len(LAST_NAMES)]} {i}",
                "POST": "Менеджер" if i % 2 else None,
                "TYPE_ID": "CLIENT",
                "SOURCE_ID": "WEB",
                "COMPANY_ID": str(i % companies + 1) if companies and i % 3 == 0 else None,
                "ASSIGNED_BY_ID": USERS[i % 3]["ID"],
                "DATE_CREATE": create,
                "DATE_MODIFY": modify,
                "PHONE": phones,
                "EMAIL": emails,
            }
        if entity == "company":
            return {
                "ID": str(i),
                "TITLE": f'ООО "Компания {i}"',
                "COMPANY_TYPE": "CUSTOMER",
                "INDUSTRY": "IT" if i % 2 else "MANUFACTURING",
                "ASSIGNED_BY_ID": USERS[i % 3]["ID"],
                "DATE_CREATE": create,
                "DATE_MODIFY": modify,
                "PHONE": [
                    {
                        "ID": str(i * 10 + 5),
                        "VALUE_TYPE": "WORK",
                        "VALUE": f"+7495{i:07d}",
                        "TYPE_ID": "PHONE",
                    }
                ],
                "EMAIL": [
                    {
                        "ID": str(i * 10 + 6),
                        "VALUE_TYPE": "WORK",
                        "VALUE": f"office{i}@company.example",
                        "TYPE_ID": "EMAIL",
                    }
                ],
            }
        stage, _, semantic = STAGES[i % len(STAGES)]
        contacts = self.config.contacts
        return {
            "ID": str(i),
            "TITLE": f"Сделка {i}",
            "STAGE_ID": stage,
            "CATEGORY_ID": "0",
            "STAGE_SEMANTIC_ID": semantic or "P",
            "CLOSED": "Y" if semantic else "N",
            "OPPORTUNITY": f"{1000 + i * 10}.00",
            "CURRENCY_ID": "USD" if i % 10 == 0 else "RUB",
            "CONTACT_ID": str(i % contacts + 1) if contacts else None,
            "COMPANY_ID": str(i % companies + 1) if companies and i % 2 == 0 else "0",
            "ASSIGNED_BY_ID": USERS[i % 3]["ID"],
            "BEGINDATE": "2024-05-20T03:00:00+03:00",
            "CLOSEDATE": "2024-06-20T03:00:00+03:00",
            "DATE_CREATE": create,
            "DATE_MODIFY": modify,
        }

    def row(self, entity: str, i: int) -> dict[str, Any] | None:
        table = self.tables[entity]
        if i in table.deleted:
            return None
        if i in table.rows:
            return table.rows[i]
        if 1 <= i <= table.count:
            return self._generated(entity, i)
        return None

    def requisite(self, company_id: int) -> dict[str, Any] | None:
        if company_id % 2 or self.row("company", company_id) is None:
            return None
        return {
            "ID": str(company_id + 5000),
            "ENTITY_TYPE_ID": "4",
            "ENTITY_ID": str(company_id),
            "PRESET_ID": "1",
            "NAME": "Организация",
            "RQ_INN": _inn(company_id),
            "RQ_KPP": "770101001",
            "RQ_OGRN": _ogrn(1027700000000 + company_id),
        }

    def _now(self) -> str:
        return _iso(datetime.now(self.tz), self.tz)

    def touch(self, entity: str, i: int, **fields: Any) -> dict[str, Any]:
        current = self.row(entity, i)
        if current is None:
            raise KeyError(i)
        row = {**current, **fields, "DATE_MODIFY": self._now()}
        self.tables[entity].rows[i] = row
        return row

    def add(self, entity: str, **fields: Any) -> int:
        table = self.tables[entity]
        i = max(table.ids[-1] if table.ids else 0, table.count) + 1
        base = self._generated(entity, i)
        table.rows[i] = {
            **base,
            **fields,
            "ID": str(i),
            "DATE_CREATE": self._now(),
            "DATE_MODIFY": self._now(),
        }
        table.ids.append(i)
        return i

    def delete(self, entity: str, i: int) -> None:
        table = self.tables[entity]
        table.deleted.add(i)
        index = bisect.bisect_left(table.ids, i)
        if index < len(table.ids) and table.ids[index] == i:
            table.ids.pop(index)

    def live_ids(self, entity: str) -> list[int]:
        return list(self.tables[entity].ids)

    # -- faults ---------------------------------------------------------------------------------------

    def force_503(self, n: int) -> None:
        self._forced_503 = n

    def force_429(self, n: int) -> None:
        self._forced_429 = n

    def _admit(self) -> None:
        """Count the request; raise the rate-limit answer it gets, if any."""
        with self._lock:
            now = time.monotonic()
            self.http_requests += 1
            self._window.append(now)
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            self.max_rate = max(self.max_rate, len(self._window))
            if now - self._refused_at < self.config.min_gap:
                self.early_requests += 1
            if self._forced_503 > 0:
                self._forced_503 -= 1
                self._refused_at = now
                self.limited += 1
                raise _Fault(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
            if self._forced_429 > 0:
                self._forced_429 -= 1
                self._refused_at = now
                self.limited += 1
                raise _Fault(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
            if not self.config.limit:
                return
            self._bucket = max(0.0, self._bucket - (now - self._bucket_at) * self.config.rate)
            self._bucket_at = now
            if self._bucket + 1 > self.config.burst:
                self._refused_at = now
                self.limited += 1
                raise _Fault(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
            self._bucket += 1

    # -- events ---------------------------------------------------------------------------------------

    def event_body(self, event: str, i: int, *, token: str | None = None, ts: int | None = None) -> bytes:
        """The form-encoded body Bitrix24 posts for `event` on record `i`."""
        return php_query(
            {
                "event": event,
                "event_handler_id": "23",
                "data": {"FIELDS": {"ID": str(i)}},
                "ts": str(ts if ts is not None else int(time.time())),
                "auth": {
                    "domain": self.config.domain,
                    "client_endpoint": f"https://{self.config.domain}/rest/",
                    "server_endpoint": "https://oauth.bitrix.info/rest/",
                    "member_id": "8b1f0c9d2e3a4b5c6d7e8f9a0b1c2d3e",
                    "application_token": token if token is not None else self.config.application_token,
                },
            }
        ).encode()

    def emit(self, url: str, event: str, i: int, **kwargs: Any) -> int:
        """POST an event to `url` like the portal's queue does (one attempt, no retry)."""
        response = httpx.post(
            url,
            content=self.event_body(event, i, **kwargs),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=5,
        )
        return response.status_code

    # -- methods --------------------------------------------------------------------------------------

    def _time(self, started: float) -> dict[str, Any]:
        finish = time.time()
        return {
            "start": started,
            "finish": finish,
            "duration": finish - started,
            "processing": finish - started,
            "date_start": _iso(datetime.fromtimestamp(started, self.tz), self.tz),
            "date_finish": _iso(datetime.fromtimestamp(finish, self.tz), self.tz),
            "operating": 0,
            "operating_reset_at": int(finish) + 600,
        }

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """`{result, [next], [total]}` of one method call (raises `_Fault`)."""
        self.requests += 1
        self.methods.append(method)
        params = {k.lower(): v for k, v in params.items()}
        scope = "user" if method.startswith("user.") else "crm"
        if scope not in self.scopes:
            raise _Fault(
                401,
                "insufficient_scope",
                "The request requires higher privileges than provided by the webhook token",
            )
        match = re.fullmatch(r"crm\.(contact|company|deal)\.(list|get)", method)
        if match:
            entity, op = match.groups()
            if op == "get":
                try:
                    row = self.row(entity, int(params.get("id", 0)))
                except (TypeError, ValueError):
                    row = None
                if row is None:
                    raise _Fault(400, "", "Not found")
                return {"result": row}
            return self._list(entity, params)
        if method == "crm.status.list":
            flt = params.get("filter") or {}
            entity_id = (flt.get("ENTITY_ID") if isinstance(flt, dict) else None) or "DEAL_STAGE"
            rows = []
            if entity_id == "DEAL_STAGE":
                for n, (code, name, semantic) in enumerate(STAGES):
                    rows.append(
                        {
                            "ID": str(31 + n),
                            "ENTITY_ID": "DEAL_STAGE",
                            "STATUS_ID": code,
                            "NAME": name,
                            "SORT": str((n + 1) * 10),
                            "SYSTEM": "Y" if n in (0, 5, 6) else "N",
                            "CATEGORY_ID": None,
                            "SEMANTICS": semantic,
                            "EXTRA": {
                                "SEMANTICS": {"S": "success", "F": "failure"}.get(semantic or "", "process")
                            },
                        }
                    )
            return {"result": rows, "total": len(rows)}
        if method == "crm.requisite.list":
            flt = params.get("filter") or {}
            wanted = flt.get("@ENTITY_ID") if isinstance(flt, dict) else None
            rows = []
            for raw in wanted if isinstance(wanted, list) else []:
                try:
                    requisite = self.requisite(int(raw))
                except ValueError:
                    continue
                if requisite is not None:
                    rows.append(requisite)
            return {"result": rows[:PAGE], "total": len(rows)}
        if method == "user.get":
            start = int(params.get("start", 0) or 0)
            users = [{**u, "ACTIVE": True, "USER_TYPE": "employee"} for u in USERS]
            page = users[max(start, 0) : max(start, 0) + PAGE]
            return {"result": page, "total": len(users)}
        raise _Fault(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")

    def _list(self, entity: str, params: dict[str, Any]) -> dict[str, Any]:
        table = self.tables[entity]
        flt = params.get("filter") or {}
        if not isinstance(flt, dict):
            flt = {}
        ids = table.ids
        lo = 0
        for key in (">ID", ">=ID"):
            if key in flt:
                try:
                    bound = int(flt[key])
                except (TypeError, ValueError):
                    raise _Fault(400, "", "ID is not defined or invalid.") from None
                lo = bisect.bisect_right(ids, bound) if key == ">ID" else bisect.bisect_left(ids, bound)
        # Generated deals are all in pipeline 0: filtering on it changes nothing unless a row moved.
        category_plain = str(flt.get("CATEGORY_ID", "0")) == "0" and all(
            row.get("CATEGORY_ID", "0") == "0" for row in table.rows.values()
        )
        plain = (
            category_plain
            and not any(k in flt for k in (">=DATE_MODIFY", ">DATE_MODIFY", "@ID", "ID"))
            and not (
                isinstance(params.get("order"), dict)
                and str(params["order"].get("ID", "ASC")).upper() == "DESC"
            )
        )
        if plain:  # the common keyset read: no copy of the whole id list
            try:
                begin = max(int(params.get("start", 0) or 0), 0)
            except (TypeError, ValueError):
                begin = 0
            return self._page(entity, ids[lo + begin : lo + begin + PAGE], begin, len(ids) - lo, params)
        candidates: list[int] = ids[lo:]
        since_key = next((k for k in (">=DATE_MODIFY", ">DATE_MODIFY") if k in flt), None)
        if since_key is not None:
            since = _parse_date(flt[since_key])
            if since is None:
                raise _Fault(400, "", "Invalid date")
            strict = since_key == ">DATE_MODIFY"
            # Generated rows change with their id; changed rows carry their own time.
            seconds = (since - BASE_MODIFY).total_seconds()
            threshold = int(seconds) + (1 if strict or seconds != int(seconds) else 0)
            chosen = []
            for i in candidates:
                if i in table.rows:
                    moment = _parse_date(table.rows[i]["DATE_MODIFY"])
                    if moment is not None and (moment > since if strict else moment >= since):
                        chosen.append(i)
                elif i >= threshold:
                    chosen.append(i)
            candidates = chosen
        if "@ID" in flt:
            wanted = {int(v) for v in flt["@ID"]} if isinstance(flt["@ID"], list) else set()
            candidates = [i for i in candidates if i in wanted]
        if "ID" in flt:
            candidates = [i for i in candidates if str(i) == str(flt["ID"])]
        if "CATEGORY_ID" in flt:
            # Generated deals are all in pipeline 0; only changed rows need a look.
            wanted = str(flt["CATEGORY_ID"])
            changed = table.rows
            candidates = [
                i
                for i in candidates
                if (changed[i].get("CATEGORY_ID") == wanted if i in changed else wanted == "0")
            ]
        order = params.get("order") or {}
        if isinstance(order, dict) and str(order.get("ID", "ASC")).upper() == "DESC":
            candidates = candidates[::-1]
        try:
            start = int(params.get("start", 0) or 0)
        except (TypeError, ValueError):
            start = 0
        offset = 0 if start < 0 else start
        return self._page(entity, candidates[offset : offset + PAGE], offset, len(candidates), params)

    def _page(
        self, entity: str, chosen: list[int], offset: int, total: int, params: dict[str, Any]
    ) -> dict[str, Any]:
        select = params.get("select")
        names = set(select) if isinstance(select, list) and select else {"*"}
        page: list[dict[str, Any]] = []
        for i in chosen:
            row = self.row(entity, i)
            if row is None:
                continue
            page.append(self._select(row, names))
        body: dict[str, Any] = {"result": page}
        try:
            start = int(params.get("start", 0) or 0)
        except (TypeError, ValueError):
            start = 0
        if start < 0:
            body["total"] = 0
        else:
            body["total"] = total
            if offset + PAGE < total:
                body["next"] = offset + PAGE
        return body

    @staticmethod
    def _select(row: dict[str, Any], names: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        star = "*" in names
        for key, value in row.items():
            multi = key in ("PHONE", "EMAIL", "WEB", "IM")
            if multi:
                if key in names and value:
                    out[key] = value
            elif star or key in names:
                out[key] = value
        return out

    def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        cmd = params.get("cmd") or {}
        if isinstance(cmd, list):
            cmd = {str(n): c for n, c in enumerate(cmd)}
        if not isinstance(cmd, dict):
            raise _Fault(400, "INVALID_ARG_VALUE", "cmd must be an object")
        if len(cmd) > 50:
            raise _Fault(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        halt = str(params.get("halt", "0")).lower() in ("1", "true")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        nexts: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for name, command in cmd.items():
            started = time.time()
            method, _, query = str(command).partition("?")
            query = re.sub(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)", lambda m: self._ref(results, m), query)
            sub = php_parse(parse_qsl(query, keep_blank_values=True))
            method = method.lower().removesuffix(".json")
            if method == "batch":
                errors[name] = {
                    "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "error_description": "Method is not allowed for batch usage",
                }
                continue
            try:
                answer = self.call(method, sub)
            except _Fault as fault:
                errors[name] = {"error": fault.error, "error_description": fault.description}
                if halt:
                    break
                continue
            results[name] = answer["result"]
            if "total" in answer:
                totals[name] = answer["total"]
            if "next" in answer:
                nexts[name] = answer["next"]
            times[name] = self._time(started)
        return {
            "result": {
                "result": results or [],
                "result_error": errors or [],
                "result_total": totals or [],
                "result_next": nexts or [],
                "result_time": times or [],
            }
        }

    @staticmethod
    def _ref(results: dict[str, Any], match: re.Match[str]) -> str:
        value: Any = results.get(match.group(1))
        for part in re.findall(r"\[([^\]]*)\]", match.group(2)):
            if isinstance(value, list):
                try:
                    value = value[int(part)]
                except (ValueError, IndexError):
                    return ""
            elif isinstance(value, dict):
                value = value.get(part)
            else:
                return ""
        return "" if value is None or isinstance(value, dict | list) else str(value)

    # -- HTTP -----------------------------------------------------------------------------------------

    @staticmethod
    def _json(status: int, body: Any) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._handle(request)
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        started = time.time()
        match = re.fullmatch(r"/rest/(?:([^/]+)/([^/]+)/)?([A-Za-z0-9_.]+?)(?:\.json)?/?", request.url.path)
        if match is None:
            return self._json(
                404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
            )
        user, secret, method = match.groups()
        try:
            self._admit()
            if user is None:
                raise _Fault(401, "NO_AUTH_FOUND", "Wrong authorization data")
            if not (
                secrets.compare_digest(user, self.config.user_id)
                and secrets.compare_digest(secret, self.config.secret)
            ):
                raise _Fault(401, "INVALID_CREDENTIALS", "Invalid request credentials")
            if self.expired:
                raise _Fault(401, "expired_token", "The access token provided has expired.")
            params = php_parse(parse_qsl(request.url.query, keep_blank_values=True))
            body = await request.body()
            kind = request.headers.get("content-type", "")
            if body and "json" in kind:
                try:
                    decoded = orjson.loads(body)
                except orjson.JSONDecodeError:
                    raise _Fault(400, "INVALID_REQUEST", "Invalid JSON") from None
                if isinstance(decoded, dict):
                    params.update(decoded)
            elif body:
                params.update(php_parse(parse_qsl(body.decode(), keep_blank_values=True)))
            method = method.lower()
            if method == "batch":
                self.requests += 1
                answer = self._batch({k.lower(): v for k, v in params.items()})
            else:
                answer = self.call(method, params)
        except _Fault as fault:
            return self._json(fault.status, {"error": fault.error, "error_description": fault.description})
        answer["time"] = self._time(started)
        return self._json(200, answer)


@contextmanager
def running(fake: FakeBitrix24) -> Iterator[FakeBitrix24]:
    """Serve `fake` on 127.0.0.1 on a free port in a background thread; `fake.base_url` is the portal."""
    with serving(fake.app, "the fake Bitrix24 server") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Bitrix24 REST API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18501)
    parser.add_argument("--contacts", type=int, default=FakeConfig.contacts)
    parser.add_argument("--companies", type=int, default=FakeConfig.companies)
    parser.add_argument("--deals", type=int, default=FakeConfig.deals)
    parser.add_argument("--no-limit", action="store_true", help="switch the leaky bucket off")
    parser.add_argument("--burst", type=float, default=FakeConfig.burst)
    parser.add_argument("--rate", type=float, default=FakeConfig.rate)
    args = parser.parse_args()
    config = FakeConfig(
        contacts=args.contacts,
        companies=args.companies,
        deals=args.deals,
        limit=not args.no_limit,
        burst=args.burst,
        rate=args.rate,
    )
    fake = FakeBitrix24(config)
    print(
        f"Fake Bitrix24 at http://{args.host}:{args.port} — webhook user {config.user_id}, "
        f"secret {config.secret}, application token {config.application_token}"
    )
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", interface="asgi3")


if __name__ == "__main__":
    main()

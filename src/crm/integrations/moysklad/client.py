"""HTTP client for the MoySklad JSON API 1.2: auth (bearer token or login/password → token), gzip,
a client-side rate limiter shared per credential, 429 handling by the `X-Lognex-*` headers, retries
with exponential backoff and jitter on 5xx and timeouts, and error envelopes turned into
`ProviderError` messages that never carry credentials."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from crm.config import get_settings
from crm.integrations.answers import Transient as _Transient
from crm.integrations.answers import json_body, request_errors, unavailable
from crm.integrations.base import ProviderContext, ProviderError
from crm.integrations.budget import account_key, shared_budget
from crm.integrations.ssrf import guarded_client

DEFAULT_BASE_URL = "https://api.moysklad.ru/api/remap/1.2"
USER_AGENT = "crm-sync/1.0"
#: MoySklad keeps Moscow time (UTC+3, no DST since 2014) in every date-time, without an offset.
MOSCOW = timezone(timedelta(hours=3), "MSK")
MAX_LIMIT = 1000
#: `expand` is ignored by MoySklad when `limit` is above this.
EXPAND_LIMIT = 100
#: Weight of the full stock reports (`/report/stock/all`, `/report/stock/bystore`) in the budget.
HEAVY_REPORT_WEIGHT = 5


_MOMENT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?")


def parse_moment(value: str) -> datetime:
    """A MoySklad date-time (`YYYY-MM-DD HH:MM[:SS[.mmm]]`, Moscow time) as an aware UTC datetime."""
    if not isinstance(value, str) or not _MOMENT.fullmatch(value):
        raise ValueError(f"not a MoySklad date-time: {value!r}")
    return datetime.fromisoformat(value).replace(tzinfo=MOSCOW).astimezone(UTC)


def normal_moment(value: object) -> str | None:
    """`value` as a fixed-width `YYYY-MM-DD HH:MM:SS.mmm` string (ordered like the moments it names),
    or None when it is not a MoySklad date-time."""
    if not isinstance(value, str) or not _MOMENT.fullmatch(value):
        return None
    if len(value) == 16:
        return value + ":00.000"
    if len(value) == 19:
        return value + ".000"
    return (value + "00")[:23]


def format_filter_moment(moment: datetime) -> str:
    """`YYYY-MM-DD HH:MM:SS` in Moscow time, the form `filter=updated>=…` takes."""
    return moment.astimezone(MOSCOW).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Limits:
    """Client-side budget: `units` per `window` seconds and at most `parallel` requests in flight."""

    units: int = 15
    window: float = 3.0
    parallel: int = 4


class RateLimiter:
    """Sliding-window budget plus a parallel-request cap; a 429 pauses every request of the
    credential until the server's reset time.

    A request counts from the moment it is sent until one window after its answer came back: the
    server counts arrivals, which lie somewhere in between, so this never overspends."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._spent: list[list[float]] = []  # [time, weight]; time = inf while in flight
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(limits.parallel)
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def _reserve(self, weight: int) -> list[float]:
        weight = min(weight, self.limits.units)
        while True:
            async with self._lock:
                now = time.monotonic()
                self._spent = [e for e in self._spent if e[0] > now - self.limits.window]
                used = sum(int(w) for _, w in self._spent)
                wait = self._paused_until - now
                if wait <= 0 and used + weight <= self.limits.units:
                    entry = [float("inf"), float(weight)]
                    self._spent.append(entry)
                    return entry
                if wait <= 0:
                    # Sleep until enough of the window has expired to fit this request.
                    freed, wait = 0, self.limits.window / 10
                    for stamp, spent in sorted(self._spent):
                        freed += int(spent)
                        wait = stamp + self.limits.window - now
                        if used - freed + weight <= self.limits.units:
                            break
            await asyncio.sleep(min(max(wait, 0.001), self.limits.window))

    @asynccontextmanager
    async def slot(self, weight: int = 1) -> AsyncIterator[None]:
        async with self._slots:
            entry = await self._reserve(weight)
            try:
                yield
            finally:
                entry[0] = time.monotonic()


#: Limiters per event loop and credential, so that every client of one MoySklad user in a process
#: shares one budget (the server counts per user).
_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, Limits], RateLimiter]] = (
    weakref.WeakKeyDictionary()
)


def shared_limiter(key: str, limits: Limits) -> RateLimiter:
    per_loop = _LIMITERS.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get((key, limits))
    if limiter is None:
        limiter = per_loop[(key, limits)] = RateLimiter(limits)
    return limiter


def _error_summary(response: httpx.Response) -> str:
    """`code N: text` of the first MoySklad error in the body, or '' for a non-JSON body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    errors = body if isinstance(body, list) else body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        if "errors" in first and isinstance(first["errors"], list) and first["errors"]:
            first = first["errors"][0]
        text = str(first.get("error", ""))[:300]
        code = first.get("code")
        return f"code {code}: {text}" if code is not None else text
    return ""


def _refusal(response: httpx.Response) -> ProviderError:
    status = response.status_code
    detail = _error_summary(response)
    suffix = f" — {detail}" if detail else ""
    if status == 401:
        return ProviderError("MoySklad rejected the credentials (401)", status=401)
    if status == 403:
        return ProviderError(f"MoySklad denied access (403){suffix}", status=403)
    if status == 404:
        return ProviderError(f"MoySklad has no such resource (404){suffix}", status=404)
    if status == 412:
        return ProviderError(f"MoySklad refused the request as invalid (412){suffix}", status=412)
    if status == 415:
        return ProviderError("MoySklad refused the request encoding (415)", status=415)
    if status == 410:
        return ProviderError(f"MoySklad no longer serves this API version (410){suffix}", status=410)
    return ProviderError(f"MoySklad refused the request ({status}){suffix}", status=status)


def _header_ms(response: httpx.Response, name: str) -> float | None:
    raw = response.headers.get(name)
    try:
        return float(raw) / 1000 if raw is not None else None
    except ValueError:
        return None


class MoySkladClient:
    """One integration's connection to MoySklad. Use `get_json`; close with `aclose`."""

    def __init__(
        self,
        ctx: ProviderContext,
        *,
        limits: Limits | None = None,
        retry_attempts: int = 5,
        backoff_seconds: float = 1.0,
        rate_limit_retries: int = 5,
        timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.ctx = ctx
        self.base_url = (ctx.base_url or DEFAULT_BASE_URL).rstrip("/")
        creds = ctx.credentials
        self._static_token = creds.get("token") or None
        self._login = creds.get("login") or None
        self._password = creds.get("password") or None
        if not self._static_token and not (self._login and self._password):
            raise ProviderError("MoySklad credentials need a token or a login and password")
        identity = self._static_token or f"{self._login}"
        key = hashlib.sha256(f"{self.base_url}\n{identity}".encode()).hexdigest()
        limits = limits or Limits()
        self.limiter = shared_limiter(key, limits)
        # The account's budget shared with every other worker process (SPEC §20.15).
        self.budget = shared_budget(
            account_key("moysklad", key), limits.units / limits.window, limits.units, get_settings().redis_url
        )
        self.retry_attempts = max(1, retry_attempts)
        self.backoff_seconds = backoff_seconds
        self.rate_limit_retries = rate_limit_retries
        self._token_lock = asyncio.Lock()
        self.tokens_issued = 0
        # Checked and pinned to the checked addresses (DNS rebinding), redirects included.
        self._http = guarded_client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            headers={
                "Accept": "application/json;charset=utf-8",
                "Accept-Encoding": "gzip",
                "User-Agent": USER_AGENT,
            },
            limits=httpx.Limits(max_connections=limits.parallel if limits else 4, keepalive_expiry=25),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- auth ------------------------------------------------------------------------------------

    def _token(self) -> str | None:
        if self._static_token:
            return str(self._static_token)
        token = self.ctx.state.get("token")
        return str(token) if token else None

    async def _issue_token(self, stale: str | None) -> str:
        """Get a token for login/password, once: issuing one revokes the user's other tokens."""
        async with self._token_lock:
            current = self.ctx.state.get("token")
            if current and current != stale:
                return str(current)  # another request already re-issued it
            basic = httpx.BasicAuth(self._login or "", self._password or "")
            response = await self._with_retries("POST", "/security/token", None, 1, auth=basic)
            if response.status_code != 200:
                raise _refusal(response)
            token = self._decode(response).get("access_token") if response.content else None
            if not isinstance(token, str) or not token:
                raise ProviderError("MoySklad did not return an access token", status=response.status_code)
            self.ctx.state["token"] = token
            self.tokens_issued += 1
            return token

    # -- requests --------------------------------------------------------------------------------

    async def get_json(self, path: str, params: dict[str, Any] | None = None, *, weight: int = 1) -> Any:
        """GET `path` (relative to the base URL) and return the decoded JSON body."""
        return await self.request("GET", path, params=params, weight=weight)

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, weight: int = 1
    ) -> Any:
        reauthed = False
        while True:
            token = self._token()
            if token is None:
                token = await self._issue_token(None)
            bearer = {"Authorization": f"Bearer {token}"}
            response = await self._with_retries(method, path, params, weight, headers=bearer)
            if response.status_code == 401 and self._login and not reauthed:
                reauthed = True
                await self._issue_token(token)
                continue
            if response.status_code >= 400:
                raise _refusal(response)
            return self._decode(response)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        return json_body(response, "MoySklad")

    async def _with_retries(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        weight: int,
        *,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.retry_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.backoff_seconds,
                jitter=self.backoff_seconds,
                max=max(30.0, self.backoff_seconds),
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(method, path, params, weight, headers, auth)
        except _Transient as exc:
            status = f" ({exc.status})" if exc.status else ""
            raise unavailable(
                "MoySklad", f"{status}: {exc.message}", self.retry_attempts, exc.status
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        weight: int,
        headers: dict[str, str] | None,
        auth: httpx.Auth | None,
    ) -> httpx.Response:
        """One request, repeated after 429 answers for as long as the server asks us to wait."""
        for _ in range(self.rate_limit_retries + 1):
            response = await self._send(
                method, path, params=params, weight=weight, headers=headers, auth=auth
            )
            if response.status_code == 429:
                await self.budget.pause(self._back_off(response))
                continue
            if response.status_code >= 500:
                raise _Transient(f"server error {response.status_code}", response.status_code)
            self._watch_budget(response)
            return response
        raise ProviderError(
            f"MoySklad rate limit still exceeded after {self.rate_limit_retries} waits (429)",
            status=429,
            retryable=True,
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        weight: int = 1,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        async with self.limiter.slot(weight):
            await self.budget.acquire(weight)
            with request_errors("MoySklad"):
                if auth is not None:
                    return await self._http.request(method, path, params=params, headers=headers, auth=auth)
                return await self._http.request(method, path, params=params, headers=headers)

    def _back_off(self, response: httpx.Response) -> float:
        """Pause the credential's budget for the time the server names (ms), plus a little jitter;
        returns the pause (the shared budget pauses every process as long)."""
        after = _header_ms(response, "X-Lognex-Retry-After")
        reset = _header_ms(response, "X-Lognex-Reset")
        delay = max(after or 0.0, reset or 0.0) or 3.0
        delay += random.uniform(0.01, 0.1)  # noqa: S311 - jitter, not a secret
        self.limiter.pause(delay)
        return delay

    def _watch_budget(self, response: httpx.Response) -> None:
        """Slow down when the server says the window is nearly spent."""
        remaining = response.headers.get("X-RateLimit-Remaining")
        limit = response.headers.get("X-RateLimit-Limit")
        interval = _header_ms(response, "X-Lognex-Retry-TimeInterval")
        try:
            if remaining is not None and limit and interval and int(remaining) <= 2:
                self.limiter.pause(interval / max(int(limit), 1))
        except ValueError:
            return

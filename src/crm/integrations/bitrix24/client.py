"""HTTP client for the Bitrix24 REST API through an inbound webhook (`/rest/<user>/<secret>/<method>`).

Requests are JSON POSTs, one at a time per portal, paced by the portal's shared budget (a leaky bucket
of 2 requests/s with bursts below the portal's 50, kept in Redis for every worker process).
`QUERY_LIMIT_EXCEEDED` (503) and `OPERATION_TIME_LIMIT` (429) pause the whole portal with a doubling
wait and are retried; 5xx and timeouts are retried with backoff and jitter; auth failures become
`ProviderError`s that say what to fix. The webhook secret is part of every URL, so no URL is ever put
into a message or a log line (httpx's own request log is held at WARNING)."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx
import orjson

from crm.config import get_settings
from crm.integrations.answers import Transient as _Transient
from crm.integrations.answers import json_body, request_errors, unavailable
from crm.integrations.base import ProviderContext, ProviderError
from crm.integrations.budget import Budget, account_key, shared_budget
from crm.integrations.ssrf import guarded_client

USER_AGENT = "crm-sync/1.0"
PAGE_SIZE = 50
MAX_BATCH = 50

# httpx logs every request URL at INFO; a Bitrix24 URL carries the webhook secret.
logging.getLogger("httpx").setLevel(logging.WARNING)

_AUTH_ERRORS = {
    "INVALID_CREDENTIALS": "Bitrix24 rejected the webhook credentials (INVALID_CREDENTIALS): "
    "check the webhook user id and secret",
    "NO_AUTH_FOUND": "Bitrix24 found no valid authorization (NO_AUTH_FOUND): check the inbound webhook",
    "expired_token": "Bitrix24 says the access token has expired (expired_token): "
    "the webhook may have reached its expiry date; create a new one",
    "invalid_token": "Bitrix24 does not recognise the token (invalid_token)",
    "insufficient_scope": "The Bitrix24 webhook lacks a permission (insufficient_scope): "
    "it needs the crm and user scopes",
    "ACCESS_DENIED": "Bitrix24 denied access (ACCESS_DENIED): REST may not be available on this plan",
    "user_access_error": "Bitrix24 denied the webhook user access (user_access_error)",
    "PORTAL_DELETED": "The Bitrix24 portal was deleted (PORTAL_DELETED)",
    "OVERLOAD_LIMIT": "Bitrix24 has blocked REST calls of this portal (OVERLOAD_LIMIT); ask its support",
}


def _envelope(response: httpx.Response) -> tuple[str, str]:
    """(`error`, `error_description`) of an error answer ('' when the body is not the envelope)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error") or "")[:100], str(body.get("error_description") or "")[:300]


class Bitrix24Client:
    """One integration's connection to its portal. Use `call` and `batch`; close with `aclose`."""

    def __init__(
        self,
        ctx: ProviderContext,
        *,
        rate: float = 2.0,
        burst: int = 40,
        retry_attempts: int = 5,
        backoff_seconds: float = 1.0,
        limit_waits: int = 10,
        timeout: float = 60.0,
        shared: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = (ctx.base_url or "").strip().rstrip("/")
        if not base:
            raise ProviderError("Bitrix24 needs the portal address as base_url")
        creds = ctx.credentials
        user = str(creds.get("webhook_user_id") or "").strip()
        secret = str(creds.get("webhook_secret") or "").strip()
        if not user or not secret:
            raise ProviderError("Bitrix24 credentials need webhook_user_id and webhook_secret")
        self.base_url = base
        self._prefix = f"/rest/{user}/{secret}/"
        self.retry_attempts = max(1, retry_attempts)
        self.backoff_seconds = backoff_seconds
        self.limit_waits = limit_waits
        redis_url = get_settings().redis_url if shared else None
        self.budget: Budget = shared_budget(account_key("bitrix24", base, user), rate, burst, redis_url)
        self._one = asyncio.Semaphore(1)
        # Checked and pinned to the checked addresses (DNS rebinding), redirects included.
        self._http = guarded_client(
            base_url=base,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=2, keepalive_expiry=25),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole answer (`result`, `next`, `total`, `time`) of one method."""
        delay = self.backoff_seconds
        waits = 0
        attempt = 0
        while True:
            try:
                response = await self._send(method, params or {})
            except _Transient as exc:
                attempt += 1
                if attempt >= self.retry_attempts:
                    shown = f" ({exc.status})" if exc.status else ""
                    raise unavailable("Bitrix24", f"{shown}: {exc.message}", attempt, exc.status) from None
                pause = min(30.0, self.backoff_seconds * 2 ** (attempt - 1))
                await asyncio.sleep(pause + random.uniform(0, self.backoff_seconds))  # noqa: S311
                continue
            status = response.status_code
            if status == 200:
                body = json_body(response, "Bitrix24")
                if not isinstance(body, dict):
                    raise ProviderError("Bitrix24 returned an unexpected answer", status=200)
                return body
            error, description = _envelope(response)
            if (status == 503 and error in ("QUERY_LIMIT_EXCEEDED", "")) or error == "OPERATION_TIME_LIMIT":
                waits += 1
                if waits > self.limit_waits:
                    raise ProviderError(
                        f"Bitrix24 still over its limit ({error or status}) after {self.limit_waits} waits",
                        status=status,
                        retryable=True,
                    )
                # The whole portal waits, every process of ours included; the wait doubles.
                await self.budget.pause(delay + random.uniform(0, delay / 10))  # noqa: S311
                delay = min(delay * 2, 30.0)
                continue
            if error in _AUTH_ERRORS:
                raise ProviderError(_AUTH_ERRORS[error], status=status)
            if status in (401, 403):
                raise ProviderError(f"Bitrix24 refused access ({status} {error})".strip(), status=status)
            if status == 404:
                raise ProviderError(
                    f"Bitrix24 does not know the method {method} (404): check the portal address and the "
                    "webhook user id and secret",
                    status=404,
                )
            if status >= 500:
                attempt += 1
                if attempt >= self.retry_attempts:
                    raise unavailable("Bitrix24", f" ({status} {error})".replace(" )", ")"), attempt, status)
                await asyncio.sleep(min(30.0, self.backoff_seconds * 2 ** (attempt - 1)))
                continue
            detail = f"{error}: {description}" if error else description
            raise ProviderError(f"Bitrix24 refused {method} ({status}) — {detail}"[:500], status=status)

    async def batch(
        self, commands: dict[str, tuple[str, dict[str, Any]]]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Run up to 50 method calls in one request; (results, errors, totals, nexts) by name."""
        if len(commands) > MAX_BATCH:
            raise ValueError("a batch holds at most 50 commands")
        cmd = {name: f"{method}?{php_query(params)}" for name, (method, params) in commands.items()}
        body = await self.call("batch", {"halt": 0, "cmd": cmd})
        outer = body.get("result")
        if not isinstance(outer, dict):
            raise ProviderError("Bitrix24 returned an unexpected batch answer")

        def part(name: str) -> dict[str, Any]:
            value = outer.get(name)
            return value if isinstance(value, dict) else {}  # PHP sends [] for an empty map

        return part("result"), part("result_error"), part("result_total"), part("result_next")

    async def _send(self, method: str, params: dict[str, Any]) -> httpx.Response:
        async with self._one:
            await self.budget.acquire()
            with request_errors("Bitrix24"):
                return await self._http.post(
                    f"{self._prefix}{method}.json",
                    content=orjson.dumps(params),
                    headers={"Content-Type": "application/json"},
                )


def php_query(params: dict[str, Any]) -> str:
    """Parameters as a PHP-style query string (`filter[>ID]=5&select[]=ID`), for batch commands."""
    from urllib.parse import urlencode

    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}[{key}]", item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(f"{prefix}[]", item)
        elif isinstance(value, bool):
            pairs.append((prefix, "Y" if value else "N"))
        else:
            pairs.append((prefix, "" if value is None else str(value)))

    for key, value in params.items():
        walk(key, value)
    return urlencode(pairs)

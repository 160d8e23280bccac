"""What providers' HTTP clients make of an answer they cannot use: shared wording of the errors a job
shows (never a URL: some carry credentials)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from crm.integrations.base import ProviderError
from crm.integrations.ssrf import UrlNotAllowed


class Transient(Exception):
    """A failure worth another attempt (5xx, timeout, dropped connection)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@contextlib.contextmanager
def request_errors(provider: str) -> Iterator[None]:
    """Around sending a request: a refused URL fails the job (`ProviderError`); timeouts and broken
    connections are `Transient`, named by their kind only (their text may hold the URL)."""
    try:
        yield
    except UrlNotAllowed as exc:
        raise ProviderError(f"{provider} URL refused: {exc.reason}") from None
    except httpx.TimeoutException:
        raise Transient("timed out") from None
    except httpx.TransportError as exc:
        raise Transient(f"connection failed ({type(exc).__name__})") from None


def json_body(response: httpx.Response, provider: str) -> Any:
    """The answer's JSON; a `ProviderError` naming the provider when it is not JSON."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        status = response.status_code
        raise ProviderError(f"{provider} returned malformed JSON ({status})", status=status) from None


def unavailable(provider: str, reason: str, attempts: int, status: int | None = None) -> ProviderError:
    """A retryable error after the last attempt: `reason` follows the provider's name (" (503)",
    ": timed out")."""
    return ProviderError(
        f"{provider} is unavailable{reason} after {attempts} attempts", status=status, retryable=True
    )

"""SSRF guard for URLs the server calls on a tenant's behalf (integration base URLs, redirects).

Rules (SPEC §12, §17, §19.11): http(s) only, https in production, no credentials in the URL; after DNS
resolution no loopback, private, shared, reserved or multicast address unless private addresses are
allowed (`ALLOW_PRIVATE_INTEGRATION_URLS`); link-local (169.254/16, fe80::/10) and unspecified
(0.0.0.0/8, ::) addresses are refused always. IPv4 addresses embedded in IPv6 (mapped, 6to4, NAT64)
are judged as the IPv4 address they carry.

Outbound calls go through `guarded_client()` (or `PinnedTransport` directly): the host name is resolved
once per connection, every address is checked, and the connection is made to the checked address —
never to a second answer from DNS (DNS rebinding). The Host header, TLS SNI and certificate
verification still use the host name. Redirects are new requests: checked and pinned the same way.
See docs/integrations-admin.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from crm.config import get_settings
from crm.core.errors import UnprocessableEntity

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: How long a DNS lookup may take before the URL is refused.
RESOLVE_TIMEOUT = 5.0
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


class UrlNotAllowed(UnprocessableEntity):
    """A URL the server refuses to call; a 422 naming the field it came from."""

    code = "url_not_allowed"

    def __init__(self, reason: str, *, field: str = "base_url") -> None:
        loc: list[str] = ["body", *field.split(".")] if field else ["body"]
        super().__init__(
            f"{field}: {reason}" if field else reason,
            errors=[{"loc": loc, "msg": reason, "type": "url_not_allowed"}],
        )
        self.reason = reason


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_refusal(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why this address may not be called, or None when it may."""
    ip = _embedded_ipv4(ip)
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return f"{ip} is an unspecified address"
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return f"{ip} is a multicast or broadcast address"
    if allow_private:
        return None
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_reserved or not ip.is_global:
        return f"{ip} is a reserved address"
    return None


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(RESOLVE_TIMEOUT):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0])
        try:
            out.append(ipaddress.ip_address(raw))
        except ValueError:  # a scoped IPv6 literal the platform formats with `%zone`
            out.append(ipaddress.ip_address(raw.split("%", 1)[0]))
    return out


async def check_url(
    url: str,
    *,
    allow_private: bool,
    require_https: bool | None = None,
    field: str = "base_url",
    resolve: bool = True,
) -> None:
    """Raise `UrlNotAllowed` unless the server may call `url` (see the module rules).

    `require_https` defaults to "in production". A name that does not resolve is refused, except
    where private addresses are allowed (development and tests may have no DNS). With
    `resolve=False` only the URL itself is judged (an address literal included); the addresses a
    name resolves to are then checked by `PinnedTransport` when it connects."""
    if require_https is None:
        require_https = get_settings().environment == "production"
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise UrlNotAllowed("not a valid URL", field=field) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlNotAllowed("only http and https URLs are allowed", field=field)
    if require_https and scheme != "https":
        raise UrlNotAllowed("https is required", field=field)
    if not host:
        raise UrlNotAllowed("the URL has no host", field=field)
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed("credentials in the URL are not allowed", field=field)
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses: Iterable[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return
        try:
            addresses = await _resolve(host, port)
        except (OSError, UnicodeError, TimeoutError, ValueError):
            if allow_private:
                return
            raise UrlNotAllowed("the host name does not resolve", field=field) from None
    for ip in addresses:
        reason = address_refusal(ip, allow_private=allow_private)
        if reason is not None:
            raise UrlNotAllowed(f"not allowed: {reason}", field=field)


def allow_private_urls() -> bool:
    """`ALLOW_PRIVATE_INTEGRATION_URLS` as configured (default: true except in production)."""
    return bool(get_settings().allow_private_integration_urls)


def request_guard(
    *, allow_private: bool | None = None, resolve: bool = True
) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx `request` event hook that checks every request, redirects included:
    `httpx.AsyncClient(event_hooks={"request": [request_guard()]})`. With a `PinnedTransport`, pass
    `resolve=False`: the transport checks the addresses it connects to."""

    async def hook(request: httpx.Request) -> None:
        private = allow_private_urls() if allow_private is None else allow_private
        await check_url(str(request.url), allow_private=private, field="", resolve=resolve)

    return hook


async def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to for `host`, in the resolver's order, each once: every address
    the host has must pass (`UrlNotAllowed` otherwise); a host that does not resolve is an
    `httpcore.ConnectError`."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            addresses = await _resolve(host, port)
        except (OSError, UnicodeError, TimeoutError, ValueError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve") from exc
    if not addresses:
        raise httpcore.ConnectError(f"{host} does not resolve")
    for ip in addresses:
        reason = address_refusal(ip, allow_private=allow_private)
        if reason is not None:
            raise UrlNotAllowed(f"not allowed: {reason}", field="")
    return list(dict.fromkeys(addresses))


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the SSRF check at the one place a connection is made: the
    host is resolved once, every address it has is checked, and the socket is opened to a checked
    address. TLS is started afterwards by httpcore with the host name (SNI, certificate)."""

    def __init__(self, *, allow_private: bool | None = None) -> None:
        self.allow_private = allow_private
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        private = allow_private_urls() if self.allow_private is None else self.allow_private
        addresses = await checked_addresses(host, port, allow_private=private)
        last: Exception | None = None
        for ip in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed for outbound calls")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose connections go only to addresses that passed the SSRF check (see
    `GuardedNetworkBackend`). No proxies: a proxy would make the connection on our behalf."""

    def __init__(
        self,
        *,
        allow_private: bool | None = None,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
        http2: bool = False,
        retries: int = 0,
    ) -> None:
        super().__init__(verify=verify, limits=limits, http2=http2, retries=retries, trust_env=False)
        # httpx builds its pool without a way to pass a network backend: build the same pool with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            retries=retries,
            network_backend=GuardedNetworkBackend(allow_private=allow_private),
        )


def guarded_client(
    *,
    allow_private: bool | None = None,
    limits: httpx.Limits | None = None,
    verify: ssl.SSLContext | bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for URLs a tenant gave us (integrations, outbound webhooks): every
    request's URL is checked, and connections are pinned to checked addresses. `transport` replaces
    the pinned one (tests' mock transports); the URL check stays."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    pinned = transport is None
    hooks = dict(kwargs.pop("event_hooks", None) or {})
    hooks["request"] = [
        request_guard(allow_private=allow_private, resolve=not pinned),
        *hooks.get("request", []),
    ]
    return httpx.AsyncClient(
        transport=transport or PinnedTransport(allow_private=allow_private, limits=limits, verify=verify),
        event_hooks=hooks,
        trust_env=False,
        limits=limits,
        **kwargs,
    )


__all__ = [
    "GuardedNetworkBackend",
    "PinnedTransport",
    "UrlNotAllowed",
    "address_refusal",
    "allow_private_urls",
    "check_url",
    "guarded_client",
    "request_guard",
]

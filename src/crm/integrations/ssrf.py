"""SSRF guard for URLs the server calls on a tenant's behalf (integration base URLs, redirects).

Rules (SPEC §12, §17, §19.11): http(s) only, https in production, no credentials in the URL; after DNS
resolution no loopback, private, shared, reserved or multicast address unless private addresses are
allowed (`ALLOW_PRIVATE_INTEGRATION_URLS`); link-local (169.254/16, fe80::/10) and unspecified
(0.0.0.0/8, ::) addresses are refused always. IPv4 addresses embedded in IPv6 (mapped, 6to4, NAT64)
are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

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
    url: str, *, allow_private: bool, require_https: bool | None = None, field: str = "base_url"
) -> None:
    """Raise `UrlNotAllowed` unless the server may call `url` (see the module rules).

    `require_https` defaults to "in production". A name that does not resolve is refused, except
    where private addresses are allowed (development and tests may have no DNS)."""
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


def request_guard(*, allow_private: bool | None = None) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx `request` event hook that checks every request, redirects included:
    `httpx.AsyncClient(event_hooks={"request": [request_guard()]})`."""

    async def hook(request: httpx.Request) -> None:
        private = allow_private_urls() if allow_private is None else allow_private
        await check_url(str(request.url), allow_private=private, field="")

    return hook


__all__ = ["UrlNotAllowed", "address_refusal", "allow_private_urls", "check_url", "request_guard"]

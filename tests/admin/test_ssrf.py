from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest

from crm.integrations.ssrf import UrlNotAllowed, address_refusal, check_url, request_guard


class TestCheckUrl:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1/",
            "http://localhost:8080/x",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://192.168.1.10/",
            "http://172.16.5.4/",
            "http://100.64.0.1/",
            "http://[fc00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",  # 127.0.0.1 written as a number
        ],
    )
    async def test_private_refused_unless_allowed(self, url: str) -> None:
        with pytest.raises(UrlNotAllowed):
            await check_url(url, allow_private=False)
        await check_url(url, allow_private=True)

    @pytest.mark.parametrize(
        "url",
        [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
            "http://0.1.2.3/",
            "http://[::]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[2002:a9fe:a9fe::1]/",  # 6to4 around 169.254.169.254
            "http://224.0.0.1/",
        ],
    )
    async def test_link_local_unspecified_refused_always(self, url: str) -> None:
        with pytest.raises(UrlNotAllowed):
            await check_url(url, allow_private=True)

    @pytest.mark.parametrize(
        "url",
        ["ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "//example.com", "http:///x"],
    )
    async def test_scheme_and_host(self, url: str) -> None:
        with pytest.raises(UrlNotAllowed):
            await check_url(url, allow_private=True)

    async def test_credentials_in_url_refused(self) -> None:
        with pytest.raises(UrlNotAllowed, match="credentials"):
            await check_url("https://user:pw@example.com/", allow_private=True)

    async def test_https_required_in_production(self, override_settings: Any) -> None:
        with pytest.raises(UrlNotAllowed, match="https"):
            await check_url("http://93.184.216.34/", allow_private=False, require_https=True)
        await check_url("https://93.184.216.34/", allow_private=False, require_https=True)
        override_settings(environment="production")
        with pytest.raises(UrlNotAllowed, match="https"):
            await check_url("http://93.184.216.34/", allow_private=False)

    async def test_public_address_allowed(self) -> None:
        await check_url("https://93.184.216.34/api", allow_private=False)

    async def test_unresolvable_name(self) -> None:
        with pytest.raises(UrlNotAllowed, match="resolve"):
            await check_url("https://no-such-host.invalid/", allow_private=False)
        await check_url("https://no-such-host.invalid/", allow_private=True)

    async def test_error_names_field(self) -> None:
        with pytest.raises(UrlNotAllowed) as caught:
            await check_url("http://169.254.1.1/", allow_private=True, field="url")
        assert caught.value.extra["errors"][0]["loc"] == ["body", "url"]
        assert caught.value.code == "url_not_allowed"
        assert caught.value.status == 422

    def test_address_refusal(self) -> None:
        assert address_refusal(ipaddress.ip_address("8.8.8.8"), allow_private=False) is None
        assert address_refusal(ipaddress.ip_address("64:ff9b::a9fe:a9fe"), allow_private=True)


async def test_request_guard_stops_redirect_to_private_address() -> None:
    """A provider client with the guard follows no redirect into the private network."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "93.184.216.34":
            return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest"})
        return httpx.Response(200, text="secret")

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler),
        event_hooks={"request": [request_guard(allow_private=False)]},
        follow_redirects=True,
    ) as http:
        with pytest.raises(UrlNotAllowed):
            await http.get("https://93.184.216.34/start")

"""The MoySklad HTTP client against the fake server over real HTTP: auth, gzip, rate limits,
retries and error envelopes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from crm.integrations.base import ProviderError
from crm.integrations.moysklad.client import Limits, MoySkladClient, format_filter_moment, parse_moment
from tests.fakes.moysklad import FakeConfig, FakeMoySklad, entity_id
from tests.integrations.moysklad.conftest import context


def client_for(
    fake: FakeMoySklad, credentials: dict[str, str] | None = None, **kwargs: object
) -> MoySkladClient:
    ctx = context(fake, credentials)
    options: dict[str, object] = {"backoff_seconds": 0.01, "limits": Limits(45, 3.0, 4), **kwargs}
    return MoySkladClient(ctx, **options)  # type: ignore[arg-type]


class TestFormats:
    def test_moscow_time_round_trip(self) -> None:
        moment = parse_moment("2024-05-20 14:03:11.482")
        assert moment.isoformat() == "2024-05-20T11:03:11.482000+00:00"
        assert format_filter_moment(moment) == "2024-05-20 14:03:11"
        assert parse_moment("2024-05-20 14:03").isoformat() == "2024-05-20T11:03:00+00:00"
        with pytest.raises(ValueError, match="not a MoySklad date-time"):
            parse_moment("20.05.2024")


class TestAuth:
    async def test_bearer_token_and_gzip(self, fake: FakeMoySklad) -> None:
        client = client_for(fake)
        body = await client.get_json("/entity/product", {"limit": 5})
        await client.aclose()
        assert len(body["rows"]) == 5
        [request] = fake.requests
        assert request.headers["authorization"] == f"Bearer {fake.config.token}"
        assert request.headers["accept-encoding"] == "gzip"
        assert request.headers["accept"] == "application/json;charset=utf-8"
        assert request.headers["content-type"] == ""  # no Content-Type on GET
        assert fake.tokens_issued == 0

    async def test_fake_refuses_without_gzip(self, fake: FakeMoySklad) -> None:
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{fake.base_url}/entity/product",
                headers={"Authorization": f"Bearer {fake.config.token}", "Accept-Encoding": "identity"},
            )
            gzipped = await http.get(
                f"{fake.base_url}/entity/product",
                headers={"Authorization": f"Bearer {fake.config.token}", "Accept-Encoding": "gzip"},
            )
        assert response.status_code == 415
        assert response.content == b""
        assert gzipped.headers["content-encoding"] == "gzip"
        assert gzipped.headers["x-ratelimit-limit"] == "45"

    async def test_login_password_obtains_a_token_once(self, fake: FakeMoySklad) -> None:
        creds = {"login": fake.config.login, "password": fake.config.password}
        client = client_for(fake, creds)
        await asyncio.gather(*(client.get_json("/entity/store") for _ in range(5)))
        token = client.ctx.state["token"]
        # A later run with the saved state reuses the token instead of revoking it.
        again = MoySkladClient(client.ctx, backoff_seconds=0.01)
        await again.get_json("/entity/store")
        await client.aclose()
        await again.aclose()
        assert fake.tokens_issued == 1
        assert fake.tokens == {token}
        [issue] = fake.requests_to("/security/token")
        assert issue.method == "POST"
        assert issue.headers["authorization"].startswith("Basic ")
        entity_calls = fake.requests_to("/entity/store")
        assert len(entity_calls) == 6
        assert {r.headers["authorization"] for r in entity_calls} == {f"Bearer {token}"}

    async def test_token_reissued_after_401(self, fake: FakeMoySklad) -> None:
        creds = {"login": fake.config.login, "password": fake.config.password}
        client = client_for(fake, creds)
        client.ctx.state["token"] = "revoked-token"
        body = await client.get_json("/entity/store")
        await client.aclose()
        assert body["meta"]["size"] == fake.config.stores
        assert fake.tokens_issued == 1
        assert client.ctx.state["token"] != "revoked-token"
        assert [r.status for r in fake.requests] == [401, 200, 200]

    async def test_wrong_token_is_a_clear_error_without_retries(self, fake: FakeMoySklad) -> None:
        client = client_for(fake, {"token": "wrong-token-value"})
        with pytest.raises(ProviderError) as caught:
            await client.get_json("/entity/product")
        await client.aclose()
        assert caught.value.message == "MoySklad rejected the credentials (401)"
        assert caught.value.status == 401
        assert not caught.value.retryable
        assert len(fake.requests) == 1

    async def test_wrong_password_never_shows_the_password(self, fake: FakeMoySklad) -> None:
        client = client_for(fake, {"login": fake.config.login, "password": "hunter2-wrong"})
        with pytest.raises(ProviderError) as caught:
            await client.get_json("/entity/product")
        await client.aclose()
        assert caught.value.status == 401
        assert "hunter2" not in str(caught.value)
        assert fake.config.login not in str(caught.value)
        assert fake.tokens_issued == 0

    async def test_credentials_required(self, fake: FakeMoySklad) -> None:
        with pytest.raises(ProviderError, match="token or a login and password"):
            client_for(fake, {"login": "only-login"})


class TestRateLimits:
    async def test_429_storm_is_honoured(self, fake: FakeMoySklad) -> None:
        fake.force_429(3, retry_after_ms=150)
        client = client_for(fake)
        started = time.monotonic()
        body = await client.get_json("/entity/product", {"limit": 1})
        await client.aclose()
        assert len(body["rows"]) == 1
        assert time.monotonic() - started >= 0.45
        assert [r.status for r in fake.requests] == [429, 429, 429, 200]
        assert fake.early_requests == 0

    @pytest.mark.parametrize("fake", [FakeConfig(rate_limit=6, window=1.0)], indirect=True)
    async def test_server_budget_exceeded_by_a_greedy_client(self, fake: FakeMoySklad) -> None:
        client = client_for(fake, limits=Limits(45, 1.0, 4))
        results = await asyncio.gather(*(client.get_json("/entity/store") for _ in range(14)))
        await client.aclose()
        assert len(results) == 14
        statuses = [r.status for r in fake.requests]
        assert statuses.count(200) == 14
        assert 429 in statuses
        assert fake.early_requests == 0

    @pytest.mark.parametrize("fake", [FakeConfig(rate_limit=6, window=1.0)], indirect=True)
    async def test_client_budget_keeps_within_the_server_limit(self, fake: FakeMoySklad) -> None:
        client = client_for(fake, limits=Limits(6, 1.0, 4))
        await asyncio.gather(*(client.get_json("/entity/store") for _ in range(13)))
        await client.aclose()
        assert [r.status for r in fake.requests] == [200] * 13

    @pytest.mark.parametrize("fake", [FakeConfig(parallel_limit=2, latency=0.05)], indirect=True)
    async def test_parallel_requests_capped(self, fake: FakeMoySklad) -> None:
        client = client_for(fake, limits=Limits(45, 3.0, 2))
        await asyncio.gather(*(client.get_json("/entity/store") for _ in range(8)))
        await client.aclose()
        assert [r.status for r in fake.requests] == [200] * 8

    async def test_clients_of_one_credential_share_the_budget(self, fake: FakeMoySklad) -> None:
        first, second = client_for(fake, limits=Limits(3, 1.0, 4)), client_for(fake, limits=Limits(3, 1.0, 4))
        assert first.limiter is second.limiter
        started = time.monotonic()
        await asyncio.gather(*(c.get_json("/entity/store") for c in (first, second) for _ in range(3)))
        await first.aclose()
        await second.aclose()
        assert time.monotonic() - started >= 0.9  # 6 requests at 3 per second


class TestRetries:
    async def test_5xx_retried_then_success(self, fake: FakeMoySklad) -> None:
        fake.fault(path="/entity/product", status=503, times=2)
        client = client_for(fake)
        body = await client.get_json("/entity/product", {"limit": 2})
        await client.aclose()
        assert len(body["rows"]) == 2
        assert [r.status for r in fake.requests] == [503, 503, 200]

    async def test_persistent_5xx_fails_the_request(self, fake: FakeMoySklad) -> None:
        fake.fault(path="/entity/product", kind="html503", status=503, times=None)
        client = client_for(fake, retry_attempts=3)
        with pytest.raises(ProviderError) as caught:
            await client.get_json("/entity/product")
        await client.aclose()
        assert caught.value.status == 503
        assert caught.value.retryable
        assert "after 3 attempts" in caught.value.message
        assert len(fake.requests) == 3

    async def test_4xx_not_retried_and_envelope_shown(self, fake: FakeMoySklad) -> None:
        client = client_for(fake)
        missing = entity_id("product", 99999)
        with pytest.raises(ProviderError) as caught:
            await client.get_json(f"/entity/product/{missing}")
        await client.aclose()
        assert caught.value.status == 404
        assert "code 1021" in caught.value.message
        assert missing in caught.value.message
        assert len(fake.requests) == 1

    async def test_bad_filter_is_a_400(self, fake: FakeMoySklad) -> None:
        client = client_for(fake)
        with pytest.raises(ProviderError) as caught:
            await client.get_json("/entity/product", {"filter": "updated>=yesterday"})
        await client.aclose()
        assert caught.value.status == 400
        assert "code 1035" in caught.value.message
        assert len(fake.requests) == 1

    async def test_malformed_json(self, fake: FakeMoySklad) -> None:
        fake.fault(path="/entity/product", kind="malformed")
        client = client_for(fake)
        with pytest.raises(ProviderError, match="malformed JSON"):
            await client.get_json("/entity/product")
        await client.aclose()
        assert len(fake.requests) == 1

    @pytest.mark.parametrize("fake", [FakeConfig(latency=0.5)], indirect=True)
    async def test_timeouts_retried_then_fail(self, fake: FakeMoySklad) -> None:
        client = client_for(fake, retry_attempts=2, timeout=0.1)
        with pytest.raises(ProviderError) as caught:
            await client.get_json("/entity/store")
        await client.aclose()
        assert caught.value.retryable
        assert "timed out" in caught.value.message
        await asyncio.sleep(0.6)  # let the fake finish the abandoned requests
        assert len(fake.requests) == 2

    async def test_refused_url(self, fake: FakeMoySklad) -> None:
        ctx = context(fake)
        ctx.base_url = "http://169.254.169.254/api/remap/1.2"
        client = MoySkladClient(ctx)
        with pytest.raises(ProviderError, match="URL refused"):
            await client.get_json("/entity/product")
        await client.aclose()

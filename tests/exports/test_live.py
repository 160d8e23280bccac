"""Against a live server process (uvicorn, console logs as a developer runs it): exports with a NUL in
a filter are clean 422s, and `/health` keeps answering fast while they arrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient

from crm.config import Settings
from tests.factories import PASSWORD, add_member, make_org, make_user
from tests.live_server import run_live_server


@pytest.fixture
def live_server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with run_live_server(settings, tmp_path / "api.log", LOG_FORMAT="console", LOG_LEVEL="INFO") as server:
        yield server.base


async def test_nul_exports_on_a_live_server_leave_health_fast(
    app: Any, committing_client: AsyncClient, live_server: str
) -> None:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "owner")
        await session.commit()
        email, org_id = user.email, org.id

    async with httpx.AsyncClient(base_url=live_server, timeout=30) as live:
        login = await live.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        headers = {
            "Authorization": f"Bearer {login.json()['access_token']}",
            "X-Organization-ID": str(org_id),
        }
        warm = await live.get("/api/v1/exports/contacts?q=%00", headers=headers)
        assert warm.status_code == 422, warm.text
        health_times: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                answer = await live.get("/health")
                health_times.append(time.perf_counter() - start)
                assert answer.status_code == 200
                await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe())
        paths = [
            f"/api/v1/exports/{entity}?format={fmt}&q=x%00y"
            for entity in ("contacts", "companies", "deals")
            for fmt in ("csv", "xlsx")
        ] * 3
        answers = await asyncio.gather(*(live.get(path, headers=headers) for path in paths))
        await asyncio.sleep(0.2)
        stop.set()
        await prober

    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "validation_error"
        assert answer.headers["cache-control"] == "no-store"
    assert health_times
    assert max(health_times) < 0.5, max(health_times)

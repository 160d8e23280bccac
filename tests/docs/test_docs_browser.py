"""`/docs` and `/redoc` in a real headless Chromium with every other host blocked (SPEC §20.9):
the pages render from the service's own assets, and a newcomer authorizes once (email, password,
organization) and runs an operation with Try it out.

The browser is the system's Chromium (`apt-get install chromium`, which `make test` does on Debian);
playwright drives it, no browser is downloaded. Without Chromium the test is skipped and says so."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.models import Base
from tests.conftest import ROOT
from tests.factories import PASSWORD, add_member, make_org, make_user

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)

SCREENSHOTS = Path(os.environ.get("CRM_SCREENSHOT_DIR", tempfile.gettempdir()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(settings: object) -> Iterator[str]:
    """The API in a uvicorn process of its own, on the test database and Redis."""
    port = int(os.environ.get("CRM_DOCS_TEST_PORT", 0)) or _free_port()
    log = (SCREENSHOTS / f"crm-docs-server-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "crm.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the live server did not start (see {log.name})")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
async def stored_user(app: object) -> AsyncIterator[tuple[str, int]]:
    """A committed user who owns one organization; every table is emptied afterwards."""
    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as db:  # type: ignore[attr-defined]
        user = await make_user(db)
        org = await make_org(db, name="Docs Org")
        await add_member(db, org, user, "owner")
        await db.commit()
        email, org_id = user.email, org.id
    try:
        yield email, org_id
    finally:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


async def test_docs_work_offline_and_authorize_once(live_server: str, stored_user: tuple[str, int]) -> None:
    from playwright.async_api import Route, async_playwright

    email, org_id = stored_user
    own_host = urlsplit(live_server).netloc
    foreign: list[str] = []

    async def only_own_host(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own_host:
            await route.continue_()
        else:
            foreign.append(route.request.url)
            await route.abort()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 1000})
            await context.route("**/*", only_own_host)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # Swagger UI renders the operations from local assets only.
            await page.goto(f"{live_server}/docs")
            await page.wait_for_selector(".opblock", timeout=30_000)
            assert await page.locator(".opblock").count() > 100
            assert await page.locator(".opblock-summary-path", has_text="/api/v1/contacts").count() > 0

            # Authorize once: email and password (OAuth2 password flow), then the organization.
            await page.click("button.authorize")
            await page.wait_for_selector(".auth-container")
            assert not await page.locator("#client_id_password").is_visible()
            assert not await page.locator("#client_secret_password").is_visible()
            assert await page.locator("#oauth_username").is_visible()
            await page.fill("#oauth_username", email)
            await page.fill("#oauth_password", PASSWORD)
            oauth = page.locator(".auth-container", has=page.locator("#oauth_username"))
            await oauth.locator("button.authorize").click()
            await page.wait_for_selector("text=Logout", timeout=15_000)
            organization = page.locator(".auth-container", has_text="X-Organization-ID")
            await organization.locator("input").fill(str(org_id))
            await organization.locator("button.authorize").click()
            await page.screenshot(path=str(SCREENSHOTS / "crm-docs-authorize.png"))
            await page.click("button.btn-done")

            # Try it out: create a contact with the default example, then list contacts.
            block = page.locator(
                ".opblock-post", has=page.locator(".opblock-summary-path[data-path='/api/v1/contacts']")
            )
            await block.locator(".opblock-summary").click()
            await block.locator("button.try-out__btn").click()
            await block.locator("button.execute").click()
            status = block.locator(".live-responses-table tbody .response-col_status").first
            await status.wait_for(timeout=15_000)
            assert (await status.inner_text()).strip() == "201"
            listing = page.locator(
                ".opblock-get", has=page.locator(".opblock-summary-path[data-path='/api/v1/contacts']")
            )
            await listing.locator(".opblock-summary").click()
            await listing.locator("button.try-out__btn").click()
            await listing.locator("button.execute").click()
            status = listing.locator(".live-responses-table tbody .response-col_status").first
            await status.wait_for(timeout=15_000)
            assert (await status.inner_text()).strip() == "200"
            body = await listing.locator(
                ".live-responses-table tbody .response-col_description pre"
            ).first.inner_text()
            assert "Anna Petrova" in body
            await page.screenshot(path=str(SCREENSHOTS / "crm-docs-try-it-out.png"), full_page=False)

            # ReDoc renders from local assets too, without web fonts from elsewhere.
            await page.goto(f"{live_server}/redoc")
            await page.wait_for_selector("h1", timeout=30_000)
            await page.wait_for_selector("text=contacts", timeout=30_000)
            await page.screenshot(path=str(SCREENSHOTS / "crm-redoc.png"))
            assert errors == []
        finally:
            await browser.close()
    assert foreign == [], f"the docs asked other hosts for: {foreign}"

    # What was created through the browser is stored in the organization.
    async with httpx.AsyncClient(base_url=live_server) as http:
        response = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        token = response.json()["access_token"]
        listing = await http.get(
            "/api/v1/contacts", headers={"Authorization": f"Bearer {token}", "X-Organization-ID": str(org_id)}
        )
    contacts = listing.json()
    assert [c["full_name"] for c in contacts["items"]] == ["Anna Petrova"]


def test_docs_pages_reference_no_other_host(live_server: str) -> None:
    for path in ("/docs", "/redoc"):
        html = httpx.get(f"{live_server}{path}").text
        assert "https://" not in html, path
        assert "http://" not in html, path
        assert "/docs-assets/" in html
    for asset in ("redoc.standalone.js", "swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        response = httpx.get(f"{live_server}/docs-assets/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 100
    assert b"cdn.redoc.ly" not in httpx.get(f"{live_server}/docs-assets/redoc.standalone.js").content

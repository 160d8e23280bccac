"""Swagger UI and ReDoc served entirely by the service (SPEC §20.9).

Corporate networks often have no internet: every script, style sheet and icon of `/docs` and
`/redoc` comes from the service itself (the assets ship in the `fastapi-offline` package), ReDoc's
web fonts are off (it would load them from Google), and Swagger UI's online validator badge is off.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

#: Where the assets are served from.
ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

#: The Authorize dialog of the OAuth2 password flow asks for a client id and secret and explains
#: scopes, none of which this API uses: hide those so that it asks for the email (username) and
#: password only.
_AUTHORIZE_CSS = """
<style>
.auth-container .wrapper:has(> section > #client_id_password),
.auth-container .wrapper:has(> section > #client_secret_password),
.auth-container .wrapper:has(> section > #password_type),
.auth-container .scope-def { display: none; }
</style>
"""


#: ReDoc's bundle shows a "powered by" logo fetched from the vendor's CDN; it is served pointing at
#: the service's own icon instead.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def _redoc_bundle() -> bytes:
    return (
        (ASSETS_DIR / "redoc.standalone.js")
        .read_bytes()
        .replace(_REDOC_LOGO, f"{ASSETS_URL}/favicon.png".encode())
    )


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve `/docs` (Swagger UI), its OAuth2 redirect page and `/redoc` from local assets.
    The app must be created with `docs_url=None, redoc_url=None`."""
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    redoc_bundle = _redoc_bundle()

    @app.get(f"{ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(
            redoc_bundle,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    parameters = {"validatorUrl": None, **(app.swagger_ui_parameters or {})}

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=parameters,
        )
        html = bytes(page.body).decode().replace("</head>", f"{_AUTHORIZE_CSS}</head>", 1)
        return HTMLResponse(html)

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

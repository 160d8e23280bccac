"""The API's default response class."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse


class ApiJSONResponse(JSONResponse):
    """JSON, except that an answer without a body (204, 304) has no `Content-Type` either (§20.12)."""

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        super().init_headers(headers)
        if self.status_code in (204, 304):
            self.raw_headers = [
                (name, value)
                for name, value in self.raw_headers
                if name not in (b"content-type", b"content-length")
            ]
            self.body = b""

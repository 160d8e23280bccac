"""Helpers for import tests: upload a file over HTTP, run the job body, read the job back."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from httpx import AsyncClient, Response
from openpyxl import Workbook
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.imports.engine import run_import
from tests.factories import Actor

URL = "/api/v1/imports"


def csv_bytes(rows: list[list[Any]], delimiter: str = ",", bom: bool = False) -> bytes:
    lines = []
    for row in rows:
        cells = []
        for value in row:
            text = "" if value is None else str(value)
            if any(c in text for c in (delimiter, '"', "\n")):
                text = '"' + text.replace('"', '""') + '"'
            cells.append(text)
        lines.append(delimiter.join(cells))
    data = ("\r\n".join(lines) + "\r\n").encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def with_cached_values(content: bytes, values: dict[str, str]) -> bytes:
    """Give formula cells a cached result, as Excel stores it on save (`{"C2": "84"}`)."""
    source = zipfile.ZipFile(io.BytesIO(content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                xml = data.decode()
                for ref, value in values.items():
                    xml, n = re.subn(
                        rf'(<c r="{ref}"[^>]*>)<f>([^<]*)</f><v\s*/?>(</v>)?',
                        rf"\1<f>\2</f><v>{value}</v>",
                        xml,
                    )
                    assert n == 1, xml
                data = xml.encode()
            target.writestr(item, data)
    return out.getvalue()


async def upload(
    client: AsyncClient,
    actor: Actor,
    content: bytes,
    entity: str,
    *,
    filename: str = "data.csv",
    **form: Any,
) -> Response:
    data = {"entity": entity}
    for key, value in form.items():
        data[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return await client.post(
        URL, headers=actor.headers, files={"file": (filename, content, "application/octet-stream")}, data=data
    )


async def run_job(
    app: Any, maker: async_sessionmaker[AsyncSession], job_id: int, chunk_rows: int = 2000
) -> None:
    """The job body in-process, on the test's transaction."""
    await run_import(job_id, maker=maker, redis=app.state.redis, chunk_rows=chunk_rows)


async def import_file(
    client: AsyncClient,
    app: Any,
    maker: async_sessionmaker[AsyncSession],
    actor: Actor,
    content: bytes,
    entity: str,
    **form: Any,
) -> dict[str, Any]:
    """Upload (202), run the job, return `GET /imports/{id}`."""
    response = await upload(client, actor, content, entity, **form)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    await run_job(app, maker, job_id)
    response = await client.get(f"{URL}/{job_id}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body

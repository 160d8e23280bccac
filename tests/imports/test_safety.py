"""Uploads are checked before anything parses them (SPEC §20.6): a workbook that unzips too far (a ZIP
bomb, a part compressed beyond 100:1, a workbook over `IMPORT_MAX_UNZIPPED_MB`) is 413
`import_too_large` with nothing stored, the API's event loop stays free while it is checked, and a
workbook whose ZIP directory lies about its sizes cannot make the worker inflate more than it says."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zipfile
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from httpx import AsyncClient, Response
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.config import Settings
from crm.models import Contact, ImportJob, ImportUpload
from tests.factories import Factory, add_member, assert_problem, login, make_org, make_user
from tests.imports.support import URL, csv_bytes, run_job, upload, xlsx_bytes
from tests.workers import Worker, celery_worker

T = TypeVar("T")

SHEET = "xl/worksheets/sheet1.xml"
_ROW = (
    b'<row><c t="inlineStr"><is><t>Bomb</t></is></c>'
    b'<c t="inlineStr"><is><t>bomb@example.com</t></is></c></row>'
)
_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    b'<row><c t="inlineStr"><is><t>full_name</t></is></c><c t="inlineStr"><is><t>email</t></is></c></row>'
)
_TAIL = b"</sheetData></worksheet>"


def _deflated(data: bytes, *, final: bool) -> bytes:
    """`data` as raw deflate blocks that refer to nothing before them (so such pieces can be repeated
    and concatenated into one valid stream); `final` ends the stream."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A ZIP archive of already deflated members `(name, deflated, crc32, unzipped size)`."""
    out, directory = bytearray(), bytearray()
    for name, data, crc, size in members:
        offset, encoded = len(out), name.encode()
        fields = (8, 0, 33, crc, len(data), size, len(encoded))
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, *fields, 0) + encoded + data
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0, offset)
        directory += encoded
    count = len(members)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(out), 0)
    return bytes(out + directory + end)


def bomb(unzipped_mib: int) -> bytes:
    """A real workbook (openpyxl's own parts) whose sheet is `unzipped_mib` MiB of one repeated row,
    deflated at level 9 (≈ 290:1). The repeated MiB is deflated once and its deflate blocks repeated,
    so building it takes well under a second."""
    source = zipfile.ZipFile(io.BytesIO(xlsx_bytes([["full_name", "email"], ["A", "a@example.com"]])))
    members = []
    for item in source.infolist():
        if item.filename != SHEET:
            data = source.read(item.filename)
            members.append((item.filename, _deflated(data, final=True), zlib.crc32(data), len(data)))
    block = _ROW * (1024 * 1024 // len(_ROW))
    piece = _deflated(block, final=False)
    crc = zlib.crc32(_HEAD)
    for _ in range(unzipped_mib):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(_TAIL, crc)
    sheet = _deflated(_HEAD, final=False) + piece * unzipped_mib + _deflated(_TAIL, final=True)
    members.append((SHEET, sheet, crc, len(_HEAD) + len(block) * unzipped_mib + len(_TAIL)))
    return _zip(members)


@pytest.fixture(scope="module")
def big_bomb() -> bytes:
    """≈ 1 MB that unzips to 300 MiB (over the 200 MiB cap)."""
    return bomb(300)


async def _timed(
    client: AsyncClient, work: Callable[[], Awaitable[T]], until: Callable[[], bool] | None = None
) -> tuple[T, float]:
    """Run `work` while `/health` is asked every 20 ms on the same event loop; returns its result and
    the slowest `/health` answer in seconds."""
    done = asyncio.Event()
    slowest = 0.0
    answers = 0

    async def watch() -> None:
        nonlocal slowest, answers
        while not done.is_set():
            started = time.perf_counter()
            response = await client.get("/health")
            assert response.status_code == 200, response.text
            slowest = max(slowest, time.perf_counter() - started)
            answers += 1
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        result = await work()
    finally:
        done.set()
        await watcher
    assert answers >= 1
    return result, slowest


async def _stored(db: AsyncSession) -> tuple[int | None, int | None]:
    jobs = await db.scalar(select(func.count()).select_from(ImportJob))
    uploads = await db.scalar(select(func.count()).select_from(ImportUpload))
    return jobs, uploads


async def test_a_zip_bomb_is_413_before_parsing_and_the_loop_stays_free(
    client: AsyncClient, db: AsyncSession, factory: Factory, big_bomb: bytes
) -> None:
    actor = await factory.actor("manager")
    assert len(big_bomb) < 2 * 1024 * 1024
    # The first request to a router in a process spends a while in FastAPI's lazy route set-up (seconds
    # on a busy machine), whatever its body: a harmless upload and a first `/health` take that cost
    # before the measurement.
    assert_problem(await upload(client, actor, b"", "contacts"), 422, "import_file_invalid")
    assert (await client.get("/health")).status_code == 200

    async def post() -> Response:
        return await upload(client, actor, big_bomb, "contacts", filename="people.xlsx")

    started = time.perf_counter()
    response, slowest = await _timed(client, post)
    elapsed = time.perf_counter() - started

    body = assert_problem(response, 413, "import_too_large")
    assert "200 MiB" in body["detail"], body
    assert elapsed < 5.0, elapsed
    assert slowest < 0.2, slowest
    assert await _stored(db) == (0, 0)


async def test_a_part_compressed_beyond_100_to_1_is_413(
    client: AsyncClient, db: AsyncSession, factory: Factory
) -> None:
    """Under the size cap, but one part unzips ≈ 300 times its size."""
    actor = await factory.actor("manager")
    response = await upload(client, actor, bomb(20), "contacts", filename="people.xlsx")
    body = assert_problem(response, 413, "import_too_large")
    assert "xl/worksheets/sheet1.xml" in body["detail"], body
    assert "at most 100" in body["detail"], body
    assert await _stored(db) == (0, 0)


def _plain_workbook(rows: int) -> bytes:
    """A legitimate workbook (varied values: compresses ≈ 5–10:1)."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(["full_name", "email", "phone", "job_title"])
    for i in range(rows):
        sheet.append(
            [f"Person {i}", f"p{i}@example.com", f"+7 921 {i % 1000:03d}-{i % 97:02d}-11", f"Job {i}"]
        )
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


async def test_the_unzipped_cap_is_the_import_max_unzipped_mb_setting(
    client: AsyncClient,
    app: Any,
    test_maker: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    factory: Factory,
    override_settings: Callable[..., None],
) -> None:
    actor = await factory.actor("manager")
    content = _plain_workbook(20_000)  # ≈ 1.6 MiB unzipped
    override_settings(import_max_unzipped_mb=1)
    response = await upload(client, actor, content, "contacts", filename="people.xlsx")
    body = assert_problem(response, 413, "import_too_large")
    assert "1 MiB" in body["detail"], body
    assert await _stored(db) == (0, 0)

    override_settings(import_max_unzipped_mb=200)
    response = await upload(client, actor, content, "contacts", filename="people.xlsx")
    assert response.status_code == 202, response.text
    await run_job(app, test_maker, response.json()["id"], chunk_rows=5000)
    job = (await client.get(f"{URL}/{response.json()['id']}", headers=actor.headers)).json()
    assert (job["status"], job["created"], job["processed_rows"]) == ("succeeded", 20_000, 20_000)


def _lying_directory(content: bytes, name: str, claimed: int) -> bytes:
    """The workbook with the central directory's unzipped size of `name` replaced by `claimed`."""
    data = bytearray(content)
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_length] == name.encode():
            struct.pack_into("<I", data, at + 24, claimed)
            return bytes(data)
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} not in the central directory")


async def test_a_directory_that_lies_about_sizes_cannot_inflate_the_read(
    client: AsyncClient,
    app: Any,
    test_maker: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    factory: Factory,
    big_bomb: bytes,
) -> None:
    """The directory claims 4 KiB for a sheet that holds 300 MiB: the check passes on the claim, and
    the worker's read stops at the claimed size (then fails on the CRC): the job fails with a reason,
    nothing is stored, the upload is dropped."""
    actor = await factory.actor("manager")
    content = _lying_directory(big_bomb, SHEET, 4096)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.getinfo(SHEET).file_size == 4096

    response = await upload(client, actor, content, "contacts", filename="people.xlsx")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    started = time.perf_counter()
    await run_job(app, test_maker, job_id)
    assert time.perf_counter() - started < 5.0

    job = (await client.get(f"{URL}/{job_id}", headers=actor.headers)).json()
    assert job["status"] == "failed", job
    assert "cannot be read" in job["error"], job
    assert job["created"] == 0
    count = await db.scalar(
        select(func.count()).select_from(Contact).where(Contact.organization_id == actor.org_id)
    )
    assert count == 0
    assert await db.scalar(select(func.count()).select_from(ImportUpload)) == 0


async def test_csv_is_checked_whole_but_in_bounded_pieces(
    client: AsyncClient, db: AsyncSession, factory: Factory
) -> None:
    """Only the header row is read at upload, but a CSV broken far from its start is still refused."""
    actor = await factory.actor("manager")
    rows = [["full_name", "email"], *[[f"Person {i}", f"p{i}@example.com"] for i in range(100_000)]]
    content = csv_bytes(rows) + b"Broken,\xff\xfe@example.com\r\n"
    assert len(content) > 2 * 1024 * 1024
    response = await upload(client, actor, content, "contacts")
    body = assert_problem(response, 422, "import_file_invalid")
    assert body["detail"] == "a CSV file must be UTF-8 text"
    assert await _stored(db) == (0, 0)


async def test_workbook_mapping_targets_are_checked_at_upload_and_columns_by_the_worker(
    client: AsyncClient,
    app: Any,
    test_maker: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    factory: Factory,
) -> None:
    """A workbook's headers are not read at upload: a mapping to an unknown field is 422 at once, one
    naming a column the sheet lacks fails the job with that reason."""
    actor = await factory.actor("manager")
    content = xlsx_bytes([["full_name", "email"], ["Ann", "ann@example.com"]])
    response = await upload(
        client, actor, content, "contacts", filename="a.xlsx", mapping='{"email": "nope"}'
    )
    assert_problem(response, 422, "import_mapping_invalid")
    response = await upload(
        client,
        actor,
        content,
        "contacts",
        filename="a.xlsx",
        mapping='{"Name": "full_name", "X": "full_name"}',
    )
    assert_problem(response, 422, "import_mapping_invalid")
    assert await _stored(db) == (0, 0)

    response = await upload(
        client, actor, content, "contacts", filename="a.xlsx", mapping='{"Missing": "email"}'
    )
    assert response.status_code == 202, response.text
    await run_job(app, test_maker, response.json()["id"])
    job = (await client.get(f"{URL}/{response.json()['id']}", headers=actor.headers)).json()
    assert (job["status"], job["error"]) == ("failed", "mapping: the file has no column 'Missing'")
    assert await db.scalar(select(func.count()).select_from(ImportUpload)) == 0


@pytest.fixture
def import_worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with celery_worker(settings, tmp_path, name="imports-safety") as worker:
        yield worker


async def test_health_stays_fast_while_a_large_workbook_is_uploaded_and_imported(
    app: Any, committing_client: AsyncClient, import_worker: Worker
) -> None:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "manager")
        await session.commit()
    actor = await login(committing_client, user, org_id=org.id)
    rows = 30_000
    content = _plain_workbook(rows)
    # Past FastAPI's lazy route set-up of the first requests (see the ZIP bomb test).
    assert_problem(await upload(committing_client, actor, b"", "contacts"), 422, "import_file_invalid")
    assert (await committing_client.get("/health")).status_code == 200

    async def post_and_finish() -> dict[str, Any]:
        response = await upload(committing_client, actor, content, "contacts", filename="people.xlsx")
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert import_worker.process.poll() is None, import_worker.log()
            body: dict[str, Any] = (
                await committing_client.get(f"{URL}/{job_id}", headers=actor.headers)
            ).json()
            if body["status"] in ("succeeded", "failed"):
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(import_worker.log())

    job, slowest = await _timed(committing_client, post_and_finish)

    assert (job["status"], job["created"], job["processed_rows"]) == ("succeeded", rows, rows), job
    assert slowest < 0.2, slowest
    async with app.state.sessionmaker() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Contact).where(Contact.organization_id == org.id)
        )
        assert stored == rows

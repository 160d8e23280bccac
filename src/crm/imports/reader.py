"""Reading uploaded spreadsheets: format detection by content, the checks made before any parsing,
streamed rows of cell values.

At upload (in a thread, never on the API's event loop) only bounded work is done: a workbook's ZIP
central directory is read and its sizes checked (`check_workbook`); a CSV file is checked to be UTF-8
piece by piece and its header row is read from the first bytes (`inspect_csv`). Parsing happens in the
worker (`open_sheet`), which checks a workbook again before openpyxl sees it.
"""

from __future__ import annotations

import codecs
import csv
import io
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

from openpyxl import load_workbook

from crm.exports.cells import unescape_cell

Format = Literal["csv", "xlsx"]

#: A CSV cell may be long (descriptions), but not unbounded.
csv.field_size_limit(1024 * 1024)


#: A workbook member may unzip to at most this many times its compressed size (members of up to
#: `RATIO_FLOOR` bytes unzipped are exempt: small XML parts of repeated markup compress well and
#: cannot hurt).
MAX_RATIO = 100
RATIO_FLOOR = 1024 * 1024
#: Parts of a workbook (a spreadsheet has a few dozen; the central directory is read only below this).
MAX_MEMBERS = 10_000
#: Bytes of a CSV file read at upload for its header row.
CSV_HEAD_BYTES = 1024 * 1024

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22


class UnreadableFile(ValueError):
    """The upload is not a CSV or XLSX spreadsheet we can read."""


class FileTooLarge(ValueError):
    """A workbook that unzips beyond the limits (a ZIP bomb or simply too big to parse)."""


def detect_format(content: bytes) -> Format:
    """`xlsx` or `csv`, judged by the first bytes (the file name may lie). Cheap: nothing is parsed."""
    if not content.strip():
        raise UnreadableFile("the file is empty")
    if content.startswith(b"PK\x03\x04"):
        return "xlsx"
    if content.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnreadableFile("legacy .xls workbooks are not supported; save the file as XLSX or CSV")
    _decode(content[:65536], partial=True)
    return "csv"


def _zip_entries(content: bytes) -> int:
    """The member count of the end-of-central-directory record (read before anything else)."""
    tail = content[-(_EOCD_SIZE + 65535) :]
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise UnreadableFile("the file is a damaged ZIP archive, not a spreadsheet")
    entries: int = struct.unpack("<10xH", tail[at : at + 12])[0]
    return entries


def check_workbook(content: bytes, max_unzipped: int) -> None:
    """Refuse a workbook before it is parsed: from its ZIP central directory only, the sum of the
    members' unzipped sizes must stay within `max_unzipped` and each member's compression ratio within
    `MAX_RATIO`. Only stored and deflated members are accepted: Python's ZIP reader never returns more
    bytes than a member's recorded size (and fails on its CRC when the data holds more), so these
    recorded sizes bound what any later read decompresses."""
    if _zip_entries(content) > MAX_MEMBERS:
        raise UnreadableFile(f"the ZIP archive has more than {MAX_MEMBERS} members; not a spreadsheet")
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UnreadableFile("the file is a damaged ZIP archive, not a spreadsheet") from None
    if len(members) > MAX_MEMBERS:
        raise UnreadableFile(f"the ZIP archive has more than {MAX_MEMBERS} members; not a spreadsheet")
    if not any(m.filename == "xl/workbook.xml" for m in members):
        raise UnreadableFile("the ZIP archive is not an XLSX workbook")
    total = 0
    limit_mib = max_unzipped / (1024 * 1024)
    for member in members:
        if member.flag_bits & 0x1:
            raise UnreadableFile("encrypted workbooks are not supported; save it without a password")
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnreadableFile("the workbook uses a ZIP compression method spreadsheets do not use")
        total += member.file_size
        if total > max_unzipped:
            raise FileTooLarge(f"the workbook unzips to more than {limit_mib:g} MiB")
        if member.file_size > RATIO_FLOOR and member.file_size > MAX_RATIO * max(member.compress_size, 1):
            ratio = member.file_size / max(member.compress_size, 1)
            raise FileTooLarge(
                f"the workbook part {member.filename[:100]!r} unzips {ratio:.0f} times its size "
                f"(at most {MAX_RATIO})"
            )


def inspect_csv(content: bytes) -> list[str]:
    """Check that a CSV file is UTF-8 text throughout (piece by piece, bounded memory) and read its
    header row from the first `CSV_HEAD_BYTES`."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    piece = 1024 * 1024
    try:
        for start in range(0, len(content), piece):
            decoder.decode(content[start : start + piece], final=start + piece >= len(content))
    except UnicodeDecodeError:
        raise UnreadableFile("a CSV file must be UTF-8 text") from None
    text = _decode(content[:CSV_HEAD_BYTES], partial=True)
    try:
        header_row = next(csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text)), None)
    except csv.Error as exc:
        raise UnreadableFile(f"not a readable CSV file: {exc}") from None
    if header_row is None:
        raise UnreadableFile("the file is empty")
    return _headers(header_row)


def _delimiter(text: str) -> str:
    """`;`, `,` or tab, whichever the header line holds most."""
    first_line = text[:16384].split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    if first_line.count("\t") > max(first_line.count(";"), first_line.count(",")):
        delimiter = "\t"
    return delimiter


def _decode(content: bytes, *, partial: bool = False) -> str:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # A sample cut inside a multi-byte character is still UTF-8.
        if not (partial and exc.start >= len(content) - 3):
            raise UnreadableFile("a CSV file must be UTF-8 text") from None
        text = content[: exc.start].decode("utf-8-sig")
    if "\x00" in text or any(ord(c) < 32 and c not in "\t\r\n\f\v" for c in text[:65536]):
        raise UnreadableFile("the file is binary, not CSV text")
    return text


def cell_text(value: Any) -> str | None:
    """A cell as text: None when empty; whole numbers without `.0`; dates in ISO form; text trimmed,
    without the apostrophe exports put before a formula character."""
    if value is None:
        return None
    if isinstance(value, str):
        # Undo the export's formula-injection escaping (`'+7921…` → `+7921…`).
        value = unescape_cell(value.strip()).strip()
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (time, int, Decimal)):
        return str(value)
    return str(value).strip() or None


@dataclass
class Sheet:
    """The header row and a generator of `(row number, cells)`; the header is row 1."""

    headers: list[str]
    rows: Iterator[tuple[int, list[str | None]]]
    #: An estimate of the data rows (exact for CSV).
    estimated_rows: int


def open_sheet(content: bytes, file_format: Format, *, max_unzipped: int | None = None) -> Sheet:
    """The sheet's rows, streamed. A workbook is checked first (`check_workbook`) when `max_unzipped`
    is given. Blocking: call it from a thread."""
    if file_format == "xlsx":
        if max_unzipped is not None:
            check_workbook(content, max_unzipped)
        return _open_xlsx(content)
    return _open_csv(content)


def _headers(raw: list[Any]) -> list[str]:
    headers = [cell_text(v) or "" for v in raw]
    while headers and not headers[-1]:
        headers.pop()
    if not any(headers):
        raise UnreadableFile("the first row must hold the column headers")
    return headers


def _numbered(
    records: Iterable[Iterable[Any]], broken: Callable[[int, Exception], UnreadableFile | None]
) -> Iterator[tuple[int, list[str | None]]]:
    """The non-empty rows with their numbers in the file (the headers are row 1). A reader's error
    becomes the `UnreadableFile` that `broken(row, error)` gives for it; without one it stays as it is."""
    number = 1
    try:
        for record in records:
            number += 1
            cells = [cell_text(v) for v in record]
            if any(c is not None for c in cells):
                yield number, cells
    except (UnreadableFile, MemoryError):
        raise
    except Exception as exc:
        error = broken(number + 1, exc)
        if error is None:
            raise
        raise error from None


def _open_csv(content: bytes) -> Sheet:
    text = _decode(content)
    delimiter = _delimiter(text)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header_row = next(reader, None)
        if header_row is None:
            raise UnreadableFile("the file is empty")
        headers = _headers(header_row)
        estimated = sum(1 for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)) - 1
    except csv.Error as exc:
        raise UnreadableFile(f"not a readable CSV file: {exc}") from None

    def broken(row: int, exc: Exception) -> UnreadableFile | None:
        return UnreadableFile(f"row {row}: {exc}") if isinstance(exc, csv.Error) else None

    return Sheet(headers, _numbered(reader, broken), max(estimated, 0))


def _open_xlsx(content: bytes) -> Sheet:
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except MemoryError:
        raise
    except Exception:  # openpyxl raises many kinds on a broken workbook
        raise UnreadableFile("the XLSX workbook cannot be read") from None
    sheet = workbook.worksheets[0] if workbook.worksheets else None
    if sheet is None:
        workbook.close()
        raise UnreadableFile("the workbook has no sheets")
    iterator = sheet.iter_rows(values_only=True)
    try:
        first = next(iterator, None)
    except MemoryError:
        workbook.close()
        raise
    except Exception:
        workbook.close()
        raise UnreadableFile("the XLSX workbook cannot be read") from None
    if first is None:
        workbook.close()
        raise UnreadableFile("the file is empty")
    try:
        headers = _headers(list(first))
    except UnreadableFile:
        workbook.close()
        raise
    estimated = max((sheet.max_row or 1) - 1, 0)

    def broken(row: int, _exc: Exception) -> UnreadableFile:
        return UnreadableFile(f"row {row} of the workbook cannot be read")

    def rows() -> Iterator[tuple[int, list[str | None]]]:
        try:
            yield from _numbered(iterator, broken)
        finally:
            workbook.close()

    return Sheet(headers, rows(), estimated)

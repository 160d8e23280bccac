"""Reading uploaded spreadsheets: format detection by content, streamed rows of cell values."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

from openpyxl import load_workbook

from crm.exports.cells import unescape_cell

Format = Literal["csv", "xlsx"]

#: A CSV cell may be long (descriptions), but not unbounded.
csv.field_size_limit(1024 * 1024)


class UnreadableFile(ValueError):
    """The upload is not a CSV or XLSX spreadsheet we can read."""


def detect_format(content: bytes) -> Format:
    """`xlsx` or `csv`, judged by the bytes themselves (the file name may lie)."""
    if not content.strip():
        raise UnreadableFile("the file is empty")
    if content.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            raise UnreadableFile("the file is a damaged ZIP archive, not a spreadsheet") from None
        if "xl/workbook.xml" not in names:
            raise UnreadableFile("the ZIP archive is not an XLSX workbook")
        return "xlsx"
    if content.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnreadableFile("legacy .xls workbooks are not supported; save the file as XLSX or CSV")
    _decode(content[:65536], partial=True)
    return "csv"


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


def open_sheet(content: bytes, file_format: Format) -> Sheet:
    return _open_xlsx(content) if file_format == "xlsx" else _open_csv(content)


def read_headers(content: bytes, file_format: Format) -> list[str]:
    """Only the header row (for checks at upload time)."""
    sheet = open_sheet(content, file_format)
    headers = sheet.headers
    close = getattr(sheet.rows, "close", None)
    if close is not None:
        close()
    return headers


def _headers(raw: list[Any]) -> list[str]:
    headers = [cell_text(v) or "" for v in raw]
    while headers and not headers[-1]:
        headers.pop()
    if not any(headers):
        raise UnreadableFile("the first row must hold the column headers")
    return headers


def _open_csv(content: bytes) -> Sheet:
    text = _decode(content)
    sample = text[:16384]
    first_line = sample.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    if first_line.count("\t") > max(first_line.count(";"), first_line.count(",")):
        delimiter = "\t"
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header_row = next(reader, None)
        if header_row is None:
            raise UnreadableFile("the file is empty")
        headers = _headers(header_row)
        estimated = sum(1 for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)) - 1
    except csv.Error as exc:
        raise UnreadableFile(f"not a readable CSV file: {exc}") from None

    def rows() -> Iterator[tuple[int, list[str | None]]]:
        number = 1
        try:
            for record in reader:
                number += 1
                cells = [cell_text(v) for v in record]
                if any(c is not None for c in cells):
                    yield number, cells
        except csv.Error as exc:
            raise UnreadableFile(f"row {number + 1}: {exc}") from None

    return Sheet(headers, rows(), max(estimated, 0))


def _open_xlsx(content: bytes) -> Sheet:
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds on a broken workbook
        raise UnreadableFile("the XLSX workbook cannot be read") from None
    sheet = workbook.worksheets[0] if workbook.worksheets else None
    if sheet is None:
        workbook.close()
        raise UnreadableFile("the workbook has no sheets")
    iterator = sheet.iter_rows(values_only=True)
    try:
        first = next(iterator, None)
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

    def rows() -> Iterator[tuple[int, list[str | None]]]:
        number = 1
        try:
            for record in iterator:
                number += 1
                cells = [cell_text(v) for v in record]
                if any(c is not None for c in cells):
                    yield number, cells
        except UnreadableFile:
            raise
        except Exception:
            raise UnreadableFile(f"row {number + 1} of the workbook cannot be read") from None
        finally:
            workbook.close()

    return Sheet(headers, rows(), estimated)

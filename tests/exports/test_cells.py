"""The formula-injection escaping of exported text cells and its inverse used by the import."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from crm.exports.cells import escape_cell, needs_escape, unescape_cell
from crm.exports.service import csv_cell, xlsx_text


class TestEscapeCell:
    @pytest.mark.parametrize(
        ("text", "escaped"),
        [
            ("=1+2", "'=1+2"),
            ("+79213451948", "'+79213451948"),
            ("-minus", "'-minus"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tTab", "'\tTab"),
            ("\rCR", "'\rCR"),
            ("'=already", "''=already"),
            ("''", "'''"),
        ],
    )
    def test_formula_starts_are_prefixed(self, text: str, escaped: str) -> None:
        assert escape_cell(text) == escaped
        assert needs_escape(text)

    @pytest.mark.parametrize("text", ["", "plain", "Иван", "'", "'abc", "a=b", "1-2", " =x", "2026-11-23"])
    def test_other_text_is_unchanged(self, text: str) -> None:
        assert escape_cell(text) == text
        assert unescape_cell(text) == text

    @given(st.text())
    def test_unescape_inverts_escape(self, text: str) -> None:
        assert unescape_cell(escape_cell(text)) == text

    @given(st.text())
    def test_escaped_text_never_starts_a_formula(self, text: str) -> None:
        escaped = escape_cell(text)
        assert not escaped or escaped[0] not in "=+-@\t\r"


class TestCells:
    def test_numbers_are_written_as_numbers(self) -> None:
        assert csv_cell(-5) == "-5"
        assert csv_cell(Decimal("-10.50")) == "-10.50"
        assert csv_cell(2.5) == "2.5"
        assert csv_cell(None) == ""
        assert csv_cell("-5") == "'-5"  # the same characters as text are escaped

    @given(st.text())
    def test_xlsx_text_round_trips_through_unescape(self, text: str) -> None:
        assert unescape_cell(xlsx_text(text)) == ILLEGAL_CHARACTERS_RE.sub("", text)

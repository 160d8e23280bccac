"""Cell text rules shared by exports and imports: formula (CSV) injection escaping and its inverse.

A text cell that a spreadsheet would read as a formula — one starting with `=`, `+`, `-`, `@`, a tab or a
carriage return — is written with a leading apostrophe (`+79213451948` → `'+79213451948`). So that the
rule can be undone exactly, a value that already starts with an apostrophe followed by one of those
characters or by another apostrophe gets one more apostrophe too. `unescape_cell` removes exactly one
leading apostrophe when it is followed by such a character, so `unescape_cell(escape_cell(s)) == s` for
every string. Numbers written as numbers (amounts, ids, counts) are never escaped.
"""

from __future__ import annotations

from typing import Final

#: First characters that make a spreadsheet evaluate a cell (OWASP "CSV injection").
FORMULA_TRIGGERS: Final = frozenset("=+-@\t\r")
ESCAPE: Final = "'"
_AFTER_ESCAPE: Final = FORMULA_TRIGGERS | {ESCAPE}


def needs_escape(text: str) -> bool:
    """Whether `escape_cell` would prefix `text`."""
    if not text:
        return False
    if text[0] in FORMULA_TRIGGERS:
        return True
    return text[0] == ESCAPE and len(text) > 1 and text[1] in _AFTER_ESCAPE


def escape_cell(text: str) -> str:
    """`text` safe to open in a spreadsheet: prefixed with `'` when it could start a formula."""
    return ESCAPE + text if needs_escape(text) else text


def unescape_cell(text: str) -> str:
    """The inverse of `escape_cell`: drop one leading `'` placed before a formula character or `'`.
    Other text (`'abc`, a lone `'`) is returned unchanged."""
    if len(text) > 1 and text[0] == ESCAPE and text[1] in _AFTER_ESCAPE:
        return text[1:]
    return text

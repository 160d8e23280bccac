"""Small rules providers' mappings share for values kept as they came."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def flagged(
    value: str, key: str, check: Callable[[str], Any], warning: str, limit: int, warnings: list[str]
) -> str:
    """`value` as the source holds it: `warning` is added when our API would refuse it (`check` raises
    ValueError), and it is cut to `limit` characters (flagged `truncated_<key>`)."""
    try:
        check(value)
    except ValueError:
        warnings.append(warning)
    if len(value) > limit:
        warnings.append(f"truncated_{key.lower()}"[:50])
        value = value[:limit]
    return value

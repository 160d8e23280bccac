"""A memory budget for an import run by a worker (SPEC §20.6: parsing with bounded memory).

The workbook's sizes are checked before it is parsed, and openpyxl streams the sheet, but a workbook's
shared strings are held whole; the budget turns a file that still needs too much memory into a failed
job instead of a worker killed by the kernel (or a host out of memory). It is the process's data
limit (`RLIMIT_DATA`: heap and private writable mappings), raised to what the process held when the
job started plus the budget, and put back when the job ends (a worker pool process runs one job at a
time)."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from pathlib import Path


def _data_bytes() -> int | None:
    """The process's data size now (`VmData`), or None where /proc does not tell."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@contextlib.contextmanager
def memory_budget(extra_bytes: int) -> Iterator[None]:
    """Allow the process `extra_bytes` more data than it holds now until the block ends; a larger
    allocation then raises MemoryError. No-op when `extra_bytes` is 0 or the platform cannot do it,
    and never loosens a stricter limit set from outside."""
    current = _data_bytes() if extra_bytes > 0 else None
    if current is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = current + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        yield
        return
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))

"""Logging never holds up the event loop: tracebacks are plain (no locals), and writing to stdout
happens on a background thread however slow stdout is."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from typing import Any

import structlog

from crm.config import Settings
from crm.core.logging import BackgroundWriter, configure_logging, drain_logs


class BlockedStream(io.StringIO):
    """A stdout whose reader is stuck until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(10)
        return super().write(text)


def test_a_blocked_stdout_does_not_block_the_writer() -> None:
    stream = BlockedStream()
    writer = BackgroundWriter(stream)  # type: ignore[arg-type]

    start = time.perf_counter()
    for n in range(1000):
        writer.write(f"line {n}\n")
    elapsed = time.perf_counter() - start

    assert elapsed < 0.5
    assert stream.getvalue() == ""
    stream.release.set()
    writer.drain()
    assert stream.getvalue() == "".join(f"line {n}\n" for n in range(1000))


def _fail_with_big_locals() -> None:
    huge = {f"key{n}": list(range(50)) for n in range(20_000)}  # noqa: F841 - a local a renderer would walk
    raise ValueError("boom")


def _log_failure(fmt: str, settings: Settings) -> tuple[float, str]:
    buffer = io.StringIO()
    saved = sys.stdout
    sys.stdout = buffer
    try:
        configure_logging("INFO", fmt)
        log = structlog.get_logger("test")
        try:
            _fail_with_big_locals()
        except ValueError:
            # Only the logging is timed (building the locals takes a while on a loaded machine).
            start = time.perf_counter()
            log.exception("failed", path="/api/v1/exports/contacts")
            elapsed = time.perf_counter() - start
        drain_logs()
    finally:
        sys.stdout = saved
        configure_logging(settings.log_level, settings.log_format)
    return elapsed, buffer.getvalue()


def test_console_tracebacks_are_plain_and_fast(settings: Settings) -> None:
    elapsed, output = _log_failure("console", settings)

    assert elapsed < 1.0, elapsed  # rich tracebacks with locals took seconds here
    assert "Traceback (most recent call last)" in output
    assert "ValueError: boom" in output
    assert "'key0'" not in output  # no locals rendered
    assert "╭" not in output  # no rich panels


def test_json_tracebacks_are_plain_and_fast(settings: Settings) -> None:
    elapsed, output = _log_failure("json", settings)

    assert elapsed < 1.0, elapsed  # rich tracebacks with locals took seconds here
    record: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    assert record["event"] == "failed"
    assert "ValueError: boom" in record["exception"]
    assert "'key0'" not in output

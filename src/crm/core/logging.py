"""Structured logs: JSON lines on stdout (or plain console lines for humans).

Logging never holds up the event loop:

- exceptions are rendered as a plain traceback (no local variables, no rich rendering: walking
  the locals of a large request once took seconds on the loop);
- a line is only formatted where it is logged; writing it to stdout happens on one background
  thread (`BackgroundWriter`), so a slow or blocked reader of stdout (a full pipe, a slow
  terminal, a log shipper that lags) costs the request nothing.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import queue
import sys
import threading
from typing import TextIO, cast

import structlog


class BackgroundWriter(io.TextIOBase):
    """A text sink whose `write` only queues the text; a daemon thread writes it to `stream` in order.

    The thread is started lazily in each process (a forked worker gets its own thread and queue)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._pid != os.getpid():
            self._start()
        self._queue.put(text)
        return len(text)

    def flush(self) -> None:
        """Nothing to do here: the background thread flushes after every batch (see `drain`)."""

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # After a fork, the parent's queue and thread are not ours: start afresh.
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        q = self._queue
        while True:
            text = q.get()
            stop = text is None
            parts: list[str] = [] if text is None else [text]
            while not stop:
                try:
                    more = q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    parts.append(more)
            if parts:
                try:
                    self.stream.write("".join(parts))
                    self.stream.flush()
                except (OSError, ValueError):  # stdout closed or gone: drop the lines, keep serving
                    pass
            if stop:
                return

    def drain(self, timeout: float = 2.0) -> None:
        """Write out everything queued so far and stop the thread (at exit; tests that read stdout)."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        self._queue.put(None)
        thread.join(timeout)
        self._pid = None


_writer: BackgroundWriter | None = None


def drain_logs() -> None:
    """Write out every queued log line now."""
    if _writer is not None:
        _writer.drain()


def _stdout() -> TextIO:
    """The process's standard output as a real stream. A Celery worker replaces `sys.stdout` with a
    proxy that logs what is printed: writing log lines into it would feed them back to the logger."""
    if isinstance(sys.stdout, io.TextIOBase):
        return cast(TextIO, sys.stdout)
    return sys.__stdout__ or sys.stdout


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    global _writer
    stdout = _stdout()
    if _writer is None or _writer.stream is not stdout:
        if _writer is not None:
            _writer.drain()
        _writer = BackgroundWriter(stdout)
    writer = _writer
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        # A plain text traceback in the `exception` field; never `dict_tracebacks` (it collects locals).
        exceptions: structlog.types.Processor = structlog.processors.format_exc_info
        renderer = structlog.processors.JSONRenderer()
    else:
        exceptions = structlog.processors.UnicodeDecoder()
        renderer = structlog.dev.ConsoleRenderer(
            colors=stdout.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, writer)),
        cache_logger_on_first_use=True,
    )
    # Libraries that use the standard logging module go through the same renderer and writer.
    handler = logging.StreamHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *([structlog.processors.format_exc_info] if fmt == "json" else []),
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True


atexit.register(drain_logs)

"""A real `celery worker` process on the test database and the test run's own broker database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from redis import Redis as SyncRedis

from crm.config import Settings

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        """The end of the worker's output, for assertion messages."""
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self, seconds: float = 60) -> None:
        """Until the worker has connected and says it is ready."""
        deadline = time.monotonic() + seconds
        while "ready." not in self.log_path.read_text(errors="replace"):
            assert self.process.poll() is None, "the worker exited:\n" + self.log()
            assert time.monotonic() < deadline, "the worker did not get ready:\n" + self.log()
            time.sleep(0.2)


@contextlib.contextmanager
def celery_worker(
    settings: Settings,
    log_dir: Path,
    *,
    name: str,
    pool: str = "prefork",
    pythonpath: list[Path] | None = None,
    like_cli: bool = False,
    concurrency: int = 1,
) -> Iterator[Worker]:
    """Start `celery worker -Q crm` (prefork: one child, as in production; or `solo`), stop it after.

    The broker database belongs to this test run: messages left by an earlier run are dropped first.
    `pythonpath` puts extra distributions (test plugins) in front of the worker's import path.
    `like_cli` keeps gossip, mingle and event heartbeats on, as `crm worker` runs (`concurrency` 2 is
    its default)."""
    broker = SyncRedis.from_url(settings.celery_broker_url)
    broker.flushdb()
    broker.close()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            [*map(str, pythonpath), str(ROOT), os.environ.get("PYTHONPATH", "")]
        )
    pool_size = ["--concurrency", str(concurrency)] if pool == "prefork" else []
    log_path = log_dir / "worker.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "crm.worker.app:celery_app",
                "worker",
                "--pool",
                pool,
                *pool_size,
                "-Q",
                "crm",
                "--loglevel",
                "INFO",
                *([] if like_cli else ["--without-heartbeat", "--without-gossip", "--without-mingle"]),
                "--hostname",
                f"{name}-{uuid.uuid4().hex[:8]}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Worker(process, log_path)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)

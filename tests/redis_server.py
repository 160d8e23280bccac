"""A private `redis-server` on a free local port, to stop and start again for broker-outage tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError

from crm.worker.app import celery_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """`redis-server` without persistence: stopping it loses everything, as a crashed broker does."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:  # pragma: no cover - the suite needs Redis anyway
            pytest.skip("redis-server is not installed")
        log = (self.directory / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(RedisError):
                client = Redis(port=self.port, socket_connect_timeout=0.5)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """`SHUTDOWN NOSAVE`: the server goes away at once and forgets its queues."""
        if self.process is None:
            return
        with contextlib.suppress(RedisError):
            Redis(port=self.port, socket_connect_timeout=0.5).shutdown(nosave=True)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def app_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (the API's sends) at another broker for one test."""
    conf = celery_app.conf
    old = (conf.broker_url, conf.broker_read_url, conf.broker_write_url)

    def reset(to: tuple[str, str, str]) -> None:
        conf.broker_url, conf.broker_read_url, conf.broker_write_url = to
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    reset((url, url, url))
    try:
        yield
    finally:
        reset(old)

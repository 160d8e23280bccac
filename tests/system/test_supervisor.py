"""`scripts/run.sh` (the supervisor of `make run`) as a real process tree on a free port against
the test database and Redis: a worker killed with SIGKILL is started again while the API keeps
answering, and SIGTERM stops the API, the worker, beat and their children every time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crm.config import Settings
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("api", "worker", "beat")


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Run:
    def __init__(self, process: subprocess.Popen[bytes], run_dir: Path, port: int, log: Path) -> None:
        self.process, self.run_dir, self.port, self.log_path = process, run_dir, port, log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def pid(self, name: str) -> int | None:
        try:
            return int((self.run_dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def health(self) -> int:
        return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code

    def wait_up(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while True:
            assert self.process.poll() is None, "run.sh exited:\n" + self.log()
            assert time.monotonic() < deadline, "not up in time:\n" + self.log()
            try:
                up = self.health() == 200
            except httpx.HTTPError:
                up = False
            running = all(self.pid(n) and _alive(self.pid(n) or 0) for n in PROGRAMS)
            if up and running and "ready." in self.log():  # the worker consumes too
                return
            time.sleep(0.3)

    def stop(self, seconds: float = 40, sig: int = signal.SIGTERM) -> float:
        """`sig` to the supervisor; returns how long until it and every process below it were gone."""
        tree = _descendants(self.process.pid)
        assert len(tree) >= 3, tree
        began = time.monotonic()
        self.process.send_signal(sig)
        self.process.wait(timeout=seconds)
        while any(_alive(p) for p in tree):
            assert time.monotonic() - began < seconds, [p for p in tree if _alive(p)]
            time.sleep(0.1)
        return time.monotonic() - began


@pytest.fixture
def start_run(settings: Settings, tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(n: int) -> Run:
        port = free_port()
        run_dir = tmp_path / f"run{n}"
        log = tmp_path / f"run{n}.log"
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "CELERY_BROKER_URL": settings.celery_broker_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "CRM_RUN_DIR": str(run_dir),
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("CELERY_BEAT_SCHEDULE", None)
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        started.append(process)
        return Run(process, run_dir, port, log)

    yield start
    for process in started:
        if process.poll() is None:
            tree = _descendants(process.pid)
            process.kill()
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_a_killed_worker_is_restarted_while_the_api_serves_and_sigterm_stops_everything(
    start_run: object, tmp_path: Path
) -> None:
    run = start_run(0)  # type: ignore[operator]
    run.wait_up()
    api_pid, worker_pid = run.pid("api"), run.pid("worker")
    assert api_pid is not None
    assert worker_pid is not None
    # Files of this run live in its own run directory, not in /tmp.
    assert (run.run_dir / "supervisor.pid").read_text().strip() == str(run.process.pid)
    assert (run.run_dir / "celerybeat-schedule").exists() or any(
        p.name.startswith("celerybeat-schedule") for p in run.run_dir.iterdir()
    )

    os.kill(worker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    answered = 0
    while True:
        assert run.health() == 200  # the API keeps serving throughout
        answered += 1
        new = run.pid("worker")
        if new is not None and new != worker_pid and _alive(new):
            break
        assert time.monotonic() < deadline, "the worker was not restarted:\n" + run.log()
        time.sleep(0.2)
    assert not _alive(worker_pid)
    assert run.pid("api") == api_pid  # the others were left alone
    assert answered > 0
    assert "worker exited (status -9)" in run.log()

    took = run.stop()
    print(f"stopped in {took:.1f} s")
    assert took < 40
    assert run.process.returncode == 128 + signal.SIGTERM
    assert not any((run.run_dir / f"{n}.pid").exists() for n in (*PROGRAMS, "supervisor"))


@pytest.mark.parametrize(
    ("attempt", "sig"),
    [(1, signal.SIGTERM), (2, signal.SIGTERM), (3, signal.SIGINT)],
    ids=["1", "2", "3-ctrl-c"],
)
def test_sigterm_stops_all_three_every_time(start_run: object, attempt: int, sig: int) -> None:
    run = start_run(attempt)  # type: ignore[operator]
    run.wait_up()
    pids = [run.pid(n) for n in PROGRAMS]
    assert all(pids), pids

    took = run.stop(sig=sig)
    print(f"stopped in {took:.1f} s")

    assert took < 40
    assert run.process.returncode == 128 + sig
    assert not any(_alive(p or 0) for p in pids)
    with pytest.raises(httpx.HTTPError):
        run.health()

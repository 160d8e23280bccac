"""A small process supervisor for `make run`: keeps the API, the Celery worker and Celery beat up.

    python scripts/supervise.py [--run-dir DIR] [--stop-timeout S] NAME=COMMAND [NAME=COMMAND ...]

- Each program runs in a session (and process group) of its own, so a Ctrl-C typed in the
  terminal reaches only this supervisor, which then stops everything in order.
- A program that exits while the supervisor is not stopping is started again after a backoff
  (1 s, 2 s, 4 s … 30 s; back to 1 s once it has run for a minute); the others keep running.
- SIGINT, SIGTERM or SIGHUP stop every program: SIGTERM to each program's main process, then after
  `--stop-timeout` seconds SIGKILL to its whole process group (pool processes included), and
  SIGKILL to whatever of a group outlived its main process. A second signal while stopping kills
  at once. Every program also gets SIGTERM from the kernel if the supervisor itself dies
  (PR_SET_PDEATHSIG).
- `--run-dir` (default `.run` under the current directory) holds `supervisor.pid` and `<name>.pid`
  files: nothing is shared between checkouts.

Standard library only: it runs before anything else is installed and under any Python 3.11+.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BACKOFF_MIN, BACKOFF_MAX = 1.0, 30.0
#: A program that ran this long before exiting starts again after the shortest backoff.
STABLE_AFTER = 60.0
PR_SET_PDEATHSIG = 1


def say(message: str) -> None:
    print(f"\033[1;34m==>\033[0m supervisor: {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's own stop still applies
        pass


@dataclass
class Program:
    """A supervised program: run in a session of its own, restarted with backoff when it exits.
    `env`, `cwd` and `log` (its output appended there, else the supervisor's own) are for callers
    like `scripts/prod_local.py`; `run_dir` holds its `<name>.pid`."""

    name: str
    argv: list[str]
    run_dir: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restarts: int = 0
    restart_at: float | None = None
    #: The pid of the process that last exited (until the next start).
    last_pid: int | None = None
    pgids: set[int] = field(default_factory=set)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        output = self.log.open("ab") if self.log is not None else None
        try:
            self.process = subprocess.Popen(  # noqa: S603 - commands come from our own scripts
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            if output is not None:
                output.close()
        self.started_at = time.monotonic()
        self.restart_at = None
        self.pgids.add(self.process.pid)
        self.pid_file.write_text(f"{self.process.pid}\n")
        say(f"{self.name} started (pid {self.process.pid}): {shlex.join(self.argv)}")

    def exited(self) -> int | None:
        """The exit status when the program has just exited (it is then forgotten), else None."""
        if self.process is None:
            return None
        status = self.process.poll()
        if status is None:
            return None
        self.last_pid = self.process.pid
        self.process = None
        self.pid_file.unlink(missing_ok=True)
        return status

    def schedule_restart(self, status: int) -> None:
        ran = time.monotonic() - self.started_at
        self.failures = 0 if ran >= STABLE_AFTER else self.failures + 1
        delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** max(self.failures - 1, 0))
        self.restart_at = time.monotonic() + delay
        say(f"{self.name} exited (status {status}) after {ran:.1f} s; restarting in {delay:.0f} s")

    def signal_group(self, sig: int) -> None:
        """`sig` to the running process's group (the process and its children)."""
        if self.process is not None:
            kill_group(self.process.pid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's group reused the id
        return False
    return True


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Supervisor:
    def __init__(
        self,
        programs: list[Program],
        stop_timeout: float,
        before_restart: Callable[[Program], None] | None = None,
    ) -> None:
        self.programs = programs
        self.stop_timeout = stop_timeout
        #: Called with a program just before it is started again (its `last_pid` is the dead one).
        self.before_restart = before_restart
        self.stop_signal: int | None = None
        self.hurry = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_signal is not None:
            self.hurry = True
        else:
            self.stop_signal = signum

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        for program in self.programs:
            program.start()
        while self.stop_signal is None:
            self.watch_once()
            time.sleep(0.1)
        self.stop()
        return 128 + self.stop_signal

    def watch_once(self, stopping: bool = False) -> bool:
        """Schedule a restart for what exited, start what is due, kill the process groups whose
        main process is gone; True when a program was started again."""
        now = time.monotonic()
        restarted = False
        stopping = stopping or self.stop_signal is not None
        for program in self.programs:
            status = program.exited()
            if status is not None and not stopping:
                program.schedule_restart(status)
            if program.restart_at is not None and now >= program.restart_at and not stopping:
                program.restarts += 1
                if self.before_restart is not None:
                    self.before_restart(program)
                program.start()
                restarted = True
            # Groups whose main process is gone but which still hold processes are killed.
            for pgid in list(program.pgids):
                if program.process is not None and pgid == program.process.pid:
                    continue
                if _group_alive(pgid):
                    kill_group(pgid, signal.SIGKILL)
                else:
                    program.pgids.discard(pgid)
        return restarted

    def stop(self) -> None:
        say(f"stopping {', '.join(p.name for p in self.programs)}")
        for program in self.programs:
            program.restart_at = None
            process = program.process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and not self.hurry:
            if not any(p.alive for p in self.programs):
                break
            time.sleep(0.1)
        for program in self.programs:
            if program.alive:
                say(f"{program.name} did not stop in time: killing it")
            for pgid in program.pgids:
                kill_group(pgid, signal.SIGKILL)  # the main process if still there, and its children
            if program.process is not None:
                program.process.wait()
                program.process = None
            program.pid_file.unlink(missing_ok=True)
        wait_groups_gone(self.programs)
        say("stopped")


def wait_groups_gone(programs: list[Program], timeout: float = 10) -> None:
    """Every group member is gone before the supervisor itself goes."""
    deadline = time.monotonic() + timeout
    while any(_group_alive(g) for p in programs for g in p.pgids) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--run-dir", type=Path, default=Path(".run"))
    parser.add_argument("--stop-timeout", type=float, default=25.0)
    parser.add_argument("programs", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args()
    run_dir: Path = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    programs = []
    for spec in args.programs:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command:
            parser.error(f"expected NAME=COMMAND, got {spec!r}")
        programs.append(Program(name, shlex.split(command), run_dir))
    own_pid = run_dir / "supervisor.pid"
    own_pid.write_text(f"{os.getpid()}\n")
    try:
        return Supervisor(programs, args.stop_timeout).run()
    finally:
        own_pid.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())

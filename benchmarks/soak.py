#!/usr/bin/env python3
"""Soak with faults against the production topology on this machine (`make soak`).

Starts `scripts/prod-local.sh` (nginx → 3 APIs → PgBouncer → PostgreSQL, private Redis, 2 Celery
workers, beat) under `.run/soak/`, seeds one organization, then drives a mixed workload through nginx
at 64 connections for `SOAK_MINUTES` (default 10): 70 % reads (one contact by id, pages, search),
25 % writes (contacts created under an `Idempotency-Key`, retried with the same key like any careful
client), 5 % analytics and imports. During the run it kills a worker (SIGKILL to its whole process
group), restarts Redis, and terminates every PostgreSQL backend of the database, once each. At the
end every acknowledged write is looked up in PostgreSQL:

- lost: acknowledged (201, or an import's 202 with its rows) and not in the database;
- duplicated: more than one row for one write's unique marker.

Errors are 5xx answers and transport failures outside the fault windows (a window lasts from the
fault until the component answers again, plus a few seconds). The last line is exactly:

    soak: <N> requests, <E> errors, <L> lost, <D> duplicated, p99 <X> ms

    SOAK_MINUTES=2 uv run python benchmarks/soak.py
    SOAK_PORT_BASE=18400 SOAK_DB=crm_soak ...    # where prod-local listens, which database
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parents[1]
MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
CONNECTIONS = int(os.environ.get("SOAK_CONNECTIONS", "64"))
PORT_BASE = int(os.environ.get("SOAK_PORT_BASE", "8400"))
DATABASE = os.environ.get("SOAK_DB", "crm_soak")
RUN_DIR = Path(os.environ.get("SOAK_DIR", str(ROOT / ".run" / "soak"))).resolve()
ADMIN = ("soak-admin@example.com", "Soak-Admin-Passw0rd!")
SEED_CONTACTS = 300
FAULT_GRACE = 5.0  # seconds after a component answers again that still count as its fault window
RUN = uuid.uuid4().hex[:10]


def say(message: str) -> None:
    print(f"soak: {message}" if not message.startswith("soak:") else message, file=sys.stderr, flush=True)


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, what
    unexpected_4xx: dict[str, int] = field(default_factory=dict)
    windows: list[tuple[float, float, str]] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)  # marker -> contact id (acknowledged)
    imports: dict[int, list[str]] = field(default_factory=dict)  # job id -> emails
    requests: int = 0

    def record(self, started: float, status: int | None, what: str) -> None:
        ended = time.monotonic()
        self.requests += 1
        self.latencies.append(ended - started)
        self.by_kind.setdefault(what, []).append(ended - started)
        if status is None or status >= 500:
            self.failures.append((started, ended, f"{what} {status or 'transport'}"))
        elif status >= 400 and status not in (404, 409):
            key = f"{what} {status}"
            self.unexpected_4xx[key] = self.unexpected_4xx.get(key, 0) + 1

    def in_window(self, started: float, ended: float) -> bool:
        return any(start <= ended and started <= end for start, end, _ in self.windows)


class Soak:
    def __init__(self) -> None:
        self.stats = Stats()
        self.base = f"http://127.0.0.1:{PORT_BASE + 80}"
        self.headers: dict[str, str] = {}
        self.contact_ids: list[int] = []
        self.supervisor: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {}

    # --- topology ---------------------------------------------------------------------------------
    def start(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (RUN_DIR / "ready").unlink()
        env = {
            **os.environ,
            "PROD_LOCAL_DIR": str(RUN_DIR),
            "PROD_LOCAL_PORT_BASE": str(PORT_BASE),
            "PROD_LOCAL_DB": DATABASE,
            "ADMIN_EMAIL": ADMIN[0],
            "ADMIN_PASSWORD": ADMIN[1],
            "ADMIN_ORGANIZATION": "Soak",
            "ACCESS_TOKEN_EXPIRE_MINUTES": str(int(MINUTES) + 60),
            "LOG_LEVEL": "WARNING",
        }
        log = (RUN_DIR / "prod-local.out").open("wb")
        self.supervisor = subprocess.Popen(  # noqa: S603
            ["bash", str(ROOT / "scripts" / "prod-local.sh")],  # noqa: S607
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while not (RUN_DIR / "ready").exists():
            if self.supervisor.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"prod-local did not start; see {RUN_DIR / 'prod-local.out'}")
            time.sleep(1)
        self.read_state()
        say(f"prod-local up at {self.base}")

    def read_state(self) -> None:
        self.state = json.loads((RUN_DIR / "state.json").read_text())

    def stop(self) -> None:
        if self.supervisor is not None and self.supervisor.poll() is None:
            # the shell script exec'd the supervisor: this pid is the supervisor itself
            self.supervisor.send_signal(signal.SIGTERM)
            try:
                self.supervisor.wait(120)
            except subprocess.TimeoutExpired:
                self.supervisor.kill()

    # --- seed -------------------------------------------------------------------------------------
    async def seed(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        r.raise_for_status()
        token = r.json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        r = await client.get("/api/v1/organizations", headers=self.headers)
        r.raise_for_status()
        org = next(o for o in r.json()["items"] if o["name"] == "Soak")
        self.headers["X-Organization-ID"] = str(org["id"])
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                r = await client.post(
                    "/api/v1/contacts",
                    json={"full_name": f"seed-{RUN}-{i}", "phone": f"+7912{i:07d}"},
                    headers=self.headers,
                )
                r.raise_for_status()
                self.contact_ids.append(r.json()["id"])

        await asyncio.gather(*(one(i) for i in range(SEED_CONTACTS)))
        say(f"seeded {len(self.contact_ids)} contacts")

    # --- workload ---------------------------------------------------------------------------------
    async def call(
        self, client: httpx.AsyncClient, what: str, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await client.request(
                method, url, headers={**self.headers, **kw.pop("headers", {})}, **kw
            )
        except httpx.HTTPError:
            self.stats.record(started, None, what)
            return None
        self.stats.record(started, response.status_code, what)
        return response

    async def create_contact(self, client: httpx.AsyncClient) -> None:
        marker = f"soak-{RUN}-{uuid.uuid4().hex[:12]}"
        key = uuid.uuid4().hex
        for attempt in range(6):
            r = await self.call(
                client,
                "create",
                "POST",
                "/api/v1/contacts",
                json={"full_name": marker, "tags": ["soak"]},
                headers={"Idempotency-Key": key},
            )
            if r is not None and r.status_code in (200, 201):
                self.stats.created[marker] = r.json()["id"]
                self.contact_ids.append(r.json()["id"])
                return
            if r is not None and r.status_code < 500 and r.status_code != 409:
                return  # refused: not acknowledged, nothing to check
            await asyncio.sleep(0.5 * (attempt + 1))

    async def start_import(self, client: httpx.AsyncClient) -> None:
        emails = [f"imp-{RUN}-{uuid.uuid4().hex[:10]}@soak.example" for _ in range(3)]
        body = "full_name,email\n" + "".join(f"Import {e.split('@')[0]},{e}\n" for e in emails)
        r = await self.call(
            client,
            "import",
            "POST",
            "/api/v1/imports",
            data={"entity": "contacts"},
            files={"file": ("soak.csv", body.encode(), "text/csv")},
        )
        if r is not None and r.status_code == 202:
            self.stats.imports[r.json()["id"]] = emails

    async def one_request(self, client: httpx.AsyncClient) -> None:
        roll = random.random()  # noqa: S311
        if roll < 0.40:
            await self.call(client, "get", "GET", f"/api/v1/contacts/{random.choice(self.contact_ids)}")  # noqa: S311
        elif roll < 0.60:
            await self.call(
                client,
                "list",
                "GET",
                f"/api/v1/contacts?limit=20&offset={random.randrange(200)}",  # noqa: S311
            )
        elif roll < 0.70:
            await self.call(client, "search", "GET", f"/api/v1/contacts?q=seed-{RUN}-{random.randrange(300)}")  # noqa: S311
        elif roll < 0.95:
            await self.create_contact(client)
        elif roll < 0.99:
            await self.call(client, "analytics", "GET", "/api/v1/analytics/dashboard")
        else:
            await self.start_import(client)

    async def drive(self, client: httpx.AsyncClient, deadline: float) -> None:
        while time.monotonic() < deadline:
            await self.one_request(client)

    # --- faults -----------------------------------------------------------------------------------
    async def faults(self, duration: float, start: float) -> None:
        plan = [(0.25, self.kill_worker), (0.45, self.restart_redis), (0.65, self.terminate_backends)]
        for at, fault in plan:
            await asyncio.sleep(max(0.0, start + at * duration - time.monotonic()))
            began = time.monotonic()
            name = await fault()
            self.stats.windows.append((began, time.monotonic() + FAULT_GRACE, name))
            say(f"fault: {name} (recovered in {time.monotonic() - began:.1f} s)")

    async def _until(self, check: Any, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await asyncio.to_thread(check):
                return
            await asyncio.sleep(0.25)

    async def kill_worker(self) -> str:
        self.read_state()
        pid = self.state["pids"]["worker1"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        port = self.state["worker_metrics_ports"][0]

        def back() -> bool:
            self.read_state()
            if self.state["pids"]["worker1"] == pid:
                return False
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        await self._until(back)
        return f"SIGKILL worker1 (pid {pid})"

    async def restart_redis(self) -> str:
        # One SHUTDOWN on a raw socket (a client library would retry it on the restarted server);
        # the supervisor starts Redis again, and its append-only file keeps the queue.
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.state["redis_port"]), 2) as s,
        ):
            s.sendall(b"SHUTDOWN\r\n")
            s.recv(64)

        def back() -> bool:
            try:
                return bool(Redis(port=self.state["redis_port"], socket_timeout=1).ping())
            except Exception:
                return False

        await asyncio.sleep(0.5)
        await self._until(back)
        return "Redis restarted"

    async def terminate_backends(self) -> str:
        conn = await asyncpg.connect(self.state["direct_url"].replace("+asyncpg", ""))
        try:
            n = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        return f"pg_terminate_backend × {n}"

    # --- verification -----------------------------------------------------------------------------
    async def verify(self) -> tuple[int, int, list[str]]:
        notes: list[str] = []
        conn = await asyncpg.connect(self.state["direct_url"].replace("+asyncpg", ""))
        try:
            jobs = list(self.stats.imports)
            deadline = time.monotonic() + float(os.environ.get("SOAK_JOB_WAIT_SECONDS", "120"))
            rows: list[asyncpg.Record] = []
            while jobs:
                rows = await conn.fetch("SELECT id, status, error FROM import_job WHERE id = ANY($1)", jobs)
                if (
                    all(r["status"] in ("succeeded", "failed", "cancelled") for r in rows)
                    or time.monotonic() > deadline
                ):
                    break
                await asyncio.sleep(2)
            unfinished = [r["id"] for r in rows if r["status"] not in ("succeeded", "failed", "cancelled")]
            failed = [(r["id"], r["error"]) for r in rows if r["status"] in ("failed", "cancelled")]
            if unfinished:
                notes.append(f"{len(unfinished)} import jobs not terminal: {unfinished[:10]}")
            if failed:
                notes.append(f"{len(failed)} import jobs failed: {failed[:5]}")
            created = await conn.fetch(
                "SELECT full_name, count(*) AS n FROM contact WHERE full_name LIKE $1 AND deleted_at IS NULL"
                " GROUP BY full_name",
                f"soak-{RUN}-%",
            )
            imported = await conn.fetch(
                "SELECT lower(email) AS email, count(*) AS n FROM contact WHERE email LIKE $1"
                " AND deleted_at IS NULL GROUP BY lower(email)",
                f"imp-{RUN}-%",
            )
        finally:
            await conn.close()
        found = {r["full_name"]: r["n"] for r in created}
        found.update({r["email"]: r["n"] for r in imported})
        acknowledged = list(self.stats.created)
        for job_id, emails in self.stats.imports.items():
            acknowledged.extend(emails)  # a 202 promises the rows, whatever happens to the worker
            del job_id
        lost = sum(1 for marker in acknowledged if found.get(marker, 0) == 0)
        duplicated = sum(1 for n in found.values() if n > 1)
        unacknowledged = len(set(found) - set(acknowledged))
        notes.append(
            f"{len(self.stats.created)} contacts and {len(self.stats.imports)} imports acknowledged; "
            f"{unacknowledged} rows written without an acknowledgement (answers lost in a fault)"
        )
        return lost, duplicated, notes

    # --- the run ----------------------------------------------------------------------------------
    async def run(self) -> str:
        duration = MINUTES * 60
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        async with httpx.AsyncClient(base_url=self.base, timeout=30, limits=limits) as client:
            await self.seed(client)
            say(f"{duration:.0f} s of mixed load at {CONNECTIONS} connections; faults at 25/45/65 %")
            start = time.monotonic()
            deadline = start + duration
            fault_task = asyncio.create_task(self.faults(duration, start))
            await asyncio.gather(*(self.drive(client, deadline) for _ in range(CONNECTIONS)))
            elapsed = time.monotonic() - start
            await fault_task
        lost, duplicated, notes = await self.verify()
        stats = self.stats
        errors = [f for f in stats.failures if not stats.in_window(f[0], f[1])]
        in_windows = len(stats.failures) - len(errors)
        lat = sorted(stats.latencies)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        for note in notes:
            say(note)
        say(f"{stats.requests / elapsed:.0f} requests/s; {in_windows} failures inside fault windows")
        for kind, values in sorted(stats.by_kind.items()):
            values.sort()
            say(
                f"{kind}: {len(values)} requests, p50 {values[len(values) // 2] * 1000:.0f} ms, "
                f"p99 {values[min(len(values) - 1, int(len(values) * 0.99))] * 1000:.0f} ms"
            )
        for start_, end_, name in stats.windows:
            say(f"window {name}: {end_ - start_:.1f} s")
        if errors:
            kinds: dict[str, int] = {}
            for _, _, what in errors:
                kinds[what] = kinds.get(what, 0) + 1
            say(f"errors outside fault windows: {kinds}")
        if stats.unexpected_4xx:
            say(f"unexpected 4xx: {stats.unexpected_4xx}")
        return (
            f"soak: {stats.requests} requests, {len(errors)} errors, {lost} lost, {duplicated} duplicated, "
            f"p99 {p99:.0f} ms"
        )


def main() -> int:
    soak = Soak()

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        soak.start()
        line = asyncio.run(soak.run())
    finally:
        say("stopping prod-local")
        soak.stop()
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

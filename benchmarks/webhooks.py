#!/usr/bin/env python3
"""Outbound webhooks under write load.

One API process (uvicorn), one Celery worker, ten local receivers (`benchmarks/receivers.py`: one
process, a port per subscriber, every signature verified). Two phases of `--duration` seconds each,
with `--clients` concurrent writers (kept connections, httptools) creating contacts as fast as the
API answers: first with no subscribers, then with ten subscriptions to `contact.*`. Reported: the
write throughput of both phases and the drop, whether every event reached every subscriber exactly
once (by `webhook-id`) and in order, and the latency from the event's commit to its arrival
(p50/p99/max). `--api-cpus 0 --worker-cpus 1` gives the write path (API, its PostgreSQL backends,
the writers) and the deliveries (worker, its backends, the receivers) CPUs of their own.

    uv run python benchmarks/webhooks.py                    # 60 s per phase
    uv run python benchmarks/webhooks.py --duration 20 --clients 8
    uv run python benchmarks/webhooks.py --rate 150          # latency at a given write rate
    uv run python benchmarks/webhooks.py --api-cpus 0 --worker-cpus 1
    uv run python benchmarks/webhooks.py --sender-processes 2   # deliveries from two processes
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httptools
import httpx
import orjson
import uvloop

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = os.environ.get("BENCH_WEBHOOKS_DB", "crm_bench_webhooks")
DSN = f"{PG}/{DB}"
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
API_PORT = int(os.environ.get("BENCH_API_PORT", "8150"))
RECEIVER_PORTS = [int(p) for p in os.environ.get("BENCH_RECEIVER_PORTS", "8160-8169").split("-")]
ADMIN = ("bench-hooks@example.com", "Bench-Hooks-Passw0rd-7")
SUBSCRIBERS = 10
#: Every subscription's secret (given at subscription), so the receivers verify each signature.
SECRET = "whsec_" + base64.b64encode(b"benchmark-webhook-secret-32bytes").decode()


def env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": DSN.replace("postgresql://", "postgresql+asyncpg://"),
        "REDIS_URL": f"{REDIS}/5",
        "CELERY_BROKER_URL": f"{REDIS}/6",
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "development",
        "CREATE_ADMIN_ON_STARTUP": "false",
        "RATE_LIMIT_LOGIN_PER_IP": "off",
        "RATE_LIMIT_LOGIN_PER_ACCOUNT": "off",
        "ALLOW_PRIVATE_INTEGRATION_URLS": "true",
    }


def cpu_set(spec: str | None) -> set[int] | None:
    """`0-1,3` → {0, 1, 3}."""
    if not spec:
        return None
    out: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        out |= set(range(int(low), int(high or low) + 1))
    return out


def start(cmd: list[str], log: Path, cpus: set[int] | None = None) -> subprocess.Popen[bytes]:
    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603
            cmd, cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def recreate_database() -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await conn.close()


def prepare_database() -> None:
    asyncio.run(recreate_database())
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env(), check=True)
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "crm.cli", "create-admin", "-e", ADMIN[0], "-p", ADMIN[1], "-o", "Bench"],
        cwd=ROOT,
        env=env(),
        check=True,
        capture_output=True,
    )


def wait_http(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


class Writer(asyncio.Protocol):
    """One kept HTTP/1.1 connection to the API: posts a request and reads the answer's status
    (httptools, as uvicorn parses). The clients stand in for users on other hosts, so they cost as
    little CPU as they can (httpx would take about a millisecond per request from the shared cores)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the API closed the connection"))

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    async def post(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def post_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{head}content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def write_load(
    base: str, headers: dict[str, str], clients: int, duration: float, tag: str, rate: float = 0
) -> tuple[int, int]:
    """Create contacts from `clients` writers for `duration` seconds, as fast as the API answers or,
    with `rate`, at that many writes per second in all; (created, errors)."""
    created = errors = 0
    started = time.monotonic()
    deadline = started + duration
    host, _, port = base.removeprefix("http://").partition(":")
    loop = asyncio.get_running_loop()

    async def writer(n: int) -> None:
        nonlocal created, errors
        transport, conn = await loop.create_connection(Writer, host, int(port))
        try:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                if rate:  # this writer's i-th write is due at (i * clients + n) / rate
                    await asyncio.sleep(max(0.0, started + ((i - 1) * clients + n) / rate - time.monotonic()))
                body = orjson.dumps({"full_name": f"{tag} {n}-{i}"})
                if await conn.post(post_request("/api/v1/contacts", headers, body)) == 201:
                    created += 1
                else:
                    errors += 1
        finally:
            transport.close()

    await asyncio.gather(*(writer(n) for n in range(clients)))
    return created, errors


async def pending(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        events = await conn.fetchval("SELECT count(*) FROM outbox_event WHERE published_at IS NULL")
        deliveries = await conn.fetchval("SELECT count(*) FROM webhook_delivery WHERE status = 'pending'")
        return int(events), int(deliveries)
    finally:
        await conn.close()


async def pin_backends(args: argparse.Namespace) -> None:
    """With `--api-cpus`/`--worker-cpus`, keep the PostgreSQL backends of each side on that side's
    CPUs (by `application_name`; new backends are pinned within a second)."""
    sides = {
        "crm-api": cpu_set(args.api_cpus),
        "crm-hot": cpu_set(args.api_cpus),
        "crm-worker": cpu_set(args.worker_cpus),
    }
    if not any(sides.values()):
        return
    conn = await asyncpg.connect(DSN)
    try:
        while True:
            rows = await conn.fetch(
                "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()"
            )
            for pid, name in rows:
                if cpus := sides.get(name):
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(pid, cpus)
            await asyncio.sleep(1)
    finally:
        await conn.close()


async def event_count(dsn: str, since_id: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox_event WHERE id > $1", since_id))
    finally:
        await conn.close()


async def max_event_id(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox_event"))
    finally:
        await conn.close()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of these processes and their live descendants."""
    tree = _children()
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = list(pids)
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def postgres_cpu(dsn: str) -> dict[int, float]:
    """CPU time of each PostgreSQL backend connected to the benchmark's database, by pid."""
    conn = await asyncpg.connect(dsn)
    try:
        pids = [
            int(r[0])
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    finally:
        await conn.close()
    return {pid: cpu_seconds_of(pid) for pid in pids}


def cpu_seconds_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def db_counters(dsn: str) -> dict[str, int]:
    """Transactions and row writes of the benchmark's database so far."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit + xact_rollback AS xacts, tup_inserted, tup_updated, tup_deleted,"
            " tup_returned + tup_fetched AS tup_read FROM pg_stat_database WHERE datname = current_database()"
        )
        return {k: int(v) for k, v in dict(row).items()}
    finally:
        await conn.close()


def task_counts() -> dict[str, int]:
    """Celery tasks run so far, by name (the worker's own statistics)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "crm.worker.app:celery_app",
            "inspect",
            "stats",
            "--json",
            "-t",
            "3",
        ],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    counts: dict[str, int] = {}
    try:
        for stats in json.loads(out.stdout.strip().splitlines()[-1]).values():
            for name, n in stats.get("total", {}).items():
                counts[name] = counts.get(name, 0) + int(n)
    except (ValueError, IndexError, AttributeError):
        print(f"(task counts unavailable: {out.stderr.strip()[-200:]})")
    return counts


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main_async(args: argparse.Namespace) -> None:
    logs = Path(args.logs)
    ports = list(range(RECEIVER_PORTS[0], RECEIVER_PORTS[-1] + 1))[:SUBSCRIBERS]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            start(
                [
                    sys.executable,
                    str(ROOT / "benchmarks" / "receivers.py"),
                    "--ports",
                    f"{ports[0]}-{ports[-1]}",
                    "--secret",
                    SECRET,
                ],
                logs / "receivers.log",
                cpu_set(args.worker_cpus),
            )
        )
        processes.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "crm.main:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(API_PORT),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                logs / "api.log",
                cpu_set(args.api_cpus),
            )
        )
        processes.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "crm.worker.app:celery_app",
                    "worker",
                    "-Q",
                    "crm",
                    "--concurrency",
                    str(args.worker_concurrency),
                    "--loglevel",
                    "WARNING",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                ],
                logs / "worker.log",
                cpu_set(args.worker_cpus),
            )
        )
        base = f"http://127.0.0.1:{API_PORT}"
        wait_http(f"{base}/health")
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/_stats")
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            login = await http.post("/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
            token = login.json()["access_token"]
            orgs = await http.get("/api/v1/organizations", headers={"Authorization": f"Bearer {token}"})
            org_id = orgs.json()["items"][0]["id"]
        headers = {"Authorization": f"Bearer {token}", "X-Organization-ID": str(org_id)}

        api_pid, worker_pid = processes[-2].pid, processes[-1].pid
        receiver_pids = [processes[0].pid]
        if args.api_cpus:  # the writers stand in for clients on the API's side
            os.sched_setaffinity(0, cpu_set(args.api_cpus) or set())
        pinning = asyncio.create_task(pin_backends(args))

        async def snapshot() -> dict[str, float]:
            return {
                "api": cpu_seconds([api_pid]),
                "worker": cpu_seconds([worker_pid]),
                "receivers": cpu_seconds(receiver_pids),
                **{f"pg_{pid}": cpu for pid, cpu in (await postgres_cpu(DSN)).items()},
                **{f"db_{k}": float(v) for k, v in (await db_counters(DSN)).items()},
                **{f"task_{k}": float(v) for k, v in (await asyncio.to_thread(task_counts)).items()},
                "wall": time.monotonic(),
            }

        def report(name: str, before: dict[str, float], after: dict[str, float], created: int) -> None:
            n = max(created, 1)
            d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
            # Backends alive at both ends count their difference; new ones all of theirs.
            d["postgres"] = sum(v for k, v in d.items() if k.startswith("pg_"))
            tasks = {k[5:]: int(v) for k, v in d.items() if k.startswith("task_") and v}
            named = ", ".join(f"{k} {v}" for k, v in sorted(tasks.items()))
            print(
                f"  [{name}] per contact written: {sum(tasks.values()) / n:.3f} worker tasks ({named}); "
                f"{d['db_xacts'] / n:.1f} transactions, {d['db_tup_inserted'] / n:.1f} rows inserted, "
                f"{d['db_tup_updated'] / n:.1f} updated"
            )
            cpu = {k: d[k] * 1000 / n for k in ("api", "worker", "receivers", "postgres")}
            print(
                f"  [{name}] CPU ms per contact: api {cpu['api']:.2f}, worker {cpu['worker']:.2f}, "
                f"receivers {cpu['receivers']:.2f}, postgres backends {cpu['postgres']:.2f}"
                f" over {d['wall']:.1f} s wall"
            )

        print(
            f"{args.clients} writers{f' at {args.rate:g}/s' if args.rate else ''}, "
            f"{args.duration:.0f} s per phase, "
            f"worker concurrency {args.worker_concurrency}, sender processes {args.sender_processes}, "
            f"CPUs api {args.api_cpus or 'any'} / worker+receivers {args.worker_cpus or 'any'}, "
            f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}"
        )
        # Warm up, then phase A: no subscribers.
        await write_load(base, headers, args.clients, 3, "warmup")
        await asyncio.sleep(1)
        before = await snapshot()
        created_a, errors_a = await write_load(base, headers, args.clients, args.duration, "plain", args.rate)
        await asyncio.sleep(1)  # the relay publishes the last events
        rate_a = created_a / args.duration
        print(
            f"no subscribers: {created_a} contacts in {args.duration:.0f} s = {rate_a:.1f}/s "
            f"({errors_a} errors)"
        )
        report("no subscribers", before, await snapshot(), created_a)

        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            for port in ports:
                r = await http.post(
                    "/api/v1/webhooks",
                    json={
                        "url": f"http://127.0.0.1:{port}/hooks/bench",
                        "events": ["contact.*"],
                        "secret": SECRET,
                    },
                )
                assert r.status_code == 201, r.text
        await asyncio.sleep(2)  # the phase-A backlog drains first
        start_id = await max_event_id(DSN)
        before = await snapshot()
        created_b, errors_b = await write_load(
            base, headers, args.clients, args.duration, "hooked", args.rate
        )
        rate_b = created_b / args.duration
        print(
            f"10 subscribers: {created_b} contacts in {args.duration:.0f} s = {rate_b:.1f}/s "
            f"({errors_b} errors)"
        )
        drop = (1 - rate_b / rate_a) * 100 if rate_a else float("nan")
        print(f"write throughput drop: {drop:.1f} % (target <= 10 %)")

        events = await event_count(DSN, start_id)
        left_events, left_deliveries = await pending(DSN)
        backlog = left_events * SUBSCRIBERS + left_deliveries
        drain_started = time.monotonic()
        while time.monotonic() - drain_started < args.drain:
            left_events, left_deliveries = await pending(DSN)
            if left_events == 0 and left_deliveries == 0:
                break
            await asyncio.sleep(0.5)
        drained = time.monotonic() - drain_started
        report("10 subscribers, load + drain", before, await snapshot(), created_b)
        latencies: list[float] = []
        complete = True
        bad = disordered = late = 0
        async with httpx.AsyncClient(timeout=30) as http:
            for port in ports:
                stats = (await http.get(f"http://127.0.0.1:{port}/_stats")).json().get("/hooks/bench", {})
                ids = stats.get("ids", [])
                unique = len(set(ids))
                if unique != events or len(ids) != events:
                    complete = False
                    print(f"receiver {port}: {len(ids)} requests, {unique} distinct, expected {events}")
                latencies += stats.get("latency", [])
                bad += stats.get("bad_signatures", 0)
                disordered += stats.get("out_of_order", 0)
                late += stats.get("after_later_id", 0)
        pinning.cancel()
        print(
            f"events: {events}; every subscriber got each exactly once: {complete}; "
            f"signatures that failed to verify: {bad}; out of order for their record: {disordered} "
            f"(after a higher event id of another record, as committed: {late}); "
            f"drained {drained:.1f} s after the load"
            + (f" ({backlog / drained:.0f} deliveries/s)" if drained > 1 else "")
        )
        if latencies:
            print(
                f"commit -> delivery: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p99 {pct(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                f"over {len(latencies)} deliveries (target p99 < 2000 ms)"
            )
        print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    finally:
        for process in reversed(processes):
            stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--rate", type=float, default=0, help="writes per second in all (0: as fast as the API answers)"
    )
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument(
        "--sender-processes",
        type=int,
        default=1,
        help="worker processes sending deliveries (WEBHOOK_SENDER_PROCESSES; keep it below the concurrency)",
    )
    parser.add_argument(
        "--api-cpus",
        help="CPUs of the write path: the API process, its PostgreSQL backends and the writers "
        "(e.g. 0); with --worker-cpus, the write path is measured without the deliveries taking its "
        "CPU, as when workers and subscribers run on hosts of their own",
    )
    parser.add_argument(
        "--worker-cpus", help="CPUs of the deliveries: the worker, its PostgreSQL backends and the receivers"
    )
    parser.add_argument("--drain", type=float, default=300, help="seconds to wait for the backlog")
    parser.add_argument("--logs", default=str(Path(tempfile.gettempdir()) / "crm-bench-webhooks"))
    args = parser.parse_args()
    os.environ["WEBHOOK_SENDER_PROCESSES"] = str(args.sender_processes)  # for every process started
    Path(args.logs).mkdir(parents=True, exist_ok=True)
    prepare_database()
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Throughput and peak memory of a full Bitrix24 sync (companies with requisites, contacts, deals)
through the generic engine against the fake portal.

The fake runs in a process of its own (its data does not count in our memory) with its leaky bucket
off unless `--limited`; the engine runs in a fresh child process per size against a scratch database
(`alembic upgrade head`), so that peak RSS (`ru_maxrss`) belongs to that size alone.

    uv run python benchmarks/bitrix24.py            # 50 000 contacts, 20 000 companies, 50 000 deals
    uv run python benchmarks/bitrix24.py --memory   # contacts only: 10 000 and 100 000
    uv run python benchmarks/bitrix24.py --limited --contacts 20000 --companies 0 --deals 0
    uv run python benchmarks/bitrix24.py --limited --no-batch --contacts 5000 --companies 0 --deals 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "crm_bench_bitrix24"
FAKE_PORT = int(os.environ.get("BENCH_FAKE_PORT", "18510"))


def _prepare_database() -> str:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(f"{PG}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{DB}"')
        finally:
            await conn.close()

    asyncio.run(run())
    url = f"{PG.replace('postgresql://', 'postgresql+asyncpg://')}/{DB}"
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        check=True,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
    )
    return url


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of another process so far (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    base_url: str, entities: list[str], settings: dict[str, object], profile: str | None
) -> dict[str, Any]:
    import secrets

    from sqlalchemy import text

    from crm.config import get_settings
    from crm.core.db import create_engine, create_sessionmaker
    from crm.integrations.crypto import encrypt_credentials
    from crm.integrations.engine import run_sync_job
    from crm.models import Integration, Organization, SyncJob

    engine = create_engine(get_settings(), pool_size=3, max_overflow=0)
    maker = create_sessionmaker(engine)
    async with maker() as session:
        org = Organization(name="Bench", slug=f"bench-{secrets.token_hex(4)}")
        session.add(org)
        await session.flush()
        integration = Integration(
            organization_id=org.id,
            provider="bitrix24",
            name="bench",
            base_url=base_url,
            credentials_encrypted=encrypt_credentials(
                {"webhook_user_id": "1", "webhook_secret": "x8a2k4m9q1w7e3r5"}
            ),
            settings=settings,
            webhook_secret=secrets.token_urlsafe(16),
        )
        session.add(integration)
        await session.flush()
        job = SyncJob(organization_id=org.id, integration_id=integration.id, entities=entities, full=True)
        session.add(job)
        await session.commit()
        job_id = job.id
    cpu_before = _own_cpu()
    started = time.perf_counter()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    status = await run_sync_job(job_id, maker=maker)
    elapsed = time.perf_counter() - started
    if profile:
        profiler.disable()
        profiler.dump_stats(profile)
    worker_cpu = _own_cpu() - cpu_before
    async with maker() as session:
        # The sync's PostgreSQL backends (the pool keeps them open until `dispose`).
        pids = list(
            await session.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
        )
    database_cpu = sum(_proc_cpu(pid) for pid in pids)
    async with maker() as session:
        done = await session.get(SyncJob, job_id)
        assert done is not None
        counts, error = done.counts, done.error
    await engine.dispose()
    fetched = sum(int(c.get("fetched", 0)) for c in counts.values())
    return {
        "worker_cpu_seconds": round(worker_cpu, 1),
        "database_cpu_seconds": round(database_cpu, 1),
        "records_per_worker_cpu_second": round(fetched / worker_cpu) if worker_cpu else None,
        "status": status,
        "error": error,
        "seconds": round(elapsed, 1),
        "records": fetched,
        "records_per_second": round(fetched / elapsed) if elapsed else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "counts": counts,
    }


def child(args: argparse.Namespace) -> None:
    command = [sys.executable, "-m", "tests.fakes.bitrix24", "--port", str(FAKE_PORT)]
    command += [
        "--contacts",
        str(args.contacts),
        "--companies",
        str(args.companies),
        "--deals",
        str(args.deals),
    ]
    if not args.limited:
        command.append("--no-limit")
    fake = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", FAKE_PORT), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        # Limit off: our own budget out of the way too. Limited: the client's default policy (2/s, burst 40).
        settings: dict[str, object] = {} if args.limited else {"rate_per_second": 50, "burst": 250}
        if args.no_batch:
            settings["use_batch"] = False
        entities = [
            e
            for e, n in (("companies", args.companies), ("contacts", args.contacts), ("deals", args.deals))
            if n
        ]
        fake_cpu = _proc_cpu(fake.pid)
        result = asyncio.run(_measure(f"http://127.0.0.1:{FAKE_PORT}", entities, settings, args.profile))
        fake_cpu = _proc_cpu(fake.pid) - fake_cpu
        records = int(result["records"])
        cpu = fake_cpu + float(result["worker_cpu_seconds"]) + float(result["database_cpu_seconds"])
        result["fake_cpu_seconds"] = round(fake_cpu, 1)
        result["records_per_cpu_second"] = round(records / cpu) if cpu else None
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    print(
        json.dumps(
            {
                "contacts": args.contacts,
                "companies": args.companies,
                "deals": args.deals,
                "limited": args.limited,
                **result,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=50000)
    parser.add_argument("--companies", type=int, default=20000)
    parser.add_argument("--deals", type=int, default=50000)
    parser.add_argument("--memory", action="store_true", help="contacts only, 10 000 then 100 000")
    parser.add_argument("--limited", action="store_true", help="the fake's leaky bucket on (2/s, burst 50)")
    parser.add_argument("--no-batch", action="store_true", help="one page of 50 per request")
    parser.add_argument("--profile", help="write a cProfile of the sync (worker side) to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    url = _prepare_database()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ALLOW_PRIVATE_INTEGRATION_URLS": "true",
        "LOG_LEVEL": "WARNING",
    }
    runs = [(10000, 0, 0), (100000, 0, 0)] if args.memory else [(args.contacts, args.companies, args.deals)]
    for contacts, companies, deals in runs:
        command = [sys.executable, __file__, "--child", "--contacts", str(contacts)]
        command += ["--companies", str(companies), "--deals", str(deals)]
        if args.limited:
            command.append("--limited")
        if args.no_batch:
            command.append("--no-batch")
        if args.profile:
            command += ["--profile", args.profile]
        subprocess.run(command, cwd=ROOT, env=env, check=True)  # noqa: S603


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Throughput and peak memory of a full sync through the generic engine.

The MoySklad fake runs in a process of its own (so its data does not count in our memory), the engine
runs in this process against a scratch database built with `alembic upgrade head`. Each size runs in a
fresh child process so that peak RSS (`ru_maxrss`) belongs to that size alone.

    uv run python benchmarks/sync.py            # 10 000 and 100 000 products, 10 stores, 50 000 documents
    uv run python benchmarks/sync.py --sizes 10000 --stores 10 --documents 2500
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

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "crm_bench_sync"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


async def _measure(base_url: str, entities: list[str]) -> dict[str, object]:
    import secrets

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
            provider="moysklad",
            name="bench",
            base_url=base_url,
            credentials_encrypted=encrypt_credentials({"token": "7f3d2c1b0a99e8d7c6b5a4f3e2d1c0b9a8f7e6d5"}),
            settings={"rate_limit_units": 45, "rate_limit_window": 0.1},
            webhook_secret=secrets.token_urlsafe(16),
        )
        session.add(integration)
        await session.flush()
        job = SyncJob(organization_id=org.id, integration_id=integration.id, entities=entities, full=True)
        session.add(job)
        await session.commit()
        job_id = job.id
    started = time.perf_counter()
    status = await run_sync_job(job_id, maker=maker)
    elapsed = time.perf_counter() - started
    async with maker() as session:
        done = await session.get(SyncJob, job_id)
        assert done is not None
        counts = done.counts
        error = done.error
    await engine.dispose()
    fetched = sum(int(c.get("fetched", 0)) for c in counts.values())
    return {
        "status": status,
        "error": error,
        "seconds": round(elapsed, 1),
        "records": fetched,
        "records_per_second": round(fetched / elapsed) if elapsed else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "counts": counts,
    }


def child(args: argparse.Namespace) -> None:
    port = _free_port()
    fake = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "tests.fakes.moysklad",
            "--port",
            str(port),
            "--products",
            str(args.products),
            "--services",
            "0",
            "--folders",
            "20",
            "--stores",
            str(args.stores),
            "--counterparties",
            str(args.counterparties),
            "--documents",
            str(args.documents // 4),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        result = asyncio.run(_measure(f"http://127.0.0.1:{port}/api/remap/1.2", args.entities))
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    print(json.dumps({"products": args.products, **result}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="product counts, comma-separated")
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--documents", type=int, default=50000, help="documents of all four kinds together")
    parser.add_argument("--counterparties", type=int, default=100)
    parser.add_argument("--entities", default="", help="comma-separated (default: all)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--products", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.entities = [e for e in args.entities.split(",") if e]
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
    for size in [int(s) for s in args.sizes.split(",")]:
        command = [sys.executable, __file__, "--child", "--products", str(size), "--stores", str(args.stores)]
        command += ["--documents", str(args.documents), "--counterparties", str(args.counterparties)]
        if args.entities:
            command += ["--entities", ",".join(args.entities)]
        subprocess.run(command, cwd=ROOT, env=env, check=True)  # noqa: S603


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Import throughput: a 100 000-row contacts CSV, a 20 000-row projects XLSX and a 20 000-row deals CSV
(then the same deals again by id, with stage and status moves), each imported end to end through the job
body (read, validate every cell, bulk write, progress, activities) against a scratch database. Each
import runs in a fresh process; its rows/s and peak RSS are printed.

    uv run python benchmarks/imports.py
    uv run python benchmarks/imports.py --contacts 20000 --projects 5000 --deals 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = os.environ.get("BENCH_IMPORTS_DB", "crm_bench_imports")
DSN = f"{PG}/{DB}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")


def env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": DSN.replace("postgresql://", "postgresql+asyncpg://"),
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "CREATE_ADMIN_ON_STARTUP": "false",
    }


def inn10(seed: int) -> str:
    body = f"{seed:09d}"[-9:]
    check = sum(int(d) * w for d, w in zip(body, (2, 4, 10, 3, 5, 9, 4, 6, 8), strict=True)) % 11 % 10
    return body + str(check)


def contacts_csv(path: Path, rows: int) -> None:
    rng = random.Random(1)  # noqa: S311 - reproducible test data
    first = ["Анна", "Борис", "Вера", "Глеб", "Дина", "John", "Mary", "Oleg", "Пётр", "Ирина"]
    last = ["Иванова", "Петров", "Smith", "Сидорова", "Кузнецов", "Brown", "Орлова", "Волков"]
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("full_name,email,phone,job_title,country,tags\r\n")
        for i in range(rows):
            a, b, c, d = rng.randint(10, 99), rng.randint(100, 999), rng.randint(10, 99), rng.randint(10, 99)
            phone = f"+7 9{a} {b}-{c}-{d}"
            out.write(
                f"{rng.choice(first)} {rng.choice(last)},person{i}@example.com,{phone},"
                f'Manager {i % 50},Russia,"lead,tier{i % 5}"\r\n'
            )


def projects_xlsx(path: Path, rows: int) -> None:
    from openpyxl import Workbook

    statuses = [
        "APPLICANTION_SHORT",
        "APPLICANTION_FULL",
        "PROJECT_IN_COMISSION",
        "PROJECT_ON_SUPPORT",
        "ENDED",
    ]
    industries = ["Туризм", "Сельское хозяйство", "Добыча", "Покупка оборудования", "Строительство"]
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(
        [
            "external_code",
            "name",
            "client_inn",
            "client_name",
            "industry",
            "district",
            "city",
            "own_funds_amount",
            "requested_support_amount",
            "jobs_count",
            "tax_revenue_amount",
            "status",
        ]
    )
    for i in range(rows):
        sheet.append(
            [
                f"PRJ-{i:06d}",
                f"Проект {i}",
                inn10(100_000_000 + i // 4),
                f"ООО Инвестор {i // 4}",
                industries[i % len(industries)],
                f"Район {i % 25}",
                "Тюмень",
                1_000_000 + i,
                f"=H{i + 2}/2",  # a formula, read as its cached value (none here: openpyxl writes no cache)
                i % 300,
                25000.5,
                statuses[i % len(statuses)],
            ]
        )
    workbook.save(path)


DEAL_STAGES = ("lead", "qualification", "proposal", "negotiation")


def deals_csv(path: Path, rows: int) -> None:
    """New deals over the default pipeline's stages, a quarter of them closed (won with an amount, lost
    with a reason)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("title,amount,currency,stage,status,lost_reason,expected_close_date\r\n")
        for i in range(rows):
            status = ("new", "in_progress", "won", "lost")[i % 4] if i % 2 else "new"
            reason = "Цена" if status == "lost" else ""
            day = f"2026-12-{1 + i % 28:02d}"
            out.write(f"Сделка {i},{1000 + i}.50,RUB,{DEAL_STAGES[i % 4]},{status},{reason},{day}\r\n")


def deals_update_csv(path: Path) -> None:
    """Every stored deal again by id: a stage forward and a status move each (won, lost, reopened)."""
    import asyncpg

    async def ids() -> list[int]:
        conn = await asyncpg.connect(DSN)
        try:
            return [r["id"] for r in await conn.fetch("SELECT id FROM deal ORDER BY id")]
        finally:
            await conn.close()

    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,stage,status,lost_reason\r\n")
        for i, deal_id in enumerate(asyncio.run(ids())):
            status = ("won", "lost", "in_progress", "new")[i % 4]
            reason = "Сроки" if status == "lost" else ""
            out.write(f"{deal_id},{DEAL_STAGES[(i + 1) % 4]},{status},{reason}\r\n")


def setup() -> tuple[int, int]:
    """A fresh scratch database at head with one organization and its owner."""
    import asyncpg

    async def run() -> tuple[int, int]:
        admin = await asyncpg.connect(f"{PG}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{DB}"')
        finally:
            await admin.close()
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT,
            env=env(),
            check=True,
            capture_output=True,
        )
        conn = await asyncpg.connect(DSN)
        try:
            org = await conn.fetchval(
                "INSERT INTO organization (name, slug) VALUES ('Bench', 'bench') RETURNING id"
            )
            user = await conn.fetchval(
                'INSERT INTO "user" (email, full_name, password_hash) '
                "VALUES ('bench@example.com', 'Bench', 'x') RETURNING id"
            )
            await conn.execute(
                "INSERT INTO membership (organization_id, user_id, role) VALUES ($1, $2, 'owner')", org, user
            )
            return int(org), int(user)
        finally:
            await conn.close()

    return asyncio.run(run())


def child(entity: str, path: str, org: int, user: int) -> None:
    """Run one import in this process and print a JSON line with its numbers."""
    from crm.config import get_settings
    from crm.core.db import create_engine, create_sessionmaker, session_scope
    from crm.imports.engine import run_import
    from crm.imports.service import ImportService
    from crm.organizations.dependencies import Tenant

    async def run() -> dict[str, object]:
        settings = get_settings()
        engine = create_engine(settings, pool_size=2, max_overflow=2)
        maker = create_sessionmaker(engine)
        content = await asyncio.to_thread(Path(path).read_bytes)
        async with session_scope(maker) as db:
            job = await ImportService(db, Tenant(org, frozenset({"imports:run"}), user_id=user)).start(
                content=content,
                file_name=Path(path).name,
                entity=entity,
                mapping={},
                dry_run=False,
                on_conflict="update",
                atomic=False,
                enqueue=False,
            )
        del content
        started, cpu = time.perf_counter(), time.process_time()
        done = await run_import(job.id, maker=maker)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await engine.dispose()
        assert done is not None
        return {
            "entity": entity,
            "status": done.status,
            "rows": done.processed_rows,
            "created": done.created,
            "updated": done.updated,
            "skipped": done.skipped,
            "failed": done.failed,
            "seconds": round(elapsed, 2),
            "cpu_seconds": round(cpu, 2),
            "rows_per_second": round(done.processed_rows / elapsed),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "error": done.error,
        }

    print(json.dumps(asyncio.run(run()), ensure_ascii=False))


def measure(entity: str, path: Path, org: int, user: int, label: str) -> dict[str, object]:
    result = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, __file__, "--child", entity, str(path), str(org), str(user)],
        env=env(),
        check=True,
        capture_output=True,
        text=True,
    )
    numbers: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    numbers["run"] = label
    print(
        f"{label:<28} {numbers['rows']:>7} rows  {numbers['seconds']:>6}s  "
        f"{numbers['rows_per_second']:>6} rows/s  (worker CPU {numbers['cpu_seconds']}s)  "
        f"peak RSS {numbers['peak_rss_mb']} MB  (created {numbers['created']}, "
        f"updated {numbers['updated']}, skipped {numbers['skipped']}, failed {numbers['failed']})",
        flush=True,
    )
    return numbers


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, entity, path, org, user = sys.argv
        child(entity, path, int(org), int(user))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=20_000)
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--only", choices=("contacts", "projects", "deals"), help="run one entity")
    args = parser.parse_args()

    org, user = setup()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "contacts"):
            contacts = Path(tmp) / "contacts.csv"
            contacts_csv(contacts, args.contacts)
            print(f"file: contacts.csv {contacts.stat().st_size // 1024} KiB")
            measure("contacts", contacts, org, user, "contacts CSV (new)")
            measure("contacts", contacts, org, user, "contacts CSV (re-import)")
        if args.only in (None, "projects"):
            projects = Path(tmp) / "projects.xlsx"
            projects_xlsx(projects, args.projects)
            print(f"file: projects.xlsx {projects.stat().st_size // 1024} KiB")
            measure("projects", projects, org, user, "projects XLSX (new)")
            measure("projects", projects, org, user, "projects XLSX (re-import)")
        if args.only in (None, "deals"):
            deals, moves = Path(tmp) / "deals.csv", Path(tmp) / "deals-moves.csv"
            deals_csv(deals, args.deals)
            print(f"file: deals.csv {deals.stat().st_size // 1024} KiB")
            measure("deals", deals, org, user, "deals CSV (new)")
            deals_update_csv(moves)
            measure("deals", moves, org, user, "deals CSV (moves by id)")


if __name__ == "__main__":
    main()

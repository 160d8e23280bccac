#!/usr/bin/env python3
"""Side-by-side load benchmark of the CRM API against the raw ASGI + asyncpg reference server.

Both servers get the same data (one organization with N contacts and M deals), run with one
uvicorn worker, and are measured alternately by the shared wrk harness (`../shared/bench/`).
Extra measurements: the funnel without cache (p50 over requests after each cache invalidation)
and, with --scaling, list latency at 10 000 vs 1 000 000 contacts.

The reference serves contacts only, so the company, deal and project reads (`get_company`,
`get_deal`, `get_project`) are compared with its contact read, and the deal create (`create_deal`)
with its contact create (see BASELINES).

BENCH_REF_DB / BENCH_APP_DB, BENCH_REF_PORT / BENCH_APP_PORT and BENCH_REDIS_URL let two runs share
one PostgreSQL and one machine.

    uv run python benchmarks/run.py                      # 200k contacts, 100k deals
    uv run python benchmarks/run.py --contacts 20000 --deals 10000 --duration 5
    uv run python benchmarks/run.py --scaling            # adds the 10k vs 1M list comparison
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCH = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REF_DB = os.environ.get("BENCH_REF_DB", "bench")
APP_DB = os.environ.get("BENCH_APP_DB", "crm_bench")
REF_DSN = f"{PG}/{REF_DB}"
APP_DSN = f"{PG}/{APP_DB}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
REF_PORT = int(os.environ.get("BENCH_REF_PORT", "8900"))
APP_PORT = int(os.environ.get("BENCH_APP_PORT", "8100"))
PROJECTS = 200
#: Our endpoints the reference has no counterpart of, and the reference endpoint each is compared with.
BASELINES = {"get_company": "get", "get_deal": "get", "get_project": "get", "create_deal": "create"}
ADMIN = ("bench-admin@example.com", "Bench-Admin-Passw0rd")
UVICORN = [
    "--host",
    "127.0.0.1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
    "--workers",
    "1",
]


def sh(cmd: list[str], **kw: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]  # noqa: S603


def app_env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": APP_DSN,
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "development",
        "CREATE_ADMIN_ON_STARTUP": "false",
        "RATE_LIMIT_LOGIN_PER_IP": "off",
        "RATE_LIMIT_LOGIN_PER_ACCOUNT": "off",
        "DATABASE_POOL_SIZE": "16",
        "DATABASE_MAX_OVERFLOW": "0",
    }


async def count(dsn: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args) or 0)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def ensure_db(name: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def seed_reference(contacts: int, deals: int) -> None:
    asyncio.run(ensure_db(REF_DB))
    have = asyncio.run(count(REF_DSN, "SELECT count(*) FROM contacts"))
    if have != contacts:
        sh(
            [
                sys.executable,
                str(SHARED_BENCH / "seed.py"),
                "--dsn",
                REF_DSN,
                "--orgs",
                "1",
                "--contacts",
                str(contacts),
                "--deals",
                str(deals),
                "--reset",
            ]
        )


def org_with(contacts: int, deals: int, name: str) -> int:
    """An organization of the bench admin holding exactly this much demo data (made once)."""
    env = app_env()
    sh(["uv", "run", "crm", "migrate"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    sh(
        ["uv", "run", "crm", "create-admin", "-e", ADMIN[0], "-p", ADMIN[1], "-o", name],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    org = asyncio.run(count(APP_DSN, "SELECT id FROM organization WHERE slug = $1", name.lower()))
    # Creates still in flight when a create run ended outlive its cleanup; they are not demo data.
    sh(
        [
            "psql",
            APP_DSN,
            "-qc",
            f"DELETE FROM activity WHERE organization_id = {org} AND entity_type = 'contact' "
            f"AND action = 'created' AND entity_id IN (SELECT id FROM contact WHERE email LIKE 'bench-%@example.com'); "
            "DELETE FROM contact WHERE email LIKE 'bench-%@example.com'",
            "-c",
            deal_cleanup(org),
        ]
    )
    have = asyncio.run(count(APP_DSN, "SELECT count(*) FROM contact WHERE organization_id = $1", org))
    if have != contacts:
        sh(
            [
                "psql",
                APP_DSN,
                "-qc",
                f"DELETE FROM deal WHERE organization_id = {org}; "
                f"DELETE FROM contact WHERE organization_id = {org}; DELETE FROM company WHERE organization_id = {org}",
            ]
        )
        sh(
            [
                "uv",
                "run",
                "crm",
                "demo-data",
                "--org",
                str(org),
                "--contacts",
                str(contacts),
                "--deals",
                str(deals),
            ],
            env=env,
            cwd=ROOT,
        )
    # As the reference's seed does: statistics and the visibility map fresh before measuring.
    sh(["psql", APP_DSN, "-qc", "VACUUM (ANALYZE) contact, company, deal, activity, outbox_event"])
    return org


def deal_cleanup(org: int) -> str:
    """SQL deleting the deals a create run made (their history goes with them) and their activities."""
    made = f"SELECT id FROM deal WHERE organization_id = {org} AND title LIKE 'Bench Deal %'"
    return (
        f"DELETE FROM activity WHERE organization_id = {org} AND entity_type = 'deal' "
        f"AND entity_id IN ({made}); DELETE FROM deal WHERE id IN ({made})"
    )


def ensure_projects(org: int, headers: dict[str, str]) -> None:
    """Projects are not part of the demo data: the first run makes them through the API."""
    have = asyncio.run(
        count(APP_DSN, "SELECT count(*) FROM project WHERE organization_id = $1 AND deleted_at IS NULL", org)
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{APP_PORT}/api/v1", headers=headers, timeout=30) as client:
        for n in range(have, PROJECTS):
            client.post(
                "/projects",
                json={
                    "name": f"Завод «Север» {n + 1}",
                    "city": "Санкт-Петербург",
                    "jobs_count": 120 + n,
                    "own_funds_amount": "1500000.50",
                    "requested_support_amount": f"{250000 + n}.25",
                    "custom_fields": {},
                },
            ).raise_for_status()


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str], cwd: Path) -> None:
        self.name, self.port = name, port
        self.log = open(Path(tempfile.gettempdir()) / f"bench-{name}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)  # noqa: S603
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit(f"{name} did not start; see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def token() -> str:
    r = httpx.post(
        f"http://127.0.0.1:{APP_PORT}/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]}
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def config(org: int, ids: dict[str, list[int]], ref_ids: list[int]) -> dict[str, object]:
    cfg = json.loads((SHARED_BENCH / "bench.json").read_text())
    # Our endpoints the reference lacks run its nearest one on its side (BASELINES).
    for name, baseline in BASELINES.items():
        cfg["endpoints"][name] = cfg["endpoints"][baseline]
    cfg["targets"]["ref"]["base_url"] = f"http://127.0.0.1:{REF_PORT}"
    cfg["targets"]["ref"]["vars"] = {"org": 1, "contact_id": ref_ids}
    app = cfg["targets"]["app"]
    app["base_url"] = f"http://127.0.0.1:{APP_PORT}/api/v1"
    app["vars"] = {"org": org, **ids}
    cleanup = (
        f"psql {APP_DSN} -qc \"DELETE FROM activity WHERE organization_id = {org} AND entity_type = 'contact' "
        f"AND action = 'created'; DELETE FROM contact WHERE email LIKE 'bench-%@example.com'\" "
        f"-c 'VACUUM contact'"
    )
    app["endpoints"] = {
        # Our list always carries its total, so both list endpoints measure the same thing.
        "list": {"path": "/contacts?limit=50&offset={offset}"},
        "list_total": {"path": "/contacts?limit=50&offset={offset}"},
        "get": {"path": "/contacts/{contact_id}"},
        "create": {
            "path": "/contacts",
            "body": {
                "full_name": "Bench User {n}",
                "email": "bench-{n}@example.com",
                "phone": "+7 921 345-19-48",
            },
            "after": cleanup,
        },
        "funnel": {"path": "/analytics/deals/funnel"},
        "get_company": {"path": "/companies/{company_id}"},
        "get_deal": {"path": "/deals/{deal_id}"},
        "get_project": {"path": "/projects/{project_id}"},
        "create_deal": {
            "path": "/deals",
            "body": {"title": "Bench Deal {n}", "amount": "1500.00", "contact_id": ids["contact_id"][0]},
            "after": f'psql {APP_DSN} -qc "{deal_cleanup(org)}" -c "VACUUM deal"',
        },
    }
    return cfg


async def sample_ids(dsn: str, sql: str, *args: object) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def p50(client: httpx.Client, url: str, headers: dict[str, str], n: int, before: object = None) -> float:
    times = []
    for _ in range(n):
        if before:
            before()  # type: ignore[operator]
        t = time.perf_counter()
        r = client.get(url, headers=headers)
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contacts", type=int, default=200_000)
    ap.add_argument("--deals", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--endpoints", default="list_total,get,get_company,get_deal,get_project,create,create_deal,funnel"
    )
    ap.add_argument("--scaling", action="store_true", help="also compare list latency at 10k vs 1M contacts")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    args = ap.parse_args()

    seed_reference(args.contacts, args.deals)
    org = org_with(args.contacts, args.deals, "Bench")
    ref_ids = asyncio.run(sample_ids(REF_DSN, "SELECT id FROM contacts ORDER BY random() LIMIT 50"))

    ref = Server(
        "ref",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "reference_server:app",
            "--app-dir",
            str(SHARED_BENCH),
            "--port",
            str(REF_PORT),
            *UVICORN,
        ],
        REF_PORT,
        {**os.environ, "BENCH_DSN": REF_DSN},
        ROOT,
    )
    app = Server(
        "app",
        ["uv", "run", "uvicorn", "crm.main:create_app", "--factory", "--port", str(APP_PORT), *UVICORN],
        APP_PORT,
        app_env(),
        ROOT,
    )
    results: dict[str, object] = {"contacts": args.contacts, "deals": args.deals, "baselines": BASELINES}
    try:
        os.environ["BENCH_APP_TOKEN"] = token()
        headers = {"Authorization": f"Bearer {os.environ['BENCH_APP_TOKEN']}", "X-Organization-ID": str(org)}
        ensure_projects(org, headers)
        ids = {
            f"{table}_id": asyncio.run(
                sample_ids(
                    APP_DSN,
                    f"SELECT id FROM {table} WHERE organization_id = $1 AND deleted_at IS NULL "
                    "ORDER BY random() LIMIT 50",
                    org,
                )
            )
            for table in ("contact", "company", "deal", "project")
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(config(org, ids, ref_ids), fh)
        raw = Path(tempfile.mkdtemp(prefix="bench-")) / "raw.json"
        sh(
            [
                sys.executable,
                str(SHARED_BENCH / "harness.py"),
                "--config",
                fh.name,
                "--targets",
                "ref,app",
                "--endpoints",
                args.endpoints,
                "--duration",
                str(args.duration),
                "--rounds",
                str(args.rounds),
                "--connections",
                str(args.connections),
                "--json",
                str(raw),
            ],
            env={**os.environ, "BENCH_DSN": REF_DSN},
        )
        results["harness"] = json.loads(raw.read_text())
        measured = args.endpoints.split(",")
        compared = [f"{name} with its {base}" for name, base in BASELINES.items() if name in measured]
        if compared:
            print("# the reference serves contacts only; compared: " + ", ".join(compared), flush=True)

        import redis

        r = redis.Redis.from_url(REDIS_URL)
        with httpx.Client(base_url=f"http://127.0.0.1:{APP_PORT}/api/v1", timeout=30) as client:
            results["funnel_uncached_p50_ms"] = p50(
                client, "/analytics/deals/funnel", headers, 30, lambda: r.incr(f"gen:{org}")
            )
            results["funnel_cached_p50_ms"] = p50(client, "/analytics/deals/funnel", headers, 30)
            results["list_p50_ms"] = p50(client, "/contacts?limit=50", headers, 50)
        if args.scaling:
            app.stop()
            small = org_with(10_000, 0, "Bench10k")
            large = org_with(1_000_000, 0, "Bench1m")
            app = Server("app", app.proc.args, APP_PORT, app_env(), ROOT)  # type: ignore[arg-type]
            os.environ["BENCH_APP_TOKEN"] = token()
            with httpx.Client(base_url=f"http://127.0.0.1:{APP_PORT}/api/v1", timeout=30) as client:
                for label, org_id in (("10k", small), ("1m", large)):
                    h = {
                        "Authorization": f"Bearer {os.environ['BENCH_APP_TOKEN']}",
                        "X-Organization-ID": str(org_id),
                    }
                    p50(client, "/contacts?limit=50", h, 10)
                    results[f"list_p50_ms_{label}"] = p50(client, "/contacts?limit=50", h, 100)
    finally:
        app.stop()
        ref.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({k: v for k, v in results.items() if k != "harness"}, indent=2))


if __name__ == "__main__":
    main()

"""`make prod-local` for real (one API, one worker to keep it short): everything comes up behind
nginx through PgBouncer, a killed process is restarted, and SIGTERM stops every process it started."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import PG_BASE, SLOT, WORKER
from tests.system.topology import ROOT, binary

BASE = int(os.environ.get("TEST_PROD_LOCAL_PORT_BASE", "18405"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_prod_local_starts_restarts_and_stops_everything() -> None:
    for name in ("nginx", "pgbouncer", "redis-server"):
        binary(name)
    run = Path(tempfile.mkdtemp(prefix="crm-prod-local-"))
    run.chmod(0o755)
    database = f"crm_test_{SLOT}_{WORKER}_prodlocal"
    env = {
        **os.environ,
        "PROD_LOCAL_DIR": str(run),
        "PROD_LOCAL_PORT_BASE": str(BASE),
        "PROD_LOCAL_APIS": "1",
        "PROD_LOCAL_WORKERS": "1",
        "PROD_LOCAL_WORKER_CONCURRENCY": "1",
        "PROD_LOCAL_DB": database,
        "DATABASE_URL": f"{PG_BASE}/{database}",
        "PATH": os.environ.get("PATH", "") + ":/usr/sbin",
    }
    log = (run / "out.log").open("wb")
    supervisor = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "prod_local.py")], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 240
        while not (run / "ready").exists():
            assert supervisor.poll() is None, (run / "out.log").read_text()[-4000:]
            assert time.monotonic() < deadline, (run / "out.log").read_text()[-4000:]
            time.sleep(0.5)
        state = json.loads((run / "state.json").read_text())
        assert set(state["pids"]) == {"redis", "pgbouncer", "api1", "worker1", "beat", "nginx"}
        with httpx.Client(base_url=state["http_url"], timeout=10) as client:
            ready = client.get("/ready")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok"}
            assert (client.get("/metrics")).status_code == 404  # not for the outside

            # the API dies: the supervisor starts it again and nginx serves on
            old = state["pids"]["api1"]
            os.killpg(old, signal.SIGKILL)
            deadline = time.monotonic() + 120
            while True:
                state = json.loads((run / "state.json").read_text())
                if state["pids"]["api1"] != old and state["restarts"]["api1"] == 1:
                    try:
                        if (client.get("/health")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                assert time.monotonic() < deadline, (run / "out.log").read_text()[-4000:]
                time.sleep(0.5)

        pids = list(state["pids"].values())
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(120) == 0
        assert not (run / "ready").exists()
        left = [pid for pid in pids if _alive(pid)]
        assert not left, (left, (run / "out.log").read_text()[-4000:])
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(10)
        log.close()
        asyncio.run(_drop_database(database))
        shutil.rmtree(run, ignore_errors=True)


async def _drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_BASE.replace("+asyncpg", "") + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()

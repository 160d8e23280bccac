"""Schemathesis against a live API process (uvicorn over TCP), not in-process (SPEC §17, §19.18).

In-process (tests/test_openapi_fuzz.py) a response that fails after its headers were sent, or a
handler that blocks the event loop, can pass unnoticed. Here the schema is loaded from the running
server's `/openapi.json` and every case goes over a real socket, so a body cut off mid-stream, a reset
connection or an answer slower than `TIMEOUT` seconds fails the case as a transport error. Meanwhile a
thread probes `/health` (pure liveness) and the run fails when one probe takes more than `MAX_STALL`
seconds or fails, or when the server process dies.

Same owner, same checks and status rules as the in-process run, with a smaller budget: no coverage
phase, the schema's own examples plus `CRM_FUZZ_LIVE_EXAMPLES` generated cases (default 2) per
operation. The session and organization enders and the endless notification stream are left out.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import SkipTest

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import negative_data_rejection

from crm.config import Settings
from tests.live_server import LiveServer, run_live_server
from tests.test_openapi_fuzz import (
    DESTRUCTIVE,
    ENDLESS,
    OPERATION_RULES,
    ORGANIZATION_ID,
    POSITIVE_STATUSES,
    TENANT_HEADER,
    Owner,
    _reset_database,
    fuzz_settings,
    negative_data_rejection_as_sent,
)

EXAMPLES = int(os.environ.get("CRM_FUZZ_LIVE_EXAMPLES", "2"))
#: Seconds a single answer may take before the case fails as a transport error.
TIMEOUT = 10.0
#: Seconds `/health` may take: longer means the event loop was blocked.
MAX_STALL = 1.0
PROBE_INTERVAL = 0.05

config = SchemathesisConfig.from_dict(
    {
        "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES}},
        "generation": {"max-examples": EXAMPLES},
        "phases": {"coverage": {"enabled": False}},
        "parameters": {f"header.{TENANT_HEADER}": str(ORGANIZATION_ID)},
        "operations": OPERATION_RULES,
    }
)


#: Run in a process of its own, so that the fuzzing thread's work (and the GIL) never delays a probe.
PROBE_SCRIPT = """
import http.client, sys, time
host, port, interval, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
while True:
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.request("GET", "/health")
        outcome = str(conn.getresponse().status)
        conn.close()
    except Exception as exc:
        outcome = repr(exc).replace(" ", "_")
    print(f"{time.perf_counter() - started:.3f} {outcome}", flush=True)
    time.sleep(interval)
"""


@dataclass
class HealthProbe:
    """Another process calls `/health` every `PROBE_INTERVAL` seconds and writes each answer's time."""

    base: str
    out: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        host, port = self.base.removeprefix("http://").split(":")
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", PROBE_SCRIPT, host, port, str(PROBE_INTERVAL), str(TIMEOUT)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def _answers(self) -> list[tuple[float, str]]:
        lines = self.out.read_text().splitlines()
        return [
            (float(took), outcome) for took, outcome in (line.split(" ", 1) for line in lines if " " in line)
        ]

    @property
    def probes(self) -> int:
        return len(self._answers())

    @property
    def slowest(self) -> float:
        return max((took for took, _ in self._answers()), default=0.0)

    @property
    def failures(self) -> list[str]:
        found = [f"/health: {outcome}" for _, outcome in self._answers() if outcome != "200"]
        found += [
            f"/health took {took:.2f} s: the event loop stalled"
            for took, _ in self._answers()
            if took > MAX_STALL
        ]
        if self.process is not None and self.process.poll() is not None and not self.process.returncode < 0:
            found.append(f"the /health probe exited: {self.out.read_text()[-500:]}")
        return found


@dataclass
class Live:
    server: LiveServer
    owner: Owner
    probe: HealthProbe
    cases: int = 0

    def assert_healthy(self, after: str) -> None:
        code = self.server.process.poll()
        assert code is None, f"the API process exited ({code}) after {after}:\n{self.server.log_tail()}"
        assert not self.probe.failures, f"after {after}: {self.probe.failures[:5]}"


@pytest.fixture(scope="module")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    owner = asyncio.run(_reset_database(settings, seed=True))
    assert owner is not None
    log_path = tmp_path_factory.mktemp("live-fuzz") / "api.log"
    try:
        with run_live_server(
            # A deployment with public registration configured (unconfigured, `/register` is 503).
            settings,
            log_path,
            LOG_LEVEL="WARNING",
            REGISTRATION_ORGANIZATION="fuzzing-org",
        ) as server:
            probe = HealthProbe(server.base, log_path.with_name("health.log"))
            probe.start()
            state = Live(server=server, owner=owner, probe=probe)
            try:
                yield state
            finally:
                probe.stop()
            print(
                f"live fuzz: {state.cases} cases, {probe.probes} health probes, "
                f"slowest {probe.slowest * 1000:.0f} ms"
            )
            state.assert_healthy("the whole run")
    finally:
        asyncio.run(_reset_database(settings, seed=False))


@pytest.fixture(scope="module")
def live_schema(live: Live) -> schemathesis.BaseSchema:
    schema: schemathesis.BaseSchema = schemathesis.openapi.from_url(
        f"{live.server.base}/openapi.json", config=config
    )
    for method, path in DESTRUCTIVE + ENDLESS:
        schema = schema.exclude(method=method, path=path)
    return schema


def check_case(case: schemathesis.Case, live: Live) -> None:
    live.cases += 1
    where = f"{case.method} {case.formatted_path}"
    try:
        case.call_and_validate(
            headers=live.owner.headers,
            timeout=TIMEOUT,
            excluded_checks=[negative_data_rejection],
            additional_checks=[negative_data_rejection_as_sent],
        )
    finally:
        live.assert_healthy(where)


def test_openapi_fuzz_live(live: Live, live_schema: schemathesis.BaseSchema) -> None:
    """Every operation in turn, every failure collected; a dead or stalled server ends the run at once.

    (`schemathesis.pytest.from_fixture` would do the looping, but it does not run under pytest 9.)
    """
    failures: dict[str, BaseException] = {}
    operations = 0
    for result in get_all_tests(
        schema=live_schema, test_func=check_case, settings=fuzz_settings, given_kwargs={}
    ):
        if not isinstance(result, Ok):
            failures[str(result.err().label)] = result.err()
            continue
        operation, run = result.ok()
        operations += 1
        try:
            run(live=live)
        except SkipTest:
            continue
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup is the latter
            failures[operation.label] = exc
        live.assert_healthy(operation.label)
    print(f"live fuzz: {operations} operations")
    assert operations > 100, operations
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())

"""Client generators run clean on the document (SPEC §20.10): `openapi-typescript` (npm, through
`npx`, then `tsc --strict` on its output) and `openapi-python-client` (PyPI, through `uv tool run`,
then the package byte-compiles). Each is skipped, saying why, where its runner is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TYPESCRIPT_GENERATOR = "openapi-typescript@7.13.0"
TYPESCRIPT = "typescript@5"
PYTHON_GENERATOR = "openapi-python-client==0.29.1"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture
def document(app: Any, tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(app.openapi()))
    return path


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
def test_openapi_typescript_generates_types_that_compile(document: Path) -> None:
    cwd = document.parent
    generated = _run(["npx", "--yes", TYPESCRIPT_GENERATOR, document.name, "-o", "schema.d.ts"], cwd)
    assert generated.returncode == 0, generated.stderr
    assert "warn" not in (generated.stdout + generated.stderr).lower(), generated.stdout + generated.stderr
    types = (cwd / "schema.d.ts").read_text()
    assert '"/api/v1/contacts"' in types
    assert "ContactCreate" in types
    compiled = _run(["npx", "--yes", "-p", TYPESCRIPT, "tsc", "--noEmit", "--strict", "schema.d.ts"], cwd)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_openapi_python_client_generates_a_package(document: Path) -> None:
    cwd = document.parent
    generated = _run(
        [
            "uv",
            "tool",
            "run",
            "--from",
            PYTHON_GENERATOR,
            "openapi-python-client",
            "generate",
            "--path",
            document.name,
            "--output-path",
            "client",
            "--overwrite",
        ],
        cwd,
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert "warning" not in output.lower(), output
    assert "unable to" not in output.lower(), output
    package = cwd / "client" / "crm_api_client"
    assert (package / "api" / "contacts").is_dir()
    compiled = _run([sys.executable, "-m", "compileall", "-q", str(package)], cwd)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr

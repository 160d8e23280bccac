#!/usr/bin/env bash
# The test suite, then ruff and mypy. Services must answer already (scripts/services.sh test).
# Extra arguments go to pytest. Exits non-zero when any of the three fails; pytest's exit status 5
# (no tests collected) counts as success with a warning.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Let Python cache the bytecode of src/ and tests/: every test worker and subprocess imports them.
unset PYTHONDONTWRITEBYTECODE
workers=${PYTEST_WORKERS:-2}
xdist=()
if [[ $workers != 0 && $workers != 1 ]]; then xdist=(-n "$workers"); fi

say "pytest ${xdist[*]} $*"
uv_cmd run --no-sync pytest "${xdist[@]}" "$@"
pytest_status=$?
if [[ $pytest_status -eq 5 ]]; then
    # Nothing was selected (e.g. a -k filter matched nothing): not a failure of the code.
    warn "pytest collected no tests"
    pytest_status=0
fi

say "ruff check"
uv_cmd run --no-sync ruff check src tests
ruff_status=$?

say "ruff format --check"
uv_cmd run --no-sync ruff format --check src tests
format_status=$?
[[ $format_status -eq 0 ]] || ruff_status=1

say "mypy"
uv_cmd run --no-sync mypy
mypy_status=$?

printf '\npytest: %s, ruff: %s, mypy: %s\n' \
    "$([[ $pytest_status -eq 0 ]] && echo ok || echo "failed ($pytest_status)")" \
    "$([[ $ruff_status -eq 0 ]] && echo ok || echo failed)" \
    "$([[ $mypy_status -eq 0 ]] && echo ok || echo failed)"
if [[ $pytest_status -ne 0 ]]; then exit "$pytest_status"; fi
if [[ $ruff_status -ne 0 || $mypy_status -ne 0 ]]; then exit 1; fi

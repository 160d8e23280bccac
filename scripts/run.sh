#!/usr/bin/env bash
# Run the API, a Celery worker and Celery beat in the foreground under scripts/supervise.py: a
# process that exits unexpectedly is started again with backoff while the others keep serving;
# Ctrl-C (or SIGTERM to this script's pid, which becomes the supervisor's) stops all three.
#
# CRM_RUN_DIR (default: .run in this checkout) holds the pid files and the beat schedule, so
# several checkouts on one machine never share them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
load_dotenv .env

run_dir=${CRM_RUN_DIR:-$PWD/.run}
mkdir -p "$run_dir"
export CELERY_BEAT_SCHEDULE=${CELERY_BEAT_SCHEDULE:-$run_dir/celerybeat-schedule}

# The project's interpreter and commands, used directly: no `uv run` layer between the supervisor
# and the processes it watches and signals.
python=$(uv_cmd run --no-sync python -c 'import sys; print(sys.executable)')
bin=$(dirname "$python")
crm=$(printf '%q' "$bin/crm")
export PATH="$bin:$PATH"

say "API on http://${HOST:-127.0.0.1}:${PORT:-8000} (docs at /docs); press Ctrl-C to stop"
exec "$python" scripts/supervise.py --run-dir "$run_dir" \
    "api=$crm serve" "worker=$crm worker" "beat=$crm beat"

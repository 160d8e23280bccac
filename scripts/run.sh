#!/usr/bin/env bash
# Run the API, a Celery worker and Celery beat in the foreground; Ctrl-C (or any of them exiting)
# stops all three.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Each child in its own process group, so that stopping one stops everything it started.
set -m
pids=()
names=()

start() {
    local name=$1
    shift
    "$@" &
    pids+=("$!")
    names+=("$name")
    say "$name started (pid $!): $*"
}

stopping=0
stop_all() {
    [[ $stopping -eq 0 ]] || return 0
    stopping=1
    set +m  # no "Terminated" job notices
    trap - INT TERM
    say "stopping API, worker and beat"
    local pid
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    local deadline=$((SECONDS + 30))
    for pid in "${pids[@]}"; do
        while kill -0 -- "-$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

start api uv_cmd run --no-sync crm serve
start worker uv_cmd run --no-sync crm worker
start beat uv_cmd run --no-sync crm beat

load_dotenv .env
say "API on http://${HOST:-127.0.0.1}:${PORT:-8000} (docs at /docs); press Ctrl-C to stop"

# Whichever exits first ends the run.
status=0
wait -n "${pids[@]}" || status=$?
for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        warn "${names[$i]} exited (status $status); stopping the others"
    fi
done
exit "$status"

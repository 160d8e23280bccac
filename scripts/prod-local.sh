#!/usr/bin/env bash
# The production topology on this machine (see scripts/prod_local.py): nginx → 3 API processes →
# PgBouncer (transaction pooling) → PostgreSQL, a private Redis, 2 Celery workers and beat, all under
# .run/prod-local/. Installs nginx, PgBouncer and Redis from Debian's packages when they are missing
# (as root). Ctrl-C or SIGTERM stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ((${#missing[@]})); then
    if is_root && is_debian; then
        say "installing ${missing[*]} (apt-get)"
        apt_install "${missing[@]}"
        # Debian starts packaged services; prod-local runs its own copies on its own ports.
        for unit in nginx pgbouncer redis-server; do
            if [[ " ${missing[*]} " == *" $unit "* ]] && command -v systemctl >/dev/null 2>&1; then
                systemctl disable --now "$unit" >/dev/null 2>&1 || true
            fi
        done
    else
        die "missing: ${missing[*]} — install them (apt-get install ${missing[*]}) and retry"
    fi
fi

export PATH="$PATH:/usr/sbin"
exec "$(uv_cmd run --frozen python -c 'import sys; print(sys.executable)')" scripts/prod_local.py "$@"

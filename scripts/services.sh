#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer where the configuration says.
#
#   scripts/services.sh run    DATABASE_URL, REDIS_URL, CELERY_BROKER_URL (environment, then .env)
#   scripts/services.sh test   TEST_DATABASE_BASE, TEST_REDIS_BASE (what tests/conftest.py uses)
#
# Running servers are used as they are. A local one that is missing is started (and installed with
# apt-get first when absent) if this runs as root on Debian or Ubuntu; otherwise the script says
# exactly what to do and fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

mode=${1:-run}
case $mode in
    run)
        load_dotenv .env
        pg_url=${DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/crm}
        redis_url=${REDIS_URL:-redis://127.0.0.1:6379/0}
        broker_url=${CELERY_BROKER_URL:-redis://127.0.0.1:6379/1}
        pg_var=DATABASE_URL redis_var=REDIS_URL
        ;;
    test)
        pg_url=${TEST_DATABASE_BASE:-postgresql+asyncpg://postgres@127.0.0.1:5432}
        redis_url=${TEST_REDIS_BASE:-redis://127.0.0.1:6379}
        broker_url=$redis_url
        pg_var=TEST_DATABASE_BASE redis_var=TEST_REDIS_BASE
        ;;
    *) die "usage: $0 run|test" ;;
esac

can_manage_locally() { is_local_host "$1" && is_root && is_debian; }

pg_version() { find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n1; }

# Debian's fresh cluster asks for a password over TCP; the development URL has none.
trust_local_tcp() {
    local hba="/etc/postgresql/$1/main/pg_hba.conf"
    [[ -f $hba ]] || return 0
    if ! grep -q '^# crm: development trust' "$hba"; then
        say "allowing password-less connections from this machine to the new PostgreSQL (development only)"
        sed -i '1i # crm: development trust for connections from this machine\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
}

start_postgres() {
    local host=$1 port=$2 version fresh=0
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z $(pg_version) ]]; then
        say "installing PostgreSQL (apt-get install postgresql)"
        apt_install postgresql
        fresh=1
    fi
    version=$(pg_version)
    [[ -n $version ]] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
    if [[ ! -d /etc/postgresql/$version/main ]]; then
        pg_createcluster "$version" main >/dev/null
        fresh=1
    fi
    local cluster_port
    cluster_port=$(awk -F= '/^[[:space:]]*port[[:space:]]*=/ {gsub(/[^0-9]/, "", $2); print $2}' \
        "/etc/postgresql/$version/main/postgresql.conf" | head -n1)
    if [[ -n $cluster_port && $cluster_port != "$port" ]]; then
        die "the local PostgreSQL cluster $version/main listens on port $cluster_port, not $port: change $pg_var or the cluster's port"
    fi
    [[ $fresh -eq 0 ]] || trust_local_tcp "$version"
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
        || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    wait_for "PostgreSQL at $host:$port" 30 postgres_answers "$host" "$port" \
        || die "PostgreSQL did not come up; see /var/log/postgresql/"
}

start_redis() {
    local host=$1 port=$2
    if ! command -v redis-server >/dev/null 2>&1; then
        say "installing Redis (apt-get install redis-server)"
        apt_install redis-server
    fi
    say "starting Redis on 127.0.0.1:$port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no >/dev/null
    wait_for "Redis at $host:$port" 15 redis_answers "$host" "$port" || die "Redis did not come up"
}

advise_postgres() {
    cat >&2 <<MSG

PostgreSQL does not answer at $1:$2 (from $pg_var).
  * On Debian/Ubuntu, as root:   apt-get install -y postgresql
                                 pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start
    and let user postgres connect from 127.0.0.1 without a password (pg_hba.conf "trust"), or put the
    password into the URL.
  * Elsewhere: start any PostgreSQL 15+ and point $pg_var (in .env) at it, e.g.
        DATABASE_URL=postgresql+asyncpg://USER:PASSWORD@HOST:5432/crm
  Then run the same make command again.
MSG
    exit 1
}

advise_redis() {
    cat >&2 <<MSG

Redis does not answer at $1:$2 (from $3).
  * On Debian/Ubuntu, as root:   apt-get install -y redis-server
                                 redis-server --daemonize yes --bind 127.0.0.1 --port $2 --save "" --appendonly no
  * Elsewhere: start Redis 6+ and point $3 (in .env) at it, e.g. REDIS_URL=redis://HOST:6379/0
  Then run the same make command again.
MSG
    exit 1
}

pg_host=$(url_host "$pg_url")
pg_port=$(url_port "$pg_url" 5432)
if postgres_answers "$pg_host" "$pg_port"; then
    say "PostgreSQL answers at $pg_host:$pg_port"
elif can_manage_locally "$pg_host"; then
    start_postgres "$pg_host" "$pg_port"
else
    advise_postgres "$pg_host" "$pg_port"
fi

check_redis() {
    local url=$1 var=$2 host port
    host=$(url_host "$url")
    port=$(url_port "$url" 6379)
    if redis_answers "$host" "$port"; then
        say "Redis answers at $host:$port"
    elif can_manage_locally "$host"; then
        start_redis "$host" "$port"
    else
        advise_redis "$host" "$port" "$var"
    fi
}

check_redis "$redis_url" "$redis_var"
case $broker_url in
    redis://* | rediss://*)
        if [[ $(url_host "$broker_url"):$(url_port "$broker_url" 6379) != "$(url_host "$redis_url"):$(url_port "$redis_url" 6379)" ]]; then
            check_redis "$broker_url" CELERY_BROKER_URL
        fi
        ;;
    amqp://* | amqps://* | pyamqp://*)
        host=$(url_host "$broker_url")
        port=$(url_port "$broker_url" 5672)
        tcp_open "$host" "$port" || die "the Celery broker (CELERY_BROKER_URL) does not answer at $host:$port: start RabbitMQ there or use a redis:// URL"
        say "Celery broker answers at $host:$port"
        ;;
esac

# The topology tests run the repo's nginx config and a PgBouncer in transaction mode: install both
# when missing and we may (root on Debian); otherwise those tests are skipped and say why.
if [[ $mode == test ]] && is_root && is_debian; then
    missing=()
    for tool in nginx pgbouncer; do
        command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]} for the topology tests"
        apt_install "${missing[@]}" || warn "could not install ${missing[*]}: the topology tests will be skipped"
    fi
fi

# The browser test of /docs drives the system's Chromium (no browser download): install it when
# missing and we may (root on Debian); otherwise that one test is skipped and says why.
if [[ $mode == test ]] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if is_root && is_debian; then
        say "installing Chromium for the browser test of /docs (apt-get install chromium)"
        apt_install chromium || warn "could not install Chromium: the browser test of /docs will be skipped"
    else
        warn "Chromium is not installed: the browser test of /docs will be skipped (apt-get install chromium)"
    fi
fi

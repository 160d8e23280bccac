# Shared helpers for the scripts in this folder; `source` it, don't run it.
# shellcheck shell=bash

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

is_root() { [[ $(id -u) -eq 0 ]]; }
is_debian() { [[ -f /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1; }

# `uv` itself, or the copy `pip install uv` put next to python3 when no `uv` is on PATH.
uv_cmd() {
    if command -v uv >/dev/null 2>&1; then
        uv "$@"
    else
        python3 -m uv "$@"
    fi
}

ensure_uv() {
    if command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 is needed (3.11 or newer) to install uv"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        if is_root && is_debian; then
            say "installing pip (apt-get install python3-pip)"
            apt_install python3-pip
        else
            die "pip is missing: install uv (https://docs.astral.sh/uv/) or python3-pip, then retry"
        fi
    fi
    say "installing uv with pip"
    python3 -m pip install --quiet uv \
        || python3 -m pip install --quiet --user uv \
        || python3 -m pip install --quiet --user --break-system-packages uv \
        || die "could not install uv with pip"
    python3 -m uv --version >/dev/null 2>&1 || die "uv was installed but python3 -m uv does not run"
}

APT_UPDATED=0
apt_install() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Export KEY=value lines of a dotenv file, keeping variables the environment already sets
# (the application gives the environment precedence over .env as well).
load_dotenv() {
    local file=$1 line key value
    [[ -f $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        key=${BASH_REMATCH[2]}
        value=${BASH_REMATCH[3]}
        if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then
            value=${BASH_REMATCH[1]}
        else
            value=${value%%[[:space:]]#*}
            value=${value%"${value##*[![:space:]]}"}
        fi
        [[ -n ${!key+set} ]] || export "$key=$value"
    done <"$file"
}

# url_host URL / url_port URL DEFAULT_PORT: the server part of scheme://user:pass@host:port/path.
_url_hostport() {
    local rest=${1#*://}
    rest=${rest%%/*}
    rest=${rest%%\?*}
    printf '%s' "${rest##*@}"
}
url_host() {
    local hp
    hp=$(_url_hostport "$1")
    if [[ $hp == \[* ]]; then
        hp=${hp#[}
        printf '%s' "${hp%%]*}"
    else
        printf '%s' "${hp%%:*}"
    fi
}
url_port() {
    local hp port
    hp=$(_url_hostport "$1")
    if [[ $hp == \[* ]]; then hp=${hp#*]}; fi
    if [[ $hp == *:* ]]; then port=${hp##*:}; else port=$2; fi
    printf '%s' "${port:-$2}"
}
is_local_host() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 || $1 == 0.0.0.0 ]]; }

tcp_open() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

redis_answers() {
    local reply
    reply=$(timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2; printf 'PING\r\n' >&3; IFS= read -r -t 2 line <&3; printf '%s' \"\$line\"" 2>/dev/null) || return 1
    # A server that wants a password still answers: "-NOAUTH ..." (the URL carries the password).
    [[ $reply == +PONG* || $reply == -NOAUTH* || $reply == -ERR*auth* ]]
}

postgres_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$1" -p "$2" -t 3
    else
        tcp_open "$1" "$2"
    fi
}

wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    say "$what is up"
}

# `uv sync --frozen`, skipped when uv.lock and pyproject.toml are unchanged since the last sync into
# this .venv (a stamp file inside it): a restart of `make run` then takes seconds, without
# re-installing or re-compiling the bytecode of every package.
sync_deps() {
    local stamp=.venv/.crm-synced want
    want=$( { cat uv.lock pyproject.toml; python3 --version 2>&1; } | sha256sum | cut -d' ' -f1)
    if [[ -x .venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return 0
    fi
    # --inexact: provider plugins installed into this .venv (`uv pip install plugins/crm-kaspi`) stay
    # when the lock changes; packages the lock no longer has stay too (remove .venv to
    # start clean).
    uv_cmd sync --frozen --inexact
    printf '%s\n' "$want" >"$stamp"
}

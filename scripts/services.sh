#!/usr/bin/env bash
# PostgreSQL and Redis for gateways that share keys, limits, budgets, reviews and the audit chain (and for
# their tests), run as private servers on loopback:
#
#   scripts/services.sh start   install what is missing (Debian packages, Python drivers), start both, print env
#   scripts/services.sh env     print BASTION_DATABASE_URL=... and BASTION_LIMITS_URL=... (both must be running)
#   scripts/services.sh stop    stop both (their data stays under the services folder)
#
# e.g.  eval "$(scripts/services.sh start | sed 's/^/export /')"
#       bastion serve --workers 4 ...
#
# Data, logs and the generated password live in $BASTION_SERVICES_DIR (default .services/ in the repository).
# PostgreSQL listens on 127.0.0.1:$BASTION_PG_PORT (55432), Redis on 127.0.0.1:$BASTION_REDIS_PORT (56379):
# not the default ports, so a system server is left alone. Both need the password. PostgreSQL refuses to
# run as root: run as root, this script runs it as the `postgres` user, which then owns its data folder.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${BASTION_SERVICES_DIR:-$ROOT/.services}
PG_PORT=${BASTION_PG_PORT:-55432}
REDIS_PORT=${BASTION_REDIS_PORT:-56379}
PYTHON=${BASTION_PYTHON:-$ROOT/.venv/bin/python}
PG_DIR=$DIR/postgres
PG_DATA=$PG_DIR/data
REDIS_DIR=$DIR/redis
SECRET_FILE=$DIR/password

say() { echo "services: $*" >&2; }
die() { say "error: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# PostgreSQL's server programs: on PATH (e.g. /usr/local/bin links), else the newest /usr/lib/postgresql/N/bin.
pg_bin() {
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    local newest
    newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$newest" ] && [ -x "$newest/pg_ctl" ] && echo "$newest"
}

as_postgres() {  # a command as the user that owns the PostgreSQL data
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_missing() {
    local packages=()
    [ -n "$(pg_bin || true)" ] || packages+=(postgresql)
    command -v psql >/dev/null 2>&1 || packages+=(postgresql-client)
    command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
    if [ ${#packages[@]} -gt 0 ]; then
        say "installing ${packages[*]} from the Debian packages"
        local sudo=()
        is_root || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${packages[@]}" >&2
    fi
    if is_root && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    if [ ! -x "$PYTHON" ]; then
        say "no Python at $PYTHON (set BASTION_PYTHON): not checking the psycopg and redis drivers"
    elif ! "$PYTHON" -c "import psycopg, redis" 2>/dev/null; then
        say "installing the psycopg and redis drivers into $(dirname "$(dirname "$PYTHON")")"
        "$PYTHON" -m pip install -q --constraint "$ROOT/constraints.txt" 'psycopg[binary]>=3.1' 'redis>=5' >&2
    fi
}

password() {
    if [ ! -s "$SECRET_FILE" ]; then
        mkdir -p "$DIR"
        (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$SECRET_FILE")
    fi
    cat "$SECRET_FILE"
}

database_url() { echo "postgresql+psycopg://bastion:$(password)@127.0.0.1:$PG_PORT/bastion"; }
limits_url() { echo "redis://:$(password)@127.0.0.1:$REDIS_PORT/0"; }

print_env() {
    echo "BASTION_DATABASE_URL=$(database_url)"
    echo "BASTION_LIMITS_URL=$(limits_url)"
}

start_postgres() {
    local bin secret
    bin=$(pg_bin) || die "no PostgreSQL server programs (pg_ctl, initdb) found"
    secret=$(password)
    mkdir -p "$PG_DIR"
    if is_root; then chown postgres: "$PG_DIR"; fi
    chmod 700 "$PG_DIR"
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        say "creating a PostgreSQL cluster in $PG_DATA ($("$bin/postgres" --version))"
        local pwfile=$PG_DIR/pwfile
        (umask 077; echo "$secret" > "$pwfile")
        if is_root; then chown postgres: "$pwfile"; fi
        as_postgres "$bin/initdb" -D "$PG_DATA" -U bastion --pwfile="$pwfile" --auth=scram-sha-256 \
            --encoding=UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
        rm -f "$pwfile"
    fi
    if as_postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        say "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    else
        say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        as_postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories='$PG_DIR' -c max_connections=200" \
            start >/dev/null || { tail -n 20 "$PG_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
    fi
    local exists
    exists=$(PGPASSWORD=$secret psql -h 127.0.0.1 -p "$PG_PORT" -U bastion -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'bastion'")
    if [ "$exists" != 1 ]; then
        say "creating the database bastion"
        PGPASSWORD=$secret psql -h 127.0.0.1 -p "$PG_PORT" -U bastion -d postgres -qc "CREATE DATABASE bastion" >&2
    fi
}

redis_cli() { REDISCLI_AUTH=$(password) redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

start_redis() {
    mkdir -p "$REDIS_DIR"
    chmod 700 "$REDIS_DIR"
    if [ "$(redis_cli ping 2>/dev/null || true)" = PONG ]; then
        say "Redis already running on 127.0.0.1:$REDIS_PORT"
        return
    fi
    (umask 077; cat > "$REDIS_DIR/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
requirepass $(password)
daemonize yes
dir $REDIS_DIR
pidfile $REDIS_DIR/redis.pid
logfile $REDIS_DIR/redis.log
save ""
appendonly no
EOF
    )
    say "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server "$REDIS_DIR/redis.conf"
    for _ in $(seq 100); do
        [ "$(redis_cli ping 2>/dev/null || true)" = PONG ] && return
        sleep 0.1
    done
    tail -n 20 "$REDIS_DIR/redis.log" >&2
    die "Redis did not start"
}

stop_all() {
    local bin
    bin=$(pg_bin || true)
    if [ -n "$bin" ] && [ -f "$PG_DATA/PG_VERSION" ] && as_postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        say "stopping PostgreSQL"
        as_postgres "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
    fi
    if [ -f "$REDIS_DIR/redis.pid" ] && [ "$(redis_cli ping 2>/dev/null || true)" = PONG ]; then
        say "stopping Redis"
        redis_cli shutdown nosave >/dev/null 2>&1 || true
        for _ in $(seq 50); do [ -f "$REDIS_DIR/redis.pid" ] || break; sleep 0.1; done
    fi
}

case "${1:-}" in
    start)
        install_missing
        start_postgres
        start_redis
        print_env
        ;;
    env)
        [ -s "$SECRET_FILE" ] || die "no services under $DIR: run '$0 start' first"
        print_env
        ;;
    stop)
        stop_all
        ;;
    *)
        echo "usage: $0 start|env|stop   (folder: \$BASTION_SERVICES_DIR, default $ROOT/.services)" >&2
        exit 2
        ;;
esac

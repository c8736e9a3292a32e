#!/usr/bin/env bash
# scripts/pg.sh — a private PostgreSQL server for `make dev` and `make test`.
#
#   scripts/pg.sh dev|test [start [DBNAME]|stop|status]
#
# start (the default) makes sure the server runs and prints one URL on stdout: the admin URL
# (database "postgres"), or, with DBNAME, the URL of that database (created when missing).
# Everything else goes to stderr, so `url=$(scripts/pg.sh test)` works.
#
# A URL given in the environment wins and is printed as is: DATABASE_URL for dev,
# TM_TEST_DATABASE_URL for test. Otherwise the server lives under .data/pg (dev, port 54329) or
# .data/pg-test (test, port 54330, fsync off), listens on 127.0.0.1 only, trusts local
# connections, and keeps running between invocations (`make pg-stop` stops both).
# Overrides: TM_DEV_PG_PORT, TM_TEST_PG_PORT, PG_BIN (folder holding initdb and pg_ctl).
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { die "usage: scripts/pg.sh dev|test [start [DBNAME]|stop|status]"; }

profile=${1:-}
action=${2:-start}
dbname=${3:-}
case $profile in
  dev)  port=${TM_DEV_PG_PORT:-54329};  given_url=${DATABASE_URL:-};         given_var=DATABASE_URL ;;
  test) port=${TM_TEST_PG_PORT:-54330}; given_url=${TM_TEST_DATABASE_URL:-}; given_var=TM_TEST_DATABASE_URL ;;
  *) usage ;;
esac
case $action in start | stop | status) ;; *) usage ;; esac
if [[ -n $dbname && ! $dbname =~ ^[a-z_][a-z0-9_]*$ ]]; then
  die "database name must be lower_snake_case: '$dbname'"
fi

if [[ $action == start && -n $given_url ]]; then
  log "using $given_var from the environment"
  printf '%s\n' "$given_url"
  exit 0
fi

is_root() { [[ $(id -u) == 0 ]]; }

# not_running ends a stop (fine: exit 0) or a status (exit 3) when there is no server.
not_running() {
  log "the $profile server is not running"
  if [[ $action == stop ]]; then exit 0; fi
  exit 3
}

# as_pg runs a PostgreSQL server command: initdb and pg_ctl refuse to run as root. From /, which
# the postgres user can always enter (paths are absolute).
as_pg() {
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

install_postgres() {
  log "PostgreSQL server binaries not found: installing the Debian package 'postgresql'"
  local sudo=()
  if ! is_root; then
    command -v sudo >/dev/null || die "not root and no sudo: install PostgreSQL (apt-get install postgresql) or set PG_BIN"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq postgresql >&2
}

# find_pg_bin picks the newest installed major version (or the one an existing data folder needs).
find_pg_bin() {
  local want=${1:-} dir
  if [[ -n ${PG_BIN:-} ]]; then
    printf '%s\n' "$PG_BIN"
    return
  fi
  if [[ -n $want && -x /usr/lib/postgresql/$want/bin/pg_ctl ]]; then
    printf '%s\n' "/usr/lib/postgresql/$want/bin"
    return
  fi
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z $dir || ! -x $dir/pg_ctl ]]; then
    install_postgres
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $dir && -x $dir/pg_ctl ]] || die "PostgreSQL installed, but no /usr/lib/postgresql/*/bin/pg_ctl found"
  fi
  printf '%s\n' "$dir"
}

# The data folder: under the repository when the postgres user can reach it, else under /tmp.
mkdir -p "$root/.data"
chmod 755 "$root/.data"
base=$root/.data/pg
[[ $profile == test ]] && base=$root/.data/pg-test
if is_root; then
  if ! id postgres >/dev/null 2>&1; then
    [[ $action == start ]] || not_running
    find_pg_bin >/dev/null # installing the package creates the postgres user
  fi
  if ! runuser -u postgres -- test -x "$root/.data"; then
    fallback=/tmp/tokenmanager-$(printf '%s' "$root" | sha256sum | cut -c1-12)
    [[ $action == start ]] && log "the postgres user cannot enter $root/.data; using $fallback instead"
    mkdir -p "$fallback"
    chmod 755 "$fallback"
    base=$fallback/${base##*/}
  fi
fi
datadir=$base/data
logfile=$base/server.log

# Serialise concurrent invocations (make -j, two terminals) on the same server.
if command -v flock >/dev/null; then
  exec 9>"$base.lock"
  flock 9
fi

pg_version=
[[ -s $datadir/PG_VERSION ]] && pg_version=$(<"$datadir/PG_VERSION")
[[ $action == start || -n $pg_version ]] || not_running
pgbin=$(find_pg_bin "$pg_version")

running() { [[ -s $datadir/PG_VERSION ]] && as_pg "$pgbin/pg_ctl" -D "$datadir" status >/dev/null 2>&1; }
running_port() { sed -n 4p "$datadir/postmaster.pid"; }

case $action in
  stop)
    running || not_running
    as_pg "$pgbin/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null
    log "stopped the $profile server ($datadir)"
    exit 0
    ;;
  status)
    running || not_running
    log "the $profile server is running on 127.0.0.1:$(running_port) ($datadir)"
    exit 0
    ;;
esac

if [[ ! -s $datadir/PG_VERSION ]]; then
  log "creating the $profile cluster in $datadir"
  mkdir -p "$base"
  chmod 700 "$base"
  is_root && chown postgres:postgres "$base"
  as_pg "$pgbin/initdb" -D "$datadir" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 \
    >"$base/initdb.log" 2>&1 || { cat "$base/initdb.log" >&2; die "initdb failed"; }
  {
    printf '\n# --- scripts/pg.sh ---\n'
    printf "listen_addresses = '127.0.0.1'\n"
    printf "unix_socket_directories = ''  # TCP only: no socket path length or /var/run permission issues\n"
    printf 'max_connections = 300\n'
    if [[ $profile == test ]]; then
      printf '# Throw-away test data: durability buys nothing here.\n'
      printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n'
    fi
  } >>"$datadir/postgresql.conf"
fi

if running; then
  actual=$(running_port)
  if [[ $actual != "$port" ]]; then
    log "the $profile server already runs on port $actual (asked for $port); reusing it"
    port=$actual
  fi
else
  # 9>&-: the server must not inherit (and hold forever) the lock taken above.
  if ! as_pg "$pgbin/pg_ctl" -D "$datadir" -l "$logfile" -w -t 60 -o "-p $port" start >/dev/null 9>&-; then
    tail -n 20 "$logfile" >&2 || true
    die "could not start the $profile server on 127.0.0.1:$port (is the port taken? set TM_${profile^^}_PG_PORT)"
  fi
  log "started the $profile server on 127.0.0.1:$port ($datadir)"
fi

admin_url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
if [[ -z $dbname ]]; then
  printf '%s\n' "$admin_url"
  exit 0
fi

psql=$pgbin/psql
[[ -x $psql ]] || psql=$(command -v psql) || die "psql not found"
exists=$("$psql" "$admin_url" -XtAc "SELECT 1 FROM pg_database WHERE datname = '$dbname'")
if [[ $exists != 1 ]]; then
  "$psql" "$admin_url" -Xq -v ON_ERROR_STOP=1 -c "CREATE DATABASE $dbname" >&2
  log "created database $dbname"
fi
printf '%s\n' "postgres://postgres@127.0.0.1:$port/$dbname?sslmode=disable"

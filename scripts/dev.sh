#!/usr/bin/env bash
# scripts/dev.sh — `make dev`: the whole stack on this machine, in the foreground.
#
# PostgreSQL (a private server unless DATABASE_URL is set) → secrets (.data/dev.env) →
# `tmctl migrate` → the edge (deploy/local-cloudflare: the Worker on 127.0.0.1:8787 and a local
# Cloudflare KV API on :8788, unless CF_ACCOUNT_ID points the stack at a real Cloudflare or
# TM_DEV_EDGE=off) → the five services → the gateway. Logs are prefixed with the process name.
# Ctrl-C (or TERM) stops every process this script started. Expects `make build` to have run.
#
# Every variable of the README's configuration table is honoured when set. Listen addresses are
# per process, so TM_GRPC_ADDR and TM_METRICS_ADDR are not taken from the environment here: each
# service listens on its TM_<SERVICE>_ADDR (the address the others dial) and serves metrics on
# its default port.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bin=$root/.bin
say() { printf '==> %s\n' "$*"; }
die() { printf 'dev.sh: %s\n' "$*" >&2; exit 1; }

services=(token team audit usage health)
for b in "${services[@]}" gateway tmctl; do
  [[ -x $bin/$b ]] || die "missing $bin/$b: run 'make dev', which builds first"
done

# --- PostgreSQL -------------------------------------------------------------------------------
if [[ -z ${DATABASE_URL:-} ]]; then
  DATABASE_URL=$(scripts/pg.sh dev start tokenmanager)
fi
export DATABASE_URL

# --- secrets: the environment wins, then .data/dev.env, else generated into it ------------------
envfile=$root/.data/dev.env
scripts/secrets.sh "$envfile"
while IFS='=' read -r key value; do
  [[ $key =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
  [[ -n ${!key:-} ]] || export "$key=$value"
done <"$envfile"

# --- addresses --------------------------------------------------------------------------------
declare -A grpc_default=([token]=127.0.0.1:9101 [team]=127.0.0.1:9102 [audit]=127.0.0.1:9103
  [usage]=127.0.0.1:9104 [health]=127.0.0.1:9105)
declare -A metrics_addr=([token]=127.0.0.1:9201 [team]=127.0.0.1:9202 [audit]=127.0.0.1:9203
  [usage]=127.0.0.1:9204 [health]=127.0.0.1:9205 [gateway]=127.0.0.1:9200)
declare -A grpc_addr
for s in "${services[@]}"; do
  var=TM_${s^^}_ADDR
  export "$var=${!var:-${grpc_default[$s]}}"
  grpc_addr[$s]=${!var}
done
for var in TM_GRPC_ADDR TM_METRICS_ADDR; do
  [[ -z ${!var:-} ]] || printf 'dev.sh: ignoring %s=%s: make dev sets it per process\n' "$var" "${!var}" >&2
  unset "$var"
done
export TM_HTTP_ADDR=${TM_HTTP_ADDR:-127.0.0.1:8000}
http_host=${TM_HTTP_ADDR%:*}
http_port=${TM_HTTP_ADDR##*:}
[[ -z $http_host || $http_host == 0.0.0.0 || $http_host == "[::]" ]] && http_host=127.0.0.1
url=http://$http_host:$http_port

# --- the edge: local Cloudflare, unless a real one is configured -------------------------------
edge=
if [[ ${TM_DEV_EDGE:-on} == off ]]; then
  say "TM_DEV_EDGE=off: no local edge"
elif [[ -n ${CF_ACCOUNT_ID:-} ]]; then
  say "CF_ACCOUNT_ID is set: KV goes to ${CF_API_BASE_URL:-Cloudflare}; no local edge"
else
  [[ -d deploy/local-cloudflare/node_modules/miniflare ]] || die "deploy/local-cloudflare has no node_modules: run 'make dev', which runs npm ci"
  edge_api_port=${LOCAL_CF_API_PORT:-8788}
  edge_worker_port=${LOCAL_CF_WORKER_PORT:-8787}
  edge=http://127.0.0.1:$edge_worker_port
  export CF_ACCOUNT_ID=local-account CF_KV_NAMESPACE_ID=local-tokens CF_API_TOKEN=$LOCAL_CF_API_TOKEN
  export CF_API_BASE_URL=http://127.0.0.1:$edge_api_port/client/v4
fi

# Each process gets only the secrets it reads.
enc="TOKEN_ENCRYPTION_KEY TOKEN_ENCRYPTION_KEYS"
ingest="USAGE_INGEST_SECRET USAGE_INGEST_SECRET_PREVIOUS"
declare -A withhold=(
  [token]="TM_BOOTSTRAP_ADMIN_KEY $ingest LOCAL_CF_API_TOKEN"
  [team]="$enc CF_API_TOKEN $ingest LOCAL_CF_API_TOKEN"
  [audit]="$enc CF_API_TOKEN TM_BOOTSTRAP_ADMIN_KEY $ingest LOCAL_CF_API_TOKEN"
  [usage]="$enc CF_API_TOKEN TM_BOOTSTRAP_ADMIN_KEY LOCAL_CF_API_TOKEN"
  [health]="$enc TM_BOOTSTRAP_ADMIN_KEY $ingest LOCAL_CF_API_TOKEN"
  [gateway]="$enc CF_API_TOKEN TM_BOOTSTRAP_ADMIN_KEY CLERK_SECRET_KEY TM_SERVICE_SECRET DATABASE_URL $ingest LOCAL_CF_API_TOKEN"
  # The Worker signs with USAGE_INGEST_SECRET; local Cloudflare takes CF_API_TOKEN as its API token.
  [edge]="$enc TM_BOOTSTRAP_ADMIN_KEY CLERK_SECRET_KEY TM_SERVICE_SECRET DATABASE_URL USAGE_INGEST_SECRET_PREVIOUS LOCAL_CF_API_TOKEN"
)

# prefix labels each line of a process's output. It ignores INT/TERM so that it outlives the
# process it labels: a Go program writing to a closed stdout dies of SIGPIPE mid-shutdown.
prefix() { (trap '' INT TERM && exec sed -u "s/^/[$1] /"); }

# Job control: each process gets its own process group, so Ctrl-C reaches this script only and
# the shutdown below stays orderly (TERM to every group, then wait).
set -m
pids=()
declare -A name_of
# start NAME [VAR=value…] runs .bin/NAME; run NAME COMMAND… runs any command under that label.
start() {
  local name=$1
  shift
  run "$name" "$@" "$bin/$name"
}
run() {
  local name=$1 env_args=()
  shift
  for v in ${withhold[$name]:-}; do env_args+=(-u "$v"); done
  env "${env_args[@]}" "$@" > >(prefix "$name") 2>&1 &
  pids+=($!)
  name_of[$!]=$name
}

# wait_for NAME URL: until URL answers, or NAME's process exits, or a minute passes.
wait_for() {
  local name=$1 target=$2 i pid
  say "waiting for $target"
  for i in {1..600}; do
    curl -fsS -o /dev/null --max-time 1 "$target" 2>/dev/null && return 0
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || die "${name_of[$pid]} exited during start-up (see its log above)"
    done
    ((i < 600)) || die "no answer from $target after 60 s ($name)"
    sleep 0.1
  done
}

stopping=
stop_all() {
  [[ -n $stopping ]] && return
  stopping=1
  trap - INT TERM
  ((${#pids[@]})) || return 0
  say "stopping ${#pids[@]} processes"
  local pid groups=()
  for pid in "${pids[@]}"; do groups+=("-$pid"); done
  kill -TERM -- "${groups[@]}" 2>/dev/null || true
  for _ in {1..100}; do
    kill -0 -- "${groups[@]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "${groups[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

# --- migrate, then start ----------------------------------------------------------------------
say "migrating $(printf '%s' "$DATABASE_URL" | sed -E 's#//([^:/@]+):[^@]*@#//\1:***@#')"
"$bin/tmctl" migrate > >(prefix migrate) 2>&1

if [[ -n $edge ]]; then
  # The Worker posts usage to the gateway, signed with the usage service's secret; KV persists in
  # .data/kv (the token service's reconciler repairs any drift at start-up).
  run edge LOCAL_CF_API_PORT="$edge_api_port" LOCAL_CF_WORKER_PORT="$edge_worker_port" \
    LOCAL_CF_PERSIST="$root/.data/kv" TOKEN_MANAGER_BACKEND="$url" LOCAL_CF_EXIT_ON_STDIN_CLOSE=never \
    node deploy/local-cloudflare/server.js
  wait_for edge "http://127.0.0.1:$edge_api_port/__admin/health"
fi

for s in "${services[@]}"; do
  start "$s" TM_GRPC_ADDR="${grpc_addr[$s]}" TM_METRICS_ADDR="${metrics_addr[$s]}"
done
start gateway TM_METRICS_ADDR="${metrics_addr[gateway]}"

wait_for gateway "$url/health"

cat <<EOF

  Token Manager is running.

  API (REST):   $url
  API docs:     $url/docs
  Edge:         ${edge:-(not started)}${edge:+/  (the Worker: send X-API-Key; KV API http://127.0.0.1:${edge_api_port:-}/client/v4)}
  gRPC:         token ${grpc_addr[token]}  team ${grpc_addr[team]}  audit ${grpc_addr[audit]}  usage ${grpc_addr[usage]}  health ${grpc_addr[health]}
  Admin key:    ${TM_BOOTSTRAP_ADMIN_KEY:-(none: set TM_BOOTSTRAP_ADMIN_KEY)}
                (TM_BOOTSTRAP_ADMIN_KEY, kept in .data/dev.env; send it as "Authorization: Bearer <key>")

  Press Ctrl-C to stop.

EOF

# Run until a process exits on its own (then stop the rest) or a signal arrives.
status=0
wait -n -p exited "${pids[@]}" || status=$?
if [[ -z $stopping ]]; then
  printf 'dev.sh: %s exited (status %s); stopping the rest\n' "${name_of[$exited]:-a process}" "$status" >&2
  stop_all
  exit 1
fi

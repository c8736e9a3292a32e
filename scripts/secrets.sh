#!/usr/bin/env bash
# scripts/secrets.sh FILE [--compose] — make sure FILE holds the secrets a local stack needs.
#
# Used by `make dev` (FILE = .data/dev.env) and `make compose-env` (FILE = .env, with --compose).
# A secret already in FILE is kept; one set in the environment wins and is not written; any other
# is generated and appended. FILE is mode 600 and git-ignored. Lines are KEY=value, no quoting.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'secrets.sh: %s\n' "$*" >&2; }

file=${1:?usage: scripts/secrets.sh FILE [--compose]}
compose=${2:-}

umask 077
mkdir -p "$(dirname "$file")"
touch "$file"
chmod 600 "$file"

# 32 random bytes as url-safe base64 with padding: the Fernet key format v2.7 used.
fernet_key() { head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_'; }
# 32 random bytes as unpadded url-safe base64: 43 characters.
service_secret() { fernet_key | tr -d '='; }
# Hex, so it can sit in a URL without escaping.
hex_password() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# Admin keys carry a checksum; tmctl knows how to make one.
admin_key() {
  local tmctl=$root/.bin/tmctl
  [[ -x $tmctl ]] || { log "no $tmctl (run make build): TM_BOOTSTRAP_ADMIN_KEY not generated"; return 1; }
  "$tmctl" admin-key new 2>/dev/null | tail -n 1 | grep -E '^tmak_[A-Za-z0-9]+$' ||
    { log "'tmctl admin-key new' gave no key: TM_BOOTSTRAP_ADMIN_KEY not generated"; return 1; }
}

ensure() {
  local name=$1 generator=$2 value
  [[ -n ${!name:-} ]] && return 0
  grep -q "^$name=" "$file" && return 0
  value=$("$generator") || return 0
  printf '%s=%s\n' "$name" "$value" >>"$file"
  log "generated $name into $file"
}

ensure TM_SERVICE_SECRET service_secret
ensure TOKEN_ENCRYPTION_KEY fernet_key
ensure TM_BOOTSTRAP_ADMIN_KEY admin_key
if [[ $compose == --compose ]]; then
  ensure POSTGRES_PASSWORD hex_password
else
  # make dev's edge: the Worker signs usage with the usage service's secret, and the local
  # Cloudflare API accepts only this token from the token service.
  ensure USAGE_INGEST_SECRET service_secret
  ensure LOCAL_CF_API_TOKEN service_secret
fi

#!/usr/bin/env bash
# scripts/generate.sh — `make generate`: remove every generated file, then `buf generate` and
# `sqlc generate` (sqlc.yaml: each service's store package, from its queries and migrations).
#
# buf.gen.yaml has no `clean` (the Go stubs share proto/ with the .proto sources), so the output
# of a deleted or renamed .proto would linger: removing all generated files first prevents that.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

find proto -name '*.pb.go' -delete
if [[ -d gateway/gen ]]; then
  find gateway/gen -name '*.pb.gw.go' -delete
  find gateway/gen -mindepth 1 -type d -empty -delete
fi
if [[ -d gateway/openapi ]]; then
  find gateway/openapi -name '*.swagger.json' -delete
fi
"$root/.bin/buf" generate
find services -path '*/store/*.gen.go' -delete
"$root/.bin/sqlc" generate

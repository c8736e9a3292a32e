#!/usr/bin/env bash
# scripts/check-generated.sh — regenerate, then fail (showing the diff) if that changed anything.
#
# Generated code is committed, so the tree must already hold exactly what `buf generate` and
# `sqlc generate` write.
# The comparison is with the tree as it was before regenerating, not with git's HEAD: a proto
# change regenerated but not yet committed passes, a proto change not regenerated fails. The
# regenerated files stay in the tree, ready to commit.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
generated=(proto gateway/gen gateway/openapi $(find services -type d -name store -not -path "*/node_modules/*" | sort))

before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
for d in "${generated[@]}"; do
  mkdir -p "$before/$d"
  if [[ -d $d ]]; then cp -a "$d/." "$before/$d/"; fi
done

"$root/scripts/generate.sh"

changes=0
for d in "${generated[@]}"; do
  now=$d
  [[ -d $now ]] || now=$(mktemp -d)
  if ! diff -ruN "$before/$d" "$now" >"$before/diff" 2>&1; then
    changes=1
    sed -e "s#$before/##" "$before/diff"
  fi
done

if ((changes)); then
  cat >&2 <<'EOF'

check-generated: FAILED — regenerating changed the files above.
The committed generated code does not match the .proto or store .sql sources (or the generator versions in
tools/). The tree now holds the regenerated files: review them, then commit them along with
the source change (`make generate` does the same regeneration).
EOF
  exit 1
fi
echo "check-generated: generated code is up to date"

#!/usr/bin/env bash
# make fuzz: a short run of every fuzz target in the module.
set -euo pipefail
FUZZTIME=${1:-15s}
cd "$(dirname "$0")/../.."
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "== $pkg $target ($FUZZTIME)"
    if ! go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME"; then status=1; fi
  done
done
exit $status

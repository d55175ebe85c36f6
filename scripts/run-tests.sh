#!/usr/bin/env bash
# Runs every *.test.ts under the given dirs (default: src and test) with node:test;
# Node 20's runner takes no globs.
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(src test)
mapfile -t files < <(find "${dirs[@]}" -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=1 "${files[@]}"

#!/usr/bin/env bash
# Bundles the CLI into dist/bundle (one ESM graph with lazy chunks per command):
# loading ~200 separate modules cost ~150 ms of every `arca` invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist/bundle
exec node_modules/.bin/esbuild src/cli/run.ts --bundle --splitting --platform=node --format=esm --target=node20 \
  --outdir=dist/bundle --external:better-sqlite3 --log-level=warning \
  "--banner:js=import { createRequire as __arcaRequire } from 'node:module'; const require = __arcaRequire(import.meta.url);"

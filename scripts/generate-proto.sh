#!/usr/bin/env bash
# The one script that produces src/buildkit/gen from proto/ (buf + protoc-gen-es, both pinned in package.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/node_modules/.bin:$PATH" buf generate

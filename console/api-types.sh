#!/usr/bin/env bash
# Generate the console's API types (src/api-types.ts) from the server's OpenAPI document: the document
# is dumped by `python -m fnstage.api.document` (no server needed), the types by openapi-typescript
# (pinned in package.json). Usage: console/api-types.sh [OUT] (OUT defaults to src/api-types.ts;
# console/check.sh generates into a scratch OUT and fails when the committed file differs).
# PYTHON: an interpreter with fnstage installed (default: the repository's .venv from scripts/bootstrap).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/src/api-types.ts}"
python="${PYTHON:-$here/../.venv/bin/python}"
cd "$here"
if [ ! -x "$python" ]; then
  echo "console/api-types.sh: no Python at $python: run \`source scripts/bootstrap\` or set PYTHON" >&2
  exit 1
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$python" -m fnstage.api.document "$scratch/openapi.json"
./node_modules/.bin/openapi-typescript "$scratch/openapi.json" --output "$scratch/api-types.ts" > /dev/null
cp "$scratch/api-types.ts" "$out"

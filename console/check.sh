#!/usr/bin/env bash
# The console's checks (run by .ci/run): the API types in src/api-types.ts are what the server's current
# OpenAPI document generates (api-types.sh), types (tsc), lint (Biome, pinned), and that the bundle
# committed in src/fnstage/console/static is exactly what its sources build to. Needs `npm ci` in
# console/ first, and the repository's .venv (scripts/bootstrap) or PYTHON for the document.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if [ ! -x node_modules/.bin/tsc ] || [ ! -x node_modules/.bin/biome ]; then
  echo "console/check.sh: console/node_modules is missing or incomplete: run \`npm ci\` in console/" >&2
  exit 1
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
echo "console: src/api-types.ts matches the API's OpenAPI document"
./api-types.sh "$scratch/api-types.ts"
if ! diff -u src/api-types.ts "$scratch/api-types.ts" > "$scratch/types.diff"; then
  echo "console/check.sh: src/api-types.ts is stale: the API's responses changed since it was generated:" >&2
  head -40 "$scratch/types.diff" | cut -c1-200 >&2
  echo "Run console/api-types.sh, fix what tsc then reports, and commit src/api-types.ts." >&2
  exit 1
fi
echo "console: tsc"
./node_modules/.bin/tsc --noEmit -p .
echo "console: biome lint"
./node_modules/.bin/biome lint --error-on-warnings .
echo "console: the committed bundle matches its sources"
./build.sh "$scratch/static" > /dev/null
if ! diff -r "$scratch/static" ../src/fnstage/console/static > "$scratch/diff"; then
  echo "console/check.sh: src/fnstage/console/static differs from what console/src builds to:" >&2
  head -20 "$scratch/diff" | cut -c1-200 >&2
  echo "Run console/build.sh and commit src/fnstage/console/static." >&2
  exit 1
fi

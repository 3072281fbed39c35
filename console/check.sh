#!/usr/bin/env bash
# The console's checks (run by .ci/run): types (tsc), lint (Biome, pinned), and that the bundle committed
# in src/fnstage/console/static is exactly what its sources build to. Needs `npm ci` in console/ first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if [ ! -x node_modules/.bin/tsc ] || [ ! -x node_modules/.bin/biome ]; then
  echo "console/check.sh: console/node_modules is missing or incomplete: run \`npm ci\` in console/" >&2
  exit 1
fi
echo "console: tsc"
./node_modules/.bin/tsc --noEmit -p .
echo "console: biome lint"
./node_modules/.bin/biome lint --error-on-warnings .
echo "console: the committed bundle matches its sources"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
./build.sh "$scratch/static" > /dev/null
if ! diff -r "$scratch/static" ../src/fnstage/console/static > "$scratch/diff"; then
  echo "console/check.sh: src/fnstage/console/static differs from what console/src builds to:" >&2
  head -20 "$scratch/diff" | cut -c1-200 >&2
  echo "Run console/build.sh and commit src/fnstage/console/static." >&2
  exit 1
fi

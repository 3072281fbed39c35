#!/usr/bin/env bash
# Build the console into the Python package (src/fnstage/console/static), committed so users need no Node.
# Usage: console/build.sh [OUT]   (OUT defaults to that folder; runs `npm ci` first when node_modules is
# missing). console/check.sh builds into a scratch OUT to prove the committed bundle matches its sources.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../src/fnstage/console/static}"
cd "$here"
[ -d node_modules ] || npm ci --no-audit --no-fund
rm -rf "$out/assets"
mkdir -p "$out/assets"
./node_modules/.bin/esbuild src/main.ts --bundle --splitting --format=esm --minify --target=es2020 \
  --outdir="$out/assets" --entry-names='[name]' --chunk-names='chunk-[hash]' --legal-comments=none \
  --log-level=warning
./node_modules/.bin/esbuild src/styles.css --bundle --minify --outfile="$out/assets/app.css" --log-level=warning
hash="$(cat "$out"/assets/* | sha256sum | cut -c1-10)"
sed "s/__HASH__/$hash/g" src/index.html > "$out/index.html"
ls -l "$out/assets" | awk 'NR>1 {printf "%8d  %s\n", $5, $9}'

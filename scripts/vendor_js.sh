#!/usr/bin/env bash
# Copy the QA pages' charting library (uPlot, from the npm registry via `npm ci`) out of node_modules into
# api/static/vendor/, so that ColdTrace serves it itself (no CDN at run time) and a plain `pip install .` or the
# Docker image, which never see node_modules, still have it. The copy is committed; rerun after `npm update`.
set -euo pipefail
cd "$(dirname "$0")/.."
src=node_modules/uplot
dst=api/static/vendor/uplot
if [[ ! -f $src/dist/uPlot.iife.min.js ]]; then
  echo "uPlot is not installed: run 'npm ci' first" >&2
  exit 1
fi
mkdir -p "$dst"
cp "$src/dist/uPlot.iife.min.js" "$src/dist/uPlot.min.css" "$src/LICENSE" "$dst/"
version=$(node -p "require('./$src/package.json').version" 2>/dev/null || sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$src/package.json")
printf 'uPlot %s (MIT), copied from the npm package by scripts/vendor_js.sh\n' "$version" > "$dst/VERSION"
echo "vendored uPlot $version into $dst"

#!/usr/bin/env bash
# Copy the QA pages' charting library (uPlot) and the API documentation pages' bundles (Swagger UI, ReDoc), from
# the npm registry via `npm ci`, out of node_modules into api/static/vendor/, so that ColdTrace serves them itself
# (no CDN at run time: /docs works on a site without internet) and a plain `pip install .` or the Docker image,
# which never see node_modules, still have them. The copy is committed; rerun after `npm update`.
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

# Swagger UI (/docs) and ReDoc (/redoc): only the browser bundles and their licences
vendor_pkg() {  # package, destination, files...
  local pkg=$1 dest=$2
  shift 2
  if [[ ! -d node_modules/$pkg ]]; then
    echo "$pkg is not installed: run 'npm ci' first" >&2
    exit 1
  fi
  mkdir -p "$dest"
  for f in "$@"; do cp "node_modules/$pkg/$f" "$dest/"; done
  local v
  v=$(node -p "require('./node_modules/$pkg/package.json').version" 2>/dev/null || sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "node_modules/$pkg/package.json")
  printf '%s %s, copied from the npm package by scripts/vendor_js.sh\n' "$pkg" "$v" > "$dest/VERSION"
  echo "vendored $pkg $v into $dest"
}
vendor_pkg swagger-ui-dist api/static/vendor/swagger-ui swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE
vendor_pkg redoc api/static/vendor/redoc bundles/redoc.standalone.js bundles/redoc.standalone.js.LICENSE.txt LICENSE
# ReDoc's sidebar credit loads its logo from the vendor's CDN: point it at an empty inline image instead, so
# /redoc makes no request to another origin (the page's CSP would block it anyway)
sed -i 's|https://cdn.redoc.ly/redoc/logo-mini.svg|data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E|g' \
  api/static/vendor/redoc/redoc.standalone.js

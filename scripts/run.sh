#!/usr/bin/env bash
# Run ColdTrace with simulated loggers on this machine (coldtrace run --simulate "$@").
#
# The first start creates .venv and installs ColdTrace (scripts/setup.sh, needs the package index). Later
# starts install nothing: a stamp in .venv records a hash of what the install depended on (pyproject.toml,
# any requirements*.txt, the Python version); only when that changes is scripts/setup.sh run again.
# COLDTRACE_REINSTALL=1 forces it.
set -euo pipefail
cd "$(dirname "$0")/.."

STAMP=.venv/.coldtrace-install-stamp

install_hash() {
  local py=${PYTHON:-python3}
  {
    "$py" -c 'import sys; print(sys.version)' 2>/dev/null || echo "no python"
    for f in pyproject.toml requirements*.txt; do
      if [[ -f "$f" ]]; then echo "== $f"; cat "$f"; fi
    done
  } | sha256sum | cut -d' ' -f1
}

want=$(install_hash)
have=$(cat "$STAMP" 2>/dev/null || true)
if [[ "${COLDTRACE_REINSTALL:-0}" == 1 || ! -x .venv/bin/coldtrace || "$have" != "$want" ]]; then
  if [[ -n "$have" ]]; then echo "==> pyproject.toml or requirements changed since the last install: installing again"; fi
  bash scripts/setup.sh
  echo "$want" > "$STAMP"
fi
exec .venv/bin/coldtrace run --simulate "$@"

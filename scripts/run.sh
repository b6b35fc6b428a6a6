#!/usr/bin/env bash
# Run ColdTrace with simulated loggers on this machine (coldtrace run --simulate "$@").
#
# The first start creates .venv and installs ColdTrace (scripts/setup.sh, needs the package index). Later
# starts install nothing: a stamp in .venv records a hash of what the install depended on (pyproject.toml,
# any requirements*.txt, the Python version; scripts/setup.sh and scripts/test.sh write it too); only when that
# changes is scripts/setup.sh run again.
# COLDTRACE_REINSTALL=1 forces it.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/install-stamp.sh  # STAMP, install_hash

want=$(install_hash)
have=$(cat "$STAMP" 2>/dev/null || true)
if [[ "${COLDTRACE_REINSTALL:-0}" == 1 || ! -x .venv/bin/coldtrace || "$have" != "$want" ]]; then
  if [[ -n "$have" && "$have" != "$want" ]]; then echo "==> pyproject.toml or requirements changed since the last install: installing again"; fi
  bash scripts/setup.sh  # writes the stamp when it succeeds
fi
exec .venv/bin/coldtrace run --simulate "$@"

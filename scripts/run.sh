#!/usr/bin/env bash
# Install ColdTrace in .venv (first time) and run it with simulated loggers on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/coldtrace run --simulate "$@"

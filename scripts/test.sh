#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (unit, contract, integration, browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
mkdir -p test-artifacts
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

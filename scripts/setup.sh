#!/usr/bin/env bash
# Set up ColdTrace on a fresh Debian/Ubuntu machine: a virtual environment with ColdTrace installed.
# With --test, also the test dependencies and the services the tests run for real (Mosquitto, InfluxDB,
# PostgreSQL, Chromium, socat, docker-compose, poppler-utils, curl): installed with apt-get when running as root, otherwise
# listed with the command to install them.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "ColdTrace needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1))." >&2
  exit 1
fi

APT_PACKAGES=(python3-venv)
if [[ $WITH_TEST == 1 ]]; then
  APT_PACKAGES+=(mosquitto mosquitto-clients influxdb postgresql chromium socat docker-compose poppler-utils curl)
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# python3-venv is only needed when the interpreter lacks venv/ensurepip
if "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if (( ${#missing[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "==> Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # the Debian packages start their own daemons; the tests start private ones on free ports
    for svc in mosquitto influxdb postgresql; do
      (command -v systemctl >/dev/null && systemctl disable --now "$svc" >/dev/null 2>&1) || true
    done
  else
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install ${missing[*]}" >&2
    [[ $WITH_TEST == 1 ]] && exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> Creating the virtual environment in .venv"
  "$PY" -m venv .venv
fi
echo "==> Installing ColdTrace and its dependencies"
.venv/bin/python -m pip install -q --upgrade pip
# setuptools prints a long "Editable installation" banner for `-e .`: it is about this checkout layout, not for
# the person starting ColdTrace
quiet="ignore:Editable installation${PYTHONWARNINGS:+,$PYTHONWARNINGS}"
if [[ $WITH_TEST == 1 ]]; then
  PYTHONWARNINGS=$quiet .venv/bin/python -m pip install -q -e ".[test]"
else
  PYTHONWARNINGS=$quiet .venv/bin/python -m pip install -q -e .
fi
if [[ $WITH_TEST == 1 && -f package.json ]]; then
  if command -v npm >/dev/null; then
    echo "==> Installing the QA pages' JavaScript (npm ci)"
    npm ci --silent --no-audit --no-fund
    bash scripts/vendor_js.sh  # refresh the committed copy served by the API (api/static/vendor)
  else
    echo "npm is missing: install Node.js 18+ (apt-get install nodejs npm)" >&2
    exit 1
  fi
fi
source scripts/install-stamp.sh
install_hash > "$STAMP"  # scripts/run.sh starts without installing while this matches
echo "==> Ready"

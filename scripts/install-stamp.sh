# Sourced by scripts/setup.sh and scripts/run.sh: the install stamp in .venv. It records a hash of what an
# install depends on (pyproject.toml, any requirements*.txt, the Python version); scripts/run.sh installs again
# only when the hash changed, whichever script made the last install.
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

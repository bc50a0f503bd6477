#!/usr/bin/env bash
# Create or reuse .venv and install TANGRAM with everything it needs (idempotent, fast when done).
# Usage: bash scripts/setup.sh        (sourced by run.sh and test.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TANGRAM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "tangram setup: creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV" || {
    echo "tangram setup: python3 -m venv failed; on Debian run: apt-get install -y python3-venv" >&2; exit 2; }
fi
# Reinstall only when the project's dependency list changed.
STAMP="$VENV/.tangram-install-stamp"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "tangram setup: installing dependencies (first time: a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[gui,offline-detectors,test]"
  echo "$WANT" > "$STAMP"
fi

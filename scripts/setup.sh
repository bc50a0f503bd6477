#!/usr/bin/env bash
# Create or reuse .venv and install exactly requirements.lock into it, then TANGRAM itself
# (editable). Idempotent: a second run installs nothing unless the lock or pyproject.toml changed.
# Usage: bash scripts/setup.sh        (run.sh and test.sh call it)
# To change versions: edit pyproject.toml's ranges, `bash scripts/lock.sh`, commit requirements.lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TANGRAM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
LOCK="$ROOT/requirements.lock"

if [ ! -x "$VENV/bin/python" ]; then
  echo "tangram setup: creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV" || {
    echo "tangram setup: python3 -m venv failed; on Debian run: apt-get install -y python3-venv" >&2; exit 2; }
fi
STAMP="$VENV/.tangram-install-stamp"
WANT="$(cat "$LOCK" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "tangram setup: installing requirements.lock (first time: a few minutes)" >&2
  VPY="$VENV/bin/python"
  sel() { "$VPY" "$ROOT/scripts/lockfile.py" "$LOCK" "$@"; }
  # pip itself first, from the lock; then every other locked package, hash-checked, no resolver.
  # llama-cpp-python (test-only, compiled) is left to scripts/llm_server.sh.
  "$VPY" -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r <(sel --only pip)
  "$VPY" -m pip install -q --require-hashes --no-deps -r <(sel --without pip llama-cpp-python)
  "$VPY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$WANT" > "$STAMP"
fi

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
  LOG="$VENV/.tangram-setup.log"
  : > "$LOG"
  sel() { "$VPY" "$ROOT/scripts/lockfile.py" "$LOCK" "$@"; }
  # pip's own chatter (mirror warnings, build-backend notices) goes to the log, shown on failure.
  pipi() { "$VPY" -m pip install -q --disable-pip-version-check "$@" >>"$LOG" 2>&1 || {
    tail -n 30 "$LOG" >&2; echo "tangram setup: pip install failed; full log: $LOG" >&2; exit 1; }; }
  # pip itself first, from the lock; then every other locked package, hash-checked, no resolver.
  # llama-cpp-python (test-only, compiled) is left to scripts/llm_server.sh.
  pipi --require-hashes --no-deps -r <(sel --only pip)
  pipi --require-hashes --no-deps -r <(sel --without pip llama-cpp-python)
  pipi --no-deps --no-build-isolation -e "$ROOT"
  # a lock update may drop packages: the venv holds what the lock says and nothing else
  EXTRA="$("$VPY" "$ROOT/scripts/lockfile.py" "$LOCK" --extraneous)"
  if [ -n "$EXTRA" ]; then
    "$VPY" -m pip uninstall -y -q $EXTRA >>"$LOG" 2>&1 || true
  fi
  echo "$WANT" > "$STAMP"
fi

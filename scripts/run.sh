#!/usr/bin/env bash
# Set up (first time) and run TANGRAM; with no arguments it runs the whole pipeline on the
# built-in sample scene. Any arguments go to `python main.py` (see --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${TANGRAM_VENV:-$ROOT/.venv}/bin/python" main.py "$@"

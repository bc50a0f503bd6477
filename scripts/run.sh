#!/usr/bin/env bash
# Set up (first time) and run TANGRAM; with no arguments it runs the whole pipeline on the
# built-in sample scene. Any arguments go to `python main.py` (see --help); with --gui it first
# installs (as root) the system libraries Qt's xcb plugin needs (scripts/setup_gui.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
for arg in "$@"; do  # the GUI on a real display needs the xcb plugin's system libraries
  if [ "$arg" = "--gui" ]; then bash "$ROOT/scripts/setup_gui.sh" || true; break; fi
done
cd "$ROOT"
exec "${TANGRAM_VENV:-$ROOT/.venv}/bin/python" main.py "$@"

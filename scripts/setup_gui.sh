#!/usr/bin/env bash
# System libraries for the desktop GUI on a real display (issue 20). Qt 6's xcb platform plugin
# (PyQt6/Qt6/plugins/platforms/libqxcb.so in the venv) links X/xcb libraries a minimal Debian or
# Ubuntu lacks (libxcb-icccm4, libxcb-keysyms1, ...), and Qt aborts when one is missing.
# This script asks `ldd` which of the plugin's libraries do not resolve, maps each soname to its
# Debian package (gui/platform_check.py's table, checked with `apt-cache show`), and installs them:
# as root with apt-get it runs `apt-get install -y`; otherwise it prints the command to run.
# Usage: bash scripts/setup_gui.sh [--print]   (run.sh --gui calls it; setup_test_deps.sh too)
#   --print: only print the apt-get command, install nothing (also the case when not root).
#   TANGRAM_QXCB_PLUGIN=PATH checks another copy of the plugin (the tests use one).
# Exit: 0 nothing missing or all installed; 1 missing and not installed (command printed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VPY="${TANGRAM_VENV:-$ROOT/.venv}/bin/python"
say() { echo "tangram gui setup: $*" >&2; }

if [ ! -x "$VPY" ]; then
  say "no virtual environment at ${VPY%/bin/python}; run bash scripts/setup.sh first"; exit 1
fi
PRINT=0
[ "${1:-}" = "--print" ] && PRINT=1
PLUGIN="${TANGRAM_QXCB_PLUGIN:-}"
if [ -z "$PLUGIN" ]; then
  PLUGIN="$(cd "$ROOT" && "$VPY" -m gui.platform_check --plugin)" || {
    say "PyQt6 or its xcb plugin is not installed in the venv; nothing to check"; exit 0; }
fi
if ! command -v ldd >/dev/null 2>&1; then
  say "no ldd on this system; cannot list the libraries of $PLUGIN"; exit 0
fi

missing() { ldd "$PLUGIN" 2>/dev/null | awk '$2 == "=>" && $3 == "not" && $4 == "found" {print $1}' | sort -u; }
SONAMES="$(missing)"
if [ -z "$SONAMES" ]; then
  say "every library of Qt's xcb plugin resolves; nothing to install"; exit 0
fi
say "Qt's xcb plugin cannot load: $(echo $SONAMES)"
# shellcheck disable=SC2086
CANDIDATES="$(cd "$ROOT" && "$VPY" -m gui.platform_check --packages $SONAMES | sort -u)"

if [ "$PRINT" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  [ "$PRINT" = 1 ] || say "not root with apt-get: cannot install them here"
  say "install them with: sudo apt-get install -y $(echo $CANDIDATES)"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# a package name apt does not know: refresh the lists once, then try Ubuntu's t64 rename
known() { apt-cache show "$1" >/dev/null 2>&1; }
UPDATED=0
PKGS=""
for pkg in $CANDIDATES; do
  if ! known "$pkg" && ! known "${pkg}t64" && [ "$UPDATED" = 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true; UPDATED=1
  fi
  if known "$pkg"; then PKGS="$PKGS $pkg"
  elif known "${pkg}t64"; then PKGS="$PKGS ${pkg}t64"
  else say "no apt package $pkg (for one of: $(echo $SONAMES)); install it by hand"
  fi
done
if [ -n "$PKGS" ]; then
  say "installing:$PKGS"
  apt-get install -y -qq $PKGS >/dev/null 2>&1 || {
    [ "$UPDATED" = 1 ] || apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq $PKGS >/dev/null || { say "apt-get install failed:$PKGS"; exit 1; }
  }
fi
LEFT="$(missing)"
if [ -n "$LEFT" ]; then
  say "still missing after install: $(echo $LEFT)"; exit 1
fi
say "installed:$PKGS; Qt's xcb plugin now loads all its libraries"

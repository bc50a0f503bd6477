#!/usr/bin/env bash
# Re-resolve the whole environment into requirements.lock (exact versions + sha256 hashes of every
# file PyPI serves for them), from pyproject.toml's ranges, all extras included.
#
#   bash scripts/lock.sh              re-resolve at today's newest versions allowed by pyproject.toml
#   bash scripts/lock.sh --upgrade-package NAME   ...or move only NAME (extra arguments go to uv)
#
# Then `bash scripts/setup.sh` installs exactly the new lock (its stamp changes). uv only resolves
# here; installing is pip's job (pip also finds the pinned torch on local disk where one exists).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="0.13.9"
TOOLS="${TANGRAM_TOOLS_VENV:-$HOME/.cache/tangram/uv-$UV_VERSION}"
if [ ! -x "$TOOLS/bin/uv" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
cd "$ROOT"
"$TOOLS/bin/uv" pip compile pyproject.toml \
  --extra gui --extra offline-detectors --extra fleet --extra robotics --extra test --extra llm-server \
  --constraint scripts/lock-constraints.txt \
  --python-version 3.11.2 --python-platform x86_64-manylinux_2_28 \
  --index-url https://pypi.org/simple --generate-hashes --no-header \
  --output-file requirements.lock "$@"
echo "lock: wrote requirements.lock ($(grep -c '==' requirements.lock) packages)"

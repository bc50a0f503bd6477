"""Helpers for the fleet tests: short real inputs, the batch command in a subprocess, process
trees found and stopped by PID, and a reader for the Prometheus endpoint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Track every 5th frame: the apple clip becomes 10 frames, the sample 20; the fleet's behaviour
# (scheduling, transfers, imports) is the same, the tests stay short on 2 cores.
FRAME_STRIDE = "5"


def fleet_env(exports: Path, yolo_weights: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "TANGRAM_YOLO_WEIGHTS": yolo_weights, "TANGRAM_EXPORTS_DIR": str(exports),
            "TANGRAM_TRACKING_FRAME_STRIDE": FRAME_STRIDE, "TANGRAM_SEGMENTATION_BACKEND": "grabcut",
            "TANGRAM_FLEET_DASHBOARD_PORT": "0", **extra}


def batch_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "batch", *args]


def run_batch_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(batch_cmd(*args, "--no-progress"), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def truncated_copy(src: Path, dst: Path, nbytes: int = 300_000) -> Path:
    """The first bytes of a real mp4: a corrupt input (no moov atom)."""
    with open(src, "rb") as fh:
        dst.write_bytes(fh.read(nbytes))
    return dst


def descendants(pid: int) -> list[int]:
    """PIDs of every process below `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def read_batch(batch_dir: Path) -> dict[str, Any]:
    return json.loads((batch_dir / "batch.json").read_text())


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except AssertionError:
            raise
        except Exception:
            value = None
        else:
            if value:
                return value
        time.sleep(interval)
    raise TimeoutError(f"{what} within {timeout} s")


def scrape(port: int) -> dict[str, Any]:
    """The endpoint's text parsed with prometheus_client's parser: {sample name: [(labels, value)]}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


FORGED_INPUT_ENV = "TANGRAM_TEST_FORGE_SYMLINK_FOR"


def forged_stage_task(*args: Any, **kwargs: Any) -> Any:
    """The real `run_stage_task`, then, as a compromised worker would, a symlink added to the
    tracking archive of the input named in FORGED_INPUT_ENV (SHA-256 recomputed, so it passes the
    digest check and must be refused by the import itself)."""
    import hashlib
    import io
    import tarfile

    from tangram.execution.dask import run_stage_task

    result = run_stage_task(*args, **kwargs)
    if result.status != "done" or result.stage != "tracking" or result.input_name != os.environ.get(FORGED_INPUT_ENV):
        return result
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(result.archive), mode="r:") as src, \
            tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        link = tarfile.TarInfo("tracks-link.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(link)
    result.archive = buf.getvalue()
    result.sha256 = hashlib.sha256(result.archive).hexdigest()
    result.files += 1
    return result


def scratch_listing(dask_worker: Any = None) -> list[str]:
    """What a worker's fleet scratch holds (inputs/<fp>, upstream/<sha>), relative names."""
    root = Path(dask_worker.local_directory) / "tangram-fleet"
    return sorted(f"{kind}/{p.name}" for kind in ("inputs", "upstream") if (root / kind).is_dir()
                  for p in (root / kind).iterdir())

"""After a run (the runner and the batch driver call `write_recordings`): the run's Rerun
recording (`recording.rrd`) and, when a simulation ran, its ROS 2 log (`simulation/robot.mcap`).

Each file is written atomically and listed in the manifest under `recordings`:
`{"rrd" | "mcap": {"path" (relative to the run folder), "status": "done" | "failed" | "unavailable",
"input_hash", "seconds", "bytes", "reason"}}`. `input_hash` is the writers' format version and the
`output_id` and status of every stage the file reads: a resumed run whose stages were all reused
keeps the file as it is. A missing optional library (rerun-sdk, mcap, mcap-ros2-support) is one log
line and status "unavailable"; a writer error is one log line and status "failed"; neither fails
the run. Off (`--no-recording`, run.recording = false): nothing is written, and files left from an
earlier run whose stages have changed since are removed, so a stale recording is never shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tangram.fileio import stable_hash
from tangram.recording.run import ARTEFACTS

log = logging.getLogger("tangram.recording")

FORMAT = 2  # bump when a writer's output changes, so older files are rewritten
RRD_STAGES = tuple(ARTEFACTS)
MCAP_STAGES = ("reconstruction", "planning", "simulation")


def recording_hash(manifest: dict[str, Any], kind: str) -> str:
    stages = manifest.get("stages") or {}
    used = RRD_STAGES if kind == "rrd" else MCAP_STAGES
    return stable_hash({
        "format": FORMAT, "kind": kind, "tangram": manifest.get("tangram_version"),
        "stages": {s: [(stages.get(s) or {}).get("status"), (stages.get(s) or {}).get("output_id")] for s in used},
    })


def _writers() -> dict[str, tuple[Callable[[Path], Path], Callable[[Path], Path]]]:
    """kind -> (writer, default path of the run folder); imported lazily (optional libraries)."""

    def rrd(run_dir: Path) -> Path:
        from tangram.recording.rerun import write_rrd

        return write_rrd(run_dir)

    def mcap(run_dir: Path) -> Path:
        from tangram.recording.mcap import write_mcap

        return write_mcap(run_dir)

    return {"rrd": (rrd, lambda d: d / "recording.rrd"), "mcap": (mcap, lambda d: d / "simulation" / "robot.mcap")}


def write_recordings(run_dir: Path, manifest: dict[str, Any], enabled: bool = True) -> dict[str, Any]:
    """Write (or reuse) the run's recordings, record them in `manifest["recordings"]` (the caller
    writes the manifest) and return that entry. Never raises for a recording problem."""
    run_dir = Path(run_dir)
    previous = manifest.get("recordings") if isinstance(manifest.get("recordings"), dict) else {}
    stages = manifest.get("stages") or {}
    simulated = (stages.get("simulation") or {}).get("status") == "done"
    wanted = ["rrd", "mcap"] if simulated else ["rrd"]
    if not enabled:
        for kind, record in previous.items():
            path = run_dir / str((record or {}).get("path", ""))
            if record.get("input_hash") != recording_hash(manifest, kind) and path.is_file():
                path.unlink()
                log.info("recordings off: removed %s, left from an earlier state of this run", path.name)
        manifest["recordings"] = {}
        log.info("recordings off (--no-recording): no recording.rrd or robot.mcap written")
        return manifest["recordings"]
    out: dict[str, Any] = {}
    writers = _writers()
    for kind in wanted:
        write, default = writers[kind]
        path = default(run_dir)
        rel = path.relative_to(run_dir).as_posix()
        want_hash = recording_hash(manifest, kind)
        old = previous.get(kind) or {}
        if old.get("status") == "done" and old.get("input_hash") == want_hash and path.is_file():
            log.info("%s: up to date, reusing it", rel)
            out[kind] = old
            continue
        started = time.perf_counter()
        record: dict[str, Any] = {"path": rel, "input_hash": want_hash}
        try:
            write(run_dir)
        except ImportError as exc:  # rerun-sdk, mcap, mcap-ros2-support or one of theirs
            name = getattr(exc, "name", None) or str(exc)
            record.update(status="unavailable", reason=f"the Python package {name} is not installed "
                          f"(pip install 'tangram[robotics]')")
            log.info("%s not written: %s", rel, record["reason"])
        except Exception as exc:  # a recording never fails the run
            first = str(exc).splitlines()[0] if str(exc) else ""
            record.update(status="failed", reason=f"{type(exc).__name__}: {first}")
            log.warning("%s not written: %s", rel, record["reason"])
        else:
            record.update(status="done", bytes=path.stat().st_size)
            log.info("%s: written in %.2f s (%d bytes)", rel, time.perf_counter() - started, record["bytes"])
        record["seconds"] = round(time.perf_counter() - started, 3)
        out[kind] = record
    stale = run_dir / "simulation" / "robot.mcap"
    if not simulated and stale.is_file():  # left by a simulation this run no longer has
        stale.unlink()
    manifest["recordings"] = out
    return out

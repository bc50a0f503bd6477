"""Faults with real processes: a Dask worker SIGKILLed in the middle of a stage (every input still
completes, outputs identical to a serial run, nothing imported twice), and the batch client itself
SIGKILLed after a stage landed (the same command resumes without redoing it)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from fleet_helpers import batch_cmd, descendants, fleet_env, kill_pids, read_batch, run_batch_cli, wait_for

pytestmark = pytest.mark.timeout(400)


def test_worker_killed_mid_stage(tmp_path: Path, make_config, apple_video: Path) -> None:  # type: ignore[no-untyped-def]
    from tangram.fileio import read_json
    from tangram.fleet.driver import BatchDriver, BatchOptions
    from tangram.runner import Pipeline, default_input

    config = make_config(tracking={"frame_stride": 5}, segmentation={"backend": "grabcut"},
                         fleet={"dashboard_port": None, "retries": 1})
    inputs = [apple_video, default_input()]
    driver = BatchDriver(config, BatchOptions(inputs=[str(p) for p in inputs], name="faults", mode="track",
                                              workers=2))
    killed: dict = {}

    def saboteur() -> None:
        try:
            cluster = wait_for(lambda: driver.cluster, 120, "cluster up")
            busy = wait_for(lambda: [a for a, keys in cluster.client.processing().items() if keys], 120,
                            "a worker running a stage")
            time.sleep(2.0)  # let it get into the stage (imports, model, frames)
            pid = cluster.client.run(os.getpid, workers=[busy[0]])[busy[0]]
            killed["key"] = list(cluster.client.processing()[busy[0]])
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid
        except BaseException as exc:  # reported by the assertion below
            killed["error"] = exc

    thread = threading.Thread(target=saboteur, daemon=True)
    thread.start()
    code = driver.run()
    thread.join(30)
    assert "pid" in killed, killed
    assert code == 0
    data = read_batch(Path(config.run.exports_dir) / "faults")
    assert data["status"] == "done" and data["totals"]["done"] == 2
    for inp, entry in zip(inputs, data["inputs"], strict=True):
        run = Path(config.run.exports_dir) / "faults" / entry["run_dir"]
        manifest = read_json(run / "manifest.json")
        assert manifest["stages"]["tracking"]["status"] == "done"
        assert not list(run.glob(".tmp-*")) and not list(run.glob(".old-*"))
        log = (run / "tangram.log").read_text()
        assert log.count("tracking: done") == 1, "imported once"
        serial = Pipeline(config).run(inp, name=f"serial-{entry['name']}", until="tracking")
        assert serial.ok
        want = read_json(serial.run_dir / "tracking" / "tracks.json")
        got = read_json(run / "tracking" / "tracks.json")
        assert got == want, f"{entry['name']}: fleet output differs from the serial run"
        assert sorted(p.name for p in (run / "tracking").iterdir()) == \
            sorted(p.name for p in (serial.run_dir / "tracking").iterdir())


def test_client_killed_then_the_same_command_resumes(tmp_path: Path, yolo_weights: str, apple_video: Path) -> None:
    from tangram.fileio import read_json
    from tangram.runner import default_input

    exports = tmp_path / "exports"
    env = fleet_env(exports, yolo_weights)
    args = [str(apple_video), str(default_input()), "--name", "k", "--mode", "track", "--workers", "1"]
    proc = subprocess.Popen(batch_cmd(*args, "--no-progress"), env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    batch = exports / "k"
    tree: list[int] = []
    try:
        def one_landed() -> Path | None:
            tree[:] = sorted(set(tree) | set(descendants(proc.pid)))
            for manifest in batch.glob("*/manifest.json"):
                if read_json(manifest)["stages"].get("tracking", {}).get("status") == "done":
                    return manifest
            return None

        landed = wait_for(one_landed, 240, "a first stage imported")
        tree[:] = sorted(set(tree) | set(descendants(proc.pid)))
        os.kill(proc.pid, signal.SIGKILL)  # the client dies: no cleanup at all
        proc.wait(10)
    finally:
        kill_pids([proc.pid, *tree])  # the orphaned scheduler/worker processes it had started
    first = read_json(landed)["stages"]["tracking"]
    assert read_batch(batch)["status"] == "running"  # what a killed client leaves
    again = run_batch_cli(args, env, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    data = read_batch(batch)
    assert data["status"] == "done" and data["sessions"] == 2 and data["totals"]["done"] == 2
    after = read_json(landed)["stages"]["tracking"]
    assert after["output_id"] == first["output_id"], "the stage that landed was not run again"
    entry = next(e for e in data["inputs"] if e["name"] == landed.parent.name)
    assert entry["stages"]["tracking"].get("reused") is True
    for run in (batch / e["run_dir"] for e in data["inputs"]):
        assert not list(run.glob(".tmp-*")) and (run / "tracking" / "tracks.json").is_file()

"""Runner behaviour on real input: manifest, caching, --force, resume after kill -9, config saved."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def test_rerun_reuses_finished_stages_and_force_reruns(tmp_path: Path, run_cli, apple_video: Path) -> None:
    first = run_cli("--input", str(apple_video), "--mode", "segment", "--name", "apple",
                    "--keyframe-stride", "25")
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "exports/apple"
    m1 = _manifest(run_dir)
    assert [m1["stages"][s]["status"] for s in ("tracking", "segmentation")] == ["done", "done"]
    assert m1["stages"]["tracking"]["backend"].startswith("ultralytics:")
    assert m1["stages"]["segmentation"]["backend"] == "grabcut"  # no SAM checkpoint offline
    assert m1["stages"]["tracking"]["where"] == "local"

    second = run_cli("--input", str(apple_video), "--mode", "segment", "--name", "apple",
                     "--keyframe-stride", "25")
    assert second.returncode == 0
    m2 = _manifest(run_dir)
    for stage in ("tracking", "segmentation"):
        assert m2["stages"][stage]["finished_at"] == m1["stages"][stage]["finished_at"]  # reused
    assert "up to date" in (run_dir / "tangram.log").read_text()

    # a changed segmentation setting re-runs segmentation only
    third = run_cli("--input", str(apple_video), "--mode", "segment", "--name", "apple",
                    "--keyframe-stride", "10")
    m3 = _manifest(run_dir)
    assert third.returncode == 0
    assert m3["stages"]["tracking"]["input_hash"] == m1["stages"]["tracking"]["input_hash"]
    assert m3["stages"]["segmentation"]["input_hash"] != m1["stages"]["segmentation"]["input_hash"]
    assert m3["stages"]["segmentation"]["summary"]["keyframes"] == 5

    forced = run_cli("--input", str(apple_video), "--mode", "track", "--name", "apple", "--force", "tracking",
                     "--keyframe-stride", "10")
    assert forced.returncode == 0
    assert _manifest(run_dir)["stages"]["tracking"]["finished_at"] >= m3["stages"]["tracking"]["finished_at"]
    # segmentation read the old tracks: the next run must redo it, not reuse it
    after = run_cli("--input", str(apple_video), "--mode", "segment", "--name", "apple", "--keyframe-stride", "10")
    assert after.returncode == 0
    m5 = _manifest(run_dir)
    assert m5["stages"]["segmentation"]["finished_at"] >= _manifest(run_dir)["stages"]["tracking"]["finished_at"]
    assert m5["stages"]["segmentation"]["output_id"] != m3["stages"]["segmentation"]["output_id"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["segmentation"]["keyframe_stride"] == 10
    assert "api_key" not in config["planning"]


def test_run_repeated_from_its_config_json_reuses_every_stage(sample_run: Path, tmp_path: Path, run_cli) -> None:
    """`main.py --config exports/RUN/config.json --input ...` gives the same settings, so every stage
    of the (copied) session sample run is reused: same hashes, same outputs, nothing re-run."""
    from tangram.runner import default_input
    from tangram.settings import load_config, public_dict

    run_dir = Path(shutil.copytree(sample_run, tmp_path / "exports" / "sample",
                                   ignore=shutil.ignore_patterns("*.rrd", "*.mcap")))
    saved = run_dir / "config.json"
    assert public_dict(load_config(saved, env={})) == json.loads(saved.read_text())  # round trip
    before = _manifest(run_dir)["stages"]
    (run_dir / "tangram.log").unlink()
    repeat = run_cli("--config", str(saved), "--input", str(default_input()), "--name", "sample")
    assert repeat.returncode == 0, repeat.stderr
    after = _manifest(run_dir)["stages"]
    assert set(after) == set(before) and len(before) == 6
    for stage, record in before.items():
        assert after[stage]["status"] == "done"
        for key in ("input_hash", "output_id", "finished_at"):
            assert after[stage][key] == record[key], (stage, key)
    log = (run_dir / "tangram.log").read_text()
    assert all(f"{stage}: up to date" in log for stage in before), log
    assert ": starting (" not in log


def test_config_json_null_is_a_value_and_bad_json_a_clean_error(tmp_path: Path, run_cli) -> None:
    from tangram.settings import load_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"fleet": {"dashboard_port": None}, "tracking": {"conf": 0.4}}))
    config = load_config(path, env={})
    assert config.fleet.dashboard_port is None and config.tracking.conf == 0.4  # default 8787 replaced
    path.write_text("{not json")
    proc = run_cli("--config", str(path), "--mode", "track")
    assert proc.returncode == 2 and "is not valid JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_kill_minus_9_mid_stage_then_resume(tmp_path: Path, yolo_weights: str, apple_video: Path) -> None:
    env = {**os.environ, "TANGRAM_YOLO_WEIGHTS": yolo_weights, "TANGRAM_EXPORTS_DIR": str(tmp_path / "exports")}
    args = [sys.executable, str(ROOT / "main.py"), "--input", str(apple_video), "--mode", "segment",
            "--name", "killed", "--keyframe-stride", "25"]
    run_dir = tmp_path / "exports/killed"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(run_dir.glob(".tmp-tracking-*")):
        time.sleep(0.05)
    time.sleep(1.5)  # well inside the ~10 s tracking stage
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(run_dir.glob(".tmp-tracking-*")), "the kill should land while tracking runs"
    assert not (run_dir / "tracking").exists()  # nothing half-written under a final name
    assert _manifest(run_dir)["stages"] == {}

    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(run_dir.glob(".tmp-*"))
    manifest = _manifest(run_dir)
    assert manifest["stages"]["segmentation"]["status"] == "done"
    tracks = json.loads((run_dir / "tracking/tracks.json").read_text())
    assert tracks["video"]["num_frames"] == 50

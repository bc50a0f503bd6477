"""`tangram batch` on an embedded LocalCluster of 2 real worker processes: three short inputs (the
real apple clip, the rendered sample scene, a truncated copy of the apple clip), batch.json, the
run folders a local run accepts as up to date, the Prometheus endpoint scraped while the batch
runs, `tangram batch status`, the same command again resuming, and the one-line refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fleet_helpers import (
    batch_cmd,
    fleet_env,
    read_batch,
    run_batch_cli,
    scrape,
    truncated_copy,
    value,
    wait_for,
)

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def local_batch(tmp_path_factory: pytest.TempPathFactory, yolo_weights: str) -> dict:
    from conftest import real_file

    from tangram.runner import default_input

    root = tmp_path_factory.mktemp("fleet-local")
    apple = real_file("apple_orbit.mp4")
    truncated_copy(apple, root / "broken clip.mp4")
    inputs = root / "inputs.txt"  # a list file, one input per line
    inputs.write_text(f"# three inputs\n{apple}\n{default_input()}\nbroken clip.mp4\n")
    exports = root / "exports"
    env = fleet_env(exports, yolo_weights)
    proc = subprocess.Popen(batch_cmd(str(inputs), "--name", "b1", "--mode", "track", "--workers", "2",
                                      "--metrics-port", "0", "--no-progress"),
                            env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    batch_dir = exports / "b1"
    try:
        port = wait_for(lambda: read_batch(batch_dir)["cluster"]["metrics_port"], 120, "metrics port in batch.json")
        # A fresh venv's first torch/ultralytics imports in two new worker processes can take minutes
        # on 2 cores (cold page cache): the bound is generous. A batch that ended is reported at once.
        def finished_input() -> dict | None:
            if proc.poll() is not None:
                raise AssertionError(f"batch ended before a scrape saw a finished input: {proc.stdout.read()[-3000:]}")
            s = scrape(port)
            return s if value(s, "tangram_batch_inputs_total", status="done") >= 1 else None

        live = wait_for(finished_input, 480, "an input finished on the metrics endpoint", interval=0.25)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"root": root, "exports": exports, "batch_dir": batch_dir, "env": env, "rc": proc.returncode,
            "out": out, "live": live, "apple": apple, "sample": default_input(), "inputs": inputs}


def test_batch_json_and_run_folders(local_batch: dict) -> None:
    assert local_batch["rc"] == 1, local_batch["out"][-3000:]  # one input failed: exit 1
    data = read_batch(local_batch["batch_dir"])
    assert data["format"] == "tangram.batch/1" and data["name"] == "b1" and data["status"] == "failed"
    assert data["finished_at"] and data["started_at"]
    cluster = data["cluster"]
    assert cluster["kind"] == "local" and cluster["address"].startswith("tls://127.0.0.1:")
    assert len(cluster["workers"]) == 2 and all(w["nthreads"] == 1 for w in cluster["workers"])
    assert cluster["dashboard"] and cluster["dask_metrics"].endswith("/metrics")
    by_name = {e["name"]: e for e in data["inputs"]}
    assert set(by_name) == {"apple_orbit", "sample", "broken_clip"}
    broken = by_name["broken_clip"]
    assert broken["status"] == "failed" and "corrupt or truncated" in broken["reason"]
    assert "\n" not in broken["reason"]
    workers_used = set()
    for name in ("apple_orbit", "sample"):
        entry = by_name[name]
        assert entry["status"] == "done" and entry["reason"] is None, entry
        rec = entry["stages"]["tracking"]
        assert rec["status"] == "done" and rec["where"] == "local" and rec["seconds"] > 0
        assert rec["bytes_down"] > 10_000 and rec["bytes_up"] == 0  # same disk: the input is not copied
        workers_used.add(rec["worker"])
        run = local_batch["batch_dir"] / entry["run_dir"]
        manifest = __import__("json").loads((run / "manifest.json").read_text())
        track = manifest["stages"]["tracking"]
        assert track["status"] == "done" and track["execution"]["fleet"] == "b1"
        assert (run / "tracking" / "tracks.json").is_file() and (run / "tracking" / "preview.mp4").is_file()
        assert not list(run.glob(".tmp-*")) and (run / "config.json").is_file()
        assert "tracking: done" in (run / "tangram.log").read_text()
        assert manifest["recordings"]["rrd"]["status"] == "done" and (run / "recording.rrd").is_file()  # per input
    assert len(workers_used) == 2, "both workers ran a stage"
    totals = data["totals"]
    assert totals["inputs"] == 3 and totals["done"] == 2 and totals["failed"] == 1 and totals["remaining"] == 0
    assert set(totals["host_seconds"]) == {"local"} and totals["host_seconds"]["local"] > 0
    assert totals["bytes_down"] == sum(by_name[n]["stages"]["tracking"]["bytes_down"]
                                       for n in ("apple_orbit", "sample"))
    assert totals["local_estimate_s"] > 0 and totals["wall_s"] > 0
    assert data["metrics"]["tangram_batch_inputs"]
    prom = (local_batch["batch_dir"] / "metrics.prom").read_text()
    assert 'tangram_batch_inputs_total{status="done"} 2.0' in prom


def test_metrics_scraped_while_running(local_batch: dict) -> None:
    samples = local_batch["live"]
    assert value(samples, "tangram_batch_inputs_total") >= 1
    assert value(samples, "tangram_stage_duration_seconds_count", stage="tracking", host="local") >= 1
    assert value(samples, "tangram_bytes_downloaded_total", host="local") > 10_000
    info = samples["tangram_batch_info"][0][0]
    assert info["batch"] == "b1" and info["cluster"] == "local" and info["dask_metrics"].endswith("/metrics")
    assert "tangram_batch_queue_length" in samples and "tangram_cost_usd" in samples


def test_a_local_run_finds_the_batch_run_up_to_date(local_batch: dict, make_config) -> None:  # type: ignore[no-untyped-def]
    from tangram.fileio import read_json
    from tangram.runner import Pipeline

    run_dir = local_batch["batch_dir"] / "apple_orbit"
    before = read_json(run_dir / "manifest.json")["stages"]["tracking"]
    config = make_config(run={"exports_dir": str(local_batch["exports"])}, tracking={"frame_stride": 5},
                         segmentation={"backend": "grabcut"})
    result = Pipeline(config).run(local_batch["apple"], name="b1/apple_orbit", until="tracking")
    after = result.record("tracking")
    assert after["output_id"] == before["output_id"] and after["input_hash"] == before["input_hash"]


def test_status_and_the_same_command_resumes(local_batch: dict) -> None:
    status = subprocess.run(batch_cmd("status", "b1"), env=local_batch["env"], cwd=local_batch["root"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "apple_orbit" in status.stdout and "broken_clip" in status.stdout and "2 done, 1 failed" in status.stdout
    first = read_batch(local_batch["batch_dir"])
    again = run_batch_cli([str(local_batch["inputs"]), "--name", "b1", "--workers", "1"],
                          local_batch["env"], local_batch["root"])
    assert again.returncode == 1, again.stderr[-2000:]
    data = read_batch(local_batch["batch_dir"])
    assert data["sessions"] == 2 and data["mode"] == "track"  # the batch's mode when none is given
    for name in ("apple_orbit", "sample"):
        rec = next(e for e in data["inputs"] if e["name"] == name)["stages"]["tracking"]
        assert rec.get("reused") is True
    old = {e["name"]: e["stages"]["tracking"]["seconds"] for e in first["inputs"] if e["status"] == "done"}
    assert data["totals"]["host_seconds"] == {} and old


@pytest.mark.parametrize("args, message", [
    (["--name", "empty", "/nonexistent/clip.mp4"], "input not found: /nonexistent/clip.mp4"),
    (["--name", "x", "--scheduler", "tcp://127.0.0.1:9"], "does not answer"),
    (["--name", "x", "--force", "nosuchstage"], "unknown stage"),
])
def test_bad_settings_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path, yolo_weights: str,
                                           apple_video: Path) -> None:
    if "--force" in args or "--scheduler" in args:
        args = [*args, str(apple_video)]
    env = fleet_env(tmp_path / "exports", yolo_weights, TANGRAM_FLEET_CONNECT_TIMEOUT_S="3")
    proc = run_batch_cli(args, env, tmp_path, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("tangram: error:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_zero_inputs_exit_2(tmp_path: Path, yolo_weights: str) -> None:
    empty = tmp_path / "none.txt"
    empty.write_text("# nothing here\n")
    proc = run_batch_cli([str(empty), "--name", "z"], fleet_env(tmp_path / "exports", yolo_weights), tmp_path)
    assert proc.returncode == 2 and "no inputs" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

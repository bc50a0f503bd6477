"""tangram.execution: one skip rule for the runner and the batch (whose inputs run in the runner), and warm
workers (a batch of 3 inputs on 1 worker loads the detector once, and the reused detector tracks
a copy of an input exactly as the freshly loaded one did)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest


def _manifest(input_path: Path) -> dict[str, Any]:
    return {"input": {"path": str(input_path), "fingerprint": "0" * 64},
            "stages": {"tracking": {"status": "failed", "reason": "no frames"}}}


def _without_time(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "finished_at"}


def test_runner_batch_and_task_skip_through_one_function(tmp_path: Path, make_config, monkeypatch,
                                                          apple_video: Path) -> None:  # type: ignore[no-untyped-def]
    from tangram import runner
    from tangram.fleet.driver import BatchDriver, BatchOptions, InputState
    from tangram.fleet.inputs import BatchInput

    config = make_config()
    calls: list[tuple[str, str]] = []
    real = runner.skip_unmet

    def spy(run_dir: Path, manifest: dict[str, Any], spec: Any) -> dict[str, Any] | None:
        calls.append((run_dir.name, spec.name))
        return real(run_dir, manifest, spec)

    monkeypatch.setattr(runner, "skip_unmet", spy)

    # the runner's path: a stage whose upstream failed is recorded as skipped, nothing runs
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    local = _manifest(apple_video)
    runner.Pipeline(config)._run_stage("segmentation", local_dir, local, stale=True)

    # the batch driver's path: the runner an input of the batch runs in (Dask executor, batch entry)
    batch_dir = tmp_path / "batch"
    batch_dir.mkdir()
    batched = _manifest(apple_video)
    driver = BatchDriver(config, BatchOptions())
    driver.batch, driver.batch_dir = {"name": "b"}, tmp_path
    state = InputState(BatchInput(apple_video, "apple"), {"stages": {}}, ["tracking", "segmentation"], batch_dir)
    driver.pipeline(state)._run_stage("segmentation", batch_dir, batched, stale=True)

    assert calls == [("local", "segmentation"), ("batch", "segmentation")]
    expected = {"status": "skipped", "reason": "needs tracking failed"}
    assert _without_time(local["stages"]["segmentation"]) == expected
    assert _without_time(batched["stages"]["segmentation"]) == expected
    on_disk = json.loads((batch_dir / "manifest.json").read_text())["stages"]["segmentation"]
    assert _without_time(on_disk) == expected
    assert state.entry["stages"]["segmentation"]["status"] == "skipped"


@pytest.mark.timeout(400)
def test_one_warm_worker_loads_the_detector_once(tmp_path: Path, yolo_weights: str) -> None:
    from conftest import real_file
    from fleet_helpers import fleet_env, read_batch, run_batch_cli

    apple = real_file("apple_orbit.mp4")
    copy = tmp_path / "apple_copy.mp4"  # the same frames under another name: a second, warm, run
    shutil.copyfile(apple, copy)
    exports = tmp_path / "exports"
    proc = run_batch_cli([str(apple), str(copy), str(real_file("bus.jpg")), "--name", "warm", "--mode", "track",
                          "--workers", "1"], fleet_env(exports, yolo_weights), tmp_path, timeout=360)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    batch = read_batch(exports / "warm")
    assert [e["status"] for e in batch["inputs"]] == ["done"] * 3
    workers = {e["stages"]["tracking"]["worker"] for e in batch["inputs"]}
    assert len(workers) == 1
    loads = batch["cluster"]["model_loads"]
    assert loads == {workers.pop(): {"detector": 1}}, loads

    # the reused detector started a fresh tracker: the copy's tracks are the original's, ids and all
    def frames(name: str) -> list[Any]:
        entry = next(e for e in batch["inputs"] if Path(e["input"]).name == name)
        return json.loads((exports / "warm" / entry["run_dir"] / "tracking" / "tracks.json").read_text())["frames"]

    first, again = frames("apple_orbit.mp4"), frames("apple_copy.mp4")
    assert sum(len(f["detections"]) for f in first) > 0
    assert again == first


def test_the_cost_model_charges_a_model_load_once_per_warm_worker(make_config) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from tangram.execution.cost import ModelLoads, load_coefficients
    from tangram.fleet.planner import plan_stages

    config = make_config(segmentation={"backend": "grabcut"})
    coef = {**load_coefficients(), "model_load_s": 2.5}
    info = SimpleNamespace(num_frames=50, width=1296, height=720, bytes=1_220_000)  # apple_orbit.mp4
    stages = ["tracking", "segmentation"]

    # 3 inputs on 1 warm worker: the detector's load is booked once (2.5 s), not 3 times (7.5 s)
    one = ModelLoads(coef, workers=1)
    assert [one.book("tracking", config) for _ in range(3)] == [2.5, 0.0, 0.0]
    assert one.book("segmentation", config) == 0.0  # GrabCut loads no model
    # 2 workers: the first task on each pays it; a process already holding the detector pays nothing
    two = ModelLoads(coef, workers=2)
    assert sum(two.book("tracking", config) for _ in range(5)) == 5.0
    assert ModelLoads(coef, held={"detector": 1}).seconds("tracking", config) == 0.0
    # SAM is its own model, named as tangram.execution.warm counts it
    sam = make_config(segmentation={"backend": "sam", "sam_model": "vit_b"})
    loads = ModelLoads(coef, workers=1)
    assert loads.book("tracking", sam) == 2.5 and loads.book("segmentation", sam) == 2.5
    assert loads.loaded == {"detector": 1, "sam:vit_b:fp16=" + str(sam.segmentation.fp16): 1}

    # the batch planner: the first input's estimate and chain carry the load, the warm worker's next do not
    planned = ModelLoads(load_coefficients(), workers=1)
    cold = plan_stages(config, stages, info, False, loads=planned)["tracking"]
    bare = plan_stages(config, stages, info, False)["tracking"]
    assert abs(cold.cpu_s - bare.cpu_s - planned.load_s) < 1e-9 and cold.priority >= bare.priority
    planned.book("tracking", config)
    warm_plan = plan_stages(config, stages, info, False, loads=planned)["tracking"]
    assert abs(warm_plan.cpu_s - bare.cpu_s) < 1e-9

    # the Thunder scorer: a job (a fresh process) loads SAM; this process only while it does not hold it warm
    from tangram.execution import warm
    from tangram.execution.cost import StageStats
    from thunder.scorer import Scorer

    scorer = Scorer(sam)
    scorer.coef = coef
    stats = StageStats(1_220_000, 50, 1296, 720, 10, 30, 20_000.0, 1_220_000, 1_000_000)
    host = {"info": {"gpus": [{"name": "H100"}], "cpus": 8}, "upload_mb_s": 50.0, "download_mb_s": 50.0}
    cold_local = scorer._estimate("segmentation", stats, host)
    assert cold_local.extra["model_load_s"] == 2.5
    warm.enable()
    try:
        warm.model(f"sam:vit_b:fp16={sam.segmentation.fp16}", None, sam.segmentation.device, object)
        held = scorer._estimate("segmentation", stats, host)
    finally:
        warm.enable(False)
    assert abs(cold_local.est_local_s - held.est_local_s - 2.5) < 1e-9
    assert held.est_remote_s == cold_local.est_remote_s


def test_a_thunder_job_fails_a_stage_alone_and_skips_what_needs_it(tmp_path: Path, make_config,
                                                                   apple_video: Path) -> None:  # type: ignore[no-untyped-def]
    """`python -m thunder.worker run-job` behaves like the runner: scene_graph fails on an unreadable
    reconstruction (its own one-line reason), planning and simulation are skipped with the runner's
    reason, and the job ends "failed" with exit code 3 instead of stopping at the first stage."""
    import signal

    from tangram.settings import public_dict
    from thunder.worker import EXIT_STAGE_FAILED, main

    job_dir = tmp_path / "job"
    (job_dir / "upstream" / "reconstruction").mkdir(parents=True)  # uploaded, but empty
    shutil.copyfile(apple_video, job_dir / "input.mp4")
    (job_dir / "config.json").write_text(json.dumps(public_dict(make_config())))
    stages = ["scene_graph", "planning", "simulation"]
    (job_dir / "job.json").write_text(json.dumps({
        "job_id": "j1", "input": "input.mp4", "stages": stages, "gpu_memory_fraction": 0.5,
        "requires": {"scene_graph": ["reconstruction"], "planning": ["scene_graph"],
                     "simulation": ["scene_graph", "planning"]},
        "upstream": {"reconstruction": "upstream/reconstruction"}}))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["run-job", "--job-dir", str(job_dir)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    status = json.loads((job_dir / "status.json").read_text())
    assert code == EXIT_STAGE_FAILED and status["status"] == "failed" and status["stage"] is None
    records = status["stages"]
    assert list(records) == stages
    assert records["scene_graph"]["status"] == "failed"
    assert "reconstruction output unreadable" in records["scene_graph"]["reason"]
    assert records["planning"] == {"status": "skipped", "reason": "needs scene_graph failed"}
    assert records["simulation"] == {"status": "skipped", "reason": "needs scene_graph failed, planning skipped"}
    assert status["error"].startswith("scene_graph: reconstruction output unreadable")
    assert not (job_dir / "stages" / "scene_graph").exists() and not list((job_dir / "stages").glob(".tmp-*"))


def test_local_workers_run_their_models_on_their_share_of_the_cores(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Dask's nanny sets OMP_NUM_THREADS=1 in every worker; TANGRAM's local workers get the host's
    cores divided among them instead, and the detector's thread count follows the same share. The
    nanny's MALLOC_TRIM_THRESHOLD_ (which turns off glibc's adaptive mmap threshold) is not set."""
    from config import TangramConfig
    from tangram.execution.device import thread_env, usable_cores
    from tangram.fleet.cluster import start_local

    assert thread_env(16, 4) == dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "OPENCV_FOR_THREADS_NUM"), "4")
    assert thread_env(2, 4)["OMP_NUM_THREADS"] == "1"  # never zero
    assert thread_env(16, 2, threads_per_process=4)["OMP_NUM_THREADS"] == "2"
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = usable_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert usable_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 8))
    assert usable_cores() == cores  # capped by the affinity
    monkeypatch.delenv("OMP_NUM_THREADS")

    def seen() -> tuple[str, int, int, int, str | None]:
        import os

        import cv2
        import torch

        from tangram.execution.device import usable_cores

        return (os.environ["OMP_NUM_THREADS"], torch.get_num_threads(), cv2.getNumThreads(), usable_cores(),
                os.environ.get("MALLOC_TRIM_THRESHOLD_"))

    for workers in (1, 2):
        fleet = start_local(TangramConfig(), workers)
        try:
            share = max(1, cores // workers)
            answers = fleet.client.run(seen)
            assert len(answers) == workers
            assert set(answers.values()) == {(str(share), share, share, share, None)}, answers
        finally:
            fleet.close()

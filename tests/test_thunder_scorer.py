"""The complexity scorer on real inputs: seed rules without measurements, estimates with them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import real_file


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TANGRAM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_ctx(config, video: Path, tmp_path: Path, stage: str = "segmentation", tracks: Path | None = None):
    from tangram.stages.base import StageContext

    upstream = {"tracking": tracks or (tmp_path / "no-tracking-yet")}
    out = tmp_path / f"out-{stage}"
    out.mkdir(exist_ok=True)
    return StageContext(stage=stage, input_path=video, out_dir=out, upstream=upstream, config=config)


def config_with(**thunder):
    from tangram.settings import load_config

    base = {"enabled": True, "ssh_host": "gpu.example", "ssh_user": "me", "offload": "auto"}
    overrides = {"segmentation": {"backend": "grabcut"}, "thunder": {**base, **thunder}}
    return load_config(env={}, overrides=overrides)


def save_host(config, gpus: list[dict], up: float = 50.0, down: float = 50.0, cpus: int = 16) -> None:
    from thunder.scorer import save_host_report

    save_host_report(config.thunder, {
        "host": "me@gpu.example", "connect_s": 0.2, "latency_s": 0.03, "upload_mb_s": up,
        "download_mb_s": down, "probe_bytes": 16e6, "measured_at": time.time(),
        "info": {"gpus": gpus, "cpus": cpus, "os": "Ubuntu 22.04", "free_bytes": 1e11}})


def test_seed_rules_without_host_measurements(cache, tmp_path):
    """No measurement yet: segmentation goes remote only for >100 MB or >200 frames (real videos)."""
    from tangram.stages import get_stage
    from thunder.scorer import Scorer

    config = config_with()
    scorer, spec = Scorer(config), get_stage("segmentation")
    short = scorer.decide(spec, make_ctx(config, real_file("apple_orbit.mp4"), tmp_path))  # 50 frames
    long = scorer.decide(spec, make_ctx(config, real_file("coffee_static_camera.mp4"), tmp_path))
    assert not short.remote and "seed rule" in short.reason and short.stats.num_frames == 50
    assert long.stats.num_frames > 200 and long.remote
    message = long.message()
    assert message.startswith("Video complexity: 1.2MB, ") and "-> segmentation on thunder" in message
    tracking = scorer.decide(get_stage("tracking"), make_ctx(config, real_file("apple_orbit.mp4"), tmp_path))
    assert not tracking.remote  # tracking stays local


def test_reconstruction_seed_rule_counts_images(cache, tmp_path):
    from tangram.stages import get_stage
    from thunder.scorer import Scorer

    spec = get_stage("reconstruction")
    video = real_file("coffee_static_camera.mp4")
    few = Scorer(config_with()).decide(spec, make_ctx(config_with(), video, tmp_path, "reconstruction"))
    assert few.stats.keyframes == 60 and few.remote  # max_keyframes 60 > 50 images
    cfg = config_with()
    fewer = cfg.reconstruction.model_copy(update={"max_keyframes": 40})
    cfg = cfg.model_copy(update={"reconstruction": fewer})
    assert not Scorer(cfg).decide(spec, make_ctx(cfg, video, tmp_path, "reconstruction")).remote


def test_offload_flag_overrides_the_scorer(cache, tmp_path):
    from tangram.stages import get_stage
    from thunder.scorer import Scorer

    video = real_file("coffee_static_camera.mp4")
    never = config_with(offload="never")
    assert not Scorer(never).decide(get_stage("segmentation"), make_ctx(never, video, tmp_path)).remote
    always = config_with(offload="always")
    apple = real_file("apple_orbit.mp4")
    assert Scorer(always).decide(get_stage("segmentation"), make_ctx(always, apple, tmp_path)).remote


def test_measured_host_decides_by_estimate(cache, tmp_path, reference_run):
    """With the connection test's figures: SAM on a GPU host wins, GrabCut over a slow link loses."""
    from tangram.execution.cost import compute_seconds, load_coefficients
    from tangram.stages import get_stage
    from thunder.scorer import Scorer

    tracks = reference_run / "tracking"
    video = real_file("apple_orbit.mp4")
    spec = get_stage("segmentation")
    grabcut = config_with()
    save_host(grabcut, [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}], up=2.0, down=2.0)
    slow_link = Scorer(grabcut).decide(spec, make_ctx(grabcut, video, tmp_path, tracks=tracks))
    assert not slow_link.remote and slow_link.est_remote_s > slow_link.est_local_s
    assert slow_link.stats.detections == 5 and slow_link.stats.keyframes == 5  # from the real tracks.json
    assert "(est. " in slow_link.message() and "NVIDIA H100" in slow_link.reason

    # SAM's cost model: ~11 s per keyframe on this CPU, ~0.1 s on the GPU
    stats = slow_link.stats
    sam_section = grabcut.segmentation.model_copy(update={"backend": "sam"})
    sam = grabcut.model_copy(update={"segmentation": sam_section})
    coef = load_coefficients()
    cpu = compute_seconds("segmentation", stats, sam, gpu=False, cpus=2, coef=coef)
    gpu = compute_seconds("segmentation", stats, sam, gpu=True, cpus=16, coef=coef)
    assert cpu > 50 and gpu < 5
    save_host(sam, [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}], up=50.0, down=50.0)
    fast = Scorer(sam).decide(spec, make_ctx(sam, video, tmp_path, tracks=tracks))
    assert fast.remote and fast.est_remote_s < fast.est_local_s / 5


def test_calibration_overrides_the_defaults(cache):
    from tangram.execution.cost import DEFAULT_COEFFICIENTS, load_coefficients, save_coefficients

    path = save_coefficients({"grabcut_s_per_mpx_box": 0.5, "not_a_coefficient": 3})
    assert json.loads(path.read_text())["grabcut_s_per_mpx_box"] == 0.5
    coef = load_coefficients()
    assert coef["grabcut_s_per_mpx_box"] == 0.5 and "not_a_coefficient" not in coef
    assert coef["worker_start_s"] == DEFAULT_COEFFICIENTS["worker_start_s"]

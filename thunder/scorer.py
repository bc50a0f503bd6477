"""The complexity scorer: local or Thunder, per stage, with the estimate that decided it.

local time  = the stage's cost model on this machine's device (CPU, or a local GPU)
remote time = connection + worker start + upload / measured upload speed
              + the cost model on the host's device + download / measured download speed

Inputs: the video's bytes, frames and resolution, the keyframes and detections the stage will
work on (from tracking/tracks.json), whether a local accelerator exists, the host's GPU and the
throughput measured by the connection test (cached per host by `tangram thunder test` and after
every remote stage), and per-stage cost coefficients: defaults measured on a 2-core CPU box and
published GPU figures, overridden by `bench/bench_thunder.py --calibrate` (the cost model itself is
`tangram.execution.cost`, shared with the batch planner).

Without a host measurement the seed's rules decide: segmentation remote for videos over 100 MB
or 200 frames, reconstruction remote over 50 images, tracking (and everything else) local.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from config import TangramConfig, ThunderConfig
from tangram.execution import warm
from tangram.execution.cost import (
    REMOTE_MARGIN,
    ModelLoads,
    StageStats,
    _mb,
    compute_seconds,
    load_coefficients,
    local_accelerator,
)
from tangram.fileio import write_json
from tangram.stages.base import StageContext, StageSpec

log = logging.getLogger("thunder")

HOST_REPORT_MAX_AGE_S = 7 * 24 * 3600
SEED_SEGMENTATION_BYTES = 100e6
SEED_SEGMENTATION_FRAMES = 200
SEED_RECONSTRUCTION_IMAGES = 50


# -- cached host measurements ------------------------------------------------------------------


def _cache_root() -> Path:
    from tangram.models import cache_dir

    return cache_dir() / "thunder"


def _host_file(cfg: ThunderConfig) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.@-]+", "_", f"{cfg.ssh_user}@{cfg.ssh_host}_{cfg.ssh_port}")
    return _cache_root() / "hosts" / f"{name}.json"


def save_host_report(cfg: ThunderConfig, report: Any) -> None:
    data = report.to_json() if hasattr(report, "to_json") else dict(report)
    write_json(_host_file(cfg), data)


def load_host_report(cfg: ThunderConfig) -> dict[str, Any] | None:
    path = _host_file(cfg)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if time.time() - float(data.get("measured_at", 0)) > HOST_REPORT_MAX_AGE_S:
        return None
    return data


def update_host_throughput(cfg: ThunderConfig, direction: str, nbytes: int, seconds: float) -> None:
    """Fold a real transfer (>= 4 MB) into the cached speed, so estimates follow the link."""
    data = load_host_report(cfg)
    if data is None or nbytes < 4e6 or seconds <= 0:
        return
    key = f"{direction}_mb_s"
    measured = nbytes / 1e6 / seconds
    data[key] = round(0.5 * float(data.get(key) or measured) + 0.5 * measured, 2)
    write_json(_host_file(cfg), data)


# -- what the stage will work on ---------------------------------------------------------------


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def collect_stats(spec: StageSpec, ctx: StageContext) -> StageStats:
    tracks_file = ctx.upstream.get("tracking", Path("/nonexistent")) / "tracks.json"
    frames_with_dets: list[int] = []
    if tracks_file.is_file():
        tracks = json.loads(tracks_file.read_text())
        video = tracks["video"]
        frames, width, height = int(video["num_frames"]), int(video["width"]), int(video["height"])
        frames_with_dets = [len(f["detections"]) for f in tracks["frames"] if f["detections"]]
        areas = [(d["box_xyxy"][2] - d["box_xyxy"][0]) * (d["box_xyxy"][3] - d["box_xyxy"][1])
                 for f in tracks["frames"] for d in f["detections"]]
        mean_box = sum(areas) / len(areas) if areas else 0.0
    else:
        from tangram.media import open_media

        info = open_media(ctx.input_path).info
        frames, width, height, mean_box = info.num_frames, info.width, info.height, 0.0
    input_bytes = _input_bytes(ctx.input_path)
    keyframes, detections = _workload(spec.name, ctx.config, frames, frames_with_dets)
    upstream = sum(_folder_bytes(p) for p in ctx.upstream.values())
    upload = (input_bytes if spec.uses_input else 0) + upstream
    return StageStats(input_bytes, frames, width, height, keyframes, detections, mean_box, upload,
                      _output_bytes(spec.name, keyframes, detections, width, height))


def _input_bytes(path: Path) -> int:
    return _folder_bytes(path) if path.is_dir() else path.stat().st_size


def _workload(stage: str, config: TangramConfig, frames: int, frames_with_dets: list[int]) -> tuple[int, int]:
    if stage == "segmentation":
        cfg = config.segmentation
        candidates = frames_with_dets[:: cfg.keyframe_stride]
        keyframes = min(len(candidates), cfg.max_keyframes)
        per_frame = sum(candidates) / len(candidates) if candidates else 0.0
        return keyframes, round(per_frame * keyframes)
    if stage == "reconstruction":
        return min(frames, config.reconstruction.max_keyframes), sum(frames_with_dets)
    return frames, sum(frames_with_dets)


def _output_bytes(stage: str, keyframes: int, detections: int, width: int, height: int) -> int:
    px = width * height
    if stage == "segmentation":  # JPEG frame + overlay (~0.35 B/px each) + small PNG masks
        return int(keyframes * px * 0.7 + detections * px * 0.02)
    if stage == "reconstruction":
        return int(keyframes * 40_000 + 2e6)
    return int(1e6)


# -- the cost models ---------------------------------------------------------------------------


# -- the decision ------------------------------------------------------------------------------


@dataclass
class Decision:
    stage: str
    remote: bool
    reason: str
    stats: StageStats | None = None
    est_local_s: float | None = None
    est_remote_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        where = "thunder" if self.remote else "local"
        if self.stats is None:
            return f"{self.stage} -> {where} ({self.reason})"
        head = (f"Video complexity: {_mb(self.stats.input_bytes)}, {self.stats.num_frames} frames, "
                f"{self.stats.detections} detections -> {self.stage} on {where}")
        if self.est_local_s is not None and self.est_remote_s is not None:
            return f"{head} (est. {self.est_remote_s:.0f} s vs {self.est_local_s:.0f} s local; {self.reason})"
        return f"{head} ({self.reason})"

    def to_json(self) -> dict[str, Any]:
        data = {"remote": self.remote, "reason": self.reason,
                "est_local_s": _round(self.est_local_s), "est_remote_s": _round(self.est_remote_s)}
        if self.stats is not None:
            data["stats"] = asdict(self.stats)
        return data


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 2)


class Scorer:
    def __init__(self, config: TangramConfig):
        self.config = config
        self.coef = load_coefficients()

    def decide(self, spec: StageSpec, ctx: StageContext) -> Decision:
        mode = self.config.thunder.offload
        if not spec.offloadable:
            return Decision(spec.name, False, f"{spec.name} always runs locally")
        if mode == "never":
            return Decision(spec.name, False, "--offload never")
        stats = collect_stats(spec, ctx)
        if mode == "always":
            return Decision(spec.name, True, "--offload always", stats)
        host = load_host_report(self.config.thunder)
        if host is None:
            return self._seed_rule(spec.name, stats)
        return self._estimate(spec.name, stats, host)

    def _seed_rule(self, stage: str, stats: StageStats) -> Decision:
        hint = "no host measurement yet (tangram thunder test): seed rule"
        if stage == "segmentation":
            remote = (stats.input_bytes > SEED_SEGMENTATION_BYTES
                      or stats.num_frames > SEED_SEGMENTATION_FRAMES)
            return Decision(stage, remote, f"{hint} >100 MB or >200 frames", stats)
        if stage == "reconstruction":
            remote = stats.keyframes > SEED_RECONSTRUCTION_IMAGES
            return Decision(stage, remote, f"{hint} >50 images", stats)
        return Decision(stage, False, f"{hint}: {stage} local", stats)

    def _estimate(self, stage: str, stats: StageStats, host: dict[str, Any]) -> Decision:
        coef = self.coef
        local = compute_seconds(stage, stats, self.config, local_accelerator(), os.cpu_count() or 2, coef)
        info = host.get("info", {})
        host_gpu = bool(info.get("gpus"))
        host_cpus = int(info.get("cpus") or 2)
        remote_compute = compute_seconds(stage, stats, self.config, host_gpu, host_cpus, coef)
        up = max(float(host.get("upload_mb_s") or 1.0), 0.01) * 1e6
        down = max(float(host.get("download_mb_s") or 1.0), 0.01) * 1e6
        overhead = coef["worker_start_s"] + coef["session_rtts"] * float(host.get("latency_s") or 0.05)
        # a Thunder job is a fresh process: it loads the model; this process need not if it keeps it warm
        remote_load = ModelLoads(coef).seconds(stage, self.config)
        local += ModelLoads(coef, held=warm.held()).seconds(stage, self.config)
        remote = overhead + remote_load + stats.upload_bytes / up + remote_compute + stats.download_bytes / down
        if math.isnan(local) or math.isnan(remote):
            return self._seed_rule(stage, stats)
        gpu_name = info["gpus"][0]["name"] if host_gpu else "no GPU"
        decision = Decision(stage, remote < REMOTE_MARGIN * local, f"host {gpu_name}", stats, local, remote)
        decision.extra = {"upload_s": stats.upload_bytes / up, "download_s": stats.download_bytes / down,
                          "remote_compute_s": remote_compute, "overhead_s": overhead, "model_load_s": remote_load}
        return decision

"""The complexity scorer: local or Thunder, per stage, with the estimate that decided it.

local time  = the stage's cost model on this machine's device (CPU, or a local GPU)
remote time = connection + worker start + upload / measured upload speed
              + the cost model on the host's device + download / measured download speed

Inputs: the video's bytes, frames and resolution, the keyframes and detections the stage will
work on (from tracking/tracks.json), whether a local accelerator exists, the host's GPU and the
throughput measured by the connection test (cached per host by `tangram thunder test` and after
every remote stage), and per-stage cost coefficients: defaults measured on a 2-core CPU box and
published GPU figures, overridden by `bench/bench_thunder.py --calibrate`.

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
from tangram.fileio import write_json
from tangram.stages.base import StageContext, StageSpec

log = logging.getLogger("thunder")

HOST_REPORT_MAX_AGE_S = 7 * 24 * 3600
SEED_SEGMENTATION_BYTES = 100e6
SEED_SEGMENTATION_FRAMES = 200
SEED_RECONSTRUCTION_IMAGES = 50
REMOTE_MARGIN = 0.9  # offload only when the host is clearly faster: estimates are rough

# Seconds per unit; "cpu" is this reference machine (2 cores), "gpu" a datacenter GPU.
DEFAULT_COEFFICIENTS: dict[str, float] = {
    "worker_start_s": 2.0,  # python + imports on the host: 0.5 s measured on loopback, more on a cold host
    "session_rtts": 12.0,  # round trips for connect, auth, mkdir, stat, rename, exec...
    "sam_vit_b_cpu_s_per_keyframe": 11.0,  # set_image on CPU (NOTES.md)
    "sam_vit_b_gpu_s_per_keyframe": 0.08,
    "sam_cpu_s_per_box": 0.05,
    "sam_gpu_s_per_box": 0.004,
    "grabcut_s_per_mpx_box": 1.6,  # GrabCut per megapixel of (box + margin) crop (bench_thunder.py)
    "segmentation_write_s_per_keyframe": 0.08,  # JPEG/PNG/overlay writing
    "colmap_s_per_image_vga": 0.45,  # SIFT + sequential matching + mapping per 640x480 image
    "colmap_exhaustive_s_per_pair_vga": 0.01,
}
SAM_SIZE_FACTOR = {"vit_b": 1.0, "vit_l": 2.3, "vit_h": 4.4}


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


def load_coefficients() -> dict[str, float]:
    coefficients = dict(DEFAULT_COEFFICIENTS)
    path = _cache_root() / "calibration.json"
    if path.is_file():
        try:
            coefficients.update({k: float(v) for k, v in json.loads(path.read_text()).items()
                                 if k in DEFAULT_COEFFICIENTS})
        except (OSError, ValueError, TypeError):
            log.warning("ignoring unreadable calibration file %s", path)
    return coefficients


def save_coefficients(values: dict[str, float]) -> Path:
    path = _cache_root() / "calibration.json"
    current = {}
    if path.is_file():
        current = json.loads(path.read_text())
    current.update(values)
    write_json(path, current)
    return path


# -- what the stage will work on ---------------------------------------------------------------


@dataclass
class StageStats:
    input_bytes: int
    num_frames: int
    width: int
    height: int
    keyframes: int  # images the stage processes
    detections: int  # boxes on those images
    mean_box_px: float  # mean box area in pixels
    upload_bytes: int  # input + upstream files to send
    download_bytes: int  # estimated output size

    def describe(self) -> str:
        return (f"{_mb(self.input_bytes)}, {self.num_frames} frames, {self.width}x{self.height}, "
                f"{self.keyframes} keyframes, {self.detections} detections")


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.0f}MB" if nbytes >= 10e6 else f"{nbytes / 1e6:.1f}MB"


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


def local_accelerator() -> bool:
    """A CUDA GPU here? Checked without importing torch unless something already did."""
    import sys

    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def segmentation_backend(config: TangramConfig) -> str:
    """The backend the stage will use (same rule as tangram.stages.segmentation, no download)."""
    cfg = config.segmentation
    if cfg.backend != "auto":  # "sam" runs SAM or fails: it never quietly becomes GrabCut
        return "grabcut" if cfg.backend == "grabcut" else f"sam:{cfg.sam_model}"
    from tangram.models import SAM_CHECKPOINTS, find_local

    name = cfg.sam_checkpoint or SAM_CHECKPOINTS[cfg.sam_model].rsplit("/", 1)[1]
    return f"sam:{cfg.sam_model}" if find_local(name) else "grabcut"


def compute_seconds(stage: str, stats: StageStats, config: TangramConfig, gpu: bool, cpus: int,
                    coef: dict[str, float]) -> float:
    """Estimated compute time of `stage` on a machine with/without a CUDA GPU and `cpus` cores."""
    cpu_speedup = max(0.5, min(8.0, cpus / 2)) ** 0.7  # vs the 2-core reference machine
    if stage == "segmentation":
        backend = segmentation_backend(config)
        megapixels = stats.width * stats.height / 1e6
        write = stats.keyframes * coef["segmentation_write_s_per_keyframe"] * megapixels / 0.93
        if backend.startswith("sam"):
            size = SAM_SIZE_FACTOR.get(backend.split(":")[1], 1.0)
            if gpu:
                return write + size * stats.keyframes * coef["sam_vit_b_gpu_s_per_keyframe"] + \
                    stats.detections * coef["sam_gpu_s_per_box"]
            return write + (size * stats.keyframes * coef["sam_vit_b_cpu_s_per_keyframe"]
                            + stats.detections * coef["sam_cpu_s_per_box"]) / cpu_speedup
        crop_mpx = stats.mean_box_px * 1.7 / 1e6  # box plus GrabCut's margin
        return write + stats.detections * coef["grabcut_s_per_mpx_box"] * max(crop_mpx, 0.01)
    if stage == "reconstruction":
        scale = (stats.width * stats.height / (640 * 480)) ** 0.8 if stats.width else 1.0
        images = stats.keyframes
        seconds = images * coef["colmap_s_per_image_vga"] * scale
        if config.reconstruction.matcher == "exhaustive":
            seconds += images * (images - 1) / 2 * coef["colmap_exhaustive_s_per_pair_vga"]
        return seconds / cpu_speedup
    return float("nan")


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
        remote = overhead + stats.upload_bytes / up + remote_compute + stats.download_bytes / down
        if math.isnan(local) or math.isnan(remote):
            return self._seed_rule(stage, stats)
        gpu_name = info["gpus"][0]["name"] if host_gpu else "no GPU"
        decision = Decision(stage, remote < REMOTE_MARGIN * local, f"host {gpu_name}", stats, local, remote)
        decision.extra = {"upload_s": stats.upload_bytes / up, "download_s": stats.download_bytes / down,
                          "remote_compute_s": remote_compute, "overhead_s": overhead}
        return decision

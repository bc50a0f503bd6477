"""The cost model: how long a stage takes on a machine (CPU cores, with or without a CUDA GPU).

`compute_seconds(stage, stats, config, gpu, cpus, coef)` is what every placement decision uses:
the Thunder scorer (local or the SSH host, `thunder.scorer`) and the batch planner (CPU or GPU
worker, task priorities, `tangram.fleet.planner`). Coefficients are seconds per unit measured on a
2-core CPU box and published GPU figures, overridden by `bench/bench_thunder.py --calibrate`
(`save_coefficients`). `model_load_s` is paid once per model per worker process, not once per task:
warm workers keep their models (`tangram.execution.warm`), and `ModelLoads` books what each set of
workers has loaded.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config import TangramConfig
from tangram.fileio import write_json

log = logging.getLogger("tangram.execution")

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
    "model_load_s": 2.5,  # import torch + ultralytics + load a detector, once per worker process
}
SAM_SIZE_FACTOR = {"vit_b": 1.0, "vit_l": 2.3, "vit_h": 4.4}


def calibration_file() -> Path:
    from tangram.models import cache_dir

    return cache_dir() / "thunder" / "calibration.json"


def load_coefficients() -> dict[str, float]:
    coefficients = dict(DEFAULT_COEFFICIENTS)
    path = calibration_file()
    if path.is_file():
        try:
            coefficients.update({k: float(v) for k, v in json.loads(path.read_text()).items()
                                 if k in DEFAULT_COEFFICIENTS})
        except (OSError, ValueError, TypeError):
            log.warning("ignoring unreadable calibration file %s", path)
    return coefficients


def save_coefficients(values: dict[str, float]) -> Path:
    path = calibration_file()
    current = {}
    if path.is_file():
        current = json.loads(path.read_text())
    current.update(values)
    write_json(path, current)
    return path


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


def stage_model(stage: str, config: TangramConfig) -> str | None:
    """The model `stage` loads, named as `tangram.execution.warm` counts it; None (GrabCut, COLMAP...)."""
    cfg = config.segmentation
    if stage == "tracking":
        return "detector"
    if stage == "segmentation" and segmentation_backend(config).startswith("sam"):
        return f"sam:{cfg.sam_model}:fp16={cfg.fp16}"
    return None


class ModelLoads:
    """Model loads on `workers` warm worker processes: `model_load_s` for each of the first
    `workers` tasks of a model (Dask spreads them over the workers), nothing after, since a warm
    worker keeps its models. `held` seeds what is loaded already ({model: workers}, as
    `warm.held()` gives it for this process). `seconds` estimates, `book` also records the load."""

    def __init__(self, coef: Mapping[str, float], workers: int = 1, held: Mapping[str, int] | None = None):
        self.load_s = float(coef["model_load_s"])
        self.workers = max(1, workers)
        self.loaded: Counter[str] = Counter(held or {})

    def seconds(self, stage: str, config: TangramConfig) -> float:
        model = stage_model(stage, config)
        return self.load_s if model is not None and self.loaded[model] < self.workers else 0.0

    def book(self, stage: str, config: TangramConfig) -> float:
        seconds = self.seconds(stage, config)
        if seconds:
            self.loaded[str(stage_model(stage, config))] += 1
        return seconds


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

"""Priorities and GPU requests of a batch's tasks, from the complexity scorer's cost model.

Per stale stage of an input: the scorer's CPU and GPU compute estimates (`tangram.execution.cost.
compute_seconds`, with a `StageStats` made from the input's size, frames and resolution before
tracking has run: 3 detections per frame assumed). A heavy stage (`StageSpec.offloadable`) asks for
`GPU=1` when the cluster has GPU workers and the GPU estimate plus the transfer of its input
(at the host's measured speed, else 50 MB/s) beats the CPU estimate by the scorer's margin;
otherwise it may run on any worker. GrabCut and COLMAP do not use a GPU, so they never ask for one.

Model loads (`cost.ModelLoads`): a stage pays `model_load_s` only while some worker has not loaded
its model yet (warm workers keep them), in its estimate and in its input's chain.

Priority: longest input first (the estimated seconds of its remaining chain), which keeps long
inputs from starting last and leaving workers idle at the end of the batch (LPT scheduling).
Stages without a cost model use per-frame coefficients measured on this project's 2-core machine.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from config import TangramConfig
from tangram.execution.cost import REMOTE_MARGIN, ModelLoads, StageStats, compute_seconds, load_coefficients
from tangram.stages import get_stage

# Seconds per 640x480 frame (tracking) or per stage, where the scorer has no model (2-core CPU).
TRACKING_S_PER_VGA_FRAME = 0.12
LIGHT_STAGE_S = {"scene_graph": 1.0, "planning": 1.0, "simulation": 20.0}
DEFAULT_LINK_MB_S = 50.0
ASSUMED_DETECTIONS_PER_FRAME = 3


@dataclass(frozen=True)
class Plan:
    priority: int
    gpu: bool
    estimate_s: float  # on the worker kind it will get
    cpu_s: float  # on a CPU worker like this machine


def _stats(info: Any, config: TangramConfig, stage: str) -> StageStats:
    frames = max(1, int(info.num_frames))
    stride = config.tracking.frame_stride
    tracked = max(1, frames // stride)
    if stage == "segmentation":
        keyframes = min(max(1, tracked // config.segmentation.keyframe_stride), config.segmentation.max_keyframes)
    elif stage == "reconstruction":
        keyframes = min(frames, config.reconstruction.max_keyframes)
    else:
        keyframes = tracked
    detections = keyframes * ASSUMED_DETECTIONS_PER_FRAME
    box = info.width * info.height * 0.02
    return StageStats(int(info.bytes), frames, int(info.width), int(info.height), keyframes, detections, box,
                      int(info.bytes), int(keyframes * info.width * info.height * 0.7))


def stage_seconds(stage: str, info: Any, config: TangramConfig, gpu: bool, cpus: int,
                  coef: dict[str, float]) -> float:
    stats = _stats(info, config, stage)
    seconds = compute_seconds(stage, stats, config, gpu, cpus, coef)
    if not math.isnan(seconds):
        return seconds
    if stage == "tracking":
        scale = (info.width * info.height / (640 * 480)) ** 0.8 if info.width else 1.0
        per_frame = TRACKING_S_PER_VGA_FRAME * scale * (0.25 if gpu else 1.0)
        return stats.keyframes * per_frame
    return LIGHT_STAGE_S.get(stage, 1.0)


def plan_stages(config: TangramConfig, stages: list[str], info: Any, gpu_cluster: bool,
                link_mb_s: float = DEFAULT_LINK_MB_S, loads: ModelLoads | None = None) -> dict[str, Plan]:
    coef = load_coefficients()
    cpus = os.cpu_count() or 2
    load = {s: loads.seconds(s, config) if loads is not None else 0.0 for s in stages}
    cpu = {s: stage_seconds(s, info, config, False, cpus, coef) + load[s] for s in stages}
    chain = sum(cpu.values())
    plans = {}
    for stage in stages:
        gpu = False
        estimate = cpu[stage]
        if gpu_cluster and get_stage(stage).offloadable:
            on_gpu = stage_seconds(stage, info, config, True, cpus, coef) + load[stage]
            transfer = info.bytes / (link_mb_s * 1e6)
            if on_gpu + transfer < REMOTE_MARGIN * cpu[stage]:
                gpu, estimate = True, on_gpu
        plans[stage] = Plan(priority=int(chain), gpu=gpu, estimate_s=estimate, cpu_s=cpu[stage])
    return plans

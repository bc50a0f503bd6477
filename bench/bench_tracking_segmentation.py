"""Benchmark, side by side in one run (ratios, since the machine is shared and noisy):

1. tracking frames/s: TANGRAM's tracking stage vs a bare Ultralytics `track(stream=True)` loop on the
   same weights and video (target ratio >= 1.05 with the preview on: decoding in its own thread, a
   LiteRT detector on every core, the preview drawn in the same pass), with the preview off and on;
2. SAM decoding: all boxes of a keyframe in one batched decoder call vs one call per box, after the
   same image embedding (vit_b; random weights when no checkpoint is available: speed only).

    python bench/bench_tracking_segmentation.py [--video PATH] [--weights W] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp())

from tangram.media import open_media  # noqa: E402
from tangram.runner import Pipeline  # noqa: E402
from tangram.settings import load_config  # noqa: E402
from tangram.stages.tracking import load_yolo  # noqa: E402


def bare_ultralytics_fps(weights: str, video: Path) -> float:
    model, _ = load_yolo(weights)
    started = time.perf_counter()
    frames = sum(1 for _ in model.track(source=str(video), stream=True, persist=True, tracker="bytetrack.yaml",
                                        verbose=False))
    return frames / (time.perf_counter() - started)


def tangram_fps(weights: str, video: Path, preview: bool, exports: Path) -> float:
    config = load_config(env={}, overrides={"run": {"exports_dir": str(exports)},
                                            "tracking": {"weights": weights, "write_preview": preview}})
    result = Pipeline(config).run(video, name=f"bench-{preview}", until="tracking", force=["tracking"])
    record = result.record("tracking")
    return record["summary"]["frames"] / record["seconds"]


def bench_tracking(weights: str, video: Path, repeats: int) -> None:
    exports = Path(tempfile.mkdtemp(prefix="tangram-bench-"))
    bare, lean, full = [], [], []
    for _ in range(repeats):  # interleaved so that load changes hit all three alike
        bare.append(bare_ultralytics_fps(weights, video))
        lean.append(tangram_fps(weights, video, False, exports))
        full.append(tangram_fps(weights, video, True, exports))
    b, ln, f = (statistics.median(x) for x in (bare, lean, full))
    print(f"tracking ({video.name}, {open_media(video).info.num_frames} frames, {Path(weights).name}), "
          f"median of {repeats}:")
    print(f"  bare ultralytics track loop : {b:6.2f} frames/s")
    print(f"  TANGRAM, preview off        : {ln:6.2f} frames/s  ratio {ln / b:.3f}")
    print(f"  TANGRAM, preview on (H.264) : {f:6.2f} frames/s  ratio {f / b:.3f}")


def bench_sam_batching(video: Path, boxes_per_frame: int, repeats: int) -> None:
    import numpy as np
    import torch
    from segment_anything import SamPredictor, sam_model_registry

    from tangram.models import resolve_sam_checkpoint

    checkpoint = resolve_sam_checkpoint("vit_b", None, allow_download=False)
    sam = sam_model_registry["vit_b"](checkpoint=str(checkpoint) if checkpoint else None).eval()
    predictor = SamPredictor(sam)
    frame = open_media(video).read(0)
    h, w = frame.shape[:2]
    rng = np.random.default_rng(0)
    xy = rng.uniform([0, 0], [w * 0.7, h * 0.7], (boxes_per_frame, 2))
    boxes = np.hstack([xy, xy + rng.uniform(40, 200, (boxes_per_frame, 2))]).astype(np.float32)
    with torch.inference_mode():
        t0 = time.perf_counter()
        predictor.set_image(frame[:, :, ::-1].copy())
        embed_s = time.perf_counter() - t0
        prompts = predictor.transform.apply_boxes_torch(torch.from_numpy(boxes), (h, w))
        batched, single = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            predictor.predict_torch(None, None, boxes=prompts, multimask_output=False)
            batched.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(boxes_per_frame):
                predictor.predict_torch(None, None, boxes=prompts[i:i + 1], multimask_output=False)
            single.append(time.perf_counter() - t0)
    b, s = statistics.median(batched), statistics.median(single)
    weights = "checkpoint" if checkpoint else "random weights (speed only)"
    print(f"SAM vit_b decoder, {boxes_per_frame} boxes on a {w}x{h} frame, {weights}, median of {repeats}:")
    print(f"  image embedding (once)      : {embed_s * 1000:8.1f} ms")
    print(f"  one batched decoder call    : {b * 1000:8.1f} ms")
    print(f"  one call per box            : {s * 1000:8.1f} ms  -> batched is {s / b:.2f}x faster")
    print(f"  whole keyframe batched vs per-box: {(embed_s + s) / (embed_s + b):.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="default: the built-in sample scene")
    parser.add_argument("--weights", default=os.environ.get("TANGRAM_YOLO_WEIGHTS", "yolov8n_int8.tflite"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--boxes", type=int, default=8)
    args = parser.parse_args()
    if args.video is None:
        from tangram.runner import default_input

        args.video = default_input()
    bench_tracking(args.weights, args.video, args.repeats)
    bench_sam_batching(args.video, args.boxes, args.repeats)


if __name__ == "__main__":
    main()

"""TANGRAM's reconstruction stage against plain pycolmap, side by side in one run, on a clip with
ground-truth poses, no intrinsics given to either: the real hololens_office.mp4 (metric poses) or
the rendered default sample (`--clip sample`, its exact camera poses):

- plain: what a user tries first: every k-th frame of the video, SIFT, sequential matching,
  incremental mapping, pycolmap's defaults (one shared camera, focal from its 1.2 x image prior);
- TANGRAM: the whole reconstruction stage (keyframes, SfM, table, scale, objects) on the same clip,
  after tracking and GrabCut segmentation with the offline detector (their time is not counted).

Printed per side: registered frames, camera-centre RMS after Sim(3) against the truth, seconds; the
RMS of each side over the frames both registered (like for like: a side that registered fewer
frames is otherwise judged on an easier subset); then the ratios (TANGRAM / plain). Targets
(issue 15): RMS ratio <= 1, SfM time ratio <= 1.2 (the same three steps on each side; the whole
stage's time is printed beside it).

    TANGRAM_YOLO_WEIGHTS=../shared/models/yolov8n_int8.tflite python bench/bench_sfm_anchor.py \
        [--clip hololens_office|sample] [--every 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tangram  # noqa: E402,F401  (loads the system zlib before pycolmap, see tangram/__init__.py)
from tangram.fileio import read_json  # noqa: E402
from tangram.geometry.evaluation import camera_centre_errors  # noqa: E402
from tangram.media import open_media  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"


def plain_pycolmap(video: Path, every: int, work: Path) -> dict:
    import cv2
    import pycolmap

    images = work / "images"
    images.mkdir(parents=True)
    names = {}
    for index, frame in open_media(video).frames(stride=every):
        name = f"frame_{index:06d}.png"
        cv2.imwrite(str(images / name), frame)
        names[name] = index
    db = work / "database.db"
    t0 = time.perf_counter()
    pycolmap.extract_features(db, images, camera_mode=pycolmap.CameraMode.SINGLE)
    t1 = time.perf_counter()
    pycolmap.match_sequential(db)
    t2 = time.perf_counter()
    models = pycolmap.incremental_mapping(db, images, work / "sparse")
    t3 = time.perf_counter()
    seconds, timings = t3 - t0, {"extract": t1 - t0, "match": t2 - t1, "map": t3 - t2}
    rec = max(models.values(), key=lambda r: r.num_reg_images()) if models else None
    from tangram.geometry import sfm

    poses = {} if rec is None else {names[im.name]: sfm.world_from_camera(im) for im in sfm.registered_images(rec)}
    return {"frames": len(names), "registered": len(poses), "seconds": seconds, "poses": poses, "timings": timings}


def tangram_stage(video: Path, work: Path) -> dict:
    from tangram.runner import Pipeline
    from tangram.settings import load_config

    weights = os.environ.get("TANGRAM_YOLO_WEIGHTS", str(ROOT.parent / "shared" / "models" / "yolov8n_int8.tflite"))
    overrides = {
        "run": {"exports_dir": str(work)},
        "tracking": {"weights": weights},
        "segmentation": {"backend": "grabcut"},
    }
    result = Pipeline(load_config(env={}, overrides=overrides)).run(video, name="anchor", until="reconstruction")
    record = result.manifest["stages"]["reconstruction"]
    if record.get("status") != "done":
        return {"frames": 0, "registered": 0, "seconds": float("nan"), "poses": {}, "reason": record.get("reason")}
    cams = read_json(result.run_dir / "reconstruction" / "cameras.json")
    stats = read_json(result.run_dir / "reconstruction" / "stats.json")
    poses = {f["frame_index"]: np.array(f["world_from_camera"]) for f in cams["frames"]}
    return {"frames": stats.get("frames_selected"), "registered": len(poses), "seconds": float(record["seconds"]),
            "poses": poses, "focal": cams["intrinsics"]["fx"], "timings": stats.get("timings_s", {})}


def clip_and_truth(name: str) -> tuple[Path, dict[int, np.ndarray]]:
    """The video and its true world_from_camera per frame index."""
    if name == "sample":
        from tangram.sample_scene import ensure_sample, load_sample

        video = ensure_sample(0)
        sample = load_sample(video.parent)
        return video, {f: sample.world_from_camera(f) for f in range(len(sample.gt["frames"]))}
    poses = np.loadtxt(REAL / "hololens_office" / "poses.txt").reshape(-1, 4, 4)
    return REAL / "hololens_office.mp4", dict(enumerate(poses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", choices=["hololens_office", "sample"], default="hololens_office",
                        help="the real posed clip (default) or the rendered default sample")
    parser.add_argument("--every", type=int, default=2, help="plain pycolmap takes every k-th frame (default 2)")
    args = parser.parse_args()
    clip, truth = clip_and_truth(args.clip)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["plain pycolmap"] = plain_pycolmap(clip, args.every, Path(tmp) / "plain")
        rows["TANGRAM stage"] = tangram_stage(clip, Path(tmp) / "tangram")
    print(f"\n{clip.name}, no intrinsics; truth: {len(truth)} poses")
    print(f"{'':16} {'frames':>7} {'registered':>10} {'RMS cm':>7} {'seconds':>8}")
    for label, r in rows.items():
        err = camera_centre_errors(r["poses"], {f: truth[f] for f in r["poses"]}) if len(r["poses"]) >= 3 else None
        r["rms"] = err["rmse_m"] * 100 if err else float("nan")
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r.get("timings", {}).items())
        print(f"{label:16} {r['frames']!s:>7} {r['registered']:>10} {r['rms']:>7.2f} {r['seconds']:>8.1f}  {steps}"
              + (f"  ({r['reason']})" if r.get("reason") else ""))
    a, b = rows["TANGRAM stage"], rows["plain pycolmap"]
    # like for like: each side's RMS over the frames both registered (each side aligned on those
    # frames alone), so a side that registered fewer frames is not judged on an easier subset
    shared = sorted(set(a["poses"]) & set(b["poses"]))
    if len(shared) >= 3:
        truth_shared = {f: truth[f] for f in shared}
        on_shared = [camera_centre_errors({f: r["poses"][f] for f in shared}, truth_shared)["rmse_m"] * 100
                     for r in (a, b)]
        print(f"on the {len(shared)} frames both registered: RMS cm TANGRAM {on_shared[0]:.2f}, "
              f"plain {on_shared[1]:.2f} (ratio {on_shared[0] / on_shared[1]:.2f})")
    sfm_a, sfm_b = (sum(r.get("timings", {}).get(k, 0.0) for k in ("extract", "match", "map")) for r in (a, b))
    print(f"ratios TANGRAM / plain: RMS {a['rms'] / b['rms']:.2f} (target <= 1), "
          f"SfM time (extract + match + map) {sfm_a / sfm_b:.2f} (target <= 1.2), "
          f"whole stage {a['seconds'] / b['seconds']:.2f} (it also finds the table, scale and objects), "
          f"registered share {a['registered'] / max(a['frames'] or 1, 1):.2f} vs "
          f"{b['registered'] / max(b['frames'], 1):.2f}")


if __name__ == "__main__":
    main()

"""Benchmark the reconstruction stage on the rendered sample, in one run:

1. speed and registration: TANGRAM's keyframe selection + sequential matching vs every frame +
   exhaustive matching, same SIFT and mapper settings (target: >= 5x faster, and every selected
   keyframe registered, also in the exhaustive model);
2. accuracy of both against the sample's ground truth: camera centres after Sim(3) alignment;
3. the whole stage (table frame, objects, metric scale) and the scene graph, fed ground-truth tracks
   and masks: object position error in the table frame, scale error, relation precision/recall.

    python bench/bench_reconstruction.py [--seed 0] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config import default_config  # noqa: E402
from tangram.fileio import read_json  # noqa: E402
from tangram.geometry import sfm  # noqa: E402
from tangram.geometry.evaluation import camera_centre_errors, object_position_errors, score_relations  # noqa: E402
from tangram.geometry.graph import read_node_link, relation_set  # noqa: E402
from tangram.media import open_media  # noqa: E402
from tangram.sample_scene import SampleScene, ensure_sample, load_sample  # noqa: E402
from tangram.sim.ground_truth import gt_objects_in_table, gt_relations, write_gt_upstream  # noqa: E402
from tangram.stages import reconstruction, scene_graph  # noqa: E402
from tangram.stages.base import StageContext  # noqa: E402


def registered_poses(result: sfm.SfmResult) -> dict[int, np.ndarray]:
    rec = result.reconstruction
    if rec is None:
        return {}
    return {int(im.name[6:12]): sfm.world_from_camera(im) for im in sfm.registered_images(rec)}


def run_variant(sample: SampleScene, frames: list[int] | None, matcher: str, work: Path) -> dict:
    """Time keyframe choice (when frames is None) plus SfM; score the cameras against the truth."""
    cfg = default_config().reconstruction
    source = open_media(sample.video_path)
    started = time.perf_counter()
    if frames is None:
        frames = reconstruction.plan_keyframes(source, cfg, []).frames
    selected = time.perf_counter() - started
    names = reconstruction.write_keyframes(source, frames, work / "images")
    options = sfm.SfmOptions(
        matcher=matcher,
        max_image_size=cfg.max_image_size,
        max_num_features=cfg.max_features,
        overlap=cfg.sequential_overlap,
        seed=cfg.seed,
    )
    t0 = time.perf_counter()
    result = sfm.run_sfm(work / "images", [names[f] for f in frames], options)
    sfm_s = time.perf_counter() - t0
    poses = registered_poses(result)
    cams = camera_centre_errors(poses, {f: sample.world_from_camera(f) for f in poses})
    return {
        "frames": frames,
        "registered": sorted(poses),
        "select_s": selected,
        "sfm_s": sfm_s,
        "total_s": selected + sfm_s,
        "timings": result.timings,
        "cameras": cams,
        "points": result.reconstruction.num_points3D() if result.reconstruction else 0,
    }


def run_stage(sample: SampleScene, work: Path) -> dict:
    write_gt_upstream(sample, work / "tracking", work / "segmentation", range(0, sample.num_frames, 5))
    config = default_config()
    for stage in ("reconstruction", "scene_graph"):
        (work / stage).mkdir()
    upstream = {"tracking": work / "tracking", "segmentation": work / "segmentation"}
    started = time.perf_counter()
    reconstruction.run(
        StageContext("reconstruction", sample.video_path, work / "reconstruction", upstream, config)
    )
    stage_s = time.perf_counter() - started
    scene_graph.run(
        StageContext(
            "scene_graph",
            sample.video_path,
            work / "scene_graph",
            {"reconstruction": work / "reconstruction"},
            config,
        )
    )
    cams = read_json(work / "reconstruction" / "cameras.json")
    objects = read_json(work / "reconstruction" / "objects.json")["objects"]
    pred = {f["frame_index"]: np.array(f["world_from_camera"]) for f in cams["frames"]}
    cam_err = camera_centre_errors(pred, {f: sample.world_from_camera(f) for f in pred})
    truth = gt_objects_in_table(sample, list(pred))
    obj_err = object_position_errors({o["track_id"]: np.array(o["box"]["center"]) for o in objects}, truth)
    graph = read_node_link(work / "scene_graph" / "scene_graph.json")
    rel = score_relations(relation_set(graph), gt_relations(sample, config.scene_graph.near_factor))
    return {
        "stage_s": stage_s,
        "scale": cams["scale"],
        "scale_error": 1 / cam_err["sim3_scale"] - 1,
        "objects": obj_err,
        "relations": rel,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sample = load_sample(ensure_sample(args.seed).parent)
    with tempfile.TemporaryDirectory(prefix="tangram-bench-rec-") as tmp:
        tmp = Path(tmp)
        fast = run_variant(sample, None, "sequential", tmp / "keyframes")
        full = run_variant(sample, list(range(sample.num_frames)), "exhaustive", tmp / "all")
        stage = run_stage(sample, tmp / "stage")
    report(sample, fast, full, stage)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"keyframes_sequential": fast, "all_exhaustive": full, "stage": stage},
                indent=2,
                default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x),
            )
        )


def report(sample: SampleScene, fast: dict, full: dict, stage: dict) -> None:
    kept = set(fast["frames"]) & set(full["registered"])
    print(
        f"sample seed {sample.gt['seed']}: {sample.num_frames} frames, "
        f"{sample.gt['width']}x{sample.gt['height']}"
    )
    for name, r in (("keyframes + sequential", fast), ("all frames + exhaustive", full)):
        c = r["cameras"]
        print(
            f"  {name:24s}: {r['total_s']:7.1f} s (select {r['select_s']:.1f}, SfM {r['timings']}), "
            f"registered {len(r['registered'])}/{len(r['frames'])}, {r['points']} points, camera centres "
            f"median {c.get('median_m', float('nan')) * 1000:.2f} mm, "
            f"max {c.get('max_m', float('nan')) * 1000:.2f} mm"
        )
    print(
        f"  speed-up {full['total_s'] / fast['total_s']:.1f}x; selected keyframes registered: "
        f"{len(fast['registered'])}/{len(fast['frames'])} (keyframes+sequential), "
        f"{len(kept)}/{len(fast['frames'])} (all+exhaustive)"
    )
    o, rel = stage["objects"], stage["relations"]
    print(
        f"  stage with ground-truth tracks/masks: {stage['stage_s']:.1f} s; scale {stage['scale']['method']} "
        f"error {stage['scale_error']:+.1%} (reported 1 sigma {stage['scale']['uncertainty']:.0%}); objects "
        f"median {o['median_m'] * 100:.1f} cm, max {o['max_m'] * 100:.1f} cm; relations P "
        f"{rel['all']['precision']:.2f} R {rel['all']['recall']:.2f} "
        f"(support P {rel['support']['precision']:.2f} R {rel['support']['recall']:.2f})"
    )


if __name__ == "__main__":
    main()

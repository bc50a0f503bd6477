"""Scoring reconstruction and scene graph against the rendered sample's ground truth.

Also writes tracking/segmentation artefacts from the ground truth: that isolates the 3D stages
from detector and segmenter errors in unit tests and benchmarks (the end-to-end tests run the real
upstream stages).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tangram.fileio import write_json
from tangram.geometry.camera import Intrinsics, View
from tangram.geometry.relations import SUPPORT_RELATIONS, TABLE, Box, Relation, spatial_relations
from tangram.geometry.table import fixation_point
from tangram.media import frame_name, open_media
from tangram.sample_scene import SampleScene

GT_CLASS_FOR_UNLABELLED = "tray"  # the sample's tray has no COCO class


def gt_class(obj: dict[str, Any]) -> str:
    return obj["coco_class"] or obj["name"] or GT_CLASS_FOR_UNLABELLED


def write_gt_upstream(
    sample: SampleScene, tracking_dir: Path, segmentation_dir: Path, mask_frames: Iterable[int]
) -> None:
    """tracks.json for every frame and masks.json for `mask_frames`, from the ground truth.

    Track ids are the ground-truth ids, so predictions and truth pair up by id.
    """
    classes = {o["gt_id"]: gt_class(o) for o in sample.objects}
    frames, counts = [], {gid: 0 for gid in classes}
    for fr in sample.gt["frames"]:
        dets = [
            {
                "track_id": o["gt_id"],
                "class_id": -1,
                "class_name": classes[o["gt_id"]],
                "confidence": 1.0,
                "box_xyxy": o["box_xyxy"],
            }
            for o in fr["objects"]
        ]
        for d in dets:
            counts[d["track_id"]] += 1
        frames.append({"frame_index": fr["frame_index"], "detections": dets})
    tracks = {
        str(g): {
            "class_name": classes[g],
            "num_frames": n,
            "first_frame": 0,
            "last_frame": sample.num_frames - 1,
            "mean_confidence": 1.0,
        }
        for g, n in counts.items()
        if n
    }
    w, h = sample.gt["width"], sample.gt["height"]
    write_json(
        tracking_dir / "tracks.json",
        {
            "format": "tangram.tracks/1",
            "backend": "ground_truth",
            "video": {
                "path": str(sample.video_path),
                "fps": sample.fps,
                "width": w,
                "height": h,
                "num_frames": sample.num_frames,
            },
            "frame_stride": 1,
            "frames": frames,
            "tracks": tracks,
        },
    )
    _write_gt_masks(sample, segmentation_dir, sorted(set(mask_frames)), classes)


def _write_gt_masks(sample: SampleScene, seg: Path, indices: list[int], classes: dict[int, str]) -> None:
    (seg / "frames").mkdir(parents=True, exist_ok=True)
    (seg / "masks").mkdir(parents=True, exist_ok=True)
    keyframes = []
    for index, frame in open_media(sample.video_path).frames(indices):
        image = f"frames/{frame_name(index)}"
        cv2.imwrite(str(seg / image), frame)
        inst = sample.mask(index)
        masks = []
        for o in sample.gt["frames"][index]["objects"]:
            rel = f"masks/frame_{index:06d}_id{o['gt_id']:04d}.png"
            m = (inst == o["gt_id"]).astype(np.uint8) * 255
            cv2.imwrite(str(seg / rel), m)
            masks.append(
                {
                    "track_id": o["gt_id"],
                    "class_name": classes[o["gt_id"]],
                    "box_xyxy": o["box_xyxy"],
                    "mask": rel,
                    "area": int((m > 0).sum()),
                    "score": 1.0,
                }
            )
        keyframes.append({"frame_index": index, "image": image, "masks": masks})
    write_json(
        seg / "masks.json", {"format": "tangram.masks/1", "backend": "ground_truth", "keyframes": keyframes}
    )


# --- alignment ---------------------------------------------------------------------------------------


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |dst - (s R src + t)|^2 (Umeyama 1991)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    rot = u @ sign @ vt
    var = (a**2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / var)
    return scale, rot, mu_d - scale * rot @ mu_s


def camera_centre_errors(pred: dict[int, np.ndarray], truth: dict[int, np.ndarray]) -> dict[str, float]:
    """Camera centres after the best Sim(3) alignment of prediction onto truth (metres of truth).

    pred, truth: frame_index -> 4x4 world_from_camera. Also returns the rotation error (degrees) and
    the alignment: truth = sim3_scale * sim3_rotation @ pred + sim3_translation.
    """
    common = sorted(set(pred) & set(truth))
    if len(common) < 3:
        return {"frames": len(common)}
    src = np.array([pred[f][:3, 3] for f in common])
    dst = np.array([truth[f][:3, 3] for f in common])
    s, rot, t = umeyama(src, dst)
    err = np.linalg.norm((s * src @ rot.T + t) - dst, axis=1)
    rot_err = [_angle_deg(rot @ pred[f][:3, :3], truth[f][:3, :3]) for f in common]
    return {
        "frames": len(common),
        "median_m": float(np.median(err)),
        "max_m": float(err.max()),
        "rmse_m": float(np.sqrt((err**2).mean())),
        "sim3_scale": s,
        "median_rotation_deg": float(np.median(rot_err)),
        "sim3_rotation": rot,
        "sim3_translation": t,
    }


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a.T @ b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


# --- objects and relations -------------------------------------------------------------------------


def gt_table_from_world(sample: SampleScene, origin_frames: Iterable[int] | None = None) -> np.ndarray:
    """The true TANGRAM table frame: the sample's (z up, y away from the first camera, table top z = 0).

    With origin_frames, its origin follows TANGRAM's rule instead of sitting at the table centre: the
    fixation point of those frames' true cameras on the table top. The table centre is rarely in full
    view, so no method can recover it; the fixation point is observable and defined the same way.
    """
    world_from_table = np.array(sample.gt["table"]["world_from_table"], float)
    if origin_frames is not None:
        views = {f: View(f, _GT_INTRINSICS, sample.world_from_camera(f)) for f in origin_frames}
        point = fixation_point(views)
        if point is not None:
            world_from_table = world_from_table.copy()
            world_from_table[:2, 3] = point[:2]  # world z is up: the table top keeps its height
    return np.linalg.inv(world_from_table)


_GT_INTRINSICS = Intrinsics("PINHOLE", 2, 2, (1.0, 1.0, 1.0, 1.0))  # fixation uses poses only


def gt_objects_in_table(
    sample: SampleScene, origin_frames: Iterable[int] | None = None
) -> dict[int, dict[str, Any]]:
    """gt_id -> {class_name, position (table frame), size} of the ground-truth objects."""
    table_from_world = gt_table_from_world(sample, origin_frames)
    out = {}
    for o in sample.objects:
        pos = table_from_world[:3, :3] @ np.array(o["position"]) + table_from_world[:3, 3]
        out[o["gt_id"]] = {"class_name": gt_class(o), "position": pos, "size": np.array(o["size"])}
    return out


def object_position_errors(pred: dict[int, np.ndarray], truth: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-object distance (metres) between predicted and true centres in the table frame.

    Also the error after removing the mean in-plane offset, which separates the table origin's error
    (the centre of the visible table top) from the objects' relative placement.
    """
    common = sorted(set(pred) & set(truth))
    if not common:
        return {"objects": 0}
    p = np.array([pred[i] for i in common])
    g = np.array([truth[i]["position"] for i in common])
    err = np.linalg.norm(p - g, axis=1)
    shift = np.append((g - p)[:, :2].mean(axis=0), 0.0)
    rel = np.linalg.norm(p + shift - g, axis=1)
    return {
        "objects": len(common),
        "missing": sorted(set(truth) - set(pred)),
        "per_object_m": {int(i): float(e) for i, e in zip(common, err, strict=True)},
        "median_m": float(np.median(err)),
        "max_m": float(err.max()),
        "median_relative_m": float(np.median(rel)),
        "origin_offset_m": float(np.linalg.norm(shift)),
    }


def relation_scores(pred: set[tuple[Any, str, Any]], truth: set[tuple[Any, str, Any]]) -> dict[str, float]:
    tp = len(pred & truth)
    precision = tp / len(pred) if pred else 1.0
    recall = tp / len(truth) if truth else 1.0
    return {
        "precision": precision,
        "recall": recall,
        "true_positives": tp,
        "predicted": len(pred),
        "truth": len(truth),
        "false_positives": sorted(map(str, pred - truth)),
        "false_negatives": sorted(map(str, truth - pred)),
    }


def gt_boxes(sample: SampleScene) -> list[Box]:
    """Ground-truth objects as table-frame boxes: the world AABBs, turned with the table frame.

    Relations do not depend on the frame's origin, so the sample's own (table centre) serves."""
    world_from_table = np.array(sample.gt["table"]["world_from_table"])
    yaw = -float(np.arctan2(world_from_table[1, 0], world_from_table[0, 0]))  # world x axis in table frame
    objs = gt_objects_in_table(sample)
    return [Box(gid, o["position"], o["size"], yaw, o["class_name"]) for gid, o in objs.items()]


def gt_relations(sample: SampleScene, near_factor: float) -> set[Relation]:
    """Support relations from the physics contacts, spatial ones from the true boxes."""
    support: set[Relation] = set()
    for r in sample.gt["relations"]:
        obj = r["object"] if r["object"] == TABLE else int(r["object"])
        support |= {(int(r["subject"]), r["relation"], obj), (int(r["subject"]), "supported_by", obj)}
    stacked = {frozenset((u, v)) for u, _, v in support if v != TABLE}
    return support | set(spatial_relations(gt_boxes(sample), near_factor, stacked))


def score_relations(pred: set[Relation], truth: set[Relation]) -> dict[str, Any]:
    """Precision/recall overall and split into support (physics truth) and spatial relations."""

    def part(keep) -> dict[str, Any]:
        return relation_scores({r for r in pred if keep(r)}, {r for r in truth if keep(r)})

    return {
        "all": relation_scores(pred, truth),
        "support": part(lambda r: r[1] in SUPPORT_RELATIONS),
        "spatial": part(lambda r: r[1] not in SUPPORT_RELATIONS),
    }

"""Scoring reconstruction and scene graph against ground truth: Sim(3)-aligned camera errors,
object position errors, relation precision and recall (tests and benches).

What reads a ground truth is beside it: the rendered sample's in `tangram.sim.ground_truth`, real
clips' poses in the benches; nothing here imports the sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tangram.geometry.relations import SUPPORT_RELATIONS, Relation

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


def score_relations(pred: set[Relation], truth: set[Relation]) -> dict[str, Any]:
    """Precision/recall overall and split into support (physics truth) and spatial relations."""

    def part(keep) -> dict[str, Any]:
        return relation_scores({r for r in pred if keep(r)}, {r for r in truth if keep(r)})

    return {
        "all": relation_scores(pred, truth),
        "support": part(lambda r: r[1] in SUPPORT_RELATIONS),
        "spatial": part(lambda r: r[1] not in SUPPORT_RELATIONS),
    }

"""Scores against ground truth: box IoU, identity F1 (IDF1) and mask IoU.

Used by the tests and benchmarks on the sample scene, whose ground truth is exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def idf1(gt: Mapping[int, Mapping[int, Sequence[float]]], pred: Mapping[int, Mapping[int, Sequence[float]]],
         iou_threshold: float = 0.5) -> dict[str, float]:
    """Identity F1 (Ristani et al. 2016): one global gt-id <-> track-id matching maximising the
    frames where the matched pair overlaps (IoU >= threshold). gt/pred: frame -> {id: box_xyxy}."""
    overlap: Counter[tuple[int, int]] = Counter()
    for frame, gt_boxes in gt.items():
        for gid, gbox in gt_boxes.items():
            for pid, pbox in pred.get(frame, {}).items():
                if box_iou(gbox, pbox) >= iou_threshold:
                    overlap[gid, pid] += 1
    gt_ids = sorted({g for boxes in gt.values() for g in boxes})
    pred_ids = sorted({p for boxes in pred.values() for p in boxes})
    n_gt = sum(len(b) for b in gt.values())
    n_pred = sum(len(b) for b in pred.values())
    if not gt_ids or not pred_ids:
        return {"idf1": 0.0, "idp": 0.0, "idr": 0.0, "matches": {}}
    gain = np.array([[overlap[g, p] for p in pred_ids] for g in gt_ids], float)
    rows, cols = linear_sum_assignment(-gain)
    idtp = float(gain[rows, cols].sum())
    matches = {gt_ids[r]: pred_ids[c] for r, c in zip(rows, cols, strict=True) if gain[r, c] > 0}
    return {
        "idf1": 2 * idtp / (n_gt + n_pred),
        "idp": idtp / n_pred,
        "idr": idtp / n_gt,
        "matches": matches,
    }


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0

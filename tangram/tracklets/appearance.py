"""A small appearance summary per track: the mean hue-saturation histogram of its box crops.

The tracking stage feeds every tracked box of every frame to an `AppearanceBank` while it tracks
(the frames are in hand then); stitching later compares the summaries of two fragments with the
Bhattacharyya coefficient. Hue-saturation ignores most of the brightness change that shadows and
auto-exposure cause; the central part of the box keeps the background out.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

HUE_BINS, SAT_BINS = 16, 8
_CROP_SIDE = 48  # px: crops are resized to at most this, the histogram does not need more
_CENTRE = 0.6  # share of the box width and height kept around its centre


def box_histogram(frame: np.ndarray, box_xyxy: Sequence[float]) -> np.ndarray | None:
    """L1-normalised hue-saturation histogram (HUE_BINS x SAT_BINS, flattened) of the box centre;
    None when the box has no pixels inside the frame."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * _CENTRE / 2, (y2 - y1) * _CENTRE / 2
    c1, c2 = max(0, int(cx - hw)), min(width, int(np.ceil(cx + hw)))
    r1, r2 = max(0, int(cy - hh)), min(height, int(np.ceil(cy + hh)))
    if c2 - c1 < 2 or r2 - r1 < 2:
        return None
    crop = frame[r1:r2, c1:c2]
    scale = _CROP_SIDE / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, (max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SAT_BINS], [0, 180, 0, 256]).ravel()
    total = float(hist.sum())
    return hist / total if total > 0 else None


def similarity(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Bhattacharyya coefficient of two normalised histograms: 1 identical, 0 disjoint; None if unknown."""
    if a is None or b is None:
        return None
    return float(np.sum(np.sqrt(a * b)))


class AppearanceBank:
    """Running mean histogram per track id."""

    def __init__(self) -> None:
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}

    def add(self, track_id: int, frame: np.ndarray, box_xyxy: Sequence[float]) -> None:
        hist = box_histogram(frame, box_xyxy)
        if hist is None:
            return
        if track_id in self._sums:
            self._sums[track_id] += hist
            self._counts[track_id] += 1
        else:
            self._sums[track_id] = hist.copy()
            self._counts[track_id] = 1

    def get(self, track_id: int) -> np.ndarray | None:
        if track_id not in self._sums:
            return None
        return self._sums[track_id] / self._counts[track_id]

    def merged(self, track_ids: Sequence[int]) -> np.ndarray | None:
        """The mean over every crop of the given tracks (weighted by their crop counts)."""
        ids = [t for t in track_ids if t in self._sums]
        if not ids:
            return None
        return sum(self._sums[t] for t in ids) / sum(self._counts[t] for t in ids)

    def count(self, track_id: int) -> int:
        return self._counts.get(track_id, 0)

"""Keyframe selection for structure from motion.

SfM on every frame of a video is slow (exhaustive matching is quadratic) and gains little: neighbouring
frames see almost the same thing. We measure, on downscaled grey frames, how far the image content
moves between consecutive frames (median Lucas-Kanade flow of corner features, robust to a moving hand
or object) and how sharp each frame is (variance of the Laplacian). Keyframes are then placed at equal
steps of accumulated image motion, each the sharpest frame of its step, up to a cap. The same flow
measure tells a static camera apart: if no frame moves away from the first by more than a small
fraction of the image, there is no parallax to triangulate from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

ANALYSIS_WIDTH = 480  # px; flow and sharpness are measured at this width
NOISE_FLOOR = 0.15  # px at analysis width: flow below this is sensor noise / compression jitter


@dataclass
class FrameStats:
    indices: list[int]  # frame_index of every analysed frame, ascending
    sharpness: np.ndarray  # variance of the Laplacian per analysed frame
    step_motion: np.ndarray  # median flow (fraction of the image diagonal) from the previous analysed frame
    max_displacement: float  # largest median flow of any analysed frame from the first (diag fraction)

    @property
    def cumulative_motion(self) -> np.ndarray:
        return np.cumsum(self.step_motion)


@dataclass
class KeyframeSelection:
    frames: list[int]
    total_motion: float  # accumulated image motion over the input, in image diagonals
    max_displacement: float
    static: bool
    reasons: list[str] = field(default_factory=list)


def _grey_small(frame: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    scale = ANALYSIS_WIDTH / grey.shape[1]
    if scale < 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return grey


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian: low for blurred frames (motion blur, defocus)."""
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def camera_motion(a: np.ndarray, b: np.ndarray, max_corners: int = 400) -> float | None:
    """Median displacement (px) of the dominant rigid motion from grey image a to b; None if lost.

    Images of different sizes (a portrait beside a landscape photo) have no flow between them: None.
    Corners are tracked with pyramidal Lucas-Kanade, then a homography is fitted with RANSAC and only
    its inliers count: the background or table plane, not a hand, a poured liquid or a moving object,
    which move inconsistently. A static camera gives ~0 even while people move in front of it.
    """
    if a.shape != b.shape:
        return None  # photos of different sizes or orientations: no flow between them, a new view
    corners = cv2.goodFeaturesToTrack(a, maxCorners=max_corners, qualityLevel=0.01, minDistance=7)
    if corners is None or len(corners) < 12:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(a, b, corners, None, winSize=(21, 21), maxLevel=4)
    ok = status.ravel() == 1
    if ok.sum() < max(12, 0.3 * len(corners)):
        return None  # most features lost: the view changed a lot
    src, dst = corners[ok].reshape(-1, 2), moved[ok].reshape(-1, 2)
    _, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 1.5)
    keep = inliers.ravel() == 1 if inliers is not None and inliers.sum() >= 8 else np.ones(len(src), bool)
    return float(np.median(np.linalg.norm(dst[keep] - src[keep], axis=1)))


def analyse_frames(frames: Iterable[tuple[int, np.ndarray]], probes: int = 12) -> FrameStats:
    """Sharpness and inter-frame motion of a frame sequence (frames are consumed once)."""
    indices: list[int] = []
    sharp: list[float] = []
    steps: list[float] = []
    greys: list[np.ndarray] = []  # a few frames kept to measure displacement from the first
    prev: np.ndarray | None = None
    for index, frame in frames:
        grey = _grey_small(frame)
        diag = float(np.hypot(*grey.shape))
        indices.append(index)
        sharp.append(sharpness(grey))
        if prev is None:
            steps.append(0.0)
        else:
            flow = camera_motion(prev, grey)
            # a lost track means a big jump; count it as a large step rather than none
            px = flow if flow is not None else 0.1 * diag
            steps.append(max(px - NOISE_FLOOR, 0.0) / diag)
        prev = grey
        greys.append(grey)
        if len(greys) > 4 * probes:  # keep memory bounded: thin the probes, always keep the first
            greys = greys[:1] + greys[2::2]
    return FrameStats(indices, np.array(sharp), np.array(steps), _max_displacement(greys))


def _max_displacement(greys: list[np.ndarray]) -> float:
    """Largest median flow from the first frame to any probe frame (diagonal fraction)."""
    if len(greys) < 2:
        return 0.0
    first = greys[0]
    diag = float(np.hypot(*first.shape))
    worst = 0.0
    for grey in greys[1:]:
        flow = camera_motion(first, grey)
        worst = max(worst, 1.0 if flow is None else flow / diag)
    return worst


def select_keyframes(
    stats: FrameStats,
    max_keyframes: int,
    min_keyframes: int,
    min_step: float = 0.03,
    static_threshold: float = 0.01,
    preferred: Iterable[int] = (),
) -> KeyframeSelection:
    """Keyframes at equal steps of accumulated motion, the sharpest frame of each step.

    min_step: least motion (image diagonals) between keyframes, so each pair has some parallax.
    static_threshold: below this largest displacement from the first frame the camera is static.
    preferred: frames that win ties within 80 % of the best sharpness (e.g. frames with masks).
    """
    total = float(stats.cumulative_motion[-1]) if len(stats.indices) else 0.0
    static = stats.max_displacement < static_threshold
    sel = KeyframeSelection([], total, stats.max_displacement, static)
    if len(stats.indices) < min_keyframes or static:
        return sel
    count = int(np.clip(np.floor(total / min_step) + 1, min_keyframes, max_keyframes))
    count = min(count, len(stats.indices))
    sel.frames = _pick_at_steps(stats, count, set(preferred))
    if count == max_keyframes and total / min_step + 1 > max_keyframes:
        sel.reasons.append(f"capped at {max_keyframes} keyframes")
    return sel


def _pick_at_steps(stats: FrameStats, count: int, preferred: set[int]) -> list[int]:
    """`count` distinct frames at equal steps of accumulated motion, the sharpest of each step.

    Every frame when there are no more frames than steps: a sparse input (a low frame rate, a
    thinned video) then keeps all its views, as the same frames as a photo folder would; picking the
    sharpest per window there lets neighbouring steps fall on one frame and loses views."""
    if count >= len(stats.indices):
        return list(stats.indices)
    cum = stats.cumulative_motion
    if cum[-1] <= 0:  # no motion measured at all: fall back to even spacing in time
        cum = np.arange(len(cum), dtype=float)
    targets = np.linspace(0.0, cum[-1], count)
    half = (targets[1] - targets[0]) / 2 if count > 1 else cum[-1]
    chosen: list[int] = []
    taken: set[int] = set()
    for target in targets:
        window = np.array([w for w in np.flatnonzero(np.abs(cum - target) <= half * 0.67) if w not in taken], int)
        if len(window) == 0:
            free = np.array([w for w in range(len(cum)) if w not in taken], int)
            window = free[[int(np.argmin(np.abs(cum[free] - target)))]]
        pick = _sharpest(stats, window, preferred)
        taken.add(pick)
        chosen.append(stats.indices[pick])
    return sorted(chosen)


def _sharpest(stats: FrameStats, window: np.ndarray, preferred: set[int]) -> int:
    """Position (in `stats.indices`) of the sharpest frame in the window; preferred frames win ties
    within 80 % of the best sharpness."""
    sharp = stats.sharpness[window]
    best = float(sharp.max())
    liked = [int(w) for w in window if stats.indices[w] in preferred and stats.sharpness[w] >= 0.8 * best]
    return max(liked, key=lambda w: stats.sharpness[w]) if liked else int(window[int(np.argmax(sharp))])

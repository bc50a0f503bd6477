"""Finding the supporting table plane in a sparse SfM cloud.

A whole-cloud RANSAC finds the biggest plane, which in a room is often the floor or a wall. The
plane that matters supports the objects, so RANSAC runs on the points seen just around and below
the tracked objects in the keyframes (expanded boxes minus the objects themselves). Without any
tracked object it falls back to the dominant plane that has the cameras on one side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tangram.geometry.camera import View
from tangram.geometry.lifting import PointCloud
from tangram.geometry.observations import Observations
from tangram.geometry.plane import Plane, TableFrame, build_table_frame, ransac_plane

MIN_TABLE_POINTS = 20
THRESHOLD_FRACTION = 0.01  # RANSAC inlier band as a fraction of the median camera-to-point distance


@dataclass
class TableEstimate:
    frame: TableFrame  # unit scale: lengths in SfM units
    plane: Plane
    threshold: float  # inlier band (SfM units)
    inliers: int
    candidates: int
    method: str  # "points around objects" or "dominant plane"


def table_region_points(views: dict[int, View], cloud: PointCloud, obs: Observations) -> np.ndarray:
    """Indices of points seen beside or below a tracked object (its box grown) but not on it."""
    votes = np.zeros(len(cloud.xyz), int)
    for frame, (idx, uv) in cloud.seen_in.items():
        dets = obs.detections(frame)
        if not dets or frame not in views:
            continue
        around = np.zeros(len(uv), bool)
        on_object = np.zeros(len(uv), bool)
        for det in dets:
            x1, y1, x2, y2 = det.box
            w, h = x2 - x1, y2 - y1
            around |= _in_rect(uv, x1 - 0.6 * w, y1 + 0.3 * h, x2 + 0.6 * w, y2 + 0.8 * h)
            on_object |= _in_rect(uv, x1, y1, x2, y2)
        votes[idx[around & ~on_object]] += 1
    return np.flatnonzero(votes >= 1)


def _in_rect(uv: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return (uv[:, 0] >= x1) & (uv[:, 0] <= x2) & (uv[:, 1] >= y1) & (uv[:, 1] <= y2)


def estimate_table(
    views: dict[int, View], cloud: PointCloud, obs: Observations, first_frame: int
) -> TableEstimate | None:
    """The table plane and frame (unit scale), or None when no plane has the cameras above it."""
    centres = np.array([v.centre for v in views.values()])
    if len(cloud.xyz) < MIN_TABLE_POINTS:
        return None
    depth = np.median(
        np.linalg.norm(cloud.xyz[:, None, :] - centres[None, :: max(1, len(centres) // 10)], axis=2)
    )
    threshold = THRESHOLD_FRACTION * float(depth)
    candidates = table_region_points(views, cloud, obs)
    method = "points around objects"
    if len(candidates) < MIN_TABLE_POINTS:
        candidates, method = np.arange(len(cloud.xyz)), "dominant plane"
    found = ransac_plane(cloud.xyz[candidates], threshold)
    if found is None:
        return None
    plane, _ = found
    side = plane.distance(centres)
    if min((side > 0).mean(), (side < 0).mean()) > 0.2:  # cameras on both sides: not a table we look at
        return None
    on_plane = np.abs(plane.distance(cloud.xyz)) < threshold
    frame = build_table_frame(
        plane, views[first_frame].world_from_camera, cloud.xyz[on_plane], centres, fixation_point(views)
    )
    return TableEstimate(frame, plane, threshold, int(on_plane.sum()), len(candidates), method)


def fixation_point(views: dict[int, View], min_spread: float = 0.02) -> np.ndarray | None:
    """Least-squares meeting point of the cameras' optical axes: what the video keeps in view.

    None when the axes are near parallel (a pan or a straight track): then no point is fixated.
    """
    a, b = np.zeros((3, 3)), np.zeros(3)
    for view in views.values():
        d = view.world_from_camera[:3, 2]
        proj = np.eye(3) - np.outer(d, d)
        a += proj
        b += proj @ view.centre
    n = max(len(views), 1)
    if np.linalg.eigvalsh(a / n)[0] < min_spread:
        return None
    point = np.linalg.solve(a, b)
    ahead = [(point - v.centre) @ v.world_from_camera[:3, 2] > 0 for v in views.values()]
    return point if np.mean(ahead) > 0.9 else None

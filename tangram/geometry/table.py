"""Finding the supporting table plane in a sparse SfM cloud.

A whole-cloud RANSAC finds the biggest plane, which in a room is often the floor or a wall. The
plane that matters supports the objects, so RANSAC runs on the points seen just around and below
the tracked objects in the keyframes (expanded boxes minus the objects themselves). Without any
tracked object it falls back to the dominant plane that has the cameras on one side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from tangram.geometry.camera import View
from tangram.geometry.lifting import PointCloud
from tangram.geometry.observations import Observations
from tangram.geometry.plane import Plane, TableFrame, build_table_frame, fit_plane, ransac_plane

MIN_TABLE_POINTS = 20
THRESHOLD_FRACTION = 0.01  # RANSAC inlier band as a fraction of the median camera-to-point distance


@dataclass
class TableEstimate:
    frame: TableFrame  # unit scale: lengths in SfM units
    plane: Plane
    threshold: float  # inlier band (SfM units)
    inliers: int
    candidates: int
    method: str  # "points around objects", "dominant plane" or "plane under the objects"
    floor: Plane | None = None  # the lowest horizontal plane well below the table, where furniture stands
    floor_z: float | None = None  # its height in the table frame (unit scale, negative)
    table_points: int = 0  # plane points in the table's own patch (its extent)


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
    views: dict[int, View],
    cloud: PointCloud,
    obs: Observations,
    first_frame: int,
    anchors: Sequence[tuple[np.ndarray, float]] = (),
) -> TableEstimate | None:
    """The table plane and frame (unit scale), or None when no plane has the cameras above it.

    anchors: (centre, width) of the tabletop objects placed so far (SfM frame). The supporting plane
    is then the horizontal plane right under their bottoms (a room has a floor, tables, counters at
    several heights: the one the objects stand on); the lowest horizontal plane well below it is the
    floor, where furniture stands.
    """
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
    if np.median(side) < 0:
        plane = plane.flipped()
    up = _up_reference(cloud.xyz, plane, threshold, centres)
    levels = horizontal_planes(cloud.xyz, up, threshold, centres)
    floor = levels[0] if levels else None
    if anchors:
        chosen = _plane_under(levels, plane, anchors, threshold)
        if chosen is not None and chosen is not plane:
            plane, method = chosen, "plane under the objects"
    if plane is not up and plane.normal @ up.normal < 1 - 1e-9:
        # level the table with "up": its own inliers at their median height along up's normal
        band = np.abs(plane.distance(cloud.xyz)) < threshold
        plane = Plane(up.normal, float(-np.median(cloud.xyz[band] @ up.normal)))
    on_plane = np.abs(plane.distance(cloud.xyz)) < threshold
    if floor is not None and float(np.median(floor.distance(cloud.xyz[on_plane]))) < 10 * threshold:
        floor = None  # the lowest level is the table itself (or just under it): no floor seen
    table_pts = cloud.xyz[on_plane]
    if anchors and len(table_pts) >= MIN_TABLE_POINTS:
        table_pts = _connected_to(table_pts, plane, [a for a, _ in anchors], threshold)
    frame = build_table_frame(plane, views[first_frame].world_from_camera, table_pts, centres, fixation_point(views))
    floor_z = None if floor is None else _level_z(frame, floor)
    return TableEstimate(
        frame, plane, threshold, int(on_plane.sum()), len(candidates), method, floor, floor_z, len(table_pts)
    )


def _up_reference(
    xyz: np.ndarray, plane: Plane, threshold: float, centres: np.ndarray, iterations: int = 600
) -> Plane:
    """The plane whose normal is "up": the best-supported plane of the whole cloud within 15 degrees
    of the one around the objects (a floor of thousands of points fixes the direction better than a
    small table top; walls are excluded by the angle), when it has more support and the cameras
    above it; else the plane around the objects."""
    rng = np.random.default_rng(1)
    cos_max = np.cos(np.deg2rad(15))
    best, best_count = None, int((np.abs(plane.distance(xyz)) < threshold).sum())
    for _ in range(iterations):
        a, b, c = xyz[rng.choice(len(xyz), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        norm = np.linalg.norm(normal)
        if norm < 1e-12:
            continue
        normal = normal / norm
        if normal @ plane.normal < 0:
            normal = -normal
        if normal @ plane.normal < cos_max:
            continue
        count = int((np.abs((xyz - a) @ normal) < threshold).sum())
        if count > best_count:
            best, best_count = Plane(normal, float(-normal @ a)), count
    if best is None:
        return plane
    refined = fit_plane(xyz[np.abs(best.distance(xyz)) < threshold])
    if refined.normal @ plane.normal < 0:
        refined = refined.flipped()
    if refined.normal @ plane.normal < cos_max or (refined.distance(centres) > 0).mean() < 0.8:
        return plane
    return refined


def horizontal_planes(xyz: np.ndarray, ref: Plane, threshold: float, cameras: np.ndarray) -> list[Plane]:
    """Planes parallel to `ref` with the cameras above them, lowest first: the heights of all points
    along ref's normal are histogrammed, every well-populated level is a plane."""
    height = ref.distance(xyz)
    top = float(np.median(ref.distance(cameras)))
    keep = height < top - 2 * threshold  # below the cameras
    if keep.sum() < MIN_TABLE_POINTS:
        return []
    bins = np.arange(float(height[keep].min()), top, threshold)
    if len(bins) < 2:
        return []
    counts, edges = np.histogram(height[keep], bins)
    smooth = np.convolve(counts, np.ones(3), mode="same")
    planes: list[tuple[float, Plane]] = []
    for k in np.argsort(-smooth):
        if smooth[k] < max(MIN_TABLE_POINTS, 0.02 * keep.sum()):
            break
        level = (edges[k] + edges[k + 1]) / 2
        if any(abs(level - h) < 6 * threshold for h, _ in planes):
            continue
        band = keep & (np.abs(height - level) < 1.5 * threshold)
        if band.sum() < MIN_TABLE_POINTS:
            continue
        # levels of one room are parallel: keep ref's normal (fitted on many more points than a
        # small table top has), move the plane to the band's median height
        planes.append((level, Plane(ref.normal, float(ref.offset - np.median(height[band])))))
    return [p for _, p in sorted(planes, key=lambda hp: hp[0])]


def _plane_under(
    levels: list[Plane], ref: Plane, anchors: Sequence[tuple[np.ndarray, float]], threshold: float
) -> Plane | None:
    """The level most objects stand on: anchors are (bottom point, width); an object stands on a
    level when its bottom lies within max(half its width, 3 bands) of it. Ties: the higher level."""
    if not levels:
        return None
    bottoms = np.array([ref.distance(b[None])[0] for b, _ in anchors])
    tol = np.array([max(w / 2, 3 * threshold) for _, w in anchors])
    best, best_key = None, None
    for p in [ref, *levels]:
        level = float(ref.distance(-p.offset * p.normal[None])[0])
        standing = int((np.abs(bottoms - level) <= tol).sum())
        key = (standing, level)
        if standing and (best_key is None or key > best_key):
            best, best_key = p, key
    return best


def _connected_to(pts: np.ndarray, plane: Plane, seeds: list[np.ndarray], threshold: float) -> np.ndarray:
    """The plane points in the connected patch(es) under the seeds: one table, not every surface
    at that height in the room (grid cells of 5 inlier bands, 8-connected)."""
    u = np.cross(plane.normal, [1.0, 0.0, 0.0] if abs(plane.normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(plane.normal, u)
    cell = 5 * threshold
    uv = np.column_stack([pts @ u, pts @ v])
    sv = np.array([[s @ u, s @ v] for s in seeds])
    lo = np.minimum(uv.min(axis=0), sv.min(axis=0))
    ij = np.floor((uv - lo) / cell).astype(int)
    sij = np.floor((sv - lo) / cell).astype(int)
    shape = np.maximum(ij.max(axis=0), sij.max(axis=0)) + 1
    if shape[0] * shape[1] > 4_000_000:
        return pts
    grid = np.zeros(tuple(shape), np.uint8)
    grid[ij[:, 0], ij[:, 1]] = 1
    grid = cv2.dilate(grid, np.ones((3, 3), np.uint8))
    _, labels = cv2.connectedComponents(grid, connectivity=8)
    wanted = {int(labels[i, j]) for i, j in sij if labels[i, j] > 0}
    if not wanted:  # the objects are over no plane point: the largest patch
        ids, counts = np.unique(labels[ij[:, 0], ij[:, 1]], return_counts=True)
        wanted = {int(ids[np.argmax(counts)])}
    keep = np.isin(labels[ij[:, 0], ij[:, 1]], list(wanted))
    return pts[keep] if keep.sum() >= MIN_TABLE_POINTS else pts


def _level_z(frame: TableFrame, level: Plane) -> float:
    """Height of another level in the table frame (unit scale), negative below the table top."""
    point = -level.offset * level.normal
    return float(frame.apply(point[None])[0, 2])


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

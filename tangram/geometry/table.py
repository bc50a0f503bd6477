"""Finding the supporting table plane in a sparse SfM cloud.

A whole-cloud RANSAC finds the biggest plane, which in a room is often the floor or a wall. The
plane that matters supports the objects, so RANSAC runs on the points seen just around and below
the tracked objects in the keyframes (expanded boxes minus the objects themselves). Without any
tracked object it falls back to the dominant plane that has the cameras on one side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from tangram.geometry.camera import View
from tangram.geometry.lifting import PointCloud
from tangram.geometry.observations import Observations
from tangram.geometry.plane import Plane, TableFrame, build_table_frame, ransac_plane

MIN_TABLE_POINTS = 20
THRESHOLD_FRACTION = 0.01  # RANSAC inlier band as a fraction of the median camera-to-point distance


@dataclass
class PlaneCandidate:
    """A plane the table search considered, and what became of it (reported on failure too)."""

    source: str  # "points around objects", "whole cloud, plane 2", ...
    plane: Plane  # oriented with the cameras on its positive side where most of them are
    inliers: int
    cameras_above: float  # share of the cameras on the positive side
    tilt_deg: float | None  # angle between its normal and the cameras' up (None: no up known)
    verdict: str = ""  # "accepted", or the rule it broke, with the numbers

    @property
    def accepted(self) -> bool:
        return self.verdict == "accepted"

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "normal": [round(float(v), 4) for v in self.plane.normal],
            "offset": round(float(self.plane.offset), 6),
            "inliers": self.inliers,
            "cameras_above": round(self.cameras_above, 3),
            "tilt_deg": None if self.tilt_deg is None else round(self.tilt_deg, 1),
            "verdict": self.verdict,
        }


@dataclass
class TableEstimate:
    frame: TableFrame  # unit scale: lengths in SfM units
    plane: Plane
    threshold: float  # inlier band (SfM units)
    inliers: int
    candidates: int  # points around the objects the first plane was sought in
    method: str  # "points around objects", "dominant plane" or "plane under the objects"
    floor: Plane | None = None  # the floor (`floor_plane`), where furniture stands
    floor_z: float | None = None  # its height under the table's centre in the table frame (unit scale, negative)
    table_points: int = 0  # plane points in the table's own patch (its extent)
    planes: list[PlaneCandidate] = field(default_factory=list)  # every plane considered
    camera_up: CameraUp | None = None


class TableNotFound(Exception):
    """No plane with the cameras above it: carries every candidate and the rule each broke."""

    def __init__(self, reason: str, planes: list[PlaneCandidate], threshold: float, camera_up: CameraUp | None):
        super().__init__(reason)
        self.reason = reason
        self.planes = planes
        self.threshold = threshold
        self.camera_up = camera_up


@dataclass
class CameraUp:
    """Gravity's direction from how the camera was held: a hand-held or head-mounted camera is
    kept with little roll, so its x axis stays near horizontal in every view, and "up" is the
    direction most perpendicular to all of them (the least eigenvector of the x axes' scatter),
    signed so the images' up (-y) points along it. Reliable only when the x axes span the
    horizontal plane (the camera turned): `spread` is the second-smallest eigenvalue share."""

    direction: np.ndarray
    spread: float

    @property
    def reliable(self) -> bool:
        return self.spread >= MIN_UP_SPREAD


MIN_UP_SPREAD = 0.02  # x axes turned over ~30 degrees or more (yaw): the perpendicular is fixed
MAX_TILT_DEG = 40.0  # a table's normal within this of the cameras' up (hand-held roll stays well under it)
WHOLE_CLOUD_PLANES = 4  # planes peeled off the whole cloud, best first
CAMERA_SIDE = 0.8  # at least this share of the cameras on one side of a plane we look at


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


def camera_up(views: dict[int, View]) -> CameraUp | None:
    if len(views) < 2:
        return None
    xs = np.array([v.world_from_camera[:3, 0] for v in views.values()])
    ys = np.array([v.world_from_camera[:3, 1] for v in views.values()])
    values, vectors = np.linalg.eigh(xs.T @ xs / len(xs))
    up = vectors[:, 0]
    if float(np.mean(-ys @ up)) < 0:
        up = -up
    return CameraUp(up / np.linalg.norm(up), float(values[1] / max(values.sum(), 1e-12)))


def _candidate(source: str, plane: Plane, xyz: np.ndarray, threshold: float, centres: np.ndarray,
               up: CameraUp | None) -> PlaneCandidate:
    side = plane.distance(centres)
    if np.median(side) < 0:
        plane, side = plane.flipped(), -side
    inliers = int((np.abs(plane.distance(xyz)) < threshold).sum())
    above = float((side > 0).mean())
    tilt = None
    if up is not None and up.reliable:
        tilt = float(np.degrees(np.arccos(np.clip(plane.normal @ up.direction, -1.0, 1.0))))
    cand = PlaneCandidate(source, plane, inliers, above, tilt)
    if inliers < MIN_TABLE_POINTS:
        cand.verdict = f"only {inliers} points on it (needs {MIN_TABLE_POINTS})"
    elif above < CAMERA_SIDE:
        cand.verdict = (f"cameras on both sides ({above:.0%} above, {1 - above:.0%} below): "
                        "a surface the camera passes, not one it looks down on")
    elif tilt is not None and tilt > MAX_TILT_DEG:
        cand.verdict = f"tilted {tilt:.0f} degrees from the cameras' up (at most {MAX_TILT_DEG:.0f}): a wall"
    else:
        cand.verdict = "accepted"
    return cand


def plane_candidates(
    xyz: np.ndarray, region: np.ndarray, threshold: float, centres: np.ndarray, up: CameraUp | None
) -> list[PlaneCandidate]:
    """The plane in the points around the objects, then the biggest planes of the whole cloud, each
    judged by `_candidate`'s rules."""
    out = []
    if len(region) >= MIN_TABLE_POINTS:
        found = ransac_plane(xyz[region], threshold)
        if found is not None:
            out.append(_candidate("points around objects", found[0], xyz, threshold, centres, up))
    left = np.arange(len(xyz))
    for k in range(WHOLE_CLOUD_PLANES):
        if len(left) < MIN_TABLE_POINTS:
            break
        found = ransac_plane(xyz[left], threshold, seed=k + 1)
        if found is None or found[1].sum() < MIN_TABLE_POINTS:
            break
        out.append(_candidate(f"whole cloud, plane {k + 1}", found[0], xyz, threshold, centres, up))
        left = left[~found[1]]
    return out


def estimate_table(
    views: dict[int, View],
    cloud: PointCloud,
    obs: Observations,
    first_frame: int,
    anchors: Sequence[tuple[np.ndarray, float]] = (),
) -> TableEstimate:
    """The table plane and frame (unit scale); TableNotFound when no plane has the cameras above it.

    Candidates: the plane in the points seen around and below the tracked objects, and the biggest
    planes of the whole cloud. A candidate counts when the cameras look down on it (nearly all on
    one side) and it is not a wall (its normal within MAX_TILT_DEG of the cameras' up, where that
    is known). The best-supported counted plane near the first one fixes "up".

    anchors: (centre, width) of the tabletop objects placed so far (SfM frame). The supporting plane
    is then the horizontal plane right under their bottoms (a room has a floor, tables, counters at
    several heights: the one the objects stand on); the best-supported plane well below it is the
    floor, where furniture stands (`floor_plane`).
    """
    centres = np.array([v.centre for v in views.values()])
    up_prior = camera_up(views)
    if len(cloud.xyz) < MIN_TABLE_POINTS:
        raise TableNotFound(f"only {len(cloud.xyz)} 3D points (needs {MIN_TABLE_POINTS})", [], 0.0, up_prior)
    depth = np.median(
        np.linalg.norm(cloud.xyz[:, None, :] - centres[None, :: max(1, len(centres) // 10)], axis=2)
    )
    threshold = THRESHOLD_FRACTION * float(depth)
    region = table_region_points(views, cloud, obs)
    planes = plane_candidates(cloud.xyz, region, threshold, centres, up_prior)
    accepted = [c for c in planes if c.accepted]
    if not accepted:
        nearest = max(planes, key=lambda c: (c.cameras_above, c.inliers), default=None)
        why = "no plane in the 3D points" if nearest is None else (
            f"no plane with the cameras above it: the nearest ({nearest.source}, {nearest.inliers} points) "
            f"was rejected: {nearest.verdict}")
        raise TableNotFound(why, planes, threshold, up_prior)
    first = accepted[0]
    method = "points around objects" if first.source == "points around objects" else "dominant plane"
    first.verdict = "accepted: first plane"
    plane = first.plane
    up = _up_reference(cloud.xyz, plane, threshold, centres)
    levels = horizontal_planes(cloud.xyz, up, threshold, centres)
    if anchors:
        chosen = _plane_under(levels, plane, anchors, threshold, cloud.xyz)
        if chosen is not None and chosen is not plane:
            plane, method = chosen, "plane under the objects"
    if plane is not up and plane.normal @ up.normal < 1 - 1e-9:
        # level the table with "up": its own inliers at their median height along up's normal
        band = np.abs(plane.distance(cloud.xyz)) < threshold
        plane = Plane(up.normal, float(-np.median(cloud.xyz[band] @ up.normal)))
    on_plane = np.abs(plane.distance(cloud.xyz)) < threshold
    table_pts = cloud.xyz[on_plane]
    if anchors and len(table_pts) >= MIN_TABLE_POINTS:
        table_pts = _connected_to(table_pts, plane, [a for a, _ in anchors], threshold)
    frame = build_table_frame(plane, views[first_frame].world_from_camera, table_pts, centres, fixation_point(views))
    floor = floor_plane(cloud.xyz, plane, threshold, centres)
    floor_z = None if floor is None else _height_under(plane, floor, table_pts.mean(axis=0))
    return TableEstimate(
        frame, plane, threshold, int(on_plane.sum()), len(region), method, floor, floor_z, len(table_pts),
        planes, up_prior,
    )


def _up_reference(xyz: np.ndarray, plane: Plane, threshold: float, centres: np.ndarray) -> Plane:
    """The plane whose normal is "up": the best-supported plane of the whole cloud within 15 degrees
    of the one around the objects (a floor of thousands of points fixes the direction better than a
    small table top; walls are excluded by the angle), when it has more support and the cameras
    above it; else the plane around the objects."""
    cos_max = np.cos(np.deg2rad(15))
    found = ransac_plane(xyz, threshold, iterations=600, seed=1,
                         accept=lambda n: abs(float(n @ plane.normal)) >= cos_max)
    if found is None or found[1].sum() <= int((np.abs(plane.distance(xyz)) < threshold).sum()):
        return plane
    refined = found[0] if found[0].normal @ plane.normal > 0 else found[0].flipped()
    if (refined.distance(centres) > 0).mean() < 0.8:
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


def floor_plane(xyz: np.ndarray, table: Plane, threshold: float, cameras: np.ndarray) -> Plane | None:
    """The floor: the best-supported plane of the points well below the table top (more than 10
    inlier bands), within 15 degrees of the table's normal, with the cameras above it; None when the
    floor is not seen. A fitted plane, not a level parallel to the table: a reconstruction is rarely
    exactly flat over a room, and a floor a few degrees off the table's normal spreads over several
    height levels (on hololens_office's PNG frames the lowest of them lay 13 % further below the
    table top than the floor under the table does)."""
    below = xyz[table.distance(xyz) < -10 * threshold]
    if len(below) < MIN_TABLE_POINTS:
        return None
    cos_max = np.cos(np.deg2rad(15))
    found = ransac_plane(below, threshold, iterations=600, seed=2,
                         accept=lambda n: abs(float(n @ table.normal)) >= cos_max)
    if found is None or found[1].sum() < max(MIN_TABLE_POINTS, 0.02 * len(xyz)):
        return None
    floor = found[0] if found[0].normal @ table.normal > 0 else found[0].flipped()
    if (floor.distance(cameras) > 0).mean() < 0.8:
        return None
    return floor


def _height_under(table: Plane, floor: Plane, at: np.ndarray) -> float:
    """Height of the floor under `at` (taken onto the table top first), along the table's normal
    (negative, units)."""
    on_top = at - table.distance(at[None])[0] * table.normal
    return float(-floor.distance(on_top[None])[0] / (floor.normal @ table.normal))


OTHER_SUPPORT = 0.2  # chance that an object stands on something else (the floor beside the table, another object)


def _plane_under(
    levels: list[Plane], ref: Plane, anchors: Sequence[tuple[np.ndarray, float]], threshold: float,
    xyz: np.ndarray,
) -> Plane | None:
    """The level the objects stand on; anchors are (bottom point, width).

    Each level is scored as the support: its 3D points (a table top is a populated surface, not a
    sparse layer of clutter or chair backs) times how well it explains the objects' bottoms. A
    bottom is Gaussian about the level it stands on, sigma = max(half its width, 3 bands) / 2 (wide
    objects' bottoms are the least certain) or the robust scatter of all the bottoms (MAD) where
    that is larger, or, with probability OTHER_SUPPORT, anywhere over the
    levels' height range (a plant standing on the floor beside the table, an object on another).
    A level needs one bottom within 2 sigma of it. Scored, not counted: a hard count of the bottoms
    within 2 sigma flipped the choice when one wide object's bottom moved by 3 mm across that edge."""
    if not levels:
        return None
    bottoms = np.array([ref.distance(b[None])[0] for b, _ in anchors])
    # no bottom is surer than the bottoms' own scatter about their median says (bottles cut by the
    # image's edge scatter by a third of a metre on the TUM desk): then the points decide
    scatter = 1.4826 * float(np.median(np.abs(bottoms - np.median(bottoms)))) if len(bottoms) >= 3 else 0.0
    sigma = np.maximum(np.array([max(w / 2, 3 * threshold) for _, w in anchors]) / 2, scatter)
    heights = [float(ref.distance(-p.offset * p.normal[None])[0]) for p in [ref, *levels]]
    span = max(max(heights) - min(heights), 6 * threshold)
    best, best_score = None, -np.inf
    for p, level in zip([ref, *levels], heights, strict=True):
        z = (bottoms - level) / sigma
        if not np.any(np.abs(z) <= 2):
            continue
        density = np.exp(-0.5 * z**2) * span / (sigma * np.sqrt(2 * np.pi))
        points = int((np.abs(p.distance(xyz)) < 1.5 * threshold).sum())
        score = np.log(max(points, 1)) + float(np.log((1 - OTHER_SUPPORT) * density + OTHER_SUPPORT).sum())
        if score > best_score:
            best, best_score = p, score
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

"""Objects in 3D: from 2D tracks (masks, boxes) and posed views to table-frame positions and boxes.

Per track:
1. support: the sparse 3D points whose observations fall inside the object's masks (or shrunk
   tracker boxes) in most of the keyframes where the object is seen, and that are not table points;
   their robust centroid.
2. a footprint guess: rays through the bottom centre of the boxes meet the table plane (z = 0); the
   metric-free box width times depth over focal length gives a size guess. This alone is the
   fallback position for an object with too few points (flagged `fallback`).
3. an oriented box from the visual hull of the silhouettes around that guess; if the hull fails, from
   the supporting points.
Without enough points of its own, an object is placed at the triangulation of its image centres
(`tangram.geometry.triangulation`), unless that centre lies behind the surfaces its views saw
through its boxes (`hidden_behind_points`: look-alike neighbours swapped by the tracker): then at
the footprint guess, with the triangulation recorded as refused.
All lengths are in the units of the frame the views and points are given in (the unscaled table
frame); `Object3D.scaled` converts them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from tangram.geometry.camera import View
from tangram.geometry.hull import carve, hull_box
from tangram.geometry.observations import Observations
from tangram.geometry.plane import TableFrame
from tangram.geometry.silhouettes import SilhouetteCache

MIN_BOX_POINTS = 3  # a view judges whether a position is hidden from the points it saw in the box
HIDDEN_SHARE = 0.9  # ... hidden when this share of them lies in front of it
MIN_HIDDEN_VIEWS = 2  # one view is no proof


@dataclass
class Object3D:
    track_id: int
    class_name: str
    centroid: np.ndarray  # robust centroid of the supporting points (box centre if none)
    centre: np.ndarray  # oriented box centre
    size: np.ndarray  # box size along its own axes (x, y) and z
    yaw: float
    support: int  # supporting 3D points
    fallback: bool  # True: too few supporting points (placed by triangulation or the ray-plane guess)
    method: str  # what gave the box: "hull", "points" or "ray_plane"
    views: int  # registered keyframes in which the object is seen
    info: dict = field(default_factory=dict)

    def scaled(self, factor: float) -> Object3D:
        return replace(
            self, centroid=self.centroid * factor, centre=self.centre * factor, size=self.size * factor
        )


@dataclass
class PointCloud:
    xyz: np.ndarray  # Nx3
    rgb: np.ndarray  # Nx3 uint8
    # frame_index -> (indices into xyz, Nx2 pixel positions) of the points that frame observes
    seen_in: dict[int, tuple[np.ndarray, np.ndarray]]


def lift_objects(
    views: dict[int, View],
    cloud: PointCloud,
    obs: Observations,
    unit: float,
    min_support: int = 8,
    triangulated: dict[int, np.ndarray] | None = None,
    surface: TableFrame | None = None,
    unplaced: list[dict] | None = None,
    without_points: set[int] | None = None,
) -> list[Object3D]:
    """Objects for every track seen in at least one registered view. `unit`: table-point tolerance.

    triangulated: track id -> credible multi-view position (this frame); surface: the table, whose
    extent bounds the ray-plane fallback; unplaced collects {track_id, class_name, reason} of the
    objects whose position is not credible (reported, not placed)."""
    # tracker boxes over-cover objects: shrink them to assign points, but not to carve the hull,
    # where a box must stay a bound of the object
    support = assign_points(views, cloud, obs, SilhouetteCache(obs, views, box_shrink=0.1), unit)
    sils = SilhouetteCache(obs, views)
    objects = []
    for tid in sorted(obs.tracks):
        frames = [f for f in obs.frames_of(tid) if f in views]
        if not frames:
            continue
        tri = (triangulated or {}).get(tid)
        if without_points and tid in without_points:
            support[tid] = np.zeros(0, int)
        obj = _lift_one(
            tid, frames, views, cloud, obs, sils, support.get(tid, np.zeros(0, int)), min_support, tri, surface
        )
        if isinstance(obj, str):
            if unplaced is not None:
                unplaced.append({"track_id": tid, "class_name": obs.tracks[tid].class_name, "reason": obj})
        else:
            objects.append(obj)
    return objects


def assign_points(
    views: dict[int, View], cloud: PointCloud, obs: Observations, sils: SilhouetteCache, unit: float
) -> dict[int, np.ndarray]:
    """track_id -> indices of the 3D points inside its silhouettes in at least half of the views."""
    inside: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    seen: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for frame, (idx, uv) in cloud.seen_in.items():
        for det in obs.detections(frame):
            sil = sils.get(frame, det)
            if sil is None:
                continue
            hits = sil.contains(uv)
            for i, hit in zip(idx.tolist(), hits.tolist(), strict=True):
                seen[det.track_id][i] += 1
                inside[det.track_id][i] += hit
    off_table = np.abs(cloud.xyz[:, 2]) > 1.5 * unit  # points on the table top are not the object's
    out = {}
    for tid, counts in inside.items():
        chosen = [i for i, n in counts.items() if n >= 2 and n >= 0.5 * seen[tid][i] and off_table[i]]
        out[tid] = np.array(sorted(chosen), dtype=int)
    return _resolve_shared(out, inside)


def _resolve_shared(
    assigned: dict[int, np.ndarray], inside: dict[int, dict[int, int]]
) -> dict[int, np.ndarray]:
    """A point inside two objects' silhouettes (one in front of the other) goes to the one with more votes."""
    owner: dict[int, int] = {}
    for tid, idx in assigned.items():
        for i in idx.tolist():
            if i not in owner or inside[tid][i] > inside[owner[i]][i]:
                owner[i] = tid
    return {
        tid: np.array([i for i in idx.tolist() if owner[i] == tid], dtype=int)
        for tid, idx in assigned.items()
    }


def _lift_one(
    tid: int,
    frames: list[int],
    views: dict[int, View],
    cloud: PointCloud,
    obs: Observations,
    sils: SilhouetteCache,
    support_idx: np.ndarray,
    min_support: int,
    tri: np.ndarray | None = None,
    surface: TableFrame | None = None,
) -> Object3D | str:
    """The object, or why its position is not credible."""
    dets = {f: next(d for d in obs.detections(f) if d.track_id == tid) for f in frames}
    seen = {f: views[f] for f in frames}
    boxes = {f: d.box for f, d in dets.items()}
    pts = _robust(cloud.xyz[support_idx]) if len(support_idx) else np.zeros((0, 3))
    guess = footprint_guess(seen, boxes)
    hidden = "" if tri is None else hidden_behind_points(np.asarray(tri, float), seen, boxes, cloud,
                                                          apparent_size(seen, boxes, np.asarray(tri, float))[0])
    if hidden:  # not where its rays meet: where its boxes stand on the table, if they do
        tri = None
    # the object's own points locate it best, also off the table plane (on a shelf, under the desk);
    # without enough of them, the multi-view triangulation of its image centres; the bottom-centre
    # rays meeting the table only as a last resort, and only when they land on the table
    near_tri = len(pts) >= 3 and (
        tri is None
        or len(pts) >= min_support
        or np.linalg.norm(np.median(pts, axis=0) - tri) <= 2 * apparent_size(seen, boxes, np.asarray(tri))[0]
    )
    if near_tri:  # a few points that agree with the silhouettes' triangulation still fix it best
        anchor, placement = np.median(pts, axis=0), "points"
    elif tri is not None:
        anchor, placement = np.asarray(tri, float), "triangulation"
        pts = np.zeros((0, 3))
    elif guess is None:
        return (f"no credible position: {hidden}, and its rays do not meet the table" if hidden
                else "no credible position: no triangulation, and its rays do not meet the table")
    elif surface is not None and not _on_surface(guess[0], surface):
        return (f"no credible position: {hidden}, and its rays meet the table plane outside the table"
                if hidden else
                "no credible position: no triangulation, and its rays meet the table plane outside the table")
    else:
        anchor, placement = np.array([*guess[0], guess[2] / 2]), "fallback"
    width, height = apparent_size(seen, boxes, anchor)
    # standing on the table: its points are above the table, and the box's bottom-centre ray meets the
    # table right under them; for an object on a shelf it meets the table far behind it
    if placement == "points":
        grounded = len(pts) < 3 or (
            anchor[2] > 0 and guess is not None and np.linalg.norm(guess[0] - anchor[:2]) <= width
        )
    else:
        grounded = abs(anchor[2] - height / 2) <= max(0.75 * height, width)
    pairs = [(views[f], s) for f in frames if (s := sils.get(f, dets[f])) is not None]
    z_span = _z_range(pts, height, grounded) if placement == "points" else _anchor_z_range(anchor, height, grounded)
    if surface is not None and anchor[2] > 0 and _on_surface(anchor[:2], surface, margin=0.0):
        # over the table's top the table itself hides everything below it: carving there only grows
        # the silhouettes' cones under a flat object (a tray), never the object
        z_span = (max(z_span[0], 0.0), z_span[1])
    box, method = _hull_or_points(pairs, anchor, width, height, pts, grounded, z_span)
    if box is None and placement == "triangulation" and grounded and guess is not None and (
        surface is None or _on_surface(guess[0], surface)
    ):
        # no hull around the triangulated centre (a big flat object cut by the image border biases
        # its box centres): the hull around where its box bottoms meet the table, when it carves one
        alt = np.array([*guess[0], guess[2] / 2])
        w2, h2 = apparent_size(seen, boxes, alt)
        found, how = _hull_or_points(pairs, alt, w2, h2, pts, True, _anchor_z_range(alt, h2, True))
        if found is not None:
            box, method, anchor, placement, width, height = found, how, alt, "fallback", w2, h2
    if box is None:  # neither hull nor points: the silhouettes' apparent size around the anchor
        z = height / 2 if grounded else float(anchor[2])
        box = (np.array([anchor[0], anchor[1], z]), np.array([width, width, height]), 0.0)
        method = "ray_plane" if placement == "fallback" else "apparent_size"
    centre, size, yaw = box
    if len(pts):  # keep the support consistent with the box: background points leak through boxes
        pts = pts[_in_box(pts, centre, size * 1.3 + 0.02 * max(size), yaw)]
    centroid = np.median(pts, axis=0) if len(pts) else centre.copy()
    info = {
        "anchor": anchor.tolist(),
        "apparent_width": apparent_size(seen, boxes, centre)[0],
        "ray_plane_centre": None if guess is None else [*guess[0].tolist(), 0.0],
        "placement": placement,
    }
    if hidden:
        info["triangulation_rejected"] = hidden
    return Object3D(
        tid,
        obs.tracks[tid].class_name,
        centroid,
        centre,
        size,
        yaw,
        len(pts),
        len(pts) < min_support,
        method,
        len(frames),
        info,
    )


def hidden_behind_points(anchor: np.ndarray, views: dict[int, View], boxes: dict[int, np.ndarray],
                         cloud: PointCloud, width: float) -> str:
    """Why a triangulated centre cannot be right, or "" when it can: it lies behind what the views saw.

    A 3D point seen at a pixel means the sight line to it is empty: an object further along the
    sight lines through its box would be hidden by the surface those points lie on. In a view whose
    box holds at least MIN_BOX_POINTS of the points that view saw, the centre is hidden when nearly
    all of them (HIDDEN_SHARE) lie more than the object's width in front of it; at a correct centre
    part of them is the object itself or the background behind it. Refused when more than half of
    the views that could judge, and at least MIN_HIDDEN_VIEWS, find it hidden. Rays of look-alike neighbours
    that the tracker took for one object (an id switch) meet like that, far behind the objects, when
    the views that disagree are a small step apart."""
    judged = hidden = 0
    for frame, view in views.items():
        seen = cloud.seen_in.get(frame)
        if seen is None:
            continue
        x1, y1, x2, y2 = boxes[frame]
        idx, uv = seen
        inside = (uv[:, 0] >= x1) & (uv[:, 0] <= x2) & (uv[:, 1] >= y1) & (uv[:, 1] <= y2)
        if inside.sum() < MIN_BOX_POINTS:
            continue
        axis = view.world_from_camera[:3, 2]
        depth = (cloud.xyz[idx[inside]] - view.centre) @ axis
        judged += 1
        hidden += float(np.mean(depth < (anchor - view.centre) @ axis - width)) >= HIDDEN_SHARE
    if hidden < MIN_HIDDEN_VIEWS or hidden <= judged / 2:
        return ""
    return ("its views' rays meet behind the surfaces those views saw through its box "
            f"({hidden} of {judged} views; look-alike neighbours taken for one object?)")


def _z_range(pts: np.ndarray, height: float, grounded: bool) -> tuple[float, float]:
    """Vertical span to carve: from the table up, or around the points for an object off the table."""
    if len(pts) < 3:
        return 0.0, 2.0 * height
    low, high = np.percentile(pts[:, 2], [5, 95])
    return (0.0 if grounded else float(low - height)), float(max(high, 0.0) + 1.5 * height)


def _anchor_z_range(anchor: np.ndarray, height: float, grounded: bool) -> tuple[float, float]:
    """Vertical span to carve around a triangulated centre: from the table up when it stands there."""
    if grounded:
        return 0.0, float(max(anchor[2], 0.0) + 1.5 * height)
    return float(anchor[2] - 1.5 * height), float(anchor[2] + 1.5 * height)


def _on_surface(xy: np.ndarray, surface: TableFrame, margin: float = 0.1) -> bool:
    """Whether a table-frame point lies over the table's extent (its rectangle grown by `margin`)."""
    d = np.asarray(xy[:2], float) - np.asarray(surface.rect_center, float)
    c, s = np.cos(surface.rect_yaw), np.sin(surface.rect_yaw)
    local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])
    return bool(np.all(np.abs(local) <= np.asarray(surface.rect_size) * (0.5 + margin)))


def _hull_or_points(
    pairs,
    anchor: np.ndarray,
    width: float,
    height: float,
    pts: np.ndarray,
    grounded: bool,
    z_span: tuple[float, float],
):
    half = max(width, 0.5 * height) * 0.9
    z_lo, z_hi = z_span
    for _ in range(3):  # grow the grid while the hull touches its sides
        hull = carve(pairs, anchor[:2], half, z_lo, z_hi)
        if hull.valid:
            hb = hull_box(hull)
            return (hb.centre, hb.size, hb.yaw), "hull"
        if not hull.touches_border:
            break
        half *= 1.6
    if len(pts) >= 4:
        return _points_box(pts, grounded), "points"
    return None, ""


def _points_box(pts: np.ndarray, grounded: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Box of the supporting points, down to the table for an object standing on it."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(pts[:, :2].astype(np.float32))
    low, top = np.percentile(pts[:, 2], [5, 95])
    bottom = 0.0 if grounded and low > 0 else float(low)
    return np.array([cx, cy, (top + bottom) / 2]), np.array([w, h, top - bottom]), float(np.deg2rad(angle))


def footprint_guess(
    views: dict[int, View], boxes: dict[int, np.ndarray]
) -> tuple[np.ndarray, float, float] | None:
    """(centre xy on the table, width, height) from boxes: bottom-centre rays meet z = 0.

    The bottom of a box is the object's front edge, so the centre lies half a width further along
    the viewing direction. Width and height come from the box extents at that depth.
    """
    centres, widths, heights = [], [], []
    for f, view in views.items():
        x1, y1, x2, y2 = boxes[f]
        origin, dirs = view.rays(np.array([[(x1 + x2) / 2, y2]]))
        if dirs[0, 2] >= -1e-6:  # the ray does not go down to the table
            continue
        t = -origin[2] / dirs[0, 2]
        hit = origin + t * dirs[0]
        depth = float((hit - origin) @ view.world_from_camera[:3, 2])
        fx, fy = view.intrinsics.fx, view.intrinsics.fy
        width = (x2 - x1) * depth / fx
        ahead = dirs[0, :2] / max(np.linalg.norm(dirs[0, :2]), 1e-9)
        centres.append(hit[:2] + ahead * width / 2)
        widths.append(width)
        heights.append((y2 - y1) * depth / fy)
    if not centres:
        return None
    return np.median(np.array(centres), axis=0), float(np.median(widths)), float(np.median(heights))


def apparent_size(
    views: dict[int, View], boxes: dict[int, np.ndarray], centre: np.ndarray
) -> tuple[float, float]:
    """Median (width, height) of the box at the depth of `centre`: pixels times depth over focal length.

    The width is the object's extent across the line of sight; unlike the hull's footprint it needs
    no view from the side, so a short camera arc does not stretch it. The height is only a bound
    (seen from above, a box also spans the object's depth).
    """
    widths, heights = [], []
    for f, view in views.items():
        depth = float((centre - view.centre) @ view.world_from_camera[:3, 2])
        if depth > 0:
            x1, y1, x2, y2 = boxes[f]
            widths.append((x2 - x1) * depth / view.intrinsics.fx)
            heights.append((y2 - y1) * depth / view.intrinsics.fy)
    if not widths:
        return 0.0, 0.0
    return float(np.median(widths)), float(np.median(heights))


def _robust(pts: np.ndarray, k: float = 3.0) -> np.ndarray:
    """Drop points further than k robust deviations from the median (per axis, MAD)."""
    if len(pts) < 4:
        return pts
    med = np.median(pts, axis=0)
    mad = np.median(np.abs(pts - med), axis=0) * 1.4826 + 1e-12
    return pts[np.all(np.abs(pts - med) <= k * mad + 1e-9, axis=1)]


def _in_box(pts: np.ndarray, centre: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    d = pts - centre
    local = np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]])
    return np.all(np.abs(local) <= size / 2, axis=1)

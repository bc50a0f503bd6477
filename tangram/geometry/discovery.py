"""Objects the detector has no name for: clusters of sparse 3D points standing on the table.

COCO's 80 classes miss most of what lies on a real table (a LEGO model, a stapler, a box). The
reconstruction knows where the table top is and which SIFT points stand above it, so what no
detected object explains is clustered (scikit-learn's DBSCAN) and each well-supported cluster
becomes an object of class `object` with `source: "geometry"`:

1. candidates: points between a few table-plane bands above the top and below the cameras, over
   the table's extent (its rectangle), observed in at least `min_point_views` keyframes (COLMAP
   tracks of two images are the noisiest), and outside every placed object's box grown by a margin.
2. DBSCAN with eps derived from the data, not tuned to a clip: `EPS_FACTOR` times the median distance
   of the candidates to their `min_samples`-th neighbour, clipped to [2, 6] table-plane bands (the
   band is 1 % of the camera-to-scene distance, so both scale with the scene).
3. a cluster counts when it has `min_points` points seen in `min_views` distinct keyframes (each
   seeing at least two of them), its centre lies over the table, its footprint is no bigger than
   a third of the table's shorter side, it does not hover (its lowest points no higher than half its
   top and `hover_bands` bands) and it does not continue below the table top (an object on the table hides
   what is under it; points there make it the side of a cabinet or a wall at the table's edge). A
   cluster that reaches within eps/2 of the points a placed object explains (DBSCAN would have
   joined them: it overlaps that object) is that object seen again: it merges into it (is dropped,
   recorded under `merged`).
4. its box: the points' principal axes in the table plane (PCA), trimmed 5-95 % extents, from the
   table top (z = 0) up to the points' 95th height percentile: it stands on the table.
5. with the keyframe images (`refine_with_silhouettes`): the box, grown (sparse points cover only the
   faces the camera saw), is projected into up to `MAX_MASK_VIEWS` keyframes that see it and prompts
   the run's segmenter there (SAM or GrabCut); the visual hull of those silhouettes
   (`tangram.geometry.hull`, as for detected objects) replaces the points' box when it is valid and
   holds most of the cluster's points. The masks are written beside the model and listed per
   keyframe.

Everything is in the metric table frame (metres, z up, table top z = 0). `discover` is pure numpy +
scikit-learn on arrays, so it is tested on synthetic clouds; `Discovered.as_object` gives the
`Object3D` the reconstruction writes like any other object, plus per-keyframe projected boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from tangram.geometry.camera import View
from tangram.geometry.hull import carve, hull_box
from tangram.geometry.lifting import Object3D
from tangram.geometry.plane import TableFrame

CLASS_NAME = "object"
SOURCE = "geometry"
EPS_FACTOR = 2.0  # DBSCAN eps over the median min_samples-th neighbour distance of the candidates
EPS_BANDS = (2.0, 6.0)  # eps clipped to this many table-plane bands (the inlier band of the table fit)
MAX_MASK_VIEWS = 8  # keyframes segmented per discovered object (spread over those that see it)
PROMPT_GROWTH = 1.6  # the points' footprint grown by this for the segmenter's box prompt
HULL_KEEPS = 0.6  # a hull replaces the points' box only when it holds this share of the points


@dataclass(frozen=True)
class DiscoveryParams:
    min_points: int = 12  # points in a cluster
    min_views: int = 4  # distinct keyframes each seeing >= 2 of its points
    min_point_views: int = 3  # keyframes observing a candidate point (its COLMAP track length)
    min_samples: int = 5  # DBSCAN core-point neighbourhood
    low_bands: float = 2.0  # candidates start this many table-plane bands above the top
    max_height_of_cameras: float = 0.8  # ... and end at this share of the cameras' height over the table
    exclusion_margin: float = 0.1  # placed boxes grown by this share of their size (and >= 2 bands)
    min_touching: int = 3  # a cluster with this many points within eps/2 of a placed box merges into it
    max_footprint_of_table: float = 1 / 3  # a cluster wider than this share of the table's shorter side
    max_error_px: float | None = 2.0  # drop points whose mean reprojection error exceeds this
    hover_bands: float = 10.0  # a cluster whose lowest points are this many bands and half its top up hovers
    max_below_share: float = 0.25  # points under its footprint below the table top, per point of its own


@dataclass
class Discovered:
    """A cluster kept as an object (table frame, metres)."""

    object_id: int
    centre: np.ndarray  # box centre
    size: np.ndarray  # along its own x, y (PCA axes in the table plane) and z
    yaw: float
    centroid: np.ndarray  # median of its points
    points: int
    views: list[int]  # keyframes (frame indices) seeing >= 2 of its points
    confidence: float
    color: list[int]
    boxes_2d: dict[int, list[float]] = field(default_factory=dict)  # keyframe -> projected box xyxy (px)
    point_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    method: str = "points_pca"  # what gave the box: "points_pca" or "hull" (the segmenter's silhouettes)
    masks: dict[int, str] = field(default_factory=dict)  # keyframe -> mask file (relative to the stage folder)

    def as_object(self) -> Object3D:
        info = {
            "source": SOURCE,
            "placement": "points",
            "kind": "object",
            "keyframes": list(self.views),
            "boxes_2d": {str(k): v for k, v in self.boxes_2d.items()},
            "masks": {str(k): v for k, v in self.masks.items()},
            "confidence": self.confidence,
            "color": self.color,
        }
        return Object3D(self.object_id, CLASS_NAME, self.centroid.copy(), self.centre.copy(), self.size.copy(),
                        self.yaw, self.points, False, self.method, len(self.views), info)


@dataclass
class Discovery:
    objects: list[Discovered]
    eps: float  # metres
    candidates: int  # points that entered the clustering
    rejected: list[dict[str, Any]]  # clusters dropped, and why
    merged: list[dict[str, Any]]  # clusters that were a detected object seen again

    def summary(self) -> dict[str, Any]:
        return {
            "method": "DBSCAN over the sparse points above the table top not explained by a placed object",
            "eps_m": round(self.eps, 4),
            "candidate_points": self.candidates,
            "found": [o.object_id for o in self.objects],
            "merged": self.merged,
            "rejected": self.rejected,
        }


def discover(
    xyz: np.ndarray,
    seen_in: dict[int, tuple[np.ndarray, np.ndarray]],
    views: dict[int, View],
    table: TableFrame,
    band: float,
    placed: list[Object3D],
    first_id: int,
    rgb: np.ndarray | None = None,
    errors: np.ndarray | None = None,
    params: DiscoveryParams = DiscoveryParams(),
) -> Discovery:
    """Class-agnostic objects from the points standing on the table (see the module docstring).

    xyz: Nx3 points, metric table frame; seen_in: keyframe -> (point indices, pixels) observing
    them; views: the registered keyframes in the same frame; band: the table fit's inlier band in
    metres; placed: the objects already in the scene (boxes, same frame); first_id: the id of the
    first discovered object (the next ones count up)."""
    xyz = np.asarray(xyz, float)
    n = len(xyz)
    observers = np.zeros(n, int)
    for idx, _ in seen_in.values():
        np.add.at(observers, np.asarray(idx, int), 1)
    cam_height = float(np.median([v.centre[2] for v in views.values()])) if views else np.inf
    z = xyz[:, 2] if n else np.zeros(0)
    keep = (z > params.low_bands * band) & (z < params.max_height_of_cameras * cam_height)
    keep &= observers >= params.min_point_views
    keep &= over_table(xyz[:, :2], table) if n else np.zeros(0, bool)
    if errors is not None and params.max_error_px is not None and len(errors) == n:
        keep &= np.asarray(errors, float) <= params.max_error_px
    solid = [o for o in placed if o.info.get("source") != SOURCE]
    for o in solid:
        keep &= ~in_box(xyz, o.centre, _zone(o, params, band), o.yaw)
    reliable = observers >= params.min_point_views
    cand = np.flatnonzero(keep)
    lo, hi = EPS_BANDS
    if len(cand) < max(params.min_points, params.min_samples + 1):
        return Discovery([], lo * band, len(cand), [], [])
    eps = _eps(xyz[cand], params.min_samples, lo * band, hi * band)
    labels = DBSCAN(eps=eps, min_samples=params.min_samples).fit_predict(xyz[cand])
    found: list[Discovered] = []
    rejected: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    short_side = float(min(table.rect_size)) if min(table.rect_size) > 0 else np.inf
    for label in sorted(set(labels.tolist()) - {-1}):
        members = cand[labels == label]
        pts = xyz[members]
        centre, size, yaw = pca_box(pts)
        what = {"points": len(members), "centre": [round(float(v), 4) for v in centre]}
        frames = _frames_seeing(members, seen_in)
        into = _merges_into(pts, solid, params, band, eps)
        if into is not None:
            merged.append({**what, "into": into.track_id, "class_name": into.class_name})
            continue
        why = None
        if len(members) < params.min_points:
            why = f"{len(members)} points (needs {params.min_points})"
        elif len(frames) < params.min_views:
            why = f"seen in {len(frames)} keyframes (needs {params.min_views})"
        elif not over_table(centre[None, :2], table)[0]:
            why = "its centre is outside the table's extent"
        elif max(size[0], size[1]) > params.max_footprint_of_table * short_side:
            why = (f"{max(size[0], size[1]):.2f} m across, more than {params.max_footprint_of_table:.2f} of the "
                   f"table's shorter side ({short_side:.2f} m): background or clutter, not one object")
        elif float(np.percentile(pts[:, 2], 5)) > max(size[2] / 2, params.hover_bands * band):
            # (an object with a textured top and plain sides has its points high up, but not this high)
            why = "it hovers: its lowest points are far above the table top (on a shelf or hanging over it)"
        elif (below := _below_table(xyz[reliable], centre, size, yaw, band)) > params.max_below_share * len(members):
            # the table top hides what is under an object standing on it: points there are the side
            # of a cabinet or a wall at the table's edge, reaching down past the top
            why = f"it continues below the table top ({below} points under its footprint): furniture or a wall"
        if why is not None:
            rejected.append({**what, "reason": why})
            continue
        colour = np.median(rgb[members], axis=0) if rgb is not None and len(rgb) == n else np.full(3, 128)
        found.append(Discovered(
            first_id + len(found), centre, size, yaw, np.median(pts, axis=0), len(members), frames,
            _confidence(len(members), len(frames), params), [int(c) for c in colour],
            project_boxes(centre, size, yaw, {f: views[f] for f in frames if f in views}), members,
        ))
    return Discovery(found, float(eps), len(cand), rejected, merged)


def _eps(pts: np.ndarray, k: int, lo: float, hi: float) -> float:
    """EPS_FACTOR x the median distance to the k-th neighbour, clipped to [lo, hi]."""
    nn = NearestNeighbors(n_neighbors=min(k + 1, len(pts))).fit(pts)
    dist, _ = nn.kneighbors(pts)
    return float(np.clip(EPS_FACTOR * np.median(dist[:, -1]), lo, hi))


def _below_table(xyz: np.ndarray, centre: np.ndarray, size: np.ndarray, yaw: float, band: float) -> int:
    """Points under the footprint (grown by two bands), more than `EPS_BANDS[0]` bands below the top."""
    under = in_box(xyz, np.array([centre[0], centre[1], 0.0]), np.array([size[0] + 4 * band, size[1] + 4 * band,
                                                                          np.inf]), yaw)
    return int((under & (xyz[:, 2] < -EPS_BANDS[0] * band)).sum())


def _frames_seeing(members: np.ndarray, seen_in: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """Keyframes observing at least two of the cluster's points (one could be a mismatch)."""
    return sorted(f for f, (idx, _) in seen_in.items() if np.isin(idx, members).sum() >= 2)


def _zone(o: Object3D, params: DiscoveryParams, band: float) -> np.ndarray:
    """The size of a placed object's box grown by its exclusion margin: the points it explains."""
    return o.size + 2 * np.maximum(params.exclusion_margin * o.size, 2 * band)


def _merges_into(pts: np.ndarray, solid: list[Object3D], params: DiscoveryParams, band: float,
                 eps: float) -> Object3D | None:
    """The placed object the cluster continues into: `min_touching` of its points within eps/2 of
    the points that object explains (DBSCAN would have joined them), else None. Furniture (a chair,
    boxed from the floor up to about the table top) explains its own points but takes in nothing
    standing on the table beside it."""
    for o in solid:
        if o.info.get("kind") == "furniture":
            continue
        if in_box(pts, o.centre, _zone(o, params, band) + eps, o.yaw).sum() >= params.min_touching:
            return o
    return None


def _confidence(points: int, views: int, params: DiscoveryParams) -> float:
    """0..1: grows with the points (saturating at ~4x min_points) and the views (at 2x min_views)."""
    p = 1.0 - np.exp(-points / (2.0 * params.min_points))
    v = min(1.0, views / (2.0 * params.min_views))
    return round(float(p * v), 3)


def pca_box(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre, size, yaw): principal axes of the points in the table plane, 5-95 % extents along
    them, from the table top up to the 95th height percentile."""
    xy = pts[:, :2]
    mean = xy.mean(axis=0)
    if len(pts) >= 3:
        _, vecs = np.linalg.eigh(np.cov((xy - mean).T))
        axis = vecs[:, -1]
    else:
        axis = np.array([1.0, 0.0])
    yaw = float(np.arctan2(axis[1], axis[0]))
    c, s = np.cos(yaw), np.sin(yaw)
    local = (xy - mean) @ np.array([[c, -s], [s, c]])
    lo, hi = np.percentile(local, [5, 95], axis=0)
    mid = (lo + hi) / 2
    top = max(float(np.percentile(pts[:, 2], 95)), 1e-3)
    centre = np.array([mean[0] + c * mid[0] - s * mid[1], mean[1] + s * mid[0] + c * mid[1], top / 2])
    return centre, np.array([*(hi - lo), top]), yaw


def in_box(pts: np.ndarray, centre: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    """Which points lie inside the oriented box (yaw about z)."""
    c, s = np.cos(yaw), np.sin(yaw)
    d = np.asarray(pts, float) - centre
    local = np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]])
    return np.all(np.abs(local) <= np.asarray(size) / 2, axis=1)


def over_table(xy: np.ndarray, table: TableFrame) -> np.ndarray:
    """Which table-frame xy lie over the table's extent (its minimum-area rectangle)."""
    d = np.asarray(xy, float) - np.asarray(table.rect_center, float)
    c, s = np.cos(table.rect_yaw), np.sin(table.rect_yaw)
    local = np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]])
    return np.all(np.abs(local) <= np.asarray(table.rect_size) / 2, axis=1)


def box_corners(centre: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    signs = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])
    local = signs * size
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return local @ rot.T + centre


def project_boxes(centre: np.ndarray, size: np.ndarray, yaw: float, views: dict[int, View]) -> dict[int, list[float]]:
    """keyframe -> the box's projection (xyxy, clipped to the image) where it lies in front of the camera."""
    corners = box_corners(centre, size, yaw)
    out = {}
    for f, view in sorted(views.items()):
        uv, depth = view.project(corners)
        if np.any(depth <= 0) or not np.all(np.isfinite(uv)):
            continue
        w, h = view.intrinsics.width, view.intrinsics.height
        x1, y1 = np.clip(uv.min(axis=0), 0, [w, h])
        x2, y2 = np.clip(uv.max(axis=0), 0, [w, h])
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            out[f] = [round(float(v), 1) for v in (x1, y1, x2, y2)]
    return out


def object_record(o: Object3D) -> dict[str, Any]:
    """objects.json entry of a discovered object: the detector objects' schema plus `source`,
    `keyframes` and `boxes_2d`."""
    info = o.info
    return {
        "track_id": o.track_id,
        "class_name": o.class_name,
        "source": SOURCE,
        "kind": "object",
        "members": [],
        "class_votes": {},
        "centroid": o.centroid.tolist(),
        "box": {"center": o.centre.tolist(), "size": o.size.tolist(), "yaw": o.yaw},
        "placement": "points",
        "support": o.support,
        "fallback": False,
        "method": o.method,
        "views": o.views,
        "triangulation": None,
        "evidence": {"placement": "points", "agreeing_views": o.views, "confidence": info["confidence"]},
        "notes": ["discovered from the 3D points: no detector class"],
        "color": info["color"],
        "confidence": info["confidence"],
        "observations": o.views,
        "keyframes": info["keyframes"],
        "boxes_2d": info["boxes_2d"],
        "masks": info.get("masks", {}),
    }


def refine_with_silhouettes(found: list[Discovered], xyz: np.ndarray, views: dict[int, View], images: Path,
                            band: float, segmenter: Any = None, masks_dir: Path | None = None) -> int:
    """Boxes from the visual hull of the segmenter's silhouettes (the run's own: SAM or GrabCut, a
    `tangram.stages.segmentation.Segmenter`; GrabCut when None) prompted by each object's projected
    box (grown by PROMPT_GROWTH), where the hull is valid, holds HULL_KEEPS of the object's points
    and is no longer than the prompt;
    returns how many boxes it replaced. masks_dir: where the masks are written (`masks` lists them
    relative to its parent)."""
    from tangram.geometry.silhouettes import WORK_WIDTH, Silhouette
    from tangram.stages.segmentation import GrabCutSegmenter

    segmenter = segmenter if segmenter is not None else GrabCutSegmenter(4)
    replaced = 0
    for d in found:
        frames = [f for f in d.views if f in views]
        if len(frames) > MAX_MASK_VIEWS:
            frames = [frames[k] for k in np.linspace(0, len(frames) - 1, MAX_MASK_VIEWS).round().astype(int)]
        grown = d.size * np.array([PROMPT_GROWTH, PROMPT_GROWTH, 1.2])
        prompts = project_boxes(d.centre * [1, 1, 1.2], grown, d.yaw, {f: views[f] for f in frames})
        pairs, masks = [], {}
        for f, box in prompts.items():
            image = cv2.imread(str(images / views[f].image))
            if image is None:
                continue
            mask = segmenter.segment(image, np.array([box], float))[0][0]
            if not mask.any():
                continue
            scale = min(1.0, WORK_WIDTH / mask.shape[1])
            small = cv2.resize(mask.astype(np.uint8), (round(mask.shape[1] * scale), round(mask.shape[0] * scale)),
                               interpolation=cv2.INTER_NEAREST) > 0
            pairs.append((views[f], Silhouette(small, scale, True)))
            masks[f] = mask
        if len(pairs) < 3:
            continue
        half = 0.5 * PROMPT_GROWTH * float(max(d.size[:2])) + 2 * band
        for _ in range(2):
            hull = carve(pairs, d.centre[:2], half, 0.0, 1.5 * float(d.size[2]))
            if hull.valid or not hull.touches_border:
                break
            half *= 1.5
        if not hull.valid:
            continue
        hb = hull_box(hull)
        pts = xyz[d.point_indices]
        keeps = in_box(pts, hb.centre, hb.size + 2 * (hull.voxel + band), hb.yaw).mean() if len(pts) else 0.0
        # the hull may complete the faces no camera saw, not outgrow the prompt: a longer hull is
        # the segmenter leaking into the background or a neighbour
        if keeps < HULL_KEEPS or float(max(hb.size[:2])) > PROMPT_GROWTH * float(max(d.size[:2])) + 2 * band:
            continue
        d.centre, d.size, d.yaw, d.method = hb.centre, hb.size, hb.yaw, "hull"
        d.boxes_2d = project_boxes(d.centre, d.size, d.yaw, {f: views[f] for f in d.views if f in views})
        if masks_dir is not None:
            masks_dir.mkdir(parents=True, exist_ok=True)
            for f, mask in masks.items():
                name = f"frame_{f:06d}_object_{d.object_id}.png"
                cv2.imwrite(str(masks_dir / name), mask.astype(np.uint8) * 255)
                d.masks[f] = f"{masks_dir.name}/{name}"
        replaced += 1
    return replaced


def discover_in_scene(model: Any, table: Any, metric: TableFrame, objects: list[Object3D], first_id: int,
                      images: Path | None = None, params: DiscoveryParams = DiscoveryParams(),
                      segmenter: Callable[[], Any] | None = None) -> tuple[list[Object3D], dict[str, Any]]:
    """The reconstruction's hook: `model` (tangram.stages.reconstruction.Model, SfM frame), `table`
    (TableEstimate, unit scale), the metric table frame and the placed objects (metric); `images`:
    the keyframes' folder (the boxes are then refined by silhouettes from `segmenter()`, the run's
    segmenter, made only when something was found; GrabCut when None; masks written into
    `discovered_masks/` beside it). Returns the discovered objects and the summary written into
    objects.json."""
    t = metric.table_from_world
    xyz = metric.apply(model.cloud.xyz)
    views = {f: v.transformed(t) for f, v in model.views.items()}
    band = float(table.threshold) * metric.scale / max(table.frame.scale, 1e-12)
    found = discover(xyz, model.cloud.seen_in, views, metric, band, objects, first_id, model.cloud.rgb,
                     model.errors, params)
    summary = found.summary()
    if images is not None and found.objects:
        made = segmenter() if segmenter is not None else None
        summary["hull_boxes"] = refine_with_silhouettes(found.objects, xyz, views, images, band, made,
                                                        masks_dir=images.parent / "discovered_masks")
        summary["segmenter"] = type(made).__name__ if made is not None else "GrabCutSegmenter"
    return [d.as_object() for d in found.objects], summary

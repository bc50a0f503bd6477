"""Objects are 3D entities: tracks whose 3D evidence coincides are one object.

A real object often reaches reconstruction as several tracks (the tracker lost it behind an
occluder, the camera swept past it twice, the detector called it "cup" here and "bottle" there).
Each fragment alone may be too short to count, but in 3D the fragments meet. Before any visibility
filter, every track is triangulated (`tangram.geometry.triangulation`); two tracks are fused when
- their classes are the same or confusable (`tangram.tracklets.CONFUSABLE_GROUPS`, the one table
  the 2D tracklet stitching uses too),
- their triangulated centres lie within the objects' own size of each other (the mean apparent
  width at that depth, times `OVERLAP_FACTOR`: their 3D boxes overlap), and
- they are never seen side by side: in a frame where both are detected, their boxes overlap (a
  duplicate detection of one thing), otherwise they are two objects.
The fused object keeps the smallest member track id (stable across stages: the scene graph and the
planner name it by that id), takes the class with the largest summed detection confidence, and
lists its member tracks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tangram.geometry.camera import View
from tangram.geometry.observations import Detection, Observations, TrackInfo, read_mask
from tangram.geometry.triangulation import Observation2D, Triangulation, triangulate
from tangram.metrics import box_iou
from tangram.tracklets import CONFUSABLE_GROUPS, confusable

__all__ = ["CONFUSABLE_GROUPS", "confusable"]  # re-exported: the stage lists the groups in objects.json

OVERLAP_FACTOR = 1.0  # centres closer than this times the mean apparent width: the boxes overlap
DUPLICATE_IOU = 0.5  # two detections in one frame with this overlap are one object seen twice


@dataclass
class TrackEvidence:
    track_id: int
    class_name: str
    observations: list[Observation2D]
    triangulation: Triangulation
    width: float  # median apparent width at the triangulated point (frame units), 0 when unknown
    bottom: np.ndarray | None = None  # median point under the box bottoms at the object's depth


@dataclass
class Fusion:
    members: dict[int, list[int]] = field(default_factory=dict)  # object id -> member track ids
    classes: dict[int, dict[str, float]] = field(default_factory=dict)  # object id -> class votes


def observations_2d(obs: Observations, track_id: int, views: Mapping[int, View]) -> list[Observation2D]:
    """The object's image centre in every registered view: mask centroid where masked, else box centre."""
    out = []
    for frame in obs.frames_of(track_id):
        if frame not in views:
            continue
        det = _det(obs, frame, track_id)
        pixel = _mask_centroid(det, views[frame])
        if pixel is None:
            x1, y1, x2, y2 = det.box
            pixel = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
        out.append(Observation2D(frame, pixel, np.asarray(det.box, float)))
    return out


def _mask_centroid(det: Detection, view: View) -> np.ndarray | None:
    if det.mask_path is None:
        return None
    mask = read_mask(det.mask_path, (view.intrinsics.height, view.intrinsics.width))
    if mask is None or not mask.any():
        return None
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


def _det(obs: Observations, frame: int, track_id: int) -> Detection:
    return next(d for d in obs.detections(frame) if d.track_id == track_id)


def track_evidence(obs: Observations, views: Mapping[int, View], seed: int = 0) -> dict[int, TrackEvidence]:
    out = {}
    for tid in sorted(obs.tracks):
        o2d = observations_2d(obs, tid, views)
        tri = triangulate(views, o2d, seed=seed)
        width = _apparent_width(views, o2d, tri.point) if tri.point is not None else 0.0
        bottom = _bottom(views, o2d, tri) if tri.credible else None
        out[tid] = TrackEvidence(tid, obs.tracks[tid].class_name, o2d, tri, width, bottom)
    return out


def _apparent_width(views: Mapping[int, View], o2d: list[Observation2D], point: np.ndarray) -> float:
    widths = []
    for o in o2d:
        view = views[o.frame]
        depth = float((point - view.centre) @ view.world_from_camera[:3, 2])
        if depth > 0:
            widths.append((o.box[2] - o.box[0]) * depth / view.intrinsics.fx)
    return float(np.median(widths)) if widths else 0.0


def _bottom(views: Mapping[int, View], o2d: list[Observation2D], tri: Triangulation) -> np.ndarray | None:
    """Where the object's silhouette ends below: the bottom-centre rays of its inlier boxes, taken
    to the object's depth (what it stands on lies just under that). Boxes cut by the image's lower
    edge say nothing about where the object ends: None when no other view is left."""
    pts = []
    for o in o2d:
        if o.frame not in tri.inliers:
            continue
        view = views[o.frame]
        if o.box[3] >= view.intrinsics.height - 3:  # cut by the image's lower edge: not its bottom
            continue
        axis = view.world_from_camera[:3, 2]
        depth = float((tri.point - view.centre) @ axis)
        origin, dirs = view.rays(np.array([[(o.box[0] + o.box[2]) / 2, o.box[3]]]))
        pts.append(origin + dirs[0] * depth / float(dirs[0] @ axis))
    return np.median(np.array(pts), axis=0) if pts else None


def _side_by_side(obs: Observations, a: int, b: int) -> bool:
    """Whether tracks a and b are ever detected in one frame as two separate things."""
    for frame in set(obs.frames_of(a)) & set(obs.frames_of(b)):
        if box_iou(_det(obs, frame, a).box, _det(obs, frame, b).box) < DUPLICATE_IOU:
            return True
    return False


def fuse_tracks(obs: Observations, evidence: dict[int, TrackEvidence]) -> Fusion:
    """Group tracks into objects (greedy, closest pairs first, every pair in a group compatible)."""
    placed = {t: e for t, e in evidence.items() if e.triangulation.credible and e.width > 0}
    pairs = []
    ids = sorted(placed)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            ea, eb = placed[a], placed[b]
            if not confusable(ea.class_name, eb.class_name):
                continue
            gap = float(np.linalg.norm(ea.triangulation.point - eb.triangulation.point))
            reach = OVERLAP_FACTOR * (ea.width + eb.width) / 2
            if gap < reach:
                pairs.append((gap / reach, a, b))
    group = {t: {t} for t in obs.tracks}
    for _, a, b in sorted(pairs):
        ga, gb = group[a], group[b]
        if ga is gb:
            continue
        if all(
            confusable(evidence[x].class_name, evidence[y].class_name) and not _side_by_side(obs, x, y)
            for x in ga
            for y in gb
        ):
            merged = ga | gb
            for t in merged:
                group[t] = merged
    fusion = Fusion()
    for members in {id(g): g for g in group.values()}.values():
        fusion.members[min(members)] = sorted(members)
    return fusion


def apply_fusion(obs: Observations, fusion: Fusion) -> None:
    """Relabel the detections of every fused object with its id and voted class (in place)."""
    owner = {t: oid for oid, ms in fusion.members.items() for t in ms}
    votes: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for dets in obs.by_frame.values():
        for d in dets:
            if d.track_id in owner:
                votes[owner[d.track_id]][d.class_name] += d.confidence
    for frame, dets in list(obs.by_frame.items()):
        best: dict[int, Detection] = {}
        others = []
        for d in dets:
            if d.track_id not in owner:
                others.append(d)
                continue
            oid = owner[d.track_id]
            if oid not in best or d.confidence > best[oid].confidence or (
                d.mask_path is not None and best[oid].mask_path is None
            ):
                best[oid] = d
        for oid, d in best.items():
            d.track_id = oid
        obs.by_frame[frame] = others + list(best.values())
    tracks = {}
    for oid in fusion.members:
        tally = votes.get(oid) or {obs.tracks[oid].class_name: 1.0}
        cls = max(sorted(tally), key=lambda c: tally[c])
        fusion.classes[oid] = {c: round(v, 3) for c, v in tally.items()}
        frames = obs.frames_of(oid)
        confs = [_det(obs, f, oid).confidence for f in frames]
        for f in frames:
            _det(obs, f, oid).class_name = cls
        tracks[oid] = TrackInfo(cls, len(frames), float(np.mean(confs)) if confs else 0.0)
    for t, info in obs.tracks.items():
        if t not in owner:
            tracks[t] = info
    obs.tracks = tracks

"""Placing an object from its 2D observations alone: robust multi-view ray intersection.

Textureless objects (cups, bottles, fruit) get few or no SIFT points, but every registered keyframe
that sees them gives a ray through the object's image centre (the mask centroid where there is a
mask, else the tracker box centre). The object's centre lies near all of them. Steps:
1. RANSAC over view pairs: the closest point of two rays that meet at a useful angle is a
   hypothesis; its inliers are the views whose box contains its projection (grown by a margin), in
   front of the camera;
2. least squares over the inliers: the point nearest to all inlier rays (sum of squared
   perpendicular distances), re-scored once;
3. credibility: at least `min_views` inlier views, most of the views agreeing (or at least
   `MIN_AGREEING` of them), and a wide enough angle between inlier rays for the depth to be fixed
   (`min_angle_deg`). A track that is two
   physical objects (an id switch) keeps the majority and reports the rest as outliers.
Works in any frame (the SfM world or the table frame); lengths are in that frame's units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from tangram.geometry.camera import View, distort

MIN_ANGLE_DEG = 3.0  # narrower baselines leave the depth along the rays unfixed
MIN_VIEWS = 2
MIN_INLIER_FRACTION = 0.5
MIN_AGREEING = 3  # this many views agreeing a wide angle apart is no coincidence, even as a minority
BOX_MARGIN = 0.15  # inlier: the projection falls in the box grown by this fraction per side
MAX_PAIRS = 400


@dataclass
class Observation2D:
    frame: int
    pixel: np.ndarray  # image centre of the object (mask centroid or box centre)
    box: np.ndarray  # x1, y1, x2, y2


@dataclass
class Triangulation:
    point: np.ndarray | None
    inliers: list[int] = field(default_factory=list)  # frames whose box holds the point
    views: int = 0  # registered views considered
    angle_deg: float = 0.0  # widest angle between two inlier rays
    residual_px: float = float("nan")  # median distance of the projection from the image centres
    credible: bool = False
    reason: str = ""

    def as_dict(self) -> dict:
        return {
            "point": None if self.point is None else [float(v) for v in self.point],
            "inlier_views": len(self.inliers),
            "views": self.views,
            "angle_deg": round(self.angle_deg, 2),
            "residual_px": None if not np.isfinite(self.residual_px) else round(self.residual_px, 1),
            "credible": self.credible,
            "reason": self.reason,
        }


def triangulate(
    views: Mapping[int, View],
    observations: list[Observation2D],
    min_angle_deg: float = MIN_ANGLE_DEG,
    min_views: int = MIN_VIEWS,
    seed: int = 0,
) -> Triangulation:
    obs = [o for o in observations if o.frame in views]
    if len(obs) < 2:
        return Triangulation(None, views=len(obs), reason=f"seen in {len(obs)} registered view(s)")
    stack = _Stack(views, obs)
    origins = np.array([views[o.frame].centre for o in obs])
    dirs = np.array([views[o.frame].rays(o.pixel[None])[1][0] for o in obs])
    pairs = list(combinations(range(len(obs)), 2))
    if len(pairs) > MAX_PAIRS:
        rng = np.random.default_rng(seed)
        pairs = [pairs[i] for i in rng.choice(len(pairs), MAX_PAIRS, replace=False)]
    cos_min = np.cos(np.deg2rad(min_angle_deg))
    ij = np.array(pairs, int).reshape(-1, 2)
    ij = ij[np.einsum("ij,ij->i", dirs[ij[:, 0]], dirs[ij[:, 1]]) <= cos_min]
    points, ok = _closest_points(origins[ij], dirs[ij])
    if not ok.any():
        return Triangulation(
            None, views=len(obs), reason=f"no two views see it {min_angle_deg:g} degrees apart"
        )
    points = points[ok]
    inl = stack.inliers(points)
    count, spread = inl.sum(axis=1), stack.spread(points, inl)
    # the most inliers, then the smallest spread, then the first pair (a stable choice)
    best = int(np.lexsort((np.arange(len(points)), spread, -count))[0])
    point, inl = points[best], inl[best]
    for _ in range(2):  # least squares on the inliers, then re-score
        refined, fine = _closest_points(origins[inl][None], dirs[inl][None])
        if not fine[0]:
            break
        new = stack.inliers(refined)[0]
        if new.sum() < inl.sum():
            break
        point, inl = refined[0], new
    angle = _widest_angle(dirs[inl])
    residual = float(stack.spread(point[None], inl[None])[0])
    result = Triangulation(point, [obs[k].frame for k in np.flatnonzero(inl)], len(obs), angle, residual)
    if inl.sum() < min_views:
        result.reason = f"only {int(inl.sum())} of {len(obs)} views agree on a position"
    elif inl.mean() < MIN_INLIER_FRACTION and inl.sum() < MIN_AGREEING:
        result.reason = f"views disagree: {int(inl.sum())} of {len(obs)} agree on a position"
    elif angle < min_angle_deg:
        result.reason = f"inlier rays only {angle:.1f} degrees apart: depth not fixed"
    else:
        result.credible = True
    return result


class _Stack:
    """The observations' cameras stacked, so that hypotheses project into all views at once."""

    def __init__(self, views: Mapping[int, View], obs: list[Observation2D]) -> None:
        cams = [views[o.frame] for o in obs]
        self.rot = np.array([v.cam_from_world[:3, :3] for v in cams])  # N x 3 x 3
        self.trans = np.array([v.cam_from_world[:3, 3] for v in cams])  # N x 3
        k = [v.intrinsics for v in cams]
        self.f = np.array([[i.fx, i.fy] for i in k])
        self.c = np.array([[i.cx, i.cy] for i in k])
        self.dist = np.array([i.distortion() for i in k])  # N x (k1, k2, p1, p2)
        box = np.array([o.box for o in obs], float)
        margin = BOX_MARGIN * (box[:, 2:] - box[:, :2])
        self.lo, self.hi = box[:, :2] - margin, box[:, 2:] + margin
        self.pixel = np.array([o.pixel for o in obs], float)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P x N x 2 pixels, P x N depths) of P points in the N views (the View.project model)."""
        cam = np.einsum("nij,pj->pni", self.rot, points) + self.trans
        depth = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = cam[..., 0] / depth, cam[..., 1] / depth
        uv = np.stack(distort(x, y, *self.dist.T), axis=-1) * self.f + self.c
        return uv, depth

    def inliers(self, points: np.ndarray) -> np.ndarray:
        """P x N: the view's box (grown by BOX_MARGIN) holds the point's projection, in front of it."""
        uv, depth = self.project(points)
        with np.errstate(invalid="ignore"):
            inside = np.all((uv >= self.lo) & (uv <= self.hi), axis=-1)
        return inside & (depth > 1e-9)

    def spread(self, points: np.ndarray, inl: np.ndarray) -> np.ndarray:
        """Per point: the median pixel distance of its projections from the inlier views' centres."""
        uv, _ = self.project(points)
        dist = np.where(inl, np.linalg.norm(uv - self.pixel, axis=-1), np.nan)
        out = np.full(len(points), np.inf)
        some = inl.any(axis=1)
        out[some] = np.nanmedian(dist[some], axis=1)
        return out


def _closest_points(origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of P ray bundles, the point minimising the summed squared distances to its K rays
    (origins, dirs: P x K x 3): (P x 3 points, P flags: well-conditioned, not (near) parallel rays,
    and in front of every camera)."""
    proj = np.eye(3) - dirs[..., :, None] * dirs[..., None, :]  # P x K x 3 x 3
    a = proj.sum(axis=1)
    b = np.einsum("pkij,pkj->pi", proj, origins)
    ok = np.linalg.cond(a) <= 1e8 if len(a) else np.zeros(0, bool)
    points = np.zeros((len(a), 3))
    if ok.any():
        points[ok] = np.linalg.solve(a[ok], b[ok][..., None])[..., 0]
    ahead = (np.einsum("pkj,pkj->pk", points[:, None, :] - origins, dirs) > 0).all(axis=1)
    return points, ok & ahead


def _widest_angle(dirs: np.ndarray) -> float:
    if len(dirs) < 2:
        return 0.0
    cos = np.clip(dirs @ dirs.T, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos.min())))

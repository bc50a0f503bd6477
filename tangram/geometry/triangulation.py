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

from tangram.geometry.camera import View

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
    origins = np.array([views[o.frame].centre for o in obs])
    dirs = np.array([views[o.frame].rays(o.pixel[None])[1][0] for o in obs])
    pairs = list(combinations(range(len(obs)), 2))
    if len(pairs) > MAX_PAIRS:
        rng = np.random.default_rng(seed)
        pairs = [pairs[i] for i in rng.choice(len(pairs), MAX_PAIRS, replace=False)]
    cos_min = np.cos(np.deg2rad(min_angle_deg))
    best: tuple[int, float, np.ndarray] | None = None
    for i, j in pairs:
        if dirs[i] @ dirs[j] > cos_min:
            continue
        point = _closest_point(origins[[i, j]], dirs[[i, j]])
        if point is None:
            continue
        inl = _inliers(views, obs, point)
        score = (int(inl.sum()), -_spread(views, obs, point, inl))
        if best is None or score > best[:2]:
            best = (score[0], score[1], point)
    if best is None:
        return Triangulation(
            None, views=len(obs), reason=f"no two views see it {min_angle_deg:g} degrees apart"
        )
    point = best[2]
    inl = _inliers(views, obs, point)
    for _ in range(2):  # least squares on the inliers, then re-score
        refined = _closest_point(origins[inl], dirs[inl])
        if refined is None:
            break
        new = _inliers(views, obs, refined)
        if new.sum() < inl.sum():
            break
        point, inl = refined, new
    angle = _widest_angle(dirs[inl])
    residual = _spread(views, obs, point, inl)
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


def _closest_point(origins: np.ndarray, dirs: np.ndarray) -> np.ndarray | None:
    """The point minimising the summed squared distances to the rays; None for (near) parallel rays."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for o, d in zip(origins, dirs, strict=True):
        proj = np.eye(3) - np.outer(d, d)
        a += proj
        b += proj @ o
    if np.linalg.cond(a) > 1e8:
        return None
    point = np.linalg.solve(a, b)
    if np.any(((point - origins) * dirs).sum(axis=1) <= 0):  # behind a camera
        return None
    return point


def _inliers(views: Mapping[int, View], obs: list[Observation2D], point: np.ndarray) -> np.ndarray:
    out = np.zeros(len(obs), bool)
    for k, o in enumerate(obs):
        uv, depth = views[o.frame].project(point[None])
        if depth[0] <= 0 or not np.all(np.isfinite(uv)):
            continue
        x1, y1, x2, y2 = o.box
        mx, my = BOX_MARGIN * (x2 - x1), BOX_MARGIN * (y2 - y1)
        u, v = uv[0]
        out[k] = x1 - mx <= u <= x2 + mx and y1 - my <= v <= y2 + my
    return out


def _spread(views: Mapping[int, View], obs: list[Observation2D], point: np.ndarray, inl: np.ndarray) -> float:
    dist = [
        float(np.linalg.norm(views[o.frame].project(point[None])[0][0] - o.pixel))
        for o, keep in zip(obs, inl, strict=True)
        if keep
    ]
    return float(np.median(dist)) if dist else float("inf")


def _widest_angle(dirs: np.ndarray) -> float:
    if len(dirs) < 2:
        return 0.0
    cos = np.clip(dirs @ dirs.T, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos.min())))

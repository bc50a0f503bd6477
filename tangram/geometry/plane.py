"""Planes: least-squares and RANSAC fits, and the gravity-aligned table frame built on one.

The table frame (shared convention): z up along the table normal with the table top at z = 0,
y forward = the first camera's viewing direction projected onto the table, x = y × z to the right,
origin at the centre of the visible table top. It is a similarity of the SfM world: its scale
turns SfM units into metres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Plane:
    normal: np.ndarray  # unit 3-vector
    offset: float  # normal · x + offset = 0 on the plane

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distances (positive on the normal's side)."""
        return points @ self.normal + self.offset

    def flipped(self) -> Plane:
        return Plane(-self.normal, -self.offset)


def fit_plane(points: np.ndarray) -> Plane:
    """Total least squares: the normal is the direction of least variance."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    normal = vt[-1] / np.linalg.norm(vt[-1])
    return Plane(normal, float(-normal @ centre))


def ransac_plane(
    points: np.ndarray,
    threshold: float,
    iterations: int = 400,
    seed: int = 0,
    accept: Callable[[np.ndarray], bool] | None = None,
) -> tuple[Plane, np.ndarray] | None:
    """Plane with most points within `threshold`, refined on its inliers; None if < 3 points or
    no sampled plane passes `accept`.

    accept: a filter on each sampled plane's unit normal (its sign is arbitrary), e.g. "within 15
    degrees of up"; the refined plane must pass it too."""
    if len(points) < 3:
        return None
    rng = np.random.default_rng(seed)
    best: np.ndarray | None = None
    for _ in range(iterations):
        a, b, c = points[rng.choice(len(points), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        norm = np.linalg.norm(normal)
        if norm < 1e-12:
            continue
        normal /= norm
        if accept is not None and not accept(normal):
            continue
        inliers = np.abs((points - a) @ normal) < threshold
        if best is None or inliers.sum() > best.sum():
            best = inliers
    if best is None or best.sum() < 3:
        return None
    plane = fit_plane(points[best])
    # one re-estimation pass: the refined plane may take in a few more points
    inliers = np.abs(plane.distance(points)) < threshold
    refined = fit_plane(points[inliers])
    if accept is None or accept(refined.normal):
        return refined, inliers
    return (plane, best) if accept(plane.normal) else None


@dataclass
class TableFrame:
    table_from_world: np.ndarray  # 4x4 similarity (scale * rotation | translation)
    size: tuple[float, float]  # axis-aligned extent of the visible table top in the table frame
    rect_size: tuple[float, float]  # sides of its minimum-area rectangle
    rect_yaw: float  # radians, orientation of that rectangle's first side from the x axis
    rect_center: tuple[float, float] = (0.0, 0.0)  # its centre in the table frame
    origin: str = "visible table centre"  # how the origin was chosen

    @property
    def scale(self) -> float:
        return float(np.cbrt(np.linalg.det(self.table_from_world[:3, :3])))

    def apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.table_from_world[:3, :3].T + self.table_from_world[:3, 3]

    def rescaled(self, factor: float) -> TableFrame:
        """The same frame with lengths multiplied by `factor` (unscaled units -> metres)."""
        m = self.table_from_world.copy()
        m[:3] *= factor
        sx, sy = self.size
        rx, ry = self.rect_size
        cx, cy = self.rect_center
        return TableFrame(
            m,
            (sx * factor, sy * factor),
            (rx * factor, ry * factor),
            self.rect_yaw,
            (cx * factor, cy * factor),
            self.origin,
        )


def build_table_frame(
    plane: Plane,
    first_world_from_camera: np.ndarray,
    table_points: np.ndarray,
    camera_centres: np.ndarray,
    fixation: np.ndarray | None = None,
) -> TableFrame:
    """Table frame on `plane` (unit scale) from the first camera and the table-top points.

    The origin is the camera's fixation point on the table when given and over the visible table
    (a person filming a tabletop keeps the scene's centre in view; the table itself is often only
    partly visible, so the centre of its visible part is a poorer guess), else that visible centre.
    """
    # cameras look at the table from above: the normal must point to their side
    if np.median(plane.distance(camera_centres)) < 0:
        plane = plane.flipped()
    up = plane.normal
    forward = first_world_from_camera[:3, 2] - (first_world_from_camera[:3, 2] @ up) * up
    if np.linalg.norm(forward) < 1e-6:  # first camera looks straight down: use its image "up" instead
        forward = -first_world_from_camera[:3, 1] + (first_world_from_camera[:3, 1] @ up) * up
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    rotation = np.vstack([right, forward, up])  # rows: table axes in world coordinates
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = -rotation @ (-plane.offset * up)  # a point on the plane maps to z = 0
    local = table_points @ m[:3, :3].T + m[:3, 3]
    centre, size, rect_size, yaw = _table_extent(local[:, :2])
    origin, how = centre, "visible table centre"
    if fixation is not None:
        fix = (m[:3, :3] @ fixation + m[:3, 3])[:2]
        # accept it only over the visible table (grown by a quarter): a panning camera fixates nowhere
        if np.all(np.abs(fix - centre) <= 0.625 * np.array(size) + 1e-9):
            origin, how = fix, "camera fixation point"
    m[:2, 3] -= origin
    rect_center = (float(centre[0] - origin[0]), float(centre[1] - origin[1]))
    return TableFrame(m, size, rect_size, yaw, rect_center, how)


def _table_extent(xy: np.ndarray) -> tuple[np.ndarray, tuple[float, float], tuple[float, float], float]:
    """Centre, axis-aligned size, rectangle sides and yaw of the table-top points (2-98 % trimmed)."""
    if len(xy) < 3:
        return np.zeros(2), (0.0, 0.0), (0.0, 0.0), 0.0
    lo, hi = np.percentile(xy, [2, 98], axis=0)
    core = xy[np.all((xy >= lo) & (xy <= hi), axis=1)]
    (cx, cy), (w, h), angle = cv2.minAreaRect(core.astype(np.float32))
    corners = cv2.boxPoints(((cx, cy), (w, h), angle))
    centre = np.array([cx, cy])
    size = tuple(float(v) for v in corners.max(axis=0) - corners.min(axis=0))
    return centre, size, (float(w), float(h)), float(np.deg2rad(angle))

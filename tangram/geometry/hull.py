"""Visual hull (shape from silhouettes, Laurentini 1994) of one object on the table.

Sparse SIFT points miss textureless objects (a plain mug, a white bowl), but their silhouettes in
posed views still bound them: a voxel above the table belongs to the object only if it projects
inside the object's silhouette in (nearly) every view that sees it. Voting (a share of views rather
than all) tolerates a few bad masks and partial occlusions. Works in the table frame (z up, top at 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from tangram.geometry.camera import View
from tangram.geometry.silhouettes import Silhouette


@dataclass
class Hull:
    voxels: np.ndarray  # Nx3 centres of occupied voxels
    voxel: float  # voxel edge length
    touches_border: bool  # the hull reached the side of the grid: the grid was too small
    z0: float = 0.0  # height of the grid's floor

    @property
    def valid(self) -> bool:
        return len(self.voxels) >= 8 and not self.touches_border


def carve(
    views: Sequence[tuple[View, Silhouette]],
    centre_xy: np.ndarray,
    half_width: float,
    z_lo: float,
    z_hi: float,
    resolution: int = 40,
    agreement: float = 0.9,
) -> Hull:
    """Carve voxels spanning centre ± half_width in x and y (resolution per side) and [z_lo, z_hi]."""
    voxel = 2 * half_width / resolution
    nz = max(4, int(np.ceil((z_hi - z_lo) / voxel)))
    ax = (np.arange(resolution) + 0.5) * voxel - half_width
    az = (np.arange(nz) + 0.5) * voxel + z_lo
    gx, gy, gz = np.meshgrid(ax + centre_xy[0], ax + centre_xy[1], az, indexing="ij")
    grid = np.column_stack([gx.ravel(), gy.ravel(), gz.ravel()])
    inside = np.zeros(len(grid), np.int32)
    seen = np.zeros(len(grid), np.int32)
    for view, sil in views:
        uv, _ = view.project(grid)
        informative, hit = sil.evidence(uv)
        seen += informative
        inside += hit
    need = np.maximum(2, np.ceil(agreement * seen))
    occupied = (inside >= need) & (seen >= 2)
    occ = occupied.reshape(resolution, resolution, nz)
    border = bool(occ[0].any() or occ[-1].any() or occ[:, 0].any() or occ[:, -1].any())
    return Hull(grid[occupied], voxel, border, z_lo)


@dataclass
class HullBox:
    centre: np.ndarray  # 3
    size: np.ndarray  # 3: along the box's own x, y and z
    yaw: float  # radians, box x axis from the table x axis


def hull_box(hull: Hull) -> HullBox:
    """Oriented box of the hull: minimum-area rectangle of its footprint, bottom to top in z.

    The top is where the hull's cross-section shrinks below half its typical area, not the highest
    voxel: silhouettes seen from above leave a cone-shaped cap over flat tops that the maximum would
    count as height. The bottom is the lowest layer with a tenth of the typical area (a bowl's foot
    is narrow but real).
    """
    xy = hull.voxels[:, :2].astype(np.float32)
    (cx, cy), (w, h), angle = cv2.minAreaRect(xy)
    bottom, top = _vertical_extent(hull)
    size = np.array([w + hull.voxel, h + hull.voxel, top - bottom])
    return HullBox(np.array([cx, cy, (top + bottom) / 2]), size, float(np.deg2rad(angle)))


def _vertical_extent(hull: Hull) -> tuple[float, float]:
    z = hull.voxels[:, 2]
    # voxel centres sit at (k + 0.5) * voxel above the grid's floor
    levels, counts = np.unique(np.round((z - hull.z0) / hull.voxel - 0.5).astype(int), return_counts=True)
    typical = np.median(counts[counts >= np.percentile(counts, 50)])
    top = levels[counts >= 0.5 * typical].max()
    bottom = levels[counts >= 0.1 * typical].min()
    return float(hull.z0 + bottom * hull.voxel), float(hull.z0 + (top + 1) * hull.voxel)

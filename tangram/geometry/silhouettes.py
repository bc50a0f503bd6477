"""Per-view object silhouettes (masks or tracker boxes) at a reduced working resolution.

Masks are full-resolution PNGs; the hull and the point assignment only need a coarse version, so
each is read once, downscaled to at most WORK_WIDTH pixels wide and cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tangram.geometry.camera import View
from tangram.geometry.observations import Detection, Observations, box_mask, read_mask

WORK_WIDTH = 480


@dataclass
class Silhouette:
    mask: np.ndarray  # bool, working resolution
    scale: float  # working pixels per original pixel
    from_mask: bool  # False: the tracker box stands in for the mask

    def contains(self, uv: np.ndarray) -> np.ndarray:
        """Which original-resolution pixels uv (Nx2, NaN allowed) fall inside; NaN/outside -> False."""
        h, w = self.mask.shape
        cols = np.floor(uv[:, 0] * self.scale)
        rows = np.floor(uv[:, 1] * self.scale)
        ok = np.isfinite(cols) & np.isfinite(rows) & (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
        out = np.zeros(len(uv), bool)
        out[ok] = self.mask[rows[ok].astype(int), cols[ok].astype(int)]
        return out

    def evidence(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(informative, inside) per pixel position uv (Nx2, NaN for points behind the camera).

        Inside the image every position is informative. Outside it, a position past an image side
        the silhouette does not touch is informative too (the object would reach that side if it
        extended there); past a side the silhouette touches, the object may continue unseen.
        """
        h, w = self.mask.shape
        u, v = uv[:, 0] * self.scale, uv[:, 1] * self.scale
        finite = np.isfinite(u) & np.isfinite(v)
        left, top, right, bottom = self.touches
        with np.errstate(invalid="ignore"):
            unknown = (left & (u < 0)) | (right & (u >= w)) | (top & (v < 0)) | (bottom & (v >= h))
        return finite & ~unknown, self.contains(uv)

    @property
    def touches(self) -> tuple[bool, bool, bool, bool]:
        """Whether the silhouette reaches the left, top, right and bottom image borders."""
        m = self.mask
        return bool(m[:, 0].any()), bool(m[0].any()), bool(m[:, -1].any()), bool(m[-1].any())


@dataclass
class SilhouetteCache:
    obs: Observations
    views: dict[int, View]
    box_shrink: float = 0.0
    _cache: dict[tuple[int, int], Silhouette | None] = field(default_factory=dict)

    def get(self, frame_index: int, det: Detection) -> Silhouette | None:
        key = (frame_index, det.track_id)
        if key not in self._cache:
            self._cache[key] = self._load(frame_index, det)
        return self._cache[key]

    def _load(self, frame_index: int, det: Detection) -> Silhouette | None:
        view = self.views.get(frame_index)
        if view is None:
            return None
        width, height = view.intrinsics.width, view.intrinsics.height
        scale = min(1.0, WORK_WIDTH / width)
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        if det.mask_path is not None:
            mask = read_mask(det.mask_path, shape)
            if mask is not None and mask.any():
                return Silhouette(mask, scale, True)
        return Silhouette(box_mask(det.box, shape, scale, self.box_shrink), scale, False)

"""Posed pinhole cameras in plain numpy: projection and back-projection of many points at once.

Pixel convention: COLMAP's, the image spans [0, W] x [0, H] and pixel (col, row) covers
[col, col+1) x [row, row+1); the same as detector boxes, so `floor(u)` indexes a mask column.
Lens models: COLMAP's SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL and OPENCV parameter layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tangram.errors import TangramError

SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


def distort(x: np.ndarray, y: np.ndarray, k1, k2, p1, p2) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP's radial-tangential model on normalised coordinates (any shapes that broadcast, the
    coefficients scalars or per-view arrays): the distorted (x, y)."""
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return x * radial + dx, y * radial + dy


@dataclass(frozen=True)
class Intrinsics:
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in SUPPORTED_MODELS:
            raise TangramError(
                f"camera model {self.model} is not supported; use one of {', '.join(SUPPORTED_MODELS)}"
            )

    @property
    def fx(self) -> float:
        return self.params[0]

    @property
    def fy(self) -> float:
        return self.params[1] if self.model in ("PINHOLE", "OPENCV") else self.params[0]

    @property
    def cx(self) -> float:
        return self.params[2] if self.model in ("PINHOLE", "OPENCV") else self.params[1]

    @property
    def cy(self) -> float:
        return self.params[3] if self.model in ("PINHOLE", "OPENCV") else self.params[2]

    def distortion(self) -> tuple[float, float, float, float]:
        """(k1, k2, p1, p2)."""
        p = self.params
        if self.model == "SIMPLE_RADIAL":
            return p[3], 0.0, 0.0, 0.0
        if self.model == "RADIAL":
            return p[3], p[4], 0.0, 0.0
        if self.model == "OPENCV":
            return p[4], p[5], p[6], p[7]
        return 0.0, 0.0, 0.0, 0.0

    def _distort(self, xy: np.ndarray) -> np.ndarray:
        return np.column_stack(distort(xy[:, 0], xy[:, 1], *self.distortion()))

    def pixels_from_normalised(self, xy: np.ndarray) -> np.ndarray:
        d = self._distort(xy)
        return np.column_stack([self.fx * d[:, 0] + self.cx, self.fy * d[:, 1] + self.cy])

    def normalised_from_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Undistorted normalised coordinates; fixed-point iteration (distortion here is mild)."""
        target = np.column_stack([(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy])
        xy = target.copy()
        if self.distortion() == (0.0, 0.0, 0.0, 0.0):
            return xy
        for _ in range(20):
            xy = xy + (target - self._distort(xy))
        return xy

    def scaled(self, factor: float) -> Intrinsics:
        """The same camera for images resized by `factor` (COLMAP pixel convention keeps this exact)."""
        p = list(self.params)
        n = 4 if self.model in ("PINHOLE", "OPENCV") else 3
        p[:n] = [v * factor for v in p[:n]]
        return Intrinsics(self.model, round(self.width * factor), round(self.height * factor), tuple(p))


@dataclass
class View:
    """One registered image: its frame, intrinsics and pose."""

    frame_index: int
    intrinsics: Intrinsics
    world_from_camera: np.ndarray  # 4x4, OpenCV camera axes
    image: str = ""
    _cam_from_world: np.ndarray = field(init=False, repr=False)
    _rot_t: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.world_from_camera = np.asarray(self.world_from_camera, float)
        self._cam_from_world = np.linalg.inv(self.world_from_camera)
        # contiguous: numpy's matmul takes its fast (BLAS) path only then, 4x faster than `.T`
        self._rot_t = np.ascontiguousarray(self._cam_from_world[:3, :3].T)

    @property
    def centre(self) -> np.ndarray:
        return self.world_from_camera[:3, 3]

    @property
    def cam_from_world(self) -> np.ndarray:
        return self._cam_from_world

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Nx2 pixels, N depths) of world points; pixels of points behind the camera are NaN."""
        cam = points @ self._rot_t + self._cam_from_world[:3, 3]
        depth = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = cam[:, :2] / depth[:, None]
        uv = self.intrinsics.pixels_from_normalised(xy)
        uv[depth <= 1e-9] = np.nan
        return uv, depth

    def rays(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(origin 3, Nx3 unit directions in world) of the rays through pixels uv."""
        xy = self.intrinsics.normalised_from_pixels(np.asarray(uv, float).reshape(-1, 2))
        cam_dirs = np.column_stack([xy, np.ones(len(xy))])
        dirs = cam_dirs @ self.world_from_camera[:3, :3].T
        return self.centre, dirs / np.linalg.norm(dirs, axis=1, keepdims=True)

    def transformed(self, new_from_old: np.ndarray) -> View:
        """This view after a similarity of the world (scale is taken out of the rotation)."""
        linear = new_from_old[:3, :3]
        scale = float(np.cbrt(np.linalg.det(linear)))
        pose = np.eye(4)
        pose[:3, :3] = linear @ self.world_from_camera[:3, :3] / scale
        pose[:3, 3] = linear @ self.world_from_camera[:3, 3] + new_from_old[:3, 3]
        return View(self.frame_index, self.intrinsics, pose, self.image)

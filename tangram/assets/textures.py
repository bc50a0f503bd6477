"""Procedural, non-repetitive textures for the sample scene.

COLMAP needs many *distinctive* SIFT features: a tiled or periodic pattern (a checkerboard floor)
matches itself at the wrong place and folds the camera poses. Every texture here is built from
multi-octave value noise plus randomly placed shapes, so no patch looks like another. All of it is
drawn from one numpy Generator, so the same seed gives byte-identical images.
"""

from __future__ import annotations

import cv2
import numpy as np

Rgb = tuple[int, int, int]


def value_noise(rng: np.random.Generator, size: int, octaves: int = 6, base_cells: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1], shape (size, size): random grids upsampled and summed."""
    total = np.zeros((size, size), np.float32)
    amplitude, norm = 1.0, 0.0
    cells = base_cells
    for _ in range(octaves):
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        total += amplitude * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        norm += amplitude
        amplitude *= 0.55
        cells *= 2
    total /= norm
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def _blend(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a * (1.0 - t[..., None]) + b * t[..., None]


def _colour(rng: np.random.Generator, lo: int = 30, hi: int = 230) -> Rgb:
    r, g, b = rng.integers(lo, hi, size=3)
    return int(r), int(g), int(b)


def _scatter_ellipses(img: np.ndarray, rng: np.random.Generator, count: int, radius: tuple[int, int],
                      palette: list[Rgb] | None = None, alpha: float = 0.8) -> None:
    """Draw `count` random filled ellipses in place, each with its own colour and shape."""
    size = img.shape[0]
    for _ in range(count):
        overlay = img.copy()
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        axes = (int(rng.integers(*radius)), int(rng.integers(*radius)))
        angle = float(rng.uniform(0, 180))
        colour = palette[int(rng.integers(len(palette)))] if palette else _colour(rng)
        cv2.ellipse(overlay, centre, axes, angle, 0, 360, colour, -1, lineType=cv2.LINE_AA)
        cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0, dst=img)


def wood_texture(rng: np.random.Generator, size: int = 1024) -> np.ndarray:
    """A light oak table top: noise-distorted grain, knots, and a few stains and pen marks (RGB uint8)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    warp = value_noise(rng, size, octaves=5, base_cells=3)
    fine = value_noise(rng, size, octaves=4, base_cells=32)
    grain = np.sin((yy * 38.0 + warp * 9.0 + xx * 1.5) * np.pi) * 0.5 + 0.5
    grain = grain**3 * 0.6 + fine * 0.4
    light = np.array([214, 178, 128], np.float32)
    dark = np.array([150, 104, 62], np.float32)
    img = _blend(light, dark, grain).astype(np.uint8)
    # Knots: dark rings that break the grain's regularity.
    for _ in range(int(rng.integers(6, 10))):
        cx, cy = rng.uniform(0, size, 2)
        r = np.hypot((xx * size - cx) / 1.8, yy * size - cy)
        ring = (np.sin(r / rng.uniform(2.0, 3.5)) * 0.5 + 0.5) * np.exp(-r / rng.uniform(12, 25))
        img = _blend(img.astype(np.float32), dark * 0.8, np.clip(ring, 0, 1)).astype(np.uint8)
    palette = [(120, 80, 50), (90, 60, 40), (170, 140, 100), (60, 60, 90), (140, 40, 40)]
    _scatter_ellipses(img, rng, 90, (4, 22), palette, alpha=0.35)
    for _ in range(40):  # scratches and pen strokes: thin random polylines
        pts = np.cumsum(rng.normal(0, 12, (6, 2)), axis=0) + rng.uniform(0, size, 2)
        colour = palette[int(rng.integers(len(palette)))]
        cv2.polylines(img, [pts.astype(np.int32)], False, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def terrazzo_texture(rng: np.random.Generator, size: int = 2048) -> np.ndarray:
    """A floor of grey-beige stone with thousands of randomly coloured chips (RGB uint8)."""
    base = value_noise(rng, size, octaves=7, base_cells=6)
    img = _blend(np.array([120, 115, 105], np.float32), np.array([200, 192, 178], np.float32), base)
    img = img.astype(np.uint8)
    palette = [(40, 40, 45), (230, 225, 210), (160, 60, 40), (70, 110, 140), (190, 160, 80), (90, 130, 80)]
    _scatter_ellipses(img, rng, 160, (20, 70), None, alpha=0.25)  # large soft patches
    # Chips: drawn opaque directly (one by one blending would take seconds at this size).
    for _ in range(9000):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        axes = (int(rng.integers(2, 9)), int(rng.integers(2, 9)))
        colour = palette[int(rng.integers(len(palette)))]
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    return img


def wall_texture(rng: np.random.Generator, size: int = 2048) -> np.ndarray:
    """Plaster walls with random posters, shelves and blotches (RGB uint8)."""
    base = value_noise(rng, size, octaves=6, base_cells=8)
    img = _blend(np.array([196, 200, 206], np.float32), np.array([232, 230, 222], np.float32), base)
    img = img.astype(np.uint8)
    _scatter_ellipses(img, rng, 120, (10, 60), None, alpha=0.2)
    for _ in range(40):  # posters: a coloured frame filled with random shapes
        w, h = (int(v) for v in rng.integers(60, 220, 2))
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        poster = np.full((h, w, 3), _colour(rng, 120, 250), np.uint8)
        _scatter_ellipses(poster, rng, int(rng.integers(8, 25)), (4, max(6, min(w, h) // 3)), None, 0.9)
        for _ in range(int(rng.integers(2, 6))):
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.rectangle(poster, p1, p2, _colour(rng), int(rng.integers(1, 4)))
        cv2.rectangle(poster, (0, 0), (w - 1, h - 1), _colour(rng, 10, 80), 4)
        img[y:y + h, x:x + w] = poster
    return img

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
    """A pale birch table top: faint noise-warped grain, knots and a few stains (RGB uint8).

    Low contrast on purpose: strong dark grain and pen strokes around the objects cut the
    detector's confidence (measured: the tennis ball's detection rate fell by about a third),
    while the fine noise still gives SIFT plenty of distinctive corners.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    warp = value_noise(rng, size, octaves=5, base_cells=3)
    fine = value_noise(rng, size, octaves=4, base_cells=48)
    grain = np.sin((yy * 38.0 + warp * 9.0 + xx * 1.5) * np.pi) * 0.5 + 0.5
    grain = (grain**3 * 0.5 + fine * 0.5) * 0.45
    light = np.array([236, 222, 196], np.float32)
    dark = np.array([176, 146, 106], np.float32)
    img = _blend(light, dark, grain)
    # Knots: faint rings that break the grain's regularity.
    for _ in range(int(rng.integers(5, 9))):
        cx, cy = rng.uniform(0, size, 2)
        r = np.hypot((xx * size - cx) / 1.8, yy * size - cy)
        ring = (np.sin(r / rng.uniform(2.0, 3.5)) * 0.5 + 0.5) * np.exp(-r / rng.uniform(10, 20))
        img = _blend(img, dark, np.clip(ring * 0.7, 0, 1))
    img = img.astype(np.uint8)
    palette = [(200, 170, 130), (180, 150, 120), (210, 195, 160), (170, 165, 175)]
    _scatter_ellipses(img, rng, 40, (4, 18), palette, alpha=0.3)
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
    for _ in range(24):  # posters: a coloured frame filled with random shapes
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


def fur_texture(rng: np.random.Generator, colour: Rgb, size: int = 256) -> np.ndarray:
    """Plush fur: the colour modulated by fine noise and short darker strands (RGB uint8)."""
    noise = value_noise(rng, size, octaves=6, base_cells=16)[..., None]
    img = np.clip(np.array(colour, np.float32) * (0.78 + 0.44 * noise), 0, 255).astype(np.uint8)
    dark = tuple(int(c * 0.7) for c in colour)
    for _ in range(600):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
        cv2.line(img, (x, y), (x + dx, y + dy), dark, 1, cv2.LINE_AA)
    return img


def tennis_ball_texture(rng: np.random.Generator, width: int = 512) -> np.ndarray:
    """Equirectangular map of a tennis ball (u = longitude, v = latitude): optic yellow felt and the
    curved white seam that crosses the equator four times (RGB uint8)."""
    height = width // 2
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    lon = u / width * 2 * np.pi
    lat = (v / height - 0.5) * np.pi
    felt = value_noise(rng, width, octaves=5, base_cells=32)[:height, :, None]
    # Saturated optic yellow and a broad seam: a duller, noisier felt was detected about a third
    # less often as "sports ball" (measured on the sample's views).
    img = np.array([215, 240, 30], np.float32) * (0.9 + 0.2 * felt)
    seam = 0.45 * (np.pi / 2) * np.sin(2 * lon)
    img[np.abs(lat - seam) < 0.07] = (250, 250, 245)
    return np.clip(img, 0, 255).astype(np.uint8)

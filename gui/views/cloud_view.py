"""The reconstruction in 3D: point cloud, object boxes and camera path (matplotlib, software drawn,
so it works offscreen and without OpenGL). Drag to rotate, scroll to zoom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PyQt6.QtWidgets import QLabel, QVBoxLayout, QWidget

from gui.artefacts import (
    Object3D,
    PointCloud,
    box_corners,
    camera_path,
    load_cameras,
    load_objects,
    read_ply,
    table_outline,
)
from gui.frames import track_colour
from gui.views.base import ResultView

MAX_POINTS = 20000  # matplotlib redraws every point on each rotation: keep it interactive
_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


class CloudView(ResultView):
    title = "3D"
    stages = ("reconstruction",)

    def build_content(self) -> QWidget:
        self.figure = Figure(figsize=(6, 5), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.mpl_connect("scroll_event", self._on_scroll)
        self.info = QLabel()
        self.info.setWordWrap(True)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self.info)
        layout.addWidget(self.canvas, 1)
        self.ax: Any = None
        self.counts = {"points": 0, "objects": 0, "cameras": 0}
        self.shown_points = 0
        return content

    def load(self, run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
        folder = run_dir / "reconstruction"
        cloud = read_ply(folder / "points.ply")
        objects = load_objects(folder)
        cameras_json = load_cameras(folder)
        cameras = camera_path(cameras_json)
        scale = cameras_json.get("scale") or {}
        self._draw(cloud, objects, cameras, table_outline(cameras_json))
        self.counts = {"points": len(cloud.xyz), "objects": len(objects), "cameras": len(cameras)}
        metres = scale.get("metres_per_unit")
        scale_text = f"scale from {scale.get('method', '?')}" + (f" ({metres:.4g} m/unit)" if metres else "")
        self.info.setText(
            f"{len(cloud.xyz)} points ({self.shown_points} around the table shown), {len(objects)} objects, "
            f"{len(cameras)} cameras; table frame in metres, z up; {scale_text}. "
            "Drag to rotate, scroll to zoom.")

    def _draw(self, cloud: PointCloud, objects: list[Object3D], cameras: np.ndarray,
              table: np.ndarray | None) -> None:
        self.figure.clear()
        ax = self.figure.add_subplot(projection="3d")
        self.ax = ax
        centre, half = scene_region(cloud.xyz, objects, cameras, table)
        xyz, rgb = _subsample(cloud, centre, half)
        self.shown_points = len(xyz)
        if len(xyz):
            colours = rgb / 255.0 if rgb is not None else "0.4"
            ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], s=2, c=colours, depthshade=False, linewidths=0)
        if table is not None:
            loop = np.vstack([table, table[:1]])
            ax.plot(loop[:, 0], loop[:, 1], loop[:, 2], "-", color="saddlebrown", lw=1.2)
        for obj in objects:
            _draw_box(ax, obj)
        if len(cameras):
            ax.plot(cameras[:, 0], cameras[:, 1], cameras[:, 2], "-", color="tab:orange", lw=2)
            ax.scatter(*cameras[0], color="tab:orange", s=40, marker="^")
            ax.text(*cameras[0], " camera start", color="tab:orange", fontsize=8)
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.set_zlabel("z (m)")
        for axis, set_lim in enumerate((ax.set_xlim3d, ax.set_ylim3d, ax.set_zlim3d)):
            set_lim(centre[axis] - half[axis], centre[axis] + half[axis])
        ax.set_box_aspect(tuple(half), zoom=1.15)  # one metre is as long on every axis
        self.canvas.draw_idle()

    def _on_scroll(self, event: Any) -> None:
        if self.ax is None:
            return
        factor = 0.85 if event.button == "up" else 1 / 0.85
        for get, set_ in ((self.ax.get_xlim3d, self.ax.set_xlim3d), (self.ax.get_ylim3d, self.ax.set_ylim3d),
                          (self.ax.get_zlim3d, self.ax.set_zlim3d)):
            lo, hi = get()
            mid, half = (lo + hi) / 2, (hi - lo) / 2 * factor
            set_(mid - half, mid + half)
        self.canvas.draw_idle()

    def clear(self) -> None:
        self.figure.clear()
        self.ax = None


def _subsample(cloud: PointCloud, centre: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The points inside the shown box (matplotlib does not clip 3D scatter), at most MAX_POINTS."""
    inside = np.all(np.abs(cloud.xyz - centre) <= half, axis=1) if len(cloud.xyz) else np.zeros(0, bool)
    index = np.flatnonzero(inside)
    if len(index) > MAX_POINTS:
        index = np.sort(np.random.default_rng(0).choice(index, MAX_POINTS, replace=False))
    return cloud.xyz[index], None if cloud.rgb is None else cloud.rgb[index]


def _draw_box(ax: Any, obj: Object3D) -> None:
    corners = box_corners(obj.center, obj.size, obj.yaw)
    b, g, r = track_colour(obj.track_id)
    colour = (r / 255, g / 255, b / 255)
    style = "--" if obj.fallback else "-"  # a fallback box is a guess from fewer points
    for i, j in _EDGES:
        ax.plot(*zip(corners[i], corners[j], strict=True), style, color=colour, lw=1.5)
    top = obj.center + np.array([0, 0, obj.size[2] / 2])
    ax.text(*top, f"#{obj.track_id} {obj.class_name}", color=colour, fontsize=8)


def scene_region(points: np.ndarray, objects: list[Object3D], cameras: np.ndarray,
                 table: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Centre and per-axis half-sizes of the box shown: the table, the objects and the cameras with a
    margin; only when there are none of those, the bulk of the points (SfM's far stray points never)."""
    parts = [box_corners(o.center, o.size, o.yaw) for o in objects]
    if table is not None:
        parts.append(table)
    if len(cameras):
        parts.append(cameras)
    if not parts and len(points):
        parts.append(np.percentile(points, [5, 95], axis=0))
    if not parts:
        return np.zeros(3), np.ones(3)
    pts = np.vstack(parts)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    half = (hi - lo) / 2 * 1.15
    # no axis thinner than a fifth of the widest: a flat scene stays readable
    return (lo + hi) / 2, np.maximum(half, max(float(half.max()) / 5, 0.02))

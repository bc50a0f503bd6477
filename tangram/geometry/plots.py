"""Top-down picture of a scene graph: the table, objects as coloured boxes with labels, relations.

Seen from above in the table frame: x to the right, y away from the first camera (up the page).
Support relations are written under the labels; "near" pairs are joined by dashed lines; the four
directional relations would clutter the picture and are only counted in the title.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to files only

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
from matplotlib.patches import Polygon

from tangram.fileio import atomic_path
from tangram.geometry.export import box_corners


def plot_top_down(graph: nx.MultiDiGraph, path: Path, cameras: list[np.ndarray] | None = None) -> None:
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    table = graph.nodes.get("table", {})
    rect = table.get("rect_size") or table.get("size") or [1.0, 1.0]
    centre = [*table.get("rect_center", [0.0, 0.0]), 0.0]
    corners = box_corners(centre, [rect[0], rect[1], 0.0], table.get("rect_yaw", 0.0))[[0, 1, 3, 2], :2]
    ax.add_patch(
        Polygon(
            corners,
            closed=True,
            facecolor="#e8dcc4",
            edgecolor="#8a7350",
            lw=1.5,
            label="table (visible top)",
        )
    )
    objects = [(n, d) for n, d in graph.nodes(data=True) if d.get("kind") == "object"]
    for node, data in objects:
        _draw_object(ax, node, data, _support_text(graph, node))
    _draw_near(ax, graph)
    if cameras:
        _draw_cameras(ax, cameras)
    counts = _relation_counts(graph)
    ax.set_title(
        "Scene graph, top view (table frame, metres)\n" + ", ".join(f"{k}: {v}" for k, v in counts.items()),
        fontsize=9,
    )
    ax.set_xlabel("x (right) [m]")
    ax.set_ylabel("y (away from the first camera) [m]")
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def _draw_object(ax, node, data: dict, support: str) -> None:
    corners = box_corners(data["position"], data["size"], data.get("yaw", 0.0))[[0, 1, 3, 2], :2]
    colour = np.array(data.get("color", [128, 128, 128])) / 255.0
    ax.add_patch(
        Polygon(
            corners,
            closed=True,
            facecolor=colour,
            edgecolor="black",
            alpha=0.85,
            hatch="//" if data.get("fallback") else None,
        )
    )
    x, y = data["position"][:2]
    label = f"{node}: {data.get('class_name', '?')}" + (f"\n{support}" if support else "")
    ax.annotate(
        label,
        (x, y),
        xytext=(0, -14),
        textcoords="offset points",
        ha="center",
        va="top",
        fontsize=8,
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8},
    )


def _support_text(graph: nx.MultiDiGraph, node) -> str:
    rels = [
        f"{d['relation']} {v}"
        for _, v, d in graph.out_edges(node, data=True)
        if d["relation"] in ("on", "inside")
    ]
    return ", ".join(rels)


def _draw_near(ax, graph: nx.MultiDiGraph) -> None:
    drawn = set()
    for u, v, d in graph.edges(data=True):
        key = frozenset((u, v))
        if d["relation"] != "near" or key in drawn:
            continue
        drawn.add(key)
        (x1, y1), (x2, y2) = graph.nodes[u]["position"][:2], graph.nodes[v]["position"][:2]
        ax.plot(
            [x1, x2],
            [y1, y2],
            ls="--",
            lw=0.8,
            color="#4060a0",
            alpha=0.6,
            label="near" if len(drawn) == 1 else None,
        )


def _draw_cameras(ax, cameras: list[np.ndarray]) -> None:
    centres = np.array([c[:3, 3] for c in cameras])
    ax.plot(centres[:, 0], centres[:, 1], ".", color="#555555", ms=3, label="cameras")
    first = cameras[0]
    ax.plot(*first[:2, 3], "^", color="#d04020", ms=9, label="first camera")
    # the viewing direction, drawn at a length that suits the scene's size
    span = float(np.ptp(np.vstack([centres[:, :2], [[0.0, 0.0]]]), axis=0).max()) or 1.0
    look = first[:3, 2] / max(np.linalg.norm(first[:2, 2]), 1e-9)
    ax.arrow(
        first[0, 3],
        first[1, 3],
        0.15 * span * look[0],
        0.15 * span * look[1],
        head_width=0.03 * span,
        color="#d04020",
    )


def _relation_counts(graph: nx.MultiDiGraph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, _, d in graph.edges(data=True):
        counts[d["relation"]] = counts.get(d["relation"], 0) + 1
    return dict(sorted(counts.items()))


def plot_failed_top_down(
    xyz: np.ndarray,
    rgb: np.ndarray,
    cameras: list[np.ndarray],
    up: np.ndarray | None,
    planes: list,
    threshold: float,
    reason: str,
    path: Path,
) -> None:
    """A failed reconstruction seen from above (SfM units): the sparse points, the cameras with
    their viewing directions, and the points of each table-plane candidate in its own colour with
    its verdict. "Above" is the cameras' up where known (`tangram.geometry.table.CameraUp`), else
    the direction of least spread of the cameras and points."""
    if up is None or not np.all(np.isfinite(up)):
        centred = xyz - xyz.mean(axis=0)
        up = np.linalg.svd(centred, full_matrices=False)[2][-1]
    up = up / np.linalg.norm(up)
    a = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    lo, hi = np.percentile(xyz, [1, 99], axis=0)
    keep = np.all((xyz >= lo - 0.5 * (hi - lo)) & (xyz <= hi + 0.5 * (hi - lo)), axis=1)
    ax.scatter(xyz[keep] @ a, xyz[keep] @ b, s=2, c=rgb[keep] / 255.0, alpha=0.5, label="3D points")
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for k, cand in enumerate(planes):
        on = keep & (np.abs(cand.plane.distance(xyz)) < threshold)
        if on.any():
            verdict = cand.verdict if len(cand.verdict) < 60 else cand.verdict[:57] + "..."
            ax.scatter(xyz[on] @ a, xyz[on] @ b, s=5, color=palette[k % len(palette)],
                       label=f"{cand.source}: {cand.inliers} pts, {verdict}")
    centres = np.array([c[:3, 3] for c in cameras])
    ax.plot(centres @ a, centres @ b, "-", color="#333333", lw=0.8)
    ax.plot(centres @ a, centres @ b, "o", color="#333333", ms=3, label=f"{len(cameras)} registered cameras")
    span = float(np.ptp(np.column_stack([xyz[keep] @ a, xyz[keep] @ b]), axis=0).max()) or 1.0
    for c in cameras[:: max(1, len(cameras) // 25)]:
        d = c[:3, 2]
        ax.arrow(float(c[:3, 3] @ a), float(c[:3, 3] @ b), 0.05 * span * float(d @ a), 0.05 * span * float(d @ b),
                 head_width=0.008 * span, color="#333333", alpha=0.7)
    short = reason if len(reason) < 110 else reason[:107] + "..."
    ax.set_title("Reconstruction failed, top view (SfM units)\n" + short, fontsize=8)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)

"""The report's interactive figures, built with plotly and embedded as HTML fragments.

The track timeline is inline SVG drawn here (no script, shows at once). The 3D view is a plotly
figure spec embedded as JSON; the page loads plotly's bundled plotly.min.js from `report_files/`
and draws it when its section comes near the screen, so the page itself opens at once. Numeric
arrays travel as plotly's compact base64 typed arrays.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
MAX_TIMELINE_TRACKS = 40  # the longest tracks; fragments beyond that are counted, not drawn
MAX_POINTS = 8000  # subsampled cloud: rotates smoothly and keeps the page small
PALETTE = qualitative.D3 + qualitative.Set2
CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": True,
          "modeBarButtonsToRemove": ["toImage", "sendDataToCloud"]}


def _spec(fig: go.Figure) -> str:
    """The figure as plotly JSON ({data, layout, config}), safe inside a <script> element."""
    fig.update_layout(font={"family": FONT, "size": 12, "color": "#1f2933"}, paper_bgcolor="white",
                      plot_bgcolor="white")
    spec = json.loads(pio.to_json(fig, validate=True))
    spec["config"] = CONFIG
    return script_json(spec)


def script_json(value: object) -> str:
    """JSON that stays data inside any HTML <script> element: `<`, `>` and `&` become \\u escapes
    (so no `</script>`, `<!--` or `<script` sequence can reach the HTML parser's script-data rules);
    U+2028/U+2029 too, for older JavaScript parsers. JSON.parse gives back the same value."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def class_colours(classes: list[str]) -> dict[str, str]:
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(set(classes)))}


# -- tracking -----------------------------------------------------------------------------------------


def _segments(frames: list[int], stride: int) -> list[tuple[int, int]]:
    """Runs of consecutive sampled frames as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for f in sorted(set(frames)):
        if runs and f - runs[-1][1] <= stride:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


TrackId = int | str  # an int in TANGRAM's own files; a string from an edited or foreign file, shown as text


def _as_int(value: Any, default: int | None = None) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return default


def _track_id(value: Any) -> TrackId | None:
    """A detection's track id as the timeline keys it: an int, or a string kept as text; None for
    anything else (a list, an object), which the timeline leaves out."""
    as_int = _as_int(value)
    if as_int is not None:
        return as_int
    return value if isinstance(value, str) and value else None


def _id_order(t: TrackId) -> tuple[int, int, str]:
    return (0, t, "") if isinstance(t, int) else (1, 0, t)


def _dicts(items: Any) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _track_info(tracks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    info = tracks.get("tracks")
    return {str(k): v for k, v in info.items() if isinstance(v, dict)} if isinstance(info, dict) else {}


def _track_frames(tracks: dict[str, Any]) -> dict[TrackId, list[int]]:
    seen: dict[TrackId, list[int]] = {}
    for frame in _dicts(tracks.get("frames")):
        index = _as_int(frame.get("frame_index"))
        if index is None or index < 0:
            continue
        for det in _dicts(frame.get("detections")):
            tid = _track_id(det.get("track_id"))
            if tid is not None:
                seen.setdefault(tid, []).append(index)
    return seen


def _shown_tracks(tracks: dict[str, Any]) -> tuple[list[TrackId], int]:
    seen = _track_frames(tracks)
    ranked = sorted(seen, key=lambda t: (-len(seen[t]), _id_order(t)))
    shown = sorted(ranked[:MAX_TIMELINE_TRACKS], key=lambda t: (min(seen[t]), _id_order(t)))
    return shown, len(ranked) - len(shown)


def hidden_tracks(tracks: dict[str, Any]) -> int:
    return _shown_tracks(tracks)[1]


def track_timeline(tracks: dict[str, Any], objects: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Inline SVG: which track is visible in which frames, one bar per stretch, one colour per class.

    Drawn here rather than in the browser: it shows at once, prints, and needs no script."""
    seen = _track_frames(tracks)
    if not seen:
        return None
    info = _track_info(tracks)
    stride = max(_as_int(tracks.get("frame_stride"), 1) or 1, 1)
    shown, _ = _shown_tracks(tracks)
    class_of = {t: _class_name((info.get(str(t)) or {}).get("class_name")) or _class_from_frames(tracks, t)
                for t in shown}
    colours = class_colours(list(class_of.values()))
    video = tracks.get("video") if isinstance(tracks.get("video"), dict) else {}
    num_frames = max(_as_int(video.get("num_frames"), 0) or 0, 0) or max(max(f) for f in seen.values()) + 1
    width, left, right, row, top, bottom = 1000, 190, 12, 22, 6, 30
    plot_w = width - left - right
    height = top + row * len(shown) + bottom

    def x(frame: float) -> float:
        return left + plot_w * frame / max(num_frames, 1)

    parts = [f'<svg class="timeline" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="track timeline" xmlns="http://www.w3.org/2000/svg">']
    step = _nice_step(num_frames)
    for tick in range(0, num_frames + 1, step):
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{height - bottom}" '
                     'stroke="#e4e7eb" stroke-width="1"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11" '
                     f'fill="#616e7c">{tick}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 2}" text-anchor="middle" font-size="11" '
                 'fill="#616e7c">frame</text>')
    for i, t in enumerate(shown):
        y = top + i * row
        cls = class_of[t]
        conf = (info.get(str(t)) or {}).get("mean_confidence")
        conf_text = f", mean confidence {conf:.2f}" if isinstance(conf, int | float) else ""
        members = (info.get(str(t)) or {}).get("members")
        members = [m for m in members if m != t] if isinstance(members, list) else []
        if members:  # a newer tracks.json: raw tracker fragments stitched into this track
            conf_text += f", stitched from raw tracks {', '.join(str(m) for m in [t, *members])}"
        conf_text = escape(conf_text)  # members come from tracks.json: data from outside
        in_3d = t in objects
        if i % 2:
            parts.append(f'<rect x="0" y="{y}" width="{width}" height="{row}" fill="#f9fafb"/>')
        label = f"#{t} {cls}"
        weight = ' font-weight="600"' if in_3d else ""
        mark = '<tspan fill="#2f5fd0"> ▸ 3D</tspan>' if in_3d else ""
        parts.append(f'<text x="{left - 10}" y="{y + row / 2 + 4:.1f}" text-anchor="end" font-size="12" '
                     f'fill="#1f2933"{weight}>{escape(label)}{mark}</text>')
        for first, last in _segments(seen[t], stride):
            x0, x1 = x(first), x(min(last + stride, num_frames))
            parts.append(
                f'<rect x="{x0:.1f}" y="{y + 5}" width="{max(x1 - x0, 1.5):.1f}" height="{row - 10}" rx="2" '
                f'fill="{colours[cls]}"><title>{escape(label)}: frames {first}–{last}{conf_text}'
                f'{" (placed in 3D)" if in_3d else ""}</title></rect>'
            )
    parts.append("</svg>")
    counts = {c: sum(1 for t in shown if class_of[t] == c) for c in colours}
    return {"svg": "".join(parts), "legend": [(c, colours[c], counts[c]) for c in sorted(colours)]}


def _nice_step(span: int) -> int:
    """A tick step of 1, 2 or 5 times a power of ten giving at most ~10 ticks."""
    step = 1
    while span / step > 10:
        for m in (2, 5, 10):
            if span / (step * m) <= 10 or m == 10:
                step *= m
                break
    return step


def _class_name(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _class_from_frames(tracks: dict[str, Any], track_id: TrackId) -> str:
    for frame in _dicts(tracks.get("frames")):
        for det in _dicts(frame.get("detections")):
            if _track_id(det.get("track_id")) == track_id and _class_name(det.get("class_name")):
                return str(det["class_name"])
    return "?"


# -- reconstruction -----------------------------------------------------------------------------------

_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def _box_lines(corners: np.ndarray) -> tuple[list[float | None], ...]:
    xs: list[float | None] = []
    ys: list[float | None] = []
    zs: list[float | None] = []
    for a, b in _EDGES:
        for k in (a, b):
            xs.append(float(corners[k, 0]))
            ys.append(float(corners[k, 1]))
            zs.append(float(corners[k, 2]))
        xs.append(None)
        ys.append(None)
        zs.append(None)
    return xs, ys, zs


def _cloud(folder: Path, region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(xyz, rgb, points in the file, points outside the shown region) with at most MAX_POINTS kept.

    `region` (2x3: min, max corner) is the neighbourhood of the table, objects and cameras:
    background far away (walls, floor of the room) would shrink the scene to a dot."""
    from tangram.geometry.export import read_ply_vertices

    path = folder / "points.ply"
    if not path.is_file():
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8), 0, 0
    xyz, rgb = read_ply_vertices(path)
    total, outside = len(xyz), 0
    if total:
        if region is None:
            lo, hi = np.percentile(xyz, 1, axis=0), np.percentile(xyz, 99, axis=0)
            region = np.array([lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo)])
        keep = np.all((xyz >= region[0]) & (xyz <= region[1]), axis=1)
        xyz, rgb, outside = xyz[keep], rgb[keep], int(total - keep.sum())
    if len(xyz) > MAX_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(len(xyz), MAX_POINTS, replace=False))
        xyz, rgb = xyz[idx], rgb[idx]
    return xyz, rgb, total, outside


def _region(*groups: np.ndarray) -> np.ndarray | None:
    pts = [g.reshape(-1, 3) for g in groups if g is not None and g.size]
    if not pts:
        return None
    allp = np.vstack(pts)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    margin = np.maximum(0.15 * (hi - lo).max(), 0.05)
    return np.array([lo - margin, hi + margin])


def scene_3d(folder: Path, cameras: dict[str, Any], objects: list[dict[str, Any]]) -> tuple[str | None, int]:
    """Point cloud, object boxes, table rectangle and camera path in the metric table frame."""
    from tangram.geometry.export import box_corners

    table = cameras.get("table") or {}
    rect = table.get("rect_size") or table.get("size")
    table_corners = None
    if rect and len(rect) >= 2:
        centre = [*(table.get("rect_center") or [0.0, 0.0])[:2], 0.0]
        table_corners = box_corners(centre, [rect[0], rect[1], 0.0], float(table.get("rect_yaw") or 0.0))[[0, 1, 3, 2]]
    boxes = [o.get("box") or {} for o in objects]
    box_pts = np.array([b["center"] for b in boxes if b.get("center")], float)
    poses = [np.asarray(f.get("world_from_camera") or [], float) for f in cameras.get("frames") or []]
    poses = [p for p in poses if p.shape == (4, 4)]
    cam = np.array([p[:3, 3] for p in poses]) if poses else np.zeros((0, 3))
    xyz, rgb, total, outside = _cloud(folder, _region(table_corners, box_pts, cam))
    fig = go.Figure()
    if len(xyz):
        colours = [f"rgb({r},{g},{b})" for r, g, b in rgb.astype(int)]
        shown = f"points ({len(xyz)} of {total})" if total > len(xyz) else f"points ({total})"
        fig.add_trace(go.Scatter3d(
            x=xyz[:, 0].astype(np.float32), y=xyz[:, 1].astype(np.float32), z=xyz[:, 2].astype(np.float32),
            mode="markers", marker={"size": 2, "color": colours}, hoverinfo="skip", name=shown,
        ))
    if table_corners is not None:
        c = table_corners
        fig.add_trace(go.Mesh3d(x=c[:, 0], y=c[:, 1], z=c[:, 2], i=[0, 0], j=[1, 2], k=[2, 3],
                                color="#c8b99a", opacity=0.35, name="table top", showlegend=True,
                                hoverinfo="name"))
    colours_by_class = class_colours([str(o.get("class_name")) for o in objects])
    for obj in objects:
        box = obj.get("box") or {}
        if not box.get("center") or not box.get("size"):
            continue
        corners = box_corners(box["center"], box["size"], float(box.get("yaw") or 0.0))
        xs, ys, zs = _box_lines(corners)
        colour = colours_by_class[str(obj.get("class_name"))]
        label = f"#{obj.get('track_id')} {obj.get('class_name')}"
        size = ", ".join(f"{100 * s:.0f}" for s in box["size"])
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line={"color": colour, "width": 5},
                                   name=label, hovertemplate=f"{label}<br>size {size} cm<extra></extra>"))
        top = corners[:, 2].max()
        fig.add_trace(go.Scatter3d(x=[box["center"][0]], y=[box["center"][1]], z=[top + 0.02], mode="text",
                                   text=[label], textfont={"color": colour, "size": 12}, showlegend=False,
                                   hoverinfo="skip"))
    if len(cam):
        looks = np.array([p[:3, 2] for p in poses])  # COLMAP cameras look along their +z axis
        extent = float(np.ptp(np.vstack([cam, box_pts.reshape(-1, 3)]), axis=0).max()) or 1.0
        fig.add_trace(go.Scatter3d(x=cam[:, 0], y=cam[:, 1], z=cam[:, 2], mode="lines+markers",
                                   line={"color": "#111827", "width": 3}, marker={"size": 3, "color": "#111827"},
                                   name=f"camera path ({len(cam)} keyframes)",
                                   hovertemplate="camera %{x:.2f}, %{y:.2f}, %{z:.2f} m<extra></extra>"))
        tips = cam + 0.08 * extent * looks
        xs, ys, zs = [], [], []
        for a, b in zip(cam, tips, strict=True):
            xs += [a[0], b[0], None]
            ys += [a[1], b[1], None]
            zs += [a[2], b[2], None]
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line={"color": "#6b7280", "width": 2},
                                   name="viewing directions", hoverinfo="skip"))
    if not fig.data:
        return None, 0
    axis = {"backgroundcolor": "#f8fafc", "gridcolor": "#e5e7eb", "showspikes": False}
    fig.update_layout(
        height=600, margin={"l": 0, "r": 0, "t": 0, "b": 0},
        legend={"x": 0, "y": 1, "bgcolor": "rgba(255,255,255,0.8)"},
        scene={"aspectmode": "data", "xaxis": {**axis, "title": {"text": "x (m)"}},
               "yaxis": {**axis, "title": {"text": "y (m)"}}, "zaxis": {**axis, "title": {"text": "z (m)"}},
               "camera": {"eye": {"x": 0.9, "y": -1.4, "z": 0.9}}},
    )
    return _spec(fig), outside

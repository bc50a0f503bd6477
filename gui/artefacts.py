"""Readers for the stages' documented artefact files, free of Qt so they can be tested alone.

Every reader raises `ArtefactError` with a sentence a person understands when a file is missing or
malformed; the views show that sentence instead of their content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ArtefactError(Exception):
    """A stage's output folder is missing a file or holds one in an unexpected format."""


def read_json_file(path: Path) -> Any:
    if not path.is_file():
        raise ArtefactError(f"{path.parent.name}/{path.name} is missing")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path.parent.name}/{path.name} cannot be read: {exc}") from None


# -- tracking + segmentation ---------------------------------------------------------------------


@dataclass
class Box:
    track_id: int
    class_name: str
    confidence: float | None
    box_xyxy: tuple[float, float, float, float]


@dataclass
class TrackData:
    video: dict[str, Any]
    frame_indices: list[int]  # tracked frames, in order: the video view plays these
    boxes: dict[int, list[Box]]
    tracks: dict[int, dict[str, Any]]
    backend: str
    frame_stride: int = 1


def load_tracks(tracking_dir: Path) -> TrackData:
    data = read_json_file(tracking_dir / "tracks.json")
    try:
        boxes = {
            int(f["frame_index"]): [
                Box(int(d["track_id"]), str(d["class_name"]), d.get("confidence"),
                    tuple(float(v) for v in d["box_xyxy"]))  # type: ignore[misc]
                for d in f["detections"]
            ]
            for f in data["frames"]
        }
        tracks = {int(k): v for k, v in data.get("tracks", {}).items()}
        return TrackData(data["video"], sorted(boxes), boxes, tracks, str(data.get("backend", "?")),
                         max(1, int(data.get("frame_stride", 1))))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactError(f"tracking/tracks.json is not in a tangram.tracks format ({exc!r})") from None


@dataclass
class MaskRef:
    track_id: int
    class_name: str
    path: Path  # 8-bit PNG, 255 inside the object, at full frame resolution


@dataclass
class MaskData:
    backend: str
    keyframes: dict[int, list[MaskRef]]  # frame_index -> masks


def load_masks(segmentation_dir: Path) -> MaskData:
    data = read_json_file(segmentation_dir / "masks.json")
    try:
        keyframes = {
            int(k["frame_index"]): [
                MaskRef(int(m["track_id"]), str(m.get("class_name", "")), segmentation_dir / m["mask"])
                for m in k["masks"]
            ]
            for k in data["keyframes"]
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactError(f"segmentation/masks.json is not in the tangram.masks/1 format ({exc!r})") \
            from None
    return MaskData(str(data.get("backend", "?")), keyframes)


# -- reconstruction ------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass
class PointCloud:
    xyz: np.ndarray  # (N, 3) float
    rgb: np.ndarray | None  # (N, 3) uint8, or None when the file has no colours
    comments: list[str] = field(default_factory=list)


def read_ply(path: Path) -> PointCloud:
    """Vertices (x, y, z and red, green, blue when present) of an ASCII or binary PLY file."""
    if not path.is_file():
        raise ArtefactError(f"{path.parent.name}/{path.name} is missing")
    with open(path, "rb") as fh:
        fmt, count, props, comments = _ply_header(fh, path)
        if fmt == "ascii":
            # ndmin=2 keeps a one-vertex file two-dimensional
            rows = np.loadtxt(fh, max_rows=count, ndmin=2) if count else np.zeros((0, len(props)))
            table = {name: rows[:, i] for i, (name, _) in enumerate(props)}
        else:
            endian = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(name, endian + t) for name, t in props])
            raw = np.frombuffer(fh.read(dtype.itemsize * count), dtype=dtype, count=count)
            table = {name: raw[name] for name, _ in props}
    if not {"x", "y", "z"} <= table.keys():
        raise ArtefactError(f"{path.name} has no x, y, z vertex properties")
    xyz = np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float64)
    rgb = None
    if {"red", "green", "blue"} <= table.keys():
        rgb = np.stack([table["red"], table["green"], table["blue"]], axis=1).astype(np.uint8)
    return PointCloud(xyz, rgb, comments)


def _ply_header(fh: Any, path: Path) -> tuple[str, int, list[tuple[str, str]], list[str]]:
    if fh.readline().strip() != b"ply":
        raise ArtefactError(f"{path.name} is not a PLY file")
    fmt, count, props, comments, element = "", 0, [], [], None
    while True:
        line = fh.readline()
        if not line:
            raise ArtefactError(f"{path.name}: PLY header has no end_header")
        words = line.decode("ascii", "replace").split()
        if not words:
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "comment":
            comments.append(" ".join(words[1:]))
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise ArtefactError(f"{path.name}: unsupported vertex property {' '.join(words[1:])}")
            props.append((words[2], _PLY_TYPES[words[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ArtefactError(f"{path.name}: unknown PLY format {fmt!r}")
    return fmt, count, props, comments


@dataclass
class Object3D:
    track_id: int
    class_name: str
    center: np.ndarray  # (3,) metres, table frame
    size: np.ndarray  # (3,)
    yaw: float
    fallback: bool


def load_objects(reconstruction_dir: Path) -> list[Object3D]:
    data = read_json_file(reconstruction_dir / "objects.json")
    try:
        return [
            Object3D(int(o["track_id"]), str(o.get("class_name", "")),
                     np.asarray(o["box"]["center"], float), np.asarray(o["box"]["size"], float),
                     float(o["box"].get("yaw", 0.0)), bool(o.get("fallback", False)))
            for o in data["objects"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactError(f"reconstruction/objects.json has an unexpected format ({exc!r})") from None


def load_cameras(reconstruction_dir: Path) -> dict[str, Any]:
    data = read_json_file(reconstruction_dir / "cameras.json")
    if not isinstance(data, dict):
        raise ArtefactError("reconstruction/cameras.json is not a JSON object")
    return data


def camera_path(data: dict[str, Any]) -> np.ndarray:
    """Camera centres in the table frame from cameras.json, in frame order, (N, 3)."""
    try:
        table_from_world = np.asarray(data.get("table_from_world", np.eye(4)), float)
        frames = sorted(data["frames"], key=lambda f: f["frame_index"])
        centres = [np.asarray(f["world_from_camera"], float)[:, 3] for f in frames]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactError(f"reconstruction/cameras.json has an unexpected format ({exc!r})") from None
    if not centres:
        return np.zeros((0, 3))
    return (table_from_world @ np.stack(centres, axis=1)).T[:, :3]


def table_outline(cameras: dict[str, Any]) -> np.ndarray | None:
    """Corners (4, 3) of the table top in the table frame (centred at the origin, z = 0), from
    cameras.json's "table" record: the fitted rectangle when there is one, else the extent."""
    table = cameras.get("table")
    if not isinstance(table, dict):
        return None
    size = table.get("rect_size") or table.get("size")
    if not isinstance(size, list | tuple) or len(size) < 2:
        return None
    yaw = float(table.get("rect_yaw", 0.0) or 0.0) if table.get("rect_size") else 0.0
    corners = box_corners(np.zeros(3), np.array([float(size[0]), float(size[1]), 0.0]), yaw)
    return corners[:4]


def box_corners(center: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    """The 8 corners of a box rotated by yaw about z: bottom 4 then top 4, (8, 3)."""
    half = size / 2.0
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    c, s = np.cos(yaw), np.sin(yaw)
    xy = (signs * half[:2]) @ np.array([[c, s], [-s, c]])
    bottom = np.column_stack([xy, np.full(4, -half[2])])
    top = np.column_stack([xy, np.full(4, half[2])])
    return np.vstack([bottom, top]) + center


# -- scene graph, plan, simulation ---------------------------------------------------------------


def load_scene_graph(scene_graph_dir: Path) -> Any:
    """The scene graph as a networkx MultiDiGraph."""
    import networkx as nx

    data = read_json_file(scene_graph_dir / "scene_graph.json")
    try:
        return nx.node_link_graph(data, edges="edges", directed=True, multigraph=True)
    except (KeyError, TypeError, nx.NetworkXError) as exc:
        raise ArtefactError(f"scene_graph/scene_graph.json is not node-link data ({exc!r})") from None


def find_video(stage_dir: Path) -> Path | None:
    """The stage's video: the first *.mp4 in the folder or its sub-folders, by name."""
    videos = sorted(stage_dir.rglob("*.mp4"))
    return videos[0] if videos else None

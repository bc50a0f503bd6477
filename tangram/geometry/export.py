"""PLY files: the coloured sparse cloud, and the cloud with object boxes as coloured meshes.

Binary little-endian PLY (MeshLab, CloudCompare, Open3D, Blender all read it). Boxes are 12
triangles each, vertex-coloured with the object's colour; the cloud's points are vertices no face
uses, which viewers draw as points.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tangram.fileio import atomic_path

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_FACE = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
# triangles of a unit box whose corners are numbered by bits (x, y, z)
_BOX_TRIANGLES = np.array(
    [
        [0, 2, 1],
        [1, 2, 3],
        [4, 5, 6],
        [5, 7, 6],
        [0, 1, 4],
        [1, 5, 4],
        [2, 6, 3],
        [3, 6, 7],
        [0, 4, 2],
        [2, 4, 6],
        [1, 3, 5],
        [3, 7, 5],
    ]
)


def _vertices(xyz: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    v = np.empty(len(xyz), _VERTEX)
    v["x"], v["y"], v["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    v["red"], v["green"], v["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return v


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, faces: np.ndarray | None = None) -> None:
    """Write vertices (Nx3 float, Nx3 uint8 RGB) and optional triangles (Mx3 vertex indices)."""
    faces = np.zeros((0, 3), int) if faces is None else faces
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment written by TANGRAM",
        f"element vertex {len(xyz)}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
    ]
    if len(faces):
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(_vertices(np.asarray(xyz, float), np.asarray(rgb, np.uint8)).tobytes())
        if len(faces):
            f = np.empty(len(faces), _FACE)
            f["n"], f["i"] = 3, faces
            fh.write(f.tobytes())


def read_ply_vertices(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(xyz, rgb) of a PLY written by `write_ply`."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    count = next(int(line.split()[-1]) for line in header if line.startswith("element vertex"))
    v = np.frombuffer(data, _VERTEX, count=count, offset=end)
    return np.column_stack([v["x"], v["y"], v["z"]]).astype(float), np.column_stack(
        [v["red"], v["green"], v["blue"]]
    )


def box_corners(centre: Sequence[float], size: Sequence[float], yaw: float) -> np.ndarray:
    """8x3 corners of a box rotated by yaw about z; corner k has bits (x, y, z) of k."""
    bits = np.array([[(k >> 0) & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)], float) - 0.5
    local = bits * np.asarray(size, float)
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return local @ rot.T + np.asarray(centre, float)


def write_scene_ply(
    path: Path,
    xyz: np.ndarray,
    rgb: np.ndarray,
    boxes: Sequence[tuple[Sequence[float], Sequence[float], float, Sequence[int]]],
) -> None:
    """The cloud plus one coloured box mesh per (centre, size, yaw, rgb) entry."""
    all_xyz, all_rgb, faces = (
        [np.asarray(xyz, float).reshape(-1, 3)],
        [np.asarray(rgb, np.uint8).reshape(-1, 3)],
        [],
    )
    base = len(all_xyz[0])
    for centre, size, yaw, colour in boxes:
        all_xyz.append(box_corners(centre, size, yaw))
        all_rgb.append(np.tile(np.asarray(colour, np.uint8), (8, 1)))
        faces.append(_BOX_TRIANGLES + base)
        base += 8
    write_ply(path, np.vstack(all_xyz), np.vstack(all_rgb), np.vstack(faces) if faces else None)

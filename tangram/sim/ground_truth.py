"""Scene graphs from the sample scene's ground truth, to test planning and simulation in isolation
from reconstruction (and to bench them).

Each object's box is measured in its own frame: the URDF is loaded at the ground-truth roll and
pitch with zero yaw and its AABB taken there, so the box is tight (a world AABB of a turned object
is not). Poses go into the TANGRAM table frame through ground_truth.json's world_from_table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tangram.errors import TangramError
from tangram.fileio import read_json
from tangram.planning.world import scene_graph_from_objects
from tangram.sim.bullet import BulletClient, connect, pybullet_data

CLASS_COLORS = {
    "cup": (215, 40, 25),
    "bowl": (235, 238, 242),
    "teddy bear": (140, 90, 45),
    "sports ball": (240, 240, 240),
    "tray": (150, 150, 155),
}


def _urdf_path(rel: str, root: Path) -> str:
    kind, _, rest = rel.partition("/")
    return str(Path(pybullet_data.getDataPath()) / rest) if kind == "pybullet_data" else str(root / rel)


def _shape_points(client: BulletClient, shape: tuple) -> np.ndarray:
    """Points spanning one collision shape in its own frame (mesh vertices, box corners...)."""
    geom, dims, mesh = shape[2], shape[3], shape[4].decode()
    if geom == client.GEOM_MESH:
        # URDF cylinders come back as meshes named 'unknown_file'; a bowl's foot is inside its wall's span
        return _vertices(mesh) * np.array(dims[:3]) if Path(mesh).is_file() else np.zeros((0, 3))
    if geom == client.GEOM_BOX:
        h = np.array(dims[:3]) / 2
        return np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * h
    if geom == client.GEOM_SPHERE:
        r = dims[0]
        return np.array([[x, y, z] for x in (-r, 0, r) for y in (-r, 0, r) for z in (-r, 0, r)])
    if geom in (client.GEOM_CYLINDER, client.GEOM_CAPSULE):
        length, r = dims[0], dims[1]
        ring = [(r * math.cos(a), r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 16, endpoint=False)]
        return np.array([[x, y, z] for x, y in ring for z in (-length / 2, length / 2)])
    return np.zeros((1, 3))


def _vertices(path: str) -> np.ndarray:
    with open(path) as fh:
        return np.array([[float(v) for v in line.split()[1:4]] for line in fh if line.startswith("v ")])


def _local_box(client: BulletClient, obj: dict[str, Any], root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(size, centre offset from the URDF origin in the yaw-aligned frame) of one object.

    Taken from the collision geometry itself: pybullet's AABBs are padded by a contact margin and,
    for turned compounds (the teddy), loosened further.
    """
    orn = obj["orientation_xyzw"]
    roll, pitch, _ = client.getEulerFromQuaternion(orn)
    flat = client.getQuaternionFromEuler((roll, pitch, 0.0))
    body = client.loadURDF(_urdf_path(obj["urdf"], root), (0, 0, 0), flat, globalScaling=obj["urdf_scale"])
    com_pos, com_orn = client.getBasePositionAndOrientation(body)
    points = []
    for shape in client.getCollisionShapeData(body, -1):
        pos, orn_l = client.multiplyTransforms(com_pos, com_orn, shape[5], shape[6])
        rot = np.array(client.getMatrixFromQuaternion(orn_l)).reshape(3, 3)
        points.append(_shape_points(client, shape) @ rot.T + np.array(pos))
    client.removeBody(body)
    pts = np.concatenate(points)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return hi - lo, (lo + hi) / 2


def scene_graph_from_ground_truth(sample_dir: Path | str) -> dict[str, Any]:
    """Node-link scene graph of a rendered sample (tangram.sample_scene), in the table frame."""
    root = Path(sample_dir)
    gt_path = root / "ground_truth.json"
    if not gt_path.is_file():
        raise TangramError(f"no ground_truth.json in {root}")
    gt = read_json(gt_path)
    world_from_table = np.array(gt["table"]["world_from_table"], float)
    table_from_world = np.linalg.inv(world_from_table)
    table_yaw = math.atan2(world_from_table[1, 0], world_from_table[0, 0])
    inside = {r["subject"]: r["object"] for r in gt.get("relations", []) if r["relation"] == "inside"}
    client, _ = connect()
    try:
        objects = []
        for obj in gt["objects"]:
            size, offset = _local_box(client, obj, root)
            yaw = float(obj["yaw"])
            c, s = math.cos(yaw), math.sin(yaw)
            centre_w = np.array(obj["urdf_position"]) + np.array(
                [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1], offset[2]]
            )
            centre_t = (table_from_world @ np.append(centre_w, 1.0))[:3]
            name = obj.get("coco_class") or obj["name"]
            entry = {
                "id": obj["gt_id"],
                "class_name": name,
                "position": centre_t.tolist(),
                "size": size.tolist(),
                "yaw": math.remainder(yaw - table_yaw, 2 * math.pi),
                "color": list(CLASS_COLORS.get(name, (160, 160, 160))),
            }
            if obj["gt_id"] in inside:
                entry["inside"] = inside[obj["gt_id"]]
            objects.append(entry)
    finally:
        client.disconnect()
    sx, sy = gt["table"]["size"]
    corners = np.array([[x * sx / 2, y * sy / 2, 0.0, 1.0] for x in (-1, 1) for y in (-1, 1)])
    corners[:, 2] = gt["table"]["top_z"]
    local = (table_from_world @ corners.T).T
    span = local[:, :2].max(axis=0) - local[:, :2].min(axis=0)
    return scene_graph_from_objects(objects, (float(span[0]), float(span[1])))

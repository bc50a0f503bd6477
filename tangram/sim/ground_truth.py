"""The rendered sample's ground truth in TANGRAM's own terms, to test and bench stages in isolation:
- scene graphs, to test planning and simulation apart from reconstruction;
- tracks.json and masks.json (`write_gt_upstream`), to test reconstruction apart from detector and
  segmenter errors (the end-to-end tests run the real upstream stages);
- the true table frame, objects in it and relations, to score reconstruction and the scene graph
  (with `tangram.geometry.evaluation`).

Each object's box is measured in its own frame: the URDF is loaded at the ground-truth roll and
pitch with zero yaw and its AABB taken there, so the box is tight (a world AABB of a turned object
is not). Poses go into the TANGRAM table frame through ground_truth.json's world_from_table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from tangram.errors import TangramError
from tangram.fileio import read_json, write_json
from tangram.geometry.camera import Intrinsics, View
from tangram.geometry.relations import TABLE, Box, Relation, spatial_relations
from tangram.geometry.table import fixation_point
from tangram.media import frame_name, open_media
from tangram.planning.world import scene_graph_from_objects
from tangram.sim.bullet import BulletClient, connect, pybullet_data

if TYPE_CHECKING:
    from tangram.sample_scene import SampleScene

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


# --- tracks, masks, objects and relations from the ground truth -----------------------------------

GT_CLASS_FOR_UNLABELLED = "tray"  # the sample's tray has no COCO class


def gt_class(obj: dict[str, Any]) -> str:
    return obj["coco_class"] or obj["name"] or GT_CLASS_FOR_UNLABELLED


def write_gt_upstream(
    sample: SampleScene, tracking_dir: Path, segmentation_dir: Path, mask_frames: Iterable[int]
) -> None:
    """tracks.json for every frame and masks.json for `mask_frames`, from the ground truth.

    Track ids are the ground-truth ids, so predictions and truth pair up by id.
    """
    classes = {o["gt_id"]: gt_class(o) for o in sample.objects}
    frames, counts = [], {gid: 0 for gid in classes}
    for fr in sample.gt["frames"]:
        dets = [
            {
                "track_id": o["gt_id"],
                "class_id": -1,
                "class_name": classes[o["gt_id"]],
                "confidence": 1.0,
                "box_xyxy": o["box_xyxy"],
            }
            for o in fr["objects"]
        ]
        for d in dets:
            counts[d["track_id"]] += 1
        frames.append({"frame_index": fr["frame_index"], "detections": dets})
    tracks = {
        str(g): {
            "class_name": classes[g],
            "num_frames": n,
            "first_frame": 0,
            "last_frame": sample.num_frames - 1,
            "mean_confidence": 1.0,
        }
        for g, n in counts.items()
        if n
    }
    w, h = sample.gt["width"], sample.gt["height"]
    write_json(
        tracking_dir / "tracks.json",
        {
            "format": "tangram.tracks/1",
            "backend": "ground_truth",
            "video": {
                "path": str(sample.video_path),
                "fps": sample.fps,
                "width": w,
                "height": h,
                "num_frames": sample.num_frames,
            },
            "frame_stride": 1,
            "frames": frames,
            "tracks": tracks,
        },
    )
    _write_gt_masks(sample, segmentation_dir, sorted(set(mask_frames)), classes)


def _write_gt_masks(sample: SampleScene, seg: Path, indices: list[int], classes: dict[int, str]) -> None:
    (seg / "frames").mkdir(parents=True, exist_ok=True)
    (seg / "masks").mkdir(parents=True, exist_ok=True)
    keyframes = []
    for index, frame in open_media(sample.video_path).frames(indices):
        image = f"frames/{frame_name(index)}"
        cv2.imwrite(str(seg / image), frame)
        inst = sample.mask(index)
        masks = []
        for o in sample.gt["frames"][index]["objects"]:
            rel = f"masks/frame_{index:06d}_id{o['gt_id']:04d}.png"
            m = (inst == o["gt_id"]).astype(np.uint8) * 255
            cv2.imwrite(str(seg / rel), m)
            masks.append(
                {
                    "track_id": o["gt_id"],
                    "class_name": classes[o["gt_id"]],
                    "box_xyxy": o["box_xyxy"],
                    "mask": rel,
                    "area": int((m > 0).sum()),
                    "score": 1.0,
                }
            )
        keyframes.append({"frame_index": index, "image": image, "masks": masks})
    write_json(
        seg / "masks.json", {"format": "tangram.masks/1", "backend": "ground_truth", "keyframes": keyframes}
    )


def gt_table_from_world(sample: SampleScene, origin_frames: Iterable[int] | None = None) -> np.ndarray:
    """The true TANGRAM table frame: the sample's (z up, y away from the first camera, table top z = 0).

    With origin_frames, its origin follows TANGRAM's rule instead of sitting at the table centre: the
    fixation point of those frames' true cameras on the table top. The table centre is rarely in full
    view, so no method can recover it; the fixation point is observable and defined the same way.
    """
    world_from_table = np.array(sample.gt["table"]["world_from_table"], float)
    if origin_frames is not None:
        views = {f: View(f, _GT_INTRINSICS, sample.world_from_camera(f)) for f in origin_frames}
        point = fixation_point(views)
        if point is not None:
            world_from_table = world_from_table.copy()
            world_from_table[:2, 3] = point[:2]  # world z is up: the table top keeps its height
    return np.linalg.inv(world_from_table)


_GT_INTRINSICS = Intrinsics("PINHOLE", 2, 2, (1.0, 1.0, 1.0, 1.0))  # fixation uses poses only


def gt_objects_in_table(
    sample: SampleScene, origin_frames: Iterable[int] | None = None
) -> dict[int, dict[str, Any]]:
    """gt_id -> {class_name, position (table frame), size} of the ground-truth objects."""
    table_from_world = gt_table_from_world(sample, origin_frames)
    out = {}
    for o in sample.objects:
        pos = table_from_world[:3, :3] @ np.array(o["position"]) + table_from_world[:3, 3]
        out[o["gt_id"]] = {"class_name": gt_class(o), "position": pos, "size": np.array(o["size"])}
    return out


def gt_boxes(sample: SampleScene) -> list[Box]:
    """Ground-truth objects as table-frame boxes: the world AABBs, turned with the table frame.

    Relations do not depend on the frame's origin, so the sample's own (table centre) serves."""
    world_from_table = np.array(sample.gt["table"]["world_from_table"])
    yaw = -float(np.arctan2(world_from_table[1, 0], world_from_table[0, 0]))  # world x axis in table frame
    objs = gt_objects_in_table(sample)
    return [Box(gid, o["position"], o["size"], yaw, o["class_name"]) for gid, o in objs.items()]


def gt_relations(sample: SampleScene, near_factor: float) -> set[Relation]:
    """Support relations from the physics contacts, spatial ones from the true boxes."""
    support: set[Relation] = set()
    for r in sample.gt["relations"]:
        obj = r["object"] if r["object"] == TABLE else int(r["object"])
        support |= {(int(r["subject"]), r["relation"], obj), (int(r["subject"]), "supported_by", obj)}
    stacked = {frozenset((u, v)) for u, _, v in support if v != TABLE}
    return support | set(spatial_relations(gt_boxes(sample), near_factor, stacked))

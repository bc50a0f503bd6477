"""`write_mcap(run_dir)`: the run's scene and plan as ROS 2 messages in an MCAP file, for Foxglove,
`ros2 bag play` or any MCAP reader. Written to `<run>/simulation/robot.mcap` when the run has a
simulation, else `<run>/robot.mcap` (atomically). A reader of the run folder only: missing stages
are skipped.

Topics (CDR, schemas are ROS 2 Humble .msg text, see `tangram.recording.msgdefs`; every message is
stamped with the run's last finish time from the manifest):
- `/tf_static` (tf2_msgs/msg/TFMessage), one message: `world` -> `table` (from cameras.json
  `table_from_world`), `table` -> `camera_<frame_index>` for every registered camera (optical
  convention: x right, y down, z forward, as COLMAP and ROS optical frames), `table` ->
  `object_<track_id>` for every placed object (box centre, yaw about z).
- `/scene/objects` (visualization_msgs/msg/MarkerArray), one message: a CUBE marker per object
  (ns "objects", id = track id, frame `table`, size and colour as measured, text "<class> #<id>")
  and the table top (ns "table", id 0, a 1 mm thick cube at z = -0.5 mm).
- `/plan` (std_msgs/msg/String), one message: plan.json verbatim.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from mcap_ros2.writer import Writer
from scipy.spatial.transform import Rotation

from tangram.fileio import atomic_path
from tangram.recording.msgdefs import msgdef
from tangram.recording.run import RunFolder

MCAP_NAME = "robot.mcap"
TABLE_FRAME = "table"
WORLD_FRAME = "world"
CUBE = 1


def mcap_path(run: RunFolder) -> Path:
    return run.path / "simulation" / MCAP_NAME if run.has("simulation") else run.path / MCAP_NAME


def write_mcap(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Write the run's MCAP file (default `mcap_path`) and return its path."""
    run = RunFolder.open(run_dir)
    out = Path(out) if out is not None else mcap_path(run)
    stamp_ns = _run_time_ns(run)
    stamp = {"sec": stamp_ns // 1_000_000_000, "nanosec": stamp_ns % 1_000_000_000}
    cameras = run.cameras() or {}
    objects = [o for o in run.objects() if "center" in (o.get("box") or {})]
    plan_text = run.plan_text()
    with atomic_path(out) as tmp, open(tmp, "wb") as stream:
        writer = Writer(stream)
        transforms = _transforms(cameras, objects, stamp)
        if transforms:
            schema = writer.register_msgdef("tf2_msgs/msg/TFMessage", msgdef("tf2_msgs/msg/TFMessage"))
            writer.write_message("/tf_static", schema, {"transforms": transforms}, log_time=stamp_ns)
        markers = _markers(cameras, objects, stamp)
        if markers:
            schema = writer.register_msgdef("visualization_msgs/msg/MarkerArray",
                                            msgdef("visualization_msgs/msg/MarkerArray"))
            writer.write_message("/scene/objects", schema, {"markers": markers}, log_time=stamp_ns)
        if plan_text is not None:
            schema = writer.register_msgdef("std_msgs/msg/String", msgdef("std_msgs/msg/String"))
            writer.write_message("/plan", schema, {"data": plan_text}, log_time=stamp_ns)
        writer.finish()
    return out


def _run_time_ns(run: RunFolder) -> int:
    """The latest `finished_at` of the manifest's stages (deterministic for a given run), else 0."""
    times = []
    for record in (run.manifest.get("stages") or {}).values():
        try:
            times.append(datetime.fromisoformat(str(record.get("finished_at"))).timestamp())
        except (TypeError, ValueError):
            continue
    return int(max(times) * 1e9) if times else 0


def _quat_xyzw(rotation: np.ndarray) -> dict[str, float]:
    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    return {"x": float(x), "y": float(y), "z": float(z), "w": float(w)}


def _yaw_quat(yaw: float) -> dict[str, float]:
    return {"x": 0.0, "y": 0.0, "z": float(np.sin(yaw / 2)), "w": float(np.cos(yaw / 2))}


def _xyz(v: Any) -> dict[str, float]:
    return {"x": float(v[0]), "y": float(v[1]), "z": float(v[2])}


def _tf(parent: str, child: str, translation: Any, rotation: dict[str, float], stamp: dict[str, int]) -> dict:
    return {"header": {"stamp": stamp, "frame_id": parent}, "child_frame_id": child,
            "transform": {"translation": _xyz(translation), "rotation": rotation}}


def _transforms(cameras: dict[str, Any], objects: list[dict[str, Any]], stamp: dict[str, int]) -> list[dict]:
    out: list[dict] = []
    if cameras:
        table_from_world = np.array(cameras.get("table_from_world", np.eye(4)), float)
        world_from_table = np.linalg.inv(table_from_world)
        out.append(_tf(WORLD_FRAME, TABLE_FRAME, world_from_table[:3, 3], _quat_xyzw(world_from_table[:3, :3]), stamp))
        for f in cameras.get("frames", []):
            table_from_camera = table_from_world @ np.array(f["world_from_camera"], float)
            out.append(_tf(TABLE_FRAME, f"camera_{int(f['frame_index'])}", table_from_camera[:3, 3],
                           _quat_xyzw(table_from_camera[:3, :3]), stamp))
    for o in objects:
        box = o["box"]
        out.append(_tf(TABLE_FRAME, f"object_{int(o['track_id'])}", box["center"],
                       _yaw_quat(float(box.get("yaw", 0.0))), stamp))
    return out


def _marker(ns: str, marker_id: int, centre: Any, yaw: float, size: Any, rgba: list[float], text: str,
            stamp: dict[str, int]) -> dict:
    return {
        "header": {"stamp": stamp, "frame_id": TABLE_FRAME}, "ns": ns, "id": marker_id, "type": CUBE, "action": 0,
        "pose": {"position": _xyz(centre), "orientation": _yaw_quat(yaw)}, "scale": _xyz(size),
        "color": dict(zip("rgba", (float(c) for c in rgba), strict=True)),
        "lifetime": {"sec": 0, "nanosec": 0}, "frame_locked": False, "points": [], "colors": [], "text": text,
        "mesh_resource": "", "mesh_use_embedded_materials": False,
    }


def _markers(cameras: dict[str, Any], objects: list[dict[str, Any]], stamp: dict[str, int]) -> list[dict]:
    out: list[dict] = []
    for o in objects:
        box = o["box"]
        colour = [c / 255.0 for c in (o.get("color") or [200, 200, 200])[:3]]
        out.append(_marker("objects", int(o["track_id"]), box["center"], float(box.get("yaw", 0.0)), box["size"],
                           [*colour, 0.9], f"{o.get('class_name', '?')} #{int(o['track_id'])}", stamp))
    table = cameras.get("table") or {}
    size = table.get("rect_size") or table.get("size")
    if size:
        centre = [*map(float, table.get("rect_center", [0.0, 0.0])[:2]), -0.0005]
        out.append(_marker("table", 0, centre, float(table.get("rect_yaw", 0.0)), [size[0], size[1], 0.001],
                           [0.63, 0.47, 0.31, 0.6], "table", stamp))
    return out

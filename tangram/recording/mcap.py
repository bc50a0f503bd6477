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

With a simulation (simulation/trajectory.npz, tangram.sim.trajectory) the log also replays it,
stamped with the run's time plus the simulation seconds (30 Hz):
- `/tf_static` gains `table` -> `panda_link0` (the robot base); the objects' frames leave it for `/tf`.
- `/tf` (tf2_msgs/msg/TFMessage), one message per sample: `table` -> `object_<id>` (each object's
  simulated pose, pybullet's base frame, as result.json's final_poses) and `table` -> every Panda
  link frame (`panda_link1` ... `panda_hand`, `panda_leftfinger`, `panda_rightfinger`, ...).
- `/joint_states` (sensor_msgs/msg/JointState), one message per sample: the 7 arm joints and the
  2 finger joints (rad, m) from the first physics step to the last.
- `/sim/actions` (std_msgs/msg/String), one message at the start of each action: "N. action".
- `/scene/objects` gains a cube per simulated object (ns "sim_objects", id = object id, frame
  `object_<id>`, frame_locked, size and colour from the scene graph), so the boxes move with `/tf`
  (centred on pybullet's base frame: the box centre for boxes and cylinders, a mesh's origin for
  meshes such as the bowl, which may sit a centimetre or so below it).
"""

from __future__ import annotations

from collections.abc import Callable
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
    trajectory = run.trajectory()
    with atomic_path(out) as tmp, open(tmp, "wb") as stream:
        writer = Writer(stream)
        schemas: dict[str, Any] = {}

        def write(topic: str, datatype: str, message: dict[str, Any], time_ns: int) -> None:
            if datatype not in schemas:
                schemas[datatype] = writer.register_msgdef(datatype, msgdef(datatype))
            writer.write_message(topic, schemas[datatype], message, log_time=time_ns, publish_time=time_ns)

        transforms = _transforms(cameras, [] if trajectory is not None else objects, stamp)
        if trajectory is not None:
            base = trajectory["link_positions"][0, 0], trajectory["link_quats"][0, 0]
            transforms.append(_tf(TABLE_FRAME, str(trajectory["link_names"][0]), base[0], _quat(base[1]), stamp))
        if transforms:
            write("/tf_static", "tf2_msgs/msg/TFMessage", {"transforms": transforms}, stamp_ns)
        markers = _markers(cameras, objects, stamp)
        if trajectory is not None:
            markers += _sim_markers(run, trajectory, stamp)
        if markers:
            write("/scene/objects", "visualization_msgs/msg/MarkerArray", {"markers": markers}, stamp_ns)
        if plan_text is not None:
            write("/plan", "std_msgs/msg/String", {"data": plan_text}, stamp_ns)
        if trajectory is not None:
            _write_simulation(write, trajectory, stamp_ns)
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


def _stamp(time_ns: int) -> dict[str, int]:
    return {"sec": time_ns // 1_000_000_000, "nanosec": time_ns % 1_000_000_000}


def _quat(xyzw: Any) -> dict[str, float]:
    return dict(zip("xyzw", (float(v) for v in xyzw), strict=True))


def _write_simulation(write: Callable[[str, str, dict[str, Any], int], None], traj: dict[str, np.ndarray],
                      start_ns: int) -> None:
    """/sim/actions, /joint_states and /tf over the simulation, in time order."""
    times = [start_ns + round(float(t) * 1e9) for t in traj["t"]]
    joints = [str(n) for n in traj["joint_names"]]
    links = [str(n) for n in traj["link_names"]][1:]  # the base is on /tf_static
    objects = [f"object_{int(i)}" for i in traj["object_ids"]]
    actions = sorted(zip(traj["action_start"], traj["action_index"], traj["action_text"], strict=True))
    a = 0
    for k, time_ns in enumerate(times):
        while a < len(actions) and start_ns + round(float(actions[a][0]) * 1e9) <= time_ns:
            at = start_ns + round(float(actions[a][0]) * 1e9)
            write("/sim/actions", "std_msgs/msg/String", {"data": f"{int(actions[a][1]) + 1}. {actions[a][2]}"}, at)
            a += 1
        stamp = _stamp(time_ns)
        write("/joint_states", "sensor_msgs/msg/JointState", {
            "header": {"stamp": stamp, "frame_id": ""}, "name": joints,
            "position": [float(v) for v in traj["joint_positions"][k]], "velocity": [], "effort": []}, time_ns)
        tfs = [_tf(TABLE_FRAME, name, traj["object_positions"][k, i], _quat(traj["object_quats"][k, i]), stamp)
               for i, name in enumerate(objects)]
        tfs += [_tf(TABLE_FRAME, name, traj["link_positions"][k, i + 1], _quat(traj["link_quats"][k, i + 1]), stamp)
                for i, name in enumerate(links)]
        write("/tf", "tf2_msgs/msg/TFMessage", {"transforms": tfs}, time_ns)


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


def _sim_markers(run: RunFolder, traj: dict[str, np.ndarray], stamp: dict[str, int]) -> list[dict]:
    """A cube per simulated object in its own /tf frame (frame_locked: it moves with the simulation)."""
    nodes = run.graph_objects()
    out = []
    for oid in (int(v) for v in traj["object_ids"]):
        node = nodes.get(oid, {})
        colour = [c / 255.0 for c in (node.get("color") or [200, 200, 200])[:3]]
        marker = _marker("sim_objects", oid, [0.0, 0.0, 0.0], 0.0, node.get("size") or [0.05, 0.05, 0.05],
                         [*colour, 1.0], f"{node.get('class_name', 'object')} #{oid}", stamp)
        marker["header"]["frame_id"] = f"object_{oid}"
        marker["frame_locked"] = True
        out.append(marker)
    return out


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

"""`write_rrd(run_dir)`: a Rerun recording (`<run>/recording.rrd`) of a run folder, for the Rerun
viewer (`rerun <run>/recording.rrd`). A reader of the run folder only: stages that are missing,
failed or skipped are left out.

Entities (the world is the metric table frame, z up, metres):
- `video/image` on the `frame` timeline (sequence = the video's frame index): the keyframe images the
  run kept (segmentation/frames and reconstruction/images), downscaled to at most `MAX_WIDTH` pixels
  wide, as JPEG; `video/boxes`: the tracked boxes of that frame with label "<class> #<id>" and
  class_id = track id; `video/masks`: the segmentation masks as one label image (value = track id).
- `world/points`: the sparse cloud with its colours (static).
- `world/cameras/<frame_index>`: each registered camera as a Transform3D (parent from camera) and a
  Pinhole (OpenCV/COLMAP convention: x right, y down, z forward), with its keyframe image under
  `world/cameras/<frame_index>/image` when the run kept it (static).
- `world/objects/<track_id>`: each placed object as a Boxes3D (centre, size, yaw) labelled
  "<class> #<id>", in its measured colour (static).
- `world/table`: the table top as a flat box of its fitted rectangle at z = 0 (static).

With a simulation (simulation/trajectory.npz, tangram.sim.trajectory), on the `sim_time` timeline
(seconds from the first physics step, 30 Hz):
- `world/robot/links`: the Panda's link frames as points, `world/robot/arm`: the chain base ->
  link 8 -> hand -> fingers as a line strip (labelled "panda"), `world/robot/hand`: the hand's
  Transform3D (axes shown).
- `robot/joints/<joint name>`: each joint's position as a Scalars series (rad; fingers in m).
- `world/sim_objects/<id>`: each simulated object's pose as a Transform3D (pybullet's base frame,
  as result.json's final_poses) with its box (static, size from the scene graph) labelled
  "<class> #<id>".
- `sim/actions`: a TextLog entry at the start of each action ("N. action"), and one at its end
  ("N. ok" or "N. FAILED").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rerun as rr

from tangram.errors import TangramError
from tangram.fileio import atomic_path
from tangram.recording.run import RunFolder

RRD_NAME = "recording.rrd"
MAX_WIDTH = 640
JPEG_QUALITY = 85


def write_rrd(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Write the run's Rerun recording (default `<run>/recording.rrd`, atomically) and return its path."""
    run = RunFolder.open(run_dir)
    out = Path(out) if out is not None else run.path / RRD_NAME
    with atomic_path(out) as tmp:
        rec = rr.RecordingStream("tangram", recording_id=f"tangram:{run.name}", send_properties=False)
        rec.save(tmp)
        rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        _log_video(rec, run)
        _log_world(rec, run)
        _log_simulation(rec, run)
        rec.flush()
        rec.disconnect()
        del rec
    return out


# --- 2D: keyframes, boxes, masks on the frame timeline ---------------------------------------------


def _keyframe_images(run: RunFolder) -> dict[int, Path]:
    """frame_index -> a JPEG/PNG of that frame kept in the run folder."""
    images: dict[int, Path] = {}
    cameras = run.cameras()
    if cameras:
        for f in cameras.get("frames", []):
            path = run.file(f"reconstruction/{f.get('image', '')}")
            if path is not None:
                images[int(f["frame_index"])] = path
    masks = run.masks()
    if masks:
        for k in masks.get("keyframes", []):
            path = run.file(f"segmentation/{k.get('image', '')}")
            if path is not None:
                images[int(k["frame_index"])] = path  # segmentation's copy is the original frame
    return images


def _read_small(path: Path) -> np.ndarray | None:
    """The image at most MAX_WIDTH wide (BGR), or None when the file cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    scale = min(1.0, MAX_WIDTH / image.shape[1])
    if scale < 1.0:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    return image


def _jpeg(image_bgr: np.ndarray) -> rr.EncodedImage:
    ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise TangramError("OpenCV could not encode a keyframe as JPEG")
    return rr.EncodedImage(contents=data.tobytes(), media_type="image/jpeg")


def _log_video(rec: rr.RecordingStream, run: RunFolder) -> None:
    images = _keyframe_images(run)
    tracks = run.tracks()
    video_width = ((tracks or {}).get("video") or {}).get("width")
    detections = {int(f["frame_index"]): f.get("detections", []) for f in (tracks or {}).get("frames", [])}
    masks_by_frame = {int(k["frame_index"]): k.get("masks", []) for k in (run.masks() or {}).get("keyframes", [])}
    for frame_index in sorted(images):
        image = _read_small(images[frame_index])
        if image is None:
            continue
        scale = image.shape[1] / float(video_width or image.shape[1])  # boxes are in original pixels
        rec.set_time("frame", sequence=frame_index)
        rec.log("video/image", _jpeg(image))
        dets = detections.get(frame_index, [])
        if dets:
            boxes = np.array([d["box_xyxy"] for d in dets], float) * scale
            rec.log("video/boxes", rr.Boxes2D(
                array=boxes, array_format=rr.Box2DFormat.XYXY,
                labels=[f"{d['class_name']} #{d['track_id']}" for d in dets],
                class_ids=[int(d["track_id"]) for d in dets]))
        else:
            rec.log("video/boxes", rr.Clear(recursive=False))
        label = _label_image(run, masks_by_frame.get(frame_index, []), image.shape[:2])
        if label is not None:
            rec.log("video/masks", rr.SegmentationImage(label))


def _label_image(run: RunFolder, masks: list[dict[str, Any]], shape: tuple[int, int]) -> np.ndarray | None:
    label = np.zeros(shape, np.uint16)
    found = False
    for m in masks:
        path = run.file(f"segmentation/{m.get('mask', '')}")
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path is not None else None
        if mask is None:
            continue
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        label[mask > 127] = int(m["track_id"])
        found = True
    return label if found else None


# --- 3D: points, cameras, objects, table (static) --------------------------------------------------


def _log_world(rec: rr.RecordingStream, run: RunFolder) -> None:
    points = run.points()
    if points is not None and len(points[0]):
        rec.log("world/points", rr.Points3D(points[0], colors=points[1], radii=rr.Radius.ui_points(2.0)),
                static=True)
    cameras = run.cameras()
    if cameras:
        _log_cameras(rec, run, cameras)
        table = cameras.get("table") or {}
        size = table.get("rect_size") or table.get("size")
        if size:
            centre = [*map(float, table.get("rect_center", [0.0, 0.0])[:2]), 0.0]
            rec.log("world/table", rr.Boxes3D(
                centers=[centre], sizes=[[float(size[0]), float(size[1]), 0.0]],
                rotation_axis_angles=[rr.RotationAxisAngle(axis=[0, 0, 1], radians=float(table.get("rect_yaw", 0.0)))],
                labels=["table"], colors=[[160, 120, 80]], fill_mode="solid"), static=True)
    for o in run.objects():
        box = o.get("box") or {}
        if "center" not in box or "size" not in box:
            continue
        label = f"{o.get('class_name', '?')} #{o['track_id']}"
        colour = o.get("color") or [200, 200, 200]
        rec.log(f"world/objects/{int(o['track_id'])}", rr.Boxes3D(
            centers=[box["center"]], sizes=[box["size"]],
            rotation_axis_angles=[rr.RotationAxisAngle(axis=[0, 0, 1], radians=float(box.get("yaw", 0.0)))],
            labels=[label], class_ids=[int(o["track_id"])], colors=[[int(c) for c in colour[:3]]],
            show_labels=True), static=True)


def _log_cameras(rec: rr.RecordingStream, run: RunFolder, cameras: dict[str, Any]) -> None:
    intr = cameras.get("intrinsics") or {}
    width, height = float(intr.get("width", 0)), float(intr.get("height", 0))
    if not width or not height:
        return
    K = np.array([[intr["fx"], 0, intr["cx"]], [0, intr["fy"], intr["cy"]], [0, 0, 1]], float)
    images = _keyframe_images(run)
    for f in cameras.get("frames", []):
        pose = np.array(f["world_from_camera"], float)
        path = f"world/cameras/{int(f['frame_index'])}"
        rec.log(path, rr.Transform3D(translation=pose[:3, 3], mat3x3=pose[:3, :3],
                                     relation=rr.TransformRelation.ParentFromChild), static=True)
        loaded = _read_small(images[int(f["frame_index"])]) if int(f["frame_index"]) in images else None
        scale = loaded.shape[1] / width if loaded is not None else 1.0
        S = np.diag([scale, scale, 1.0])
        rec.log(path, rr.Pinhole(image_from_camera=S @ K, resolution=[width * scale, height * scale],
                                 camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=0.05), static=True)
        if loaded is not None:
            rec.log(f"{path}/image", _jpeg(loaded), static=True)


# --- the simulation on the sim_time timeline -----------------------------------------------------

ARM_CHAIN = ("panda_link0", "panda_link1", "panda_link2", "panda_link3", "panda_link4", "panda_link5",
             "panda_link6", "panda_link7", "panda_link8", "panda_hand")


def _log_simulation(rec: rr.RecordingStream, run: RunFolder) -> None:
    traj = run.trajectory()
    if traj is None:
        return
    rec.reset_time()  # the video's `frame` is not this entity's time
    t = traj["t"].astype(float)
    times = [rr.TimeColumn("sim_time", duration=t)]
    names = [str(n) for n in traj["link_names"]]
    links = traj["link_positions"]
    n, count = links.shape[0], links.shape[1]
    rec.send_columns("world/robot/links", indexes=times,
                     columns=rr.Points3D.columns(positions=links.reshape(-1, 3)).partition([count] * n))
    rec.log("world/robot/links", rr.Points3D.from_fields(radii=0.012, colors=[[230, 230, 230]]), static=True)
    chain = [names.index(c) for c in ARM_CHAIN if c in names]
    fingers = [i for i, c in enumerate(names) if "finger" in c]
    hand = names.index("panda_hand") if "panda_hand" in names else chain[-1]
    for k in range(n):
        rec.set_time("sim_time", duration=float(t[k]))
        strips = [links[k, chain]] + [links[k, [hand, f]] for f in fingers]
        rec.log("world/robot/arm", rr.LineStrips3D(strips, radii=0.02, colors=[[240, 120, 40]],
                                                   labels=["panda"] + [""] * len(fingers)))
    rec.send_columns("world/robot/hand", indexes=times, columns=rr.Transform3D.columns(
        translation=links[:, hand], quaternion=traj["link_quats"][:, hand]))
    rec.log("world/robot/hand", rr.TransformAxes3D(0.1), static=True)
    for j, name in enumerate(traj["joint_names"]):
        rec.send_columns(f"robot/joints/{name}", indexes=times,
                         columns=rr.Scalars.columns(scalars=traj["joint_positions"][:, j]))
    nodes = run.graph_objects()
    for i, oid in enumerate(int(v) for v in traj["object_ids"]):
        path = f"world/sim_objects/{oid}"
        rec.send_columns(path, indexes=times, columns=rr.Transform3D.columns(
            translation=traj["object_positions"][:, i], quaternion=traj["object_quats"][:, i]))
        node = nodes.get(oid, {})
        size, label = node.get("size", [0.05, 0.05, 0.05]), f"{node.get('class_name', 'object')} #{oid}"
        rec.log(path, rr.Boxes3D(half_sizes=[np.array(size) / 2], labels=[label], class_ids=[oid], show_labels=True),
                static=True)
    for index, start, end, text, ok in zip(traj["action_index"], traj["action_start"], traj["action_end"],
                                            traj["action_text"], traj["action_success"], strict=True):
        rec.set_time("sim_time", duration=float(start))
        rec.log("sim/actions", rr.TextLog(f"{int(index) + 1}. {text}", level=rr.TextLogLevel.INFO))
        rec.set_time("sim_time", duration=float(end))
        rec.log("sim/actions", rr.TextLog(f"{int(index) + 1}. {'ok' if ok else 'FAILED'}",
                                          level=rr.TextLogLevel.INFO if ok else rr.TextLogLevel.ERROR))

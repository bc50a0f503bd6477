"""The built-in sample: a pybullet tabletop filmed by an orbiting camera, with exact ground truth.

`tangram sample` renders it; it is TANGRAM's default input when the user gives none. The scene is
a wooden table in a textured room with a cup (pybullet_data mug), a porcelain bowl (a lathe mesh
generated here), a teddy bear, a small soccer ball and a tray. The objects are dropped and settled
with physics, then a camera circles the table along an arc with some height variation, always
looking at the table centre. Rendering is pybullet's CPU TinyRenderer in DIRECT mode.

Output folder (see `render_sample`)::

    sample.mp4            the video (H.264 when PyAV is available, else OpenCV 'mp4v')
    ground_truth.json     everything below, documented in `_GT_DOC`
    masks/frame_000000.png  instance masks: uint8 pixel = gt_id of the object seen there, 0 = none
    assets/               the generated table, room and bowl (URDF + OBJ + texture), loadable as is

Conventions of ground_truth.json:
- world: pybullet's world frame, metres, z up; the floor is z = 0.
- camera poses: `world_from_camera` 4x4, OpenCV camera axes (x right, y down, z forward).
- pixels: OpenCV convention, the centre of pixel (col, row) is at (col, row). TinyRenderer
  rasterises pixel columns at x_ndc = 2*col/W - 1 and rows at y_ndc = 1 - 2*(row+1)/H (measured:
  see tests), so cx = W/2 and cy = H/2 - 1. COLMAP puts pixel centres at +0.5; the
  `colmap_camera` entry already has that shift.
- boxes: box_xyxy = [min col, min row, max col + 1, max row + 1] of the object's visible pixels
  (the image spans [0, W] x [0, H], as in detector boxes).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pybullet as p
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from tangram.assets import BowlProfile, TableSpec, write_bowl_urdf, write_room_urdf, write_table_urdf
from tangram.errors import TangramError
from tangram.fileio import read_json, write_json
from tangram.stages.base import ProgressFn, no_progress

FORMAT_VERSION = 1  # bump when the scene or the ground truth changes: it names the cache folder
GT_FORMAT = f"tangram.sample_gt/{FORMAT_VERSION}"
VIDEO_NAME = "sample.mp4"
GT_NAME = "ground_truth.json"

_TIME_STEP = 1.0 / 240.0
_FOV_Y_DEG = 50.0
_NEAR, _FAR = 0.05, 12.0
_TABLE = TableSpec()
_TRAY_SCALE = 0.6  # pybullet_data's traybox is 60 cm square; 36 cm suits a 1.2 m table


@dataclass(frozen=True)
class ObjectSpec:
    """One object of the scene: what to load and the footprint radius used to place it apart."""

    name: str
    coco_class: str | None
    urdf: str  # "pybullet_data/<file>" or "assets/<file>" (generated into the sample folder)
    scale: float
    mass: float  # kg: realistic, pybullet_data's defaults are not (a 10 kg soccer ball)
    footprint: float  # metres: radius of a circle containing the object seen from above
    upright: tuple[float, float, float] = (0.0, 0.0, 0.0)  # roll, pitch, yaw putting it the right way up
    rgba: tuple[float, float, float, float] | None = None


# Sizes fit a Franka Panda's 8 cm gripper opening (cup 7 cm across the rim, ball 7 cm, teddy 7.6 cm
# deep) and the bowl (18 cm across, 7 cm deep) takes the cup, so "put the cup in the bowl" works.
OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec("cup", "cup", "pybullet_data/objects/mug.urdf", 0.85, 0.30, 0.065, rgba=(0.85, 0.15, 0.1, 1)),
    ObjectSpec("bowl", "bowl", "assets/bowl.urdf", 1.0, 0.30, 0.095),
    ObjectSpec("teddy bear", "teddy bear", "pybullet_data/teddy_vhacd.urdf", 1.2, 0.15, 0.075,
               upright=(math.pi / 2, 0.0, 0.0), rgba=(0.55, 0.35, 0.18, 1)),
    ObjectSpec("sports ball", "sports ball", "pybullet_data/soccerball.urdf", 0.07, 0.06, 0.04),
    ObjectSpec("tray", None, "pybullet_data/tray/traybox.urdf", _TRAY_SCALE, 0.6, 0.19),
)


@dataclass
class SampleScene:
    """A rendered sample on disk; the accessors read its ground truth."""

    root: Path
    gt: dict[str, Any] = field(repr=False)

    @property
    def video_path(self) -> Path:
        return self.root / self.gt["video"]

    @property
    def num_frames(self) -> int:
        return int(self.gt["num_frames"])

    @property
    def fps(self) -> float:
        return float(self.gt["fps"])

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 K in the OpenCV pixel convention."""
        return np.array(self.gt["intrinsics"]["K"], float)

    @property
    def objects(self) -> list[dict[str, Any]]:
        return list(self.gt["objects"])

    @property
    def table_top_z(self) -> float:
        return float(self.gt["table"]["top_z"])

    def object(self, name: str) -> dict[str, Any]:
        for obj in self.gt["objects"]:
            if obj["name"] == name:
                return obj
        raise KeyError(name)

    def world_from_camera(self, frame_index: int) -> np.ndarray:
        return np.array(self.gt["frames"][frame_index]["world_from_camera"], float)

    def boxes(self, frame_index: int) -> dict[int, list[float]]:
        """gt_id -> box_xyxy of the objects visible in that frame."""
        return {o["gt_id"]: o["box_xyxy"] for o in self.gt["frames"][frame_index]["objects"]}

    def mask(self, frame_index: int) -> np.ndarray:
        """HxW uint8 instance mask: gt_id per pixel, 0 where no object is seen."""
        path = self.root / self.gt["frames"][frame_index]["mask"]
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise TangramError(f"sample mask missing or unreadable: {path}")
        return mask

    def project(self, point_world: np.ndarray, frame_index: int) -> np.ndarray:
        """Pixel (OpenCV convention) of a world point seen from that frame's camera."""
        cam = np.linalg.inv(self.world_from_camera(frame_index)) @ np.append(point_world, 1.0)
        uvw = self.intrinsics @ cam[:3]
        return uvw[:2] / uvw[2]


# ---------------------------------------------------------------------------------------------
# Public API


def default_sample_path(seed: int = 0) -> Path:
    """Cache folder of a seed's sample: $TANGRAM_CACHE_DIR or ~/.cache/tangram, versioned."""
    base = os.environ.get("TANGRAM_CACHE_DIR") or Path.home() / ".cache" / "tangram"
    return Path(base) / f"sample-seed{seed}-v{FORMAT_VERSION}"


def ensure_sample(seed: int = 0, progress: ProgressFn = no_progress) -> Path:
    """The video of the cached sample for `seed`, rendering it first if it is not there yet."""
    root = default_sample_path(seed)
    if not (root / GT_NAME).is_file():
        render_sample(root, seed, progress=progress)
    return load_sample(root).video_path


def load_sample(out_dir: Path) -> SampleScene:
    """Read a rendered sample's ground truth back."""
    out_dir = Path(out_dir)
    gt_path = out_dir / GT_NAME
    if not gt_path.is_file():
        raise TangramError(f"no sample at {out_dir}: {GT_NAME} is missing (run `tangram sample`)")
    gt = read_json(gt_path)
    if gt.get("format") != GT_FORMAT:
        raise TangramError(f"{gt_path} has format {gt.get('format')!r}, expected {GT_FORMAT!r}; re-render it")
    return SampleScene(out_dir, gt)


def render_sample(out_dir: Path, seed: int = 0, *, num_frames: int = 100, fps: int = 10, width: int = 640,
                  height: int = 480, progress: ProgressFn = no_progress) -> SampleScene:
    """Render the sample for `seed` into `out_dir` (replacing it) and return its ground truth.

    The render happens in a temporary sibling folder that is renamed onto `out_dir` only when
    complete, so a killed render never leaves a half sample behind.
    """
    if num_frames < 1 or fps < 1 or width < 16 or height < 16:
        raise TangramError("sample needs num_frames >= 1, fps >= 1 and at least 16x16 pixels")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _render_into(tmp, seed, num_frames, fps, width, height, progress)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_sample(out_dir)


# ---------------------------------------------------------------------------------------------
# Scene construction


@dataclass
class _Body:
    spec: ObjectSpec
    gt_id: int
    body_id: int
    urdf_path: Path


def _connect() -> BulletClient:
    client = BulletClient(connection_mode=p.DIRECT)
    client.setAdditionalSearchPath(pybullet_data.getDataPath())
    client.setGravity(0, 0, -9.81)
    client.setPhysicsEngineParameter(fixedTimeStep=_TIME_STEP, deterministicOverlappingPairs=1)
    return client


def _resolve_urdf(spec: ObjectSpec, asset_dir: Path) -> Path:
    kind, _, rel = spec.urdf.partition("/")
    return Path(pybullet_data.getDataPath()) / rel if kind == "pybullet_data" else asset_dir / rel


def _place(rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """Random (x, y, yaw) per object on the table top, footprints apart; the tray at one end."""
    half_x, half_y = _TABLE.size[0] / 2, _TABLE.size[1] / 2
    side = 1.0 if rng.random() < 0.5 else -1.0
    tray = next(s for s in OBJECTS if s.name == "tray")
    placed = {"tray": (side * (half_x - tray.footprint - 0.04), float(rng.uniform(-0.12, 0.12)),
                       float(rng.uniform(-0.3, 0.3)))}
    for spec in OBJECTS:
        if spec.name in placed:
            continue
        for _ in range(10_000):
            # Objects stay in the central part of the table: every one in view along the whole orbit.
            x = float(rng.uniform(-half_x + 0.12, half_x - 0.12))
            y = float(rng.uniform(-half_y + 0.12, half_y - 0.12))
            if all(math.hypot(x - ox, y - oy) > spec.footprint + _footprint(other) + 0.03
                   for other, (ox, oy, _) in placed.items()):
                placed[spec.name] = (x, y, float(rng.uniform(-math.pi, math.pi)))
                break
        else:  # pragma: no cover - the table has room for many times these footprints
            raise TangramError(f"could not place the {spec.name} on the sample table")
    return placed


def _footprint(name: str) -> float:
    return next(s.footprint for s in OBJECTS if s.name == name)


def _load_objects(client: BulletClient, asset_dir: Path, rng: np.random.Generator) -> list[_Body]:
    placement = _place(rng)
    bodies = []
    for gt_id, spec in enumerate(OBJECTS, start=1):
        x, y, yaw = placement[spec.name]
        roll, pitch, _ = spec.upright
        orn = client.getQuaternionFromEuler((roll, pitch, yaw))
        urdf = _resolve_urdf(spec, asset_dir)
        body = client.loadURDF(str(urdf), (x, y, _TABLE.top_z + 0.3), orn, globalScaling=spec.scale)
        # Move the body so that its AABB centre is at (x, y) (meshes like the teddy's sit far from
        # their URDF origin) and its lowest point 2 mm above the table top; physics settles it.
        lo, hi = (np.array(v) for v in client.getAABB(body))
        pos, _ = client.getBasePositionAndOrientation(body)
        shift = np.array([x - (lo[0] + hi[0]) / 2, y - (lo[1] + hi[1]) / 2, _TABLE.top_z + 0.002 - lo[2]])
        client.resetBasePositionAndOrientation(body, (np.array(pos) + shift).tolist(), orn)
        client.changeDynamics(body, -1, mass=spec.mass, lateralFriction=0.8, spinningFriction=0.002,
                              rollingFriction=0.0005)
        if spec.rgba is not None:
            client.changeVisualShape(body, -1, rgbaColor=spec.rgba)
        bodies.append(_Body(spec, gt_id, body, urdf))
    return bodies


def _settle(client: BulletClient, bodies: list[_Body], max_seconds: float = 4.0) -> float:
    """Step physics until every object rests; returns the simulated seconds."""
    steps = 0
    while steps * _TIME_STEP < max_seconds:
        for _ in range(60):
            client.stepSimulation()
        steps += 60
        speeds = [np.linalg.norm(np.concatenate(client.getBaseVelocity(b.body_id))) for b in bodies]
        if steps * _TIME_STEP >= 0.75 and max(speeds) < 2e-3:
            break
    # Zero the residual velocities: the scene is static while filmed.
    for b in bodies:
        client.resetBaseVelocity(b.body_id, (0, 0, 0), (0, 0, 0))
    return steps * _TIME_STEP


# ---------------------------------------------------------------------------------------------
# Camera


def _camera_path(num_frames: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(eye, target) per frame: a 150 degree arc around the table, radius and height breathing.

    A smooth arc (not a full circle) is what a hand-held phone sweep looks like, and its
    baseline gives COLMAP parallax; the height variation keeps the views from being coplanar.
    """
    start = float(rng.uniform(-math.pi, math.pi))
    sweep = math.radians(150.0)
    target = np.array([0.0, 0.0, _TABLE.top_z + 0.04])
    path = []
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        azimuth = start + sweep * t
        radius = 0.95 + 0.08 * math.sin(2 * math.pi * t)
        height = _TABLE.top_z + 0.55 + 0.12 * math.sin(3 * math.pi * t + 0.5)
        eye = np.array([radius * math.cos(azimuth), radius * math.sin(azimuth), height])
        path.append((eye, target))
    return path


def _gl_view(client: BulletClient, eye: np.ndarray, target: np.ndarray) -> list[float]:
    return client.computeViewMatrix(eye.tolist(), target.tolist(), [0.0, 0.0, 1.0])


def _world_from_camera(view: list[float]) -> np.ndarray:
    """OpenCV-convention camera pose from pybullet's column-major OpenGL view matrix."""
    gl_from_world = np.array(view, float).reshape(4, 4).T
    cv_from_gl = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL looks down -z with y up
    return np.linalg.inv(cv_from_gl @ gl_from_world)


def _intrinsics(projection: list[float], width: int, height: int) -> dict[str, Any]:
    proj = np.array(projection, float).reshape(4, 4).T
    fx, fy = proj[0, 0] * width / 2, proj[1, 1] * height / 2
    # TinyRenderer's raster offsets (measured, see the module docstring): cx = W/2, cy = H/2 - 1.
    cx, cy = width / 2 - proj[0, 2] * width / 2, height / 2 + proj[1, 2] * height / 2 - 1.0
    k = [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
    return {"fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": width, "height": height, "K": k,
            "pixel_convention": "opencv: centre of pixel (col, row) at (col, row)"}


# ---------------------------------------------------------------------------------------------
# Rendering


def _render(client: BulletClient, view: list[float], projection: list[float], width: int, height: int
            ) -> tuple[np.ndarray, np.ndarray]:
    _, _, rgba, _, seg = client.getCameraImage(
        width, height, view, projection, renderer=p.ER_TINY_RENDERER, shadow=1,
        lightDirection=[0.4, -0.5, 1.0], lightColor=[1.0, 1.0, 0.97], lightDistance=3.0,
        lightAmbientCoeff=0.55, lightDiffuseCoeff=0.45, lightSpecularCoeff=0.08)
    rgb = np.asarray(rgba, np.uint8).reshape(height, width, 4)[:, :, :3]
    seg = np.asarray(seg, np.int64).reshape(height, width)
    return rgb, seg


class _VideoWriter:
    """H.264 through PyAV's bundled libx264 when available; else OpenCV 'avc1', else 'mp4v'."""

    def __init__(self, path: Path, fps: int, width: int, height: int) -> None:
        self.codec = ""
        self._av = None
        self._cv = None
        try:
            import av

            container = av.open(str(path), mode="w")
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # Near-lossless and single-threaded: frames must decode the same for the same seed.
            stream.options = {"crf": "16", "preset": "medium", "threads": "1", "x264-params": "threads=1"}
            self._av, self._stream, self.codec = container, stream, "h264 (libx264 via PyAV)"
            return
        except (ImportError, ValueError, OSError):  # PyAV missing or built without libx264
            pass
        for fourcc, name in (("avc1", "h264 (OpenCV avc1)"), ("mp4v", "mpeg4 (OpenCV mp4v)")):
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
            if writer.isOpened():
                self._cv, self.codec = writer, name
                return
        raise TangramError("no video encoder available: install PyAV (`pip install av`) or an OpenCV with FFmpeg")

    def write(self, rgb: np.ndarray) -> None:
        if self._av is not None:
            import av

            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in self._stream.encode(frame):
                self._av.mux(packet)
        else:
            self._cv.write(np.ascontiguousarray(rgb[:, :, ::-1]))

    def close(self) -> None:
        if self._av is not None:
            for packet in self._stream.encode():
                self._av.mux(packet)
            self._av.close()
        elif self._cv is not None:
            self._cv.release()


def _frame_objects(seg: np.ndarray, bodies: list[_Body]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Instance mask (gt ids) and per-object box and pixel count from pybullet's segmentation buffer."""
    # The buffer holds objectUniqueId + (linkIndex + 1) << 24; these bodies have only a base link.
    body_ids = np.where(seg >= 0, seg & ((1 << 24) - 1), -1)
    mask = np.zeros(seg.shape, np.uint8)
    entries = []
    for b in bodies:
        hit = body_ids == b.body_id
        count = int(hit.sum())
        if count == 0:
            continue
        mask[hit] = b.gt_id
        rows = np.flatnonzero(hit.any(axis=1))
        cols = np.flatnonzero(hit.any(axis=0))
        box = [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]
        entries.append({"gt_id": b.gt_id, "box_xyxy": box, "visible_pixels": count})
    return mask, entries


# ---------------------------------------------------------------------------------------------
# Ground truth


def _pose_matrix(client: BulletClient, pos: Any, orn: Any) -> list[list[float]]:
    m = np.eye(4)
    m[:3, :3] = np.array(client.getMatrixFromQuaternion(orn)).reshape(3, 3)
    m[:3, 3] = pos
    return m.tolist()


def _object_gt(client: BulletClient, b: _Body, asset_dir: Path) -> dict[str, Any]:
    com_pos, com_orn = client.getBasePositionAndOrientation(b.body_id)
    # pybullet reports the centre-of-mass frame; loadURDF wants the URDF link frame, so undo the
    # URDF's inertial offset to give a pose that reloads the object exactly where it rests.
    inertial_pos, inertial_orn = client.getDynamicsInfo(b.body_id, -1)[3:5]
    inv_pos, inv_orn = client.invertTransform(inertial_pos, inertial_orn)
    link_pos, link_orn = client.multiplyTransforms(com_pos, com_orn, inv_pos, inv_orn)
    lo, hi = (np.array(v) for v in client.getAABB(b.body_id))
    rel = b.spec.urdf
    return {
        "gt_id": b.gt_id,
        "name": b.spec.name,
        "coco_class": b.spec.coco_class,
        "urdf": rel,
        "urdf_scale": b.spec.scale,
        "position": ((lo + hi) / 2).tolist(),
        "orientation_xyzw": list(link_orn),
        "urdf_position": list(link_pos),
        "world_from_object": _pose_matrix(client, link_pos, link_orn),
        "aabb_min": lo.tolist(),
        "aabb_max": hi.tolist(),
        "size": (hi - lo).tolist(),
        "yaw": float(client.getEulerFromQuaternion(link_orn)[2]),
        "mass": b.spec.mass,
    }


def _relations(client: BulletClient, bodies: list[_Body], table_id: int) -> list[dict[str, Any]]:
    """'on' relations read from the settled contacts: what each object actually rests on."""
    names = {b.body_id: b.gt_id for b in bodies}
    names[table_id] = "table"
    relations = []
    for b in bodies:
        supports = set()
        for contact in client.getContactPoints(bodyA=b.body_id):
            other = contact[2]
            normal_z = contact[7][2]  # normal on B pointing towards A: upward when A rests on B
            if other in names and normal_z > 0.7:
                supports.add(names[other])
        for support in sorted(supports, key=str):
            relation = "inside" if support == _gt_id_of(bodies, "tray") else "on"
            relations.append({"subject": b.gt_id, "relation": relation, "object": support})
    return relations


def _gt_id_of(bodies: list[_Body], name: str) -> int:
    return next(b.gt_id for b in bodies if b.spec.name == name)


def _table_gt(first_world_from_camera: np.ndarray) -> dict[str, Any]:
    """Table plane, and the TANGRAM table frame (x right, y away from the first camera, z up)."""
    forward = first_world_from_camera[:3, 2].copy()
    forward[2] = 0.0
    forward /= np.linalg.norm(forward)
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    world_from_table = np.eye(4)
    world_from_table[:3, :3] = np.column_stack([right, forward, up])
    world_from_table[:3, 3] = [0.0, 0.0, _TABLE.top_z]
    return {
        "top_z": _TABLE.top_z,
        "size": list(_TABLE.size),
        "center": [0.0, 0.0, _TABLE.top_z],
        "plane": [0.0, 0.0, 1.0, -_TABLE.top_z],  # a x + b y + c z + d = 0
        "world_from_table": world_from_table.tolist(),
        "urdf": "assets/table.urdf",
    }


def _render_into(root: Path, seed: int, num_frames: int, fps: int, width: int, height: int,
                 progress: ProgressFn) -> None:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    asset_dir = root / "assets"
    progress(0, num_frames, "building the sample scene")
    # Separate streams per purpose: a texture change never moves the objects, and vice versa.
    tex_rng, place_rng, cam_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 3))
    room_urdf = write_room_urdf(asset_dir, tex_rng)
    table_urdf = write_table_urdf(asset_dir, tex_rng, _TABLE)
    write_bowl_urdf(asset_dir, tex_rng, BowlProfile())
    client = _connect()
    try:
        client.loadURDF(str(room_urdf), useFixedBase=True)
        table_id = client.loadURDF(str(table_urdf), useFixedBase=True)
        bodies = _load_objects(client, asset_dir, place_rng)
        settled_s = _settle(client, bodies)
        objects = [_object_gt(client, b, asset_dir) for b in bodies]
        relations = _relations(client, bodies, table_id)
        projection = client.computeProjectionMatrixFOV(_FOV_Y_DEG, width / height, _NEAR, _FAR)
        frames = _film(client, bodies, root, _camera_path(num_frames, cam_rng), projection, width, height, fps,
                       progress)
    finally:
        client.disconnect()
    gt = {
        "format": GT_FORMAT,
        "doc": _GT_DOC,
        "seed": seed,
        "video": VIDEO_NAME,
        "codec": frames["codec"],
        "fps": fps,
        "num_frames": num_frames,
        "width": width,
        "height": height,
        "intrinsics": _intrinsics(projection, width, height),
        "projection": {"fov_y_deg": _FOV_Y_DEG, "near": _NEAR, "far": _FAR, "opengl": list(projection)},
        "world": {"frame": "pybullet world, metres, z up, floor at z=0", "gravity": [0.0, 0.0, -9.81]},
        "table": _table_gt(np.array(frames["frames"][0]["world_from_camera"])),
        "objects": objects,
        "relations": relations,
        "frames": frames["frames"],
        "render": {"seconds": round(time.perf_counter() - started, 2), "settled_seconds": settled_s,
                   "renderer": "pybullet ER_TINY_RENDERER", "pybullet_api": p.getAPIVersion()},
    }
    gt["colmap_camera"] = _colmap_camera(gt["intrinsics"])
    write_json(root / GT_NAME, gt)


def _colmap_camera(intr: dict[str, Any]) -> dict[str, Any]:
    return {"model": "PINHOLE", "width": intr["width"], "height": intr["height"],
            "params": [intr["fx"], intr["fy"], intr["cx"] + 0.5, intr["cy"] + 0.5]}


def _film(client: BulletClient, bodies: list[_Body], root: Path, path: list[tuple[np.ndarray, np.ndarray]],
          projection: list[float], width: int, height: int, fps: int, progress: ProgressFn) -> dict[str, Any]:
    (root / "masks").mkdir(parents=True, exist_ok=True)
    writer = _VideoWriter(root / VIDEO_NAME, fps, width, height)
    frames = []
    try:
        for index, (eye, target) in enumerate(path):
            view = _gl_view(client, eye, target)
            rgb, seg = _render(client, view, projection, width, height)
            writer.write(rgb)
            mask, entries = _frame_objects(seg, bodies)
            mask_rel = f"masks/frame_{index:06d}.png"
            cv2.imwrite(str(root / mask_rel), mask)
            frames.append({"frame_index": index, "world_from_camera": _world_from_camera(view).tolist(),
                           "eye": eye.tolist(), "target": target.tolist(), "mask": mask_rel,
                           "objects": entries})
            progress(index + 1, len(path), "rendering the sample")
    finally:
        writer.close()
    return {"codec": writer.codec, "frames": frames}


_GT_DOC = (
    "TANGRAM sample ground truth. World: pybullet world frame, metres, z up, floor z=0. "
    "intrinsics: pinhole K in the OpenCV pixel convention (centre of pixel (col,row) at (col,row)); "
    "colmap_camera has the same camera in COLMAP's convention (pixel centres at +0.5). "
    "frames[i].world_from_camera: 4x4 camera-to-world, OpenCV camera axes (x right, y down, z forward). "
    "frames[i].objects: box_xyxy=[min col, min row, max col+1, max row+1] of the visible pixels and "
    "visible_pixels; frames[i].mask: PNG, uint8 pixel = gt_id of the object seen, 0 = background. "
    "objects[j]: position = centre of the world AABB, size = AABB extents (pybullet collision AABB), "
    "orientation_xyzw/urdf_position/world_from_object = URDF link pose (reload with loadURDF(urdf, "
    "urdf_position, orientation_xyzw, globalScaling=urdf_scale)); urdf 'pybullet_data/...' is relative to "
    "pybullet_data.getDataPath(), 'assets/...' to this folder. table: top plane z=top_z, size along world "
    "x,y, world_from_table = TANGRAM table frame (origin table-top centre, x right and y away from the "
    "first camera, z up). relations: subject gt_id rests 'on' object (gt_id or 'table'), 'inside' for the "
    "tray, read from physics contacts after settling."
)

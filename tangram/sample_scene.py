"""The built-in sample: a pybullet tabletop filmed by an orbiting camera, with exact ground truth.

`tangram sample` renders it; it is TANGRAM's default input when the user gives none. A light wooden
table stands in a room with a speckled terrazzo floor and poster-covered walls (procedural,
non-repeating textures: COLMAP needs distinctive features). On it: a cup (pybullet_data's mug), a
porcelain bowl (a lathe mesh generated here), a teddy bear and a tennis ball (built here too:
pybullet_data's teddy and soccer ball were rarely recognised by a COCO detector) and a tray
(pybullet_data's traybox). The objects are dropped and settled with physics; then a camera sweeps a
120 degree arc around them with some height and distance variation, always looking at the middle
of the objects, near the table centre. Rendering is pybullet's CPU TinyRenderer in DIRECT mode,
with shadows. Same seed, same bytes; another seed moves the objects, the arc and the textures.

Scenarios (`tangram sample --scenario NAME`, `SCENARIOS`) are harder variants with the same
exact ground truth, reproducing what fragments identities on real footage: `shuffle` (three
identical red cups swapped around kinematically, shell-game style, under a slow 30 degree arc),
`occlusion` (the default scene while a 10 cm board sweeps between camera and objects, twice) and
`fast` (the default scene filmed as a 6 fps hand-held clip: 24 frames over the arc, camera shake).
Their ground truth adds `scenario` and per-frame `object_positions` (objects may move); they
cache in their own folders (`default_sample_path(seed, scenario)`), and the default sample's
render, bytes and cache folder are unchanged.

Output folder (see `render_sample`)::

    sample.mp4            the video (H.264 via tangram.video, else OpenCV 'mp4v')
    ground_truth.json     everything below, documented in `_GT_DOC`
    masks/frame_000000.png  instance masks: uint8 pixel = gt_id of the object seen there, 0 = none
    assets/               the generated table, room, bowl, teddy and ball (URDF + OBJ + texture),
                          loadable as they are with p.loadURDF

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tangram.assets import (
    BowlProfile,
    TableSpec,
    write_bowl_urdf,
    write_room_urdf,
    write_table_urdf,
    write_teddy_urdf,
    write_tennis_ball_urdf,
)
from tangram.assets.urdfs import visual_points
from tangram.errors import TangramError
from tangram.fileio import read_json, replace_dir, write_json
from tangram.sim.bullet import BulletClient, connect, pybullet_data
from tangram.sim.bullet import pybullet as p
from tangram.stages.base import ProgressFn, no_progress
from tangram.video import VideoWriter

FORMAT_VERSION = 2  # bump when the scene or the ground truth changes: it names the cache folder
GT_FORMAT = f"tangram.sample_gt/{FORMAT_VERSION}"
VIDEO_NAME = "sample.mp4"
GT_NAME = "ground_truth.json"

_TIME_STEP = 1.0 / 240.0
_FOV_Y_DEG = 50.0
_NEAR, _FAR = 0.05, 12.0
_TABLE = TableSpec()
_TRAY_SCALE = 0.6  # pybullet_data's traybox is 60 cm square; 36 cm suits a 1.2 m table
_IN_FRONT = ("sports ball", "cup")
_PLACE_ORDER = ("tray", "sports ball", "cup", "teddy bear", "bowl")
_GAP = 0.06  # metres between footprints: objects stand apart, not hiding one another


@dataclass(frozen=True)
class ObjectSpec:
    """One object of the scene: what to load and the footprint radius used to place it apart."""

    name: str
    coco_class: str | None
    urdf: str  # "pybullet_data/<file>" or "assets/<file>" (generated into the sample folder)
    scale: float
    mass: float  # kg: realistic, pybullet_data's defaults are not (a 10 kg soccer ball)
    footprint: float  # metres: radius of a circle containing the object seen from above
    rgba: tuple[float, float, float, float] | None = None


# Sizes fit a Franka Panda's 8 cm gripper opening (cup 7 cm across the rim, ball 6.7 cm, teddy head
# 7 cm) and the bowl (18 cm across, 7 cm deep) takes the cup, so "put the cup in the bowl" works.
OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec("cup", "cup", "pybullet_data/objects/mug.urdf", 0.85, 0.30, 0.065, rgba=(0.85, 0.15, 0.1, 1)),
    ObjectSpec("bowl", "bowl", "assets/bowl.urdf", 1.0, 0.30, 0.095),
    ObjectSpec("teddy bear", "teddy bear", "assets/teddy.urdf", 1.0, 0.15, 0.075),
    ObjectSpec("sports ball", "sports ball", "assets/tennis_ball.urdf", 1.0, 0.058, 0.04),
    ObjectSpec("tray", None, "pybullet_data/tray/traybox.urdf", _TRAY_SCALE, 0.6, 0.21),
)


@dataclass
class SampleScene:
    """A rendered sample on disk; the accessors read its ground truth."""

    root: Path
    gt: dict[str, Any] = field(repr=False)
    render_seconds: float | None = None  # wall time of the render that produced it, when just rendered

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


def default_sample_path(seed: int = 0, scenario: str | None = None) -> Path:
    """Cache folder of a seed's sample (or of one of its `SCENARIOS`), versioned by FORMAT_VERSION
    (and SCENARIO_VERSION for scenarios).

    $TANGRAM_CACHE_DIR, else $XDG_CACHE_HOME/tangram, else ~/.cache/tangram.
    """
    base = os.environ.get("TANGRAM_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "tangram" if xdg else Path.home() / ".cache" / "tangram"
    if scenario is None:
        return Path(base).expanduser() / f"sample-seed{seed}-v{FORMAT_VERSION}"
    get_scenario(scenario)
    return Path(base).expanduser() / f"sample-{scenario}-seed{seed}-v{FORMAT_VERSION}.{SCENARIO_VERSION}"


def ensure_sample(seed: int = 0, progress: ProgressFn = no_progress, scenario: str | None = None) -> Path:
    """The video of the cached sample for `seed` (and `scenario`), rendering it if it is not there yet
    (about 30 s for the default sample)."""
    root = default_sample_path(seed, scenario)
    try:
        return load_sample(root).video_path
    except TangramError:  # missing, or unreadable: render afresh
        return render_sample(root, seed, progress=progress, scenario=scenario).video_path


def load_sample(out_dir: Path) -> SampleScene:
    """Read a rendered sample's ground truth back."""
    out_dir = Path(out_dir)
    gt_path = out_dir / GT_NAME
    if not gt_path.is_file():
        raise TangramError(f"no sample at {out_dir}: {GT_NAME} is missing (run `tangram sample`)")
    try:
        gt = read_json(gt_path)
    except (OSError, ValueError) as exc:
        raise TangramError(f"cannot read {gt_path}: {exc}") from exc
    if not isinstance(gt, dict) or gt.get("format") != GT_FORMAT:
        found = gt.get("format") if isinstance(gt, dict) else None
        raise TangramError(f"{gt_path} has format {found!r}, expected {GT_FORMAT!r}; re-render it")
    return SampleScene(out_dir, gt)


def render_sample(out_dir: Path, seed: int = 0, *, num_frames: int | None = None, fps: int | None = None,
                  width: int = 640, height: int = 480, progress: ProgressFn = no_progress,
                  scenario: str | None = None) -> SampleScene:
    """Render the sample for `seed` (or one of its `SCENARIOS`) into `out_dir` (replacing it) and
    return its ground truth. num_frames and fps default to 100 and 10, or the scenario's.

    The render happens in a temporary sibling folder that is renamed onto `out_dir` only when
    complete, so a killed render never leaves a half sample behind.
    """
    spec = get_scenario(scenario) if scenario is not None else None
    num_frames = num_frames if num_frames is not None else spec.num_frames if spec else 100
    fps = fps if fps is not None else spec.fps if spec else 10
    # H.264 in yuv420p needs even frame sizes.
    if num_frames < 1 or fps < 1 or width < 16 or height < 16 or width % 2 or height % 2:
        raise TangramError(f"cannot render a {width}x{height} sample of {num_frames} frames at {fps} fps: "
                           "it needs >= 1 frame, fps >= 1 and an even width and height of at least 16 px")
    if not 0 <= seed < 2**63:
        raise TangramError(f"sample seed must be between 0 and 2**63 - 1, got {seed}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise TangramError(f"cannot write the sample into {out_dir.parent}: {exc.strerror or exc}") from exc
    try:
        if spec is None:
            _render_into(tmp, seed, num_frames, fps, width, height, progress)
        else:
            _render_scenario_into(tmp, spec, seed, num_frames, fps, width, height, progress)
        replace_dir(tmp, out_dir, complete=lambda done: (done / GT_NAME).is_file())  # or another process's
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    scene = load_sample(out_dir)
    scene.render_seconds = time.perf_counter() - started
    return scene


# ---------------------------------------------------------------------------------------------
# Scene construction


@dataclass
class _Body:
    spec: ObjectSpec
    gt_id: int
    body_id: int
    urdf_path: Path


def _connect() -> BulletClient:
    client, _ = connect()
    client.setAdditionalSearchPath(pybullet_data.getDataPath())
    client.setGravity(0, 0, -9.81)
    client.setPhysicsEngineParameter(fixedTimeStep=_TIME_STEP, deterministicOverlappingPairs=1)
    return client


def _resolve_urdf(spec: ObjectSpec, asset_dir: Path) -> Path:
    kind, _, rel = spec.urdf.partition("/")
    return Path(pybullet_data.getDataPath()) / rel if kind == "pybullet_data" else asset_dir / rel


@dataclass(frozen=True)
class _Orbit:
    """The camera's arc: azimuth from `start` over `sweep` radians around the look-at point."""

    start: float
    sweep: float = math.radians(120.0)
    radius: float = 0.62  # metres from the look-at point, horizontally
    height: float = 0.38  # metres above the table top

    @property
    def middle(self) -> float:
        return self.start + self.sweep / 2


def _place(rng: np.random.Generator, facing: float) -> dict[str, tuple[float, float, float]]:
    """Random (x, y, yaw) per object, footprints apart: the tray at one end, the rest near the centre.

    The teddy bear turns its face roughly towards the middle of the camera's arc (`facing`, an
    azimuth), as someone setting up a tabletop scene would: the detector needs to see its face.
    """
    half_x, half_y = _TABLE.size[0] / 2, _TABLE.size[1] / 2
    # The tray goes to the table end away from the camera's arc: in front it hides the rest.
    side = -1.0 if math.cos(facing) > 0 else 1.0
    tray_x = side * (half_x - _footprint("tray") - 0.03)
    placed = {"tray": (tray_x, float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.3, 0.3)))}
    # Small objects first, so they get the front places (see below).
    for spec in sorted(OBJECTS, key=lambda o: _PLACE_ORDER.index(o.name)):
        if spec.name in placed:
            continue
        for attempt in range(10_000):
            # Within 0.35 m x 0.22 m of the centre, so the objects stay in view along the orbit.
            x = float(rng.uniform(-0.35, 0.35))
            y = float(rng.uniform(-half_y + 0.18, half_y - 0.18))
            # Small objects go in front (towards the camera's arc), where they look bigger: the
            # detector misses a 7 cm ball seen from a metre away.
            in_front = x * math.cos(facing) + y * math.sin(facing) >= 0.1
            if spec.name in _IN_FRONT and not in_front and attempt < 5_000:
                continue
            if all(math.hypot(x - ox, y - oy) > spec.footprint + _footprint(other) + _GAP
                   for other, (ox, oy, _) in placed.items()):
                yaw = float(rng.uniform(-math.pi, math.pi))
                if spec.name == "teddy bear":
                    yaw = facing + float(rng.uniform(-0.25, 0.25))
                placed[spec.name] = (x, y, yaw)
                break
        else:  # pragma: no cover - the table has room for many times these footprints
            raise TangramError(f"could not place the {spec.name} on the sample table")
    return placed


def _footprint(name: str) -> float:
    return next(s.footprint for s in OBJECTS if s.name == name)


def _load_objects(client: BulletClient, asset_dir: Path, placement: dict[str, tuple[float, float, float]],
                  specs: tuple[ObjectSpec, ...] = OBJECTS) -> list[_Body]:
    bodies = []
    for gt_id, spec in enumerate(specs, start=1):
        x, y, yaw = placement[spec.name]
        orn = client.getQuaternionFromEuler((0.0, 0.0, yaw))
        urdf = _resolve_urdf(spec, asset_dir)
        body = client.loadURDF(str(urdf), (x, y, _TABLE.top_z + 0.3), orn, globalScaling=spec.scale)
        # Move the body so that its AABB centre is at (x, y) (a mesh can sit away from its URDF
        # origin) and its lowest point 2 mm above the table top; physics then settles it.
        lo, hi = (np.array(v) for v in client.getAABB(body))
        pos, _ = client.getBasePositionAndOrientation(body)
        shift = np.array([x - (lo[0] + hi[0]) / 2, y - (lo[1] + hi[1]) / 2, _TABLE.top_z + 0.002 - lo[2]])
        client.resetBasePositionAndOrientation(body, (np.array(pos) + shift).tolist(), orn)
        _set_mass(client, body, spec, urdf)
        if spec.rgba is not None:
            client.changeVisualShape(body, -1, rgbaColor=spec.rgba)
        bodies.append(_Body(spec, gt_id, body, urdf))
    return bodies


def _set_mass(client: BulletClient, body: int, spec: ObjectSpec, urdf: Path) -> None:
    """Realistic mass, and the inertia of a solid box of the object's size.

    pybullet_data's URDFs carry placeholder inertia (the mug: 1 kg m^2, the tray: 0) that makes
    objects all but impossible to tip, or unable to turn at all.
    """
    extent = np.ptp(visual_points(urdf, spec.scale), axis=0)
    sx, sy, sz = extent
    inertia = [spec.mass / 12 * (b * b + c * c) for b, c in ((sy, sz), (sx, sz), (sx, sy))]
    client.changeDynamics(body, -1, mass=spec.mass, localInertiaDiagonal=inertia)


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


def _camera_path(num_frames: int, orbit: _Orbit, target: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(eye, target) per frame along the arc around `target`, radius and height breathing a little.

    A smooth arc (not a full circle) is what a hand-held phone sweep looks like, and its
    baseline gives COLMAP parallax; the height variation keeps the views from being coplanar.
    """
    path = []
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        azimuth = orbit.start + orbit.sweep * t
        radius = orbit.radius + 0.06 * math.sin(2 * math.pi * t)
        height = _TABLE.top_z + orbit.height + 0.08 * math.sin(3 * math.pi * t + 0.5)
        offset = np.array([radius * math.cos(azimuth), radius * math.sin(azimuth), 0.0])
        eye = np.array([target[0], target[1], height]) + offset
        path.append((eye, target))
    return path


def _look_at(objects: list[dict[str, Any]]) -> np.ndarray:
    """The point the camera circles and looks at: the middle of the objects standing on the table.

    It lies within about 0.2 m of the table centre; aiming there rather than at the exact centre
    keeps the objects, not an empty table end, in the frame (the tray, low and large, is left out).
    """
    centres = np.array([o["position"] for o in objects if o["name"] != "tray"])
    return np.array([centres[:, 0].mean(), centres[:, 1].mean(), _TABLE.top_z + 0.04])


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
        lightDirection=[0.2, -0.3, 1.0], lightColor=[1.0, 1.0, 0.97], lightDistance=3.0,
        lightAmbientCoeff=0.55, lightDiffuseCoeff=0.45, lightSpecularCoeff=0.08)
    rgb = np.asarray(rgba, np.uint8).reshape(height, width, 4)[:, :, :3]
    seg = np.asarray(seg, np.int64).reshape(height, width)
    return rgb, seg


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


def _object_gt(client: BulletClient, b: _Body) -> dict[str, Any]:
    com_pos, com_orn = client.getBasePositionAndOrientation(b.body_id)
    # pybullet reports the centre-of-mass frame; loadURDF wants the URDF link frame, so undo the
    # URDF's inertial offset to give a pose that reloads the object exactly where it rests.
    inertial_pos, inertial_orn = client.getDynamicsInfo(b.body_id, -1)[3:5]
    inv_pos, inv_orn = client.invertTransform(inertial_pos, inertial_orn)
    link_pos, link_orn = client.multiplyTransforms(com_pos, com_orn, inv_pos, inv_orn)
    pose = np.array(_pose_matrix(client, link_pos, link_orn))
    points = visual_points(b.urdf_path, b.spec.scale) @ pose[:3, :3].T + pose[:3, 3]
    lo, hi = points.min(axis=0), points.max(axis=0)
    return {
        "gt_id": b.gt_id,
        "name": b.spec.name,
        "coco_class": b.spec.coco_class,
        "urdf": b.spec.urdf,
        "urdf_scale": b.spec.scale,
        "position": ((lo + hi) / 2).tolist(),
        "orientation_xyzw": list(link_orn),
        "urdf_position": list(link_pos),
        "world_from_object": pose.tolist(),
        "aabb_min": lo.tolist(),
        "aabb_max": hi.tolist(),
        "size": (hi - lo).tolist(),
        "yaw": float(client.getEulerFromQuaternion(link_orn)[2]),
        "mass": b.spec.mass,
        "rgba": list(b.spec.rgba) if b.spec.rgba else None,  # colour applied over the URDF's, if any
    }


def _relations(client: BulletClient, bodies: list[_Body], table_id: int) -> list[dict[str, Any]]:
    """'on' relations read from the settled contacts: what each object actually rests on."""
    names = {b.body_id: b.gt_id for b in bodies}
    names[table_id] = "table"
    tray = next((b.gt_id for b in bodies if b.spec.name == "tray"), None)
    relations = []
    for b in bodies:
        supports = set()
        for contact in client.getContactPoints(bodyA=b.body_id):
            other = contact[2]
            normal_z = contact[7][2]  # normal on B pointing towards A: upward when A rests on B
            if other in names and normal_z > 0.7:
                supports.add(names[other])
        for support in sorted(supports, key=str):
            relation = "inside" if support == tray else "on"
            relations.append({"subject": b.gt_id, "relation": relation, "object": support})
    return relations


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
    rng = np.random.default_rng(seed)
    asset_dir = root / "assets"
    progress(0, num_frames, "building the sample scene")
    # Separate streams per purpose: a texture change never moves the objects, and vice versa.
    place_rng, cam_rng, room_urdf, table_urdf = _write_assets(asset_dir, rng)
    orbit = _Orbit(start=float(cam_rng.uniform(-math.pi, math.pi)))
    client = _connect()
    try:
        client.loadURDF(str(room_urdf), useFixedBase=True)
        table_id = client.loadURDF(str(table_urdf), useFixedBase=True)
        bodies = _load_objects(client, asset_dir, _place(place_rng, orbit.middle))
        settled_s = _settle(client, bodies)
        objects = [_object_gt(client, b) for b in bodies]
        relations = _relations(client, bodies, table_id)
        projection = client.computeProjectionMatrixFOV(_FOV_Y_DEG, width / height, _NEAR, _FAR)
        path = _camera_path(num_frames, orbit, _look_at(objects))
        frames = _film(client, bodies, root, path, projection, width, height, fps, progress)
    finally:
        client.disconnect()
    _write_ground_truth(root, {}, seed, fps, num_frames, width, height, projection, frames, objects, relations,
                        settled_s)


def _write_assets(asset_dir: Path, rng: np.random.Generator) -> tuple[np.random.Generator, np.random.Generator,
                                                                      Path, Path]:
    """The generated URDFs (room, table, bowl, teddy, ball) from the texture stream; returns the placement
    and camera streams and the room and table URDFs. The draw order is fixed: same seed, same bytes."""
    tex_rng, place_rng, cam_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 3))
    room_urdf = write_room_urdf(asset_dir, tex_rng)
    table_urdf = write_table_urdf(asset_dir, tex_rng, _TABLE)
    write_bowl_urdf(asset_dir, tex_rng, BowlProfile())
    write_teddy_urdf(asset_dir, tex_rng)
    write_tennis_ball_urdf(asset_dir, tex_rng)
    return place_rng, cam_rng, room_urdf, table_urdf


def _write_ground_truth(root: Path, extra: dict[str, Any], seed: int, fps: int, num_frames: int, width: int,
                        height: int, projection: Any, frames: dict[str, Any], objects: list[dict[str, Any]],
                        relations: list[dict[str, Any]], settled_s: float) -> None:
    """ground_truth.json of a render; `extra` keys (a scenario's) follow the doc. Key order is fixed:
    the same seed must give byte-identical ground truth."""
    gt = {
        "format": GT_FORMAT,
        "doc": _GT_DOC,
        **extra,
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
        # No timings here.
        "render": {"settled_seconds": settled_s, "renderer": "pybullet ER_TINY_RENDERER",
                   "pybullet_api": p.getAPIVersion()},
    }
    gt["colmap_camera"] = _colmap_camera(gt["intrinsics"])
    write_json(root / GT_NAME, gt)


def _colmap_camera(intr: dict[str, Any]) -> dict[str, Any]:
    return {"model": "PINHOLE", "width": intr["width"], "height": intr["height"],
            "params": [intr["fx"], intr["fy"], intr["cx"] + 0.5, intr["cy"] + 0.5]}


def _film(client: BulletClient, bodies: list[_Body], root: Path, path: list[tuple[np.ndarray, np.ndarray]],
          projection: list[float], width: int, height: int, fps: int, progress: ProgressFn,
          before_frame: Callable[[int], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Render every camera of `path`; `before_frame(i)` may move bodies first and returns extra
    ground truth for frame i."""
    (root / "masks").mkdir(parents=True, exist_ok=True)
    frames = []
    # near-lossless and single-threaded: the same seed must encode to the same bytes
    with VideoWriter(root / VIDEO_NAME, fps, (width, height), preset="medium", crf=16, threads=1) as writer:
        for index, (eye, target) in enumerate(path):
            extra = before_frame(index) if before_frame is not None else {}
            view = _gl_view(client, eye, target)
            rgb, seg = _render(client, view, projection, width, height)
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
            mask, entries = _frame_objects(seg, bodies)
            mask_rel = f"masks/frame_{index:06d}.png"
            cv2.imwrite(str(root / mask_rel), mask)
            frames.append({"frame_index": index, "world_from_camera": _world_from_camera(view).tolist(),
                           "eye": eye.tolist(), "target": target.tolist(), "mask": mask_rel,
                           "objects": entries, **extra})
            progress(index + 1, len(path), "rendering the sample")
    return {"codec": writer.codec, "frames": frames}


_GT_DOC = (
    "TANGRAM sample ground truth. World: pybullet world frame, metres, z up, floor z=0. "
    "intrinsics: pinhole K in the OpenCV pixel convention (centre of pixel (col,row) at (col,row)); "
    "colmap_camera has the same camera in COLMAP's convention (pixel centres at +0.5). "
    "frames[i].world_from_camera: 4x4 camera-to-world, OpenCV camera axes (x right, y down, z forward). "
    "frames[i].objects: box_xyxy=[min col, min row, max col+1, max row+1] of the visible pixels and "
    "visible_pixels; frames[i].mask: PNG, uint8 pixel = gt_id of the object seen, 0 = background. "
    "objects[j]: position = centre of the world AABB of the visual mesh, size = its extents, "
    "orientation_xyzw/urdf_position/world_from_object = URDF link pose (reload with loadURDF(urdf, "
    "urdf_position, orientation_xyzw, globalScaling=urdf_scale)); urdf 'pybullet_data/...' is relative to "
    "pybullet_data.getDataPath(), 'assets/...' to this folder; mass (kg) and rgba (null: the URDF's colour) "
    "are applied over the URDF with changeDynamics/changeVisualShape. frames[i].eye/target: the camera's "
    "centre and look-at point (world). table: top plane z=top_z, size along world "
    "x,y, world_from_table = TANGRAM table frame (origin table-top centre, x right and y away from the "
    "first camera, z up). relations: subject gt_id rests 'on' object (gt_id or 'table'), 'inside' for the "
    "tray, read from physics contacts after settling."
)


# ---------------------------------------------------------------------------------------------
# Scenarios: harder samples with the same kind of exact ground truth


SCENARIO_VERSION = 1  # bump when a scenario's scene or motion changes: it names the cache folder


@dataclass(frozen=True)
class Scenario:
    """A harder variant of the sample, reproducing a failure seen on real footage."""

    name: str
    description: str
    num_frames: int
    fps: int
    sweep_deg: float = 120.0  # the camera's arc
    shake_m: float = 0.0  # hand-held jitter: std of the camera's eye and look-at point, metres


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("shuffle", "three identical red cups swapped around by a scripted hand (shell game) while the camera "
             "watches over a slow 30 degree arc: identities must survive swaps and the partial occlusions they cause",
             num_frames=100, fps=10, sweep_deg=30.0),
    Scenario("occlusion", "the default objects while an occluding board (10 x 80 cm) sweeps between the camera and "
             "them, twice: every object disappears for a few frames and comes back",
             num_frames=90, fps=10),
    Scenario("fast", "the default scene filmed like a 6 fps hand-held clip: the 120 degree arc in 24 frames, "
             "with camera shake", num_frames=24, fps=6, shake_m=0.012),
    Scenario("unknown", "the default scene plus four objects no COCO class names (a rubber duck, a LEGO brick, a "
             "jenga block, a textured cube, from pybullet_data): only the geometry can find them",
             num_frames=100, fps=10),
)}

# The `unknown` scenario's objects outside COCO (coco_class None), placed after the default ones; sized
# for the gripper's 8 cm like the default objects (duck 7 x 6.5 cm, brick 6.3 cm, cube 6 cm, block 5 cm wide).
UNKNOWN_OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec("duck", None, "pybullet_data/duck_vhacd.urdf", 0.85, 0.10, 0.055),
    ObjectSpec("lego brick", None, "pybullet_data/lego/lego.urdf", 2.0, 0.05, 0.05),
    ObjectSpec("jenga block", None, "pybullet_data/jenga/jenga.urdf", 1.0, 0.05, 0.08),
    ObjectSpec("cube", None, "pybullet_data/cube_small.urdf", 1.2, 0.08, 0.045),
)

_SHUFFLE_CUPS = tuple(ObjectSpec(f"cup {k}", "cup", "pybullet_data/objects/mug.urdf", 0.85, 0.30, 0.065,
                                 rgba=(0.85, 0.15, 0.1, 1)) for k in (1, 2, 3))
_SHUFFLE_SPACING = 0.15  # metres between neighbouring cup slots
# (first frame, frames, slot a, slot b, turn direction): two cups trade places by turning half a
# circle around their midpoint, the way a hand slides them; one passes in front of the other.
_SHUFFLE_SWAPS = ((10, 18, 0, 1, 1.0), (34, 18, 1, 2, -1.0), (58, 22, 0, 2, 1.0), (84, 14, 0, 1, -1.0))
_OCCLUDER_SIZE = (0.10, 0.02, 0.80)  # width, depth, height (m)
_OCCLUDER_DISTANCE = 0.30  # metres in front of the camera, along its view of the look-at point
_SCENARIO_DOC = (
    "Scenario sample: as the default sample's ground truth (see doc), plus scenario/scenario_description. "
    "Objects may move: objects[j] holds their pose at frame 0 and frames[i].object_positions maps gt_id "
    "(string) to the world AABB centre at frame i. A gt object with coco_class null (the occluder) is not "
    "a detection target but hides what is behind it: boxes and masks are of the visible pixels only."
)


def get_scenario(name: str) -> Scenario:
    """The scenario called `name`; a one-line TangramError listing the names otherwise."""
    if name not in SCENARIOS:
        raise TangramError(f"unknown sample scenario {name!r}: choose one of {', '.join(sorted(SCENARIOS))}")
    return SCENARIOS[name]


def _occluder_urdf(asset_dir: Path) -> Path:
    w, d, h = _OCCLUDER_SIZE
    path = asset_dir / "occluder.urdf"
    path.write_text(
        '<?xml version="1.0"?>\n<robot name="occluder"><link name="base">'
        '<inertial><mass value="0"/><inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/></inertial>'
        f'<visual><geometry><box size="{w} {d} {h}"/></geometry>'
        '<material name="slate"><color rgba="0.22 0.26 0.32 1"/></material></visual>'
        '</link></robot>\n')
    return path


def _render_scenario_into(root: Path, scenario: Scenario, seed: int, num_frames: int, fps: int, width: int,
                          height: int, progress: ProgressFn) -> None:
    rng = np.random.default_rng(seed)
    asset_dir = root / "assets"
    progress(0, num_frames, f"building the {scenario.name} sample scene")
    # The same streams as the default sample: the occlusion and fast scenes are the default scene.
    place_rng, cam_rng, room_urdf, table_urdf = _write_assets(asset_dir, rng)
    orbit = _Orbit(start=float(cam_rng.uniform(-math.pi, math.pi)), sweep=math.radians(scenario.sweep_deg))
    if scenario.name == "shuffle":  # the arc's middle faces the row of cups
        orbit = _Orbit(start=orbit.start, sweep=orbit.sweep, radius=0.55, height=0.32)
    client = _connect()
    try:
        client.loadURDF(str(room_urdf), useFixedBase=True)
        table_id = client.loadURDF(str(table_urdf), useFixedBase=True)
        if scenario.name == "shuffle":
            specs = _SHUFFLE_CUPS
            placement = _shuffle_slots(orbit.middle)
            placement = {spec.name: (*placement[k], float(place_rng.uniform(-math.pi, math.pi)))
                         for k, spec in enumerate(specs)}
        else:
            specs = OBJECTS
            placement = _place(place_rng, orbit.middle)
            if scenario.name == "unknown":
                specs = OBJECTS + UNKNOWN_OBJECTS
                placement = _place_more(place_rng, placement, UNKNOWN_OBJECTS)
        bodies = _load_objects(client, asset_dir, placement, specs)
        settled_s = _settle(client, bodies)
        objects = [_object_gt(client, b) for b in bodies]
        relations = _relations(client, bodies, table_id)
        projection = client.computeProjectionMatrixFOV(_FOV_Y_DEG, width / height, _NEAR, _FAR)
        path = _camera_path(num_frames, orbit, _look_at(objects))
        if scenario.shake_m > 0:
            shake = np.random.default_rng(seed + 7).normal(0.0, scenario.shake_m, (num_frames, 2, 3))
            path = [(eye + shake[i, 0], target + shake[i, 1]) for i, (eye, target) in enumerate(path)]
        if scenario.name == "occlusion":
            occluder = client.loadURDF(str(_occluder_urdf(asset_dir)), (0, 0, -5), useFixedBase=True)
            spec = ObjectSpec("occluder", None, "assets/occluder.urdf", 1.0, 0.0, _OCCLUDER_SIZE[0] / 2)
            bodies.append(_Body(spec, len(bodies) + 1, occluder, asset_dir / "occluder.urdf"))
            before_frame = _occluder_motion(client, bodies, path)
        elif scenario.name == "shuffle":
            before_frame = _shuffle_motion(client, bodies, num_frames)
        else:
            before_frame = _positions_only(client, bodies)
        first = before_frame(0)  # frame 0's poses are the objects' reference poses
        objects = [_object_gt(client, b) for b in bodies]
        del first
        frames = _film(client, bodies, root, path, projection, width, height, fps, progress, before_frame)
    finally:
        client.disconnect()
    scenario_keys = {"scenario": scenario.name, "scenario_description": scenario.description,
                     "scenario_doc": _SCENARIO_DOC}
    _write_ground_truth(root, scenario_keys, seed, fps, num_frames, width, height, projection, frames, objects,
                        relations, settled_s)


def _place_more(rng: np.random.Generator, placed: dict[str, tuple[float, float, float]],
                specs: tuple[ObjectSpec, ...]) -> dict[str, tuple[float, float, float]]:
    """`placed` plus random (x, y, yaw) for `specs`, footprints apart from everything placed (the same
    region as the default objects, a little wider along the table)."""
    radius = {o.name: o.footprint for o in OBJECTS + specs}
    out = dict(placed)
    half_y = _TABLE.size[1] / 2
    for spec in specs:
        for _ in range(10_000):
            x, y = float(rng.uniform(-0.4, 0.4)), float(rng.uniform(-half_y + 0.16, half_y - 0.16))
            if all(math.hypot(x - ox, y - oy) > spec.footprint + radius[other] + _GAP
                   for other, (ox, oy, _) in out.items()):
                out[spec.name] = (x, y, float(rng.uniform(-math.pi, math.pi)))
                break
        else:  # pragma: no cover
            raise TangramError(f"could not place the {spec.name} on the sample table")
    return out


def _shuffle_slots(facing: float) -> list[tuple[float, float]]:
    """Three cup slots in a row across the view from the middle of the camera's arc."""
    across = np.array([-math.sin(facing), math.cos(facing)])
    return [tuple(float(v) for v in (k - 1) * _SHUFFLE_SPACING * across) for k in range(3)]


def _aabb_centre(client: BulletClient, b: _Body) -> list[float]:
    return _object_gt(client, b)["position"]


def _positions_only(client: BulletClient, bodies: list[_Body]) -> Callable[[int], dict[str, Any]]:
    positions = {str(b.gt_id): _aabb_centre(client, b) for b in bodies}
    return lambda index: {"object_positions": positions}


def _shuffle_motion(client: BulletClient, bodies: list[_Body], num_frames: int) -> Callable[[int], dict[str, Any]]:
    """Kinematic shell game: per frame, every cup's pose from the swap schedule (no physics)."""
    rest = {b.gt_id: client.getBasePositionAndOrientation(b.body_id) for b in bodies}
    # Where each cup is at every frame: the slot it stands in, or on its half-circle mid-swap.
    slot_of = {b.gt_id: k for k, b in enumerate(bodies)}  # cup k starts in slot k
    home = {b.gt_id: np.array(rest[b.gt_id][0][:2]) for b in bodies}
    slots = [home[b.gt_id].copy() for b in bodies]
    poses: list[dict[int, tuple[np.ndarray, float]]] = []
    turned = {b.gt_id: 0.0 for b in bodies}
    for index in range(num_frames):
        frame: dict[int, tuple[np.ndarray, float]] = {b.gt_id: (slots[slot_of[b.gt_id]], turned[b.gt_id])
                                                      for b in bodies}
        for start, length, sa, sb, direction in _SHUFFLE_SWAPS:
            if not start <= index < start + length + 1:
                continue
            t = (index - start) / length
            angle = direction * math.pi * (3 * t * t - 2 * t ** 3)  # smoothstep: starts and stops gently
            centre = (slots[sa] + slots[sb]) / 2
            c, s = math.cos(angle), math.sin(angle)
            for gid, slot in slot_of.items():
                if slot in (sa, sb):
                    rel = slots[slot] - centre
                    frame[gid] = (centre + np.array([c * rel[0] - s * rel[1], s * rel[0] + c * rel[1]]),
                                  turned[gid] + angle)
            if index == start + length:  # the swap is done: the cups trade slots
                for gid, slot in list(slot_of.items()):
                    if slot in (sa, sb):
                        slot_of[gid] = sb if slot == sa else sa
                        turned[gid] += angle
        poses.append(frame)

    def move(index: int) -> dict[str, Any]:
        for b in bodies:
            (x0, y0, z0), orn0 = rest[b.gt_id]
            xy, yaw = poses[index][b.gt_id]
            offset = np.array([x0, y0]) - home[b.gt_id]  # the URDF origin is not the cup's centre
            c, s = math.cos(yaw), math.sin(yaw)
            rotated = np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]])
            orn = client.multiplyTransforms((0, 0, 0), client.getQuaternionFromEuler((0, 0, yaw)), (0, 0, 0), orn0)[1]
            client.resetBasePositionAndOrientation(b.body_id, (*(xy + rotated), z0), orn)
        return {"object_positions": {str(b.gt_id): _aabb_centre(client, b) for b in bodies}}

    return move


def _occluder_motion(client: BulletClient, bodies: list[_Body], path: list[tuple[np.ndarray, np.ndarray]]
                     ) -> Callable[[int], dict[str, Any]]:
    """The board crosses the view left to right, then back, upright and facing the camera."""
    occluder = bodies[-1]
    count = len(path)

    def move(index: int) -> dict[str, Any]:
        eye, target = path[index]
        view = (target - eye)[:2] / np.linalg.norm((target - eye)[:2])
        across = np.array([-view[1], view[0]])
        t = index / max(count - 1, 1)
        sweep = math.sin(2 * math.pi * t - math.pi / 2)  # -1 .. 1 .. -1: across and back
        xy = eye[:2] + _OCCLUDER_DISTANCE * view + sweep * 0.22 * across
        yaw = math.atan2(view[1], view[0]) + math.pi / 2
        client.resetBasePositionAndOrientation(occluder.body_id, (*xy, _TABLE.top_z + 0.25),
                                               client.getQuaternionFromEuler((0, 0, yaw)))
        return {"object_positions": {str(b.gt_id): _aabb_centre(client, b) for b in bodies}}

    return move

"""Rebuild the scene graph in pybullet: the table, the objects at their metric poses, the robot.

Objects are sized from their scene-graph boxes. Classes with a pybullet_data mesh use it, scaled
per axis to the box (cup: mug, teddy bear: teddy, sports ball: soccer ball, tray: traybox's
visual with a box-compound collision sized to the tray); a bowl is a lathe mesh with a hollow
compound of thin boxes (tangram.assets), so things really go inside; anything else is a box, or
a cylinder for round-bodied classes, coloured from the scene graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np

from tangram.assets import write_bowl_urdf
from tangram.assets.meshes import BowlProfile
from tangram.planning.world import CYLINDER_CLASSES, Rect, SceneObject, World
from tangram.sim.bullet import pybullet_data

DATA = Path(pybullet_data.getDataPath())
TABLE_THICKNESS = 0.04
DENSITY = 350.0  # kg/m^3 of the bounding box: light household objects
MASS_RANGE = (0.05, 0.5)


@dataclass(frozen=True)
class MeshSpec:
    visual: str  # relative to pybullet_data
    collision: str | None  # None: a primitive or procedural collision (see _collision_for)
    upright: tuple[float, float, float] = (0.0, 0.0, 0.0)  # roll, pitch, yaw making the mesh stand up
    grasp_center: tuple[float, float] | None = (
        None  # mesh-local xy of the graspable body, if not its box centre
    )


MESHES: dict[str, MeshSpec] = {
    "cup": MeshSpec("objects/mug.obj", "objects/mug_col.obj", grasp_center=(0.0, 0.0)),
    "mug": MeshSpec("objects/mug.obj", "objects/mug_col.obj", grasp_center=(0.0, 0.0)),
    "teddy bear": MeshSpec("teddy2_VHACD_CHs.obj", "teddy2_VHACD_CHs.obj", upright=(math.pi / 2, 0.0, 0.0)),
    "sports ball": MeshSpec("soccerball.obj", None),
    "tray": MeshSpec("tray/tray_textured.obj", None),
}


@dataclass
class SimObject:
    """One scene object in pybullet."""

    obj: SceneObject
    body: int
    shape: str  # what was built, for result.json: "mesh:mug", "box", "bowl", ...
    grasp_local: tuple[float, float]  # body-frame xy of the grasp centre
    grasp_axis_local: float  # body-frame yaw of the direction the fingers close along


RESTING_GAP = 0.03  # m: an object whose bottom is this close to the table top rests on it


def separate_overlaps(world: World, gap: float = 0.002) -> tuple[World, dict[int, float]]:
    """The world with the footprints of objects that were measured inside each other shrunk, about
    their centres, until they only touch; and the factor per shrunk object.

    Two objects resting side by side on the table are measured by their own points or class
    priors, and the boxes of a crowded basket and a plant can overlap by centimetres. Solid bodies
    built that way are shoved apart by the physics at the first step (a 46 cm box flew 32 cm, and
    held back where it was seen, it pushed its neighbour off the table). Each pair is separated
    along the axis that needs the smaller shrink; objects stacked or held inside each other, and
    furniture, are left alone, and so is a pair that would need more than a halving (one object
    inside the other: a container the reconstruction did not recognise)."""
    on_table = [o for o in world.objects.values() if o.support == "table" and not o.furniture]
    factor: dict[int, float] = {}
    for i, a in enumerate(on_table):
        for b in on_table[i + 1 :]:
            za = (a.position[2] - a.size[2] / 2, a.position[2] + a.size[2] / 2)
            zb = (b.position[2] - b.size[2] / 2, b.position[2] + b.size[2] / 2)
            if min(za[1], zb[1]) <= max(za[0], zb[0]):
                continue  # one above the other
            ha, hb = np.array(a.half_xy), np.array(b.half_xy)
            d = np.abs(np.array(a.position[:2]) - np.array(b.position[:2]))
            if np.any(d >= ha + hb):
                continue  # footprints apart
            s = float(np.max((d - gap) / (ha + hb)))
            if s < 0.5:
                continue
            for o in (a.id, b.id):
                factor[o] = min(factor.get(o, 1.0), s)
    if not factor:
        return world, {}
    objects = dict(world.objects)
    for oid, f in factor.items():
        o = objects[oid]
        objects[oid] = replace(o, size=(o.size[0] * f, o.size[1] * f, o.size[2]))
    return replace(world, objects=objects), {o: round(f, 3) for o, f in factor.items()}


@cache
def _obj_vertices(rel: str) -> np.ndarray:
    verts = []
    with open(DATA / rel) as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(v) for v in line.split()[1:4]])
    return np.array(verts)


@cache
def _volume_centroid(rel: str) -> np.ndarray:
    """Centre of mass of a collision mesh at uniform density (mesh-local): the volume-weighted
    centroid of its closed pieces (`o`/`g` groups: VHACD's convex hulls), each by the divergence
    theorem over its triangles (signed tetrahedra from the origin). pybullet puts a mesh body's
    centre of mass at the body's origin, the box centre here. A seated teddy bear's is 8 % of its
    height lower (its head is smaller than its body and legs), a mug's towards its bottom. With it
    at the box centre none of bench_planning_sim's 7 teddy bears sat where it was seen; with it here
    5 do. The tallest (height 1.45x their width and more, the sample's too) still tip, and the
    settling check holds them where they were seen."""
    verts: list[list[float]] = []
    pieces: list[list[list[int]]] = [[]]
    with open(DATA / rel) as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(v) for v in line.split()[1:4]])
            elif line.startswith(("o ", "g ")) and pieces[-1]:
                pieces.append([])
            elif line.startswith("f "):
                idx = [int(t.split("/")[0]) for t in line.split()[1:]]
                pieces[-1].append([i - 1 if i > 0 else len(verts) + i for i in idx])
    v = np.array(verts)
    total, moment = 0.0, np.zeros(3)
    for faces in pieces:
        tris = np.array([(f[0], f[k], f[k + 1]) for f in faces for k in range(1, len(f) - 1)], int)
        if not len(tris):
            continue
        a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
        vol = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0  # signed tetrahedra with the origin
        sign = 1.0 if vol.sum() >= 0 else -1.0  # a piece wound inside out has all signs flipped
        total += sign * vol.sum()
        moment += sign * (vol[:, None] * (a + b + c) / 4.0).sum(axis=0)
    return moment / total if total > 0 else (v.min(axis=0) + v.max(axis=0)) / 2


def _rot(rpy: tuple[float, float, float]) -> np.ndarray:
    r, p, y = rpy
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


# Typical masses (kg) where the box volume misleads: a plush toy or a hollow ball is mostly air.
CLASS_MASS = {"teddy bear": 0.1, "sports ball": 0.12, "cup": 0.25, "mug": 0.25, "bowl": 0.35, "tray": 0.6}


def _mass(obj: SceneObject) -> float:
    if obj.class_name in CLASS_MASS:
        return CLASS_MASS[obj.class_name]
    return float(np.clip(DENSITY * obj.size[0] * obj.size[1] * obj.size[2], *MASS_RANGE))


def _rgba(obj: SceneObject) -> list[float]:
    return [c / 255 for c in obj.color] + [1.0]


class SceneBuilder:
    """Creates bodies in `client`; generated meshes go to `work_dir` (a temp folder)."""

    def __init__(self, client, work_dir: Path) -> None:
        self.p = client
        self.work = work_dir
        self.table_rect: Rect | None = None

    def table(self, world: World) -> int:
        """The table top at z = 0: the measured visible extent, grown under every object that rests
        on it, its bottom within RESTING_GAP of the top and its footprint over the measured extent
        (what stands on the table proves the top reaches under it; the far edge is often out
        of view or hidden by the objects themselves, and a tray measured half beyond it would tip)."""
        rect = world.table_rect
        for obj in world.objects.values():
            bottom = obj.position[2] - obj.size[2] / 2
            if obj.support == "table" and not obj.furniture and abs(bottom) <= RESTING_GAP:
                foot = Rect.around(obj.position[0], obj.position[1], *obj.half_xy)
                if not foot.overlaps(world.table_rect):
                    continue  # wholly beyond the edge: it may stand on something else at that height
                rect = Rect(min(rect.xmin, foot.xmin), min(rect.ymin, foot.ymin),
                            max(rect.xmax, foot.xmax), max(rect.ymax, foot.ymax))
        self.table_rect = rect
        sx, sy = rect.xmax - rect.xmin, rect.ymax - rect.ymin
        cx, cy = rect.center
        col = self.p.createCollisionShape(self.p.GEOM_BOX, halfExtents=[sx / 2, sy / 2, TABLE_THICKNESS / 2])
        vis = self.p.createVisualShape(
            self.p.GEOM_BOX,
            halfExtents=[sx / 2, sy / 2, TABLE_THICKNESS / 2],
            rgbaColor=[0.72, 0.55, 0.38, 1],
        )
        body = self.p.createMultiBody(0, col, vis, [cx, cy, -TABLE_THICKNESS / 2])
        self.p.changeDynamics(body, -1, lateralFriction=0.8)
        return body

    def floor(self, world: World) -> int | None:
        """The floor the reconstruction found, as a static plane at its measured height (None when
        it found none): furniture stands on it."""
        if world.floor_z is None:
            return None
        col = self.p.createCollisionShape(self.p.GEOM_PLANE)
        vis = self.p.createVisualShape(self.p.GEOM_BOX, halfExtents=[6, 6, 0.001], rgbaColor=[0.55, 0.55, 0.52, 1])
        body = self.p.createMultiBody(0, col, vis, [0.0, 0.0, world.floor_z])
        self.p.changeDynamics(body, -1, lateralFriction=0.9)
        return body

    def fix_in_place(self, sim: SimObject, pos, orn) -> float:
        """Hold a body static at the pose it was seen in (mass 0: the physics never moves it);
        returns its mass, which the executor gives back once the fingers have closed on it."""
        mass = float(self.p.getDynamicsInfo(sim.body, -1)[0])
        self.p.resetBasePositionAndOrientation(sim.body, pos, orn)
        self.p.resetBaseVelocity(sim.body, [0, 0, 0], [0, 0, 0])
        self.p.changeDynamics(sim.body, -1, mass=0.0)
        return mass

    def pedestal(self, x: float, y: float) -> int:
        """A column under the robot's base when it stands off the table."""
        h = 0.75
        col = self.p.createCollisionShape(self.p.GEOM_BOX, halfExtents=[0.12, 0.12, h / 2])
        vis = self.p.createVisualShape(
            self.p.GEOM_BOX, halfExtents=[0.12, 0.12, h / 2], rgbaColor=[0.3, 0.3, 0.32, 1]
        )
        return self.p.createMultiBody(0, col, vis, [x, y, -h / 2])

    def add(self, obj: SceneObject) -> SimObject:
        spec = MESHES.get(obj.class_name)
        if obj.class_name == "bowl":
            sim = self._bowl(obj)
        elif spec is not None:
            sim = self._mesh(obj, spec)
        else:
            sim = self._primitive(obj)
        self.p.changeDynamics(
            sim.body, -1, lateralFriction=1.0, spinningFriction=0.002, rollingFriction=0.0005, restitution=0.0
        )
        self._rest_on_bottom(sim)
        return sim

    def _rest_on_bottom(self, sim: SimObject) -> None:
        """Lift or lower the body so its lowest point is 1 mm above the box's bottom: a shape that
        pokes through its support (a tilted wall box, a mesh's rim) would be shot out of it. An
        object resting on the table whose measured box reaches into the table top (the
        reconstruction's error on its bottom) stands on the top instead."""
        lo, _ = self.p.getAABB(sim.body)
        pos, orn = self.p.getBasePositionAndOrientation(sim.body)
        want = sim.obj.position[2] - sim.obj.size[2] / 2 + 0.001
        x, y = sim.obj.position[:2]
        if (
            sim.obj.support == "table"
            and not sim.obj.furniture
            and self.table_rect is not None
            and self.table_rect.contains(Rect.around(x, y, 0, 0))
            and sim.obj.position[2] > 0.0  # its centre above the top: it stands there, pokes in
        ):
            want = max(want, 0.001)
        self.p.resetBasePositionAndOrientation(sim.body, [pos[0], pos[1], pos[2] + want - lo[2]], orn)

    # -- builders -----------------------------------------------------------------------------

    def _create(self, obj: SceneObject, col: int, vis: int, yaw: float,
                com: Sequence[float] = (0.0, 0.0, 0.0)) -> int:
        """The body at the object's pose; `com`: its centre of mass in the body frame."""
        orn = self.p.getQuaternionFromEuler((0.0, 0.0, yaw))
        mass = 0.0 if obj.furniture else _mass(obj)  # furniture: a static obstacle on the floor
        return self.p.createMultiBody(mass, col, vis, list(obj.position), orn,
                                      baseInertialFramePosition=list(com))

    def _primitive(self, obj: SceneObject) -> SimObject:
        dx, dy, dz = obj.size
        if obj.round:
            r = obj.sphere_diameter / 2
            col = self.p.createCollisionShape(self.p.GEOM_SPHERE, radius=r)
            vis = self.p.createVisualShape(self.p.GEOM_SPHERE, radius=r, rgbaColor=_rgba(obj))
            shape = "sphere"
        elif obj.class_name in CYLINDER_CLASSES:
            r = min(dx, dy) / 2
            col = self.p.createCollisionShape(self.p.GEOM_CYLINDER, radius=r, height=dz)
            vis = self.p.createVisualShape(self.p.GEOM_CYLINDER, radius=r, length=dz, rgbaColor=_rgba(obj))
            shape = "cylinder"
        else:
            half = [dx / 2, dy / 2, dz / 2]
            col = self.p.createCollisionShape(self.p.GEOM_BOX, halfExtents=half)
            vis = self.p.createVisualShape(self.p.GEOM_BOX, halfExtents=half, rgbaColor=_rgba(obj))
            shape = "box"
        body = self._create(obj, col, vis, obj.yaw)
        return SimObject(obj, body, shape, (0.0, 0.0), 0.0 if dx <= dy else math.pi / 2)

    def _mesh_frame(
        self, spec: MeshSpec, size: tuple[float, float, float]
    ) -> tuple[list[float], list[float], list[float], float, np.ndarray]:
        """Per-axis mesh scale, frame offset and orientation so the mesh fills a box of `size`.

        The mesh's longer horizontal side goes along the box's longer side (a 90 degree turn when
        they differ): a cup's handle then lies along the long side of its box.
        """
        rot = _rot(spec.upright)
        verts = _obj_vertices(spec.visual if spec.collision is None else spec.collision) @ rot.T
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        native = hi - lo
        turn = 0.0 if (native[0] <= native[1]) == (size[0] <= size[1]) else math.pi / 2
        full = _rot((0.0, 0.0, turn)) @ rot
        upright_size = np.array([size[1], size[0], size[2]]) if turn else np.array(size)
        scale_up = upright_size / native  # scale along the upright axes
        scale_local = np.abs(rot.T) @ scale_up  # back to the mesh's own axes (90 degree turns only)
        centre_up = (lo + hi) / 2 * scale_up
        offset = -(_rot((0.0, 0.0, turn)) @ centre_up)
        orn = list(self.p.getQuaternionFromEuler((*spec.upright[:2], spec.upright[2] + turn)))
        return scale_local.tolist(), offset.tolist(), orn, turn, full

    def _mesh(self, obj: SceneObject, spec: MeshSpec) -> SimObject:
        scale, offset, orn, _, full = self._mesh_frame(spec, obj.size)
        colour = {} if obj.class_name == "tray" else {"rgbaColor": _rgba(obj)}  # the tray keeps its texture
        vis = self.p.createVisualShape(
            self.p.GEOM_MESH,
            fileName=str(DATA / spec.visual),
            meshScale=scale,
            visualFramePosition=offset,
            visualFrameOrientation=orn,
            **colour,
        )
        if obj.class_name == "sports ball":
            col = self.p.createCollisionShape(self.p.GEOM_SPHERE, radius=obj.sphere_diameter / 2)
        elif obj.class_name == "tray":
            col = self._tray_collision(obj.size)
        else:
            col = self.p.createCollisionShape(
                self.p.GEOM_MESH,
                fileName=str(DATA / spec.collision),
                meshScale=scale,
                collisionFramePosition=offset,
                collisionFrameOrientation=orn,
            )
        com = (0.0, 0.0, 0.0)
        if spec.collision is not None and obj.class_name != "tray":  # the body is that mesh
            com = tuple(full @ (np.array(scale) * _volume_centroid(spec.collision)) + np.array(offset))
        body = self._create(obj, col, vis, obj.yaw, com)
        grasp = (0.0, 0.0)
        if spec.grasp_center is not None:
            local = np.array([*spec.grasp_center, 0.0]) * np.array(scale)
            grasp = tuple((full @ local)[:2] + np.array(offset[:2]))
        axis = 0.0 if obj.size[0] <= obj.size[1] else math.pi / 2
        return SimObject(
            obj, body, f"mesh:{Path(spec.visual).stem}", (float(grasp[0]), float(grasp[1])), axis
        )

    def _tray_collision(self, size: tuple[float, float, float]) -> int:
        """Floor plus four walls, sized to the tray's box (traybox's own walls are 60 cm apart)."""
        dx, dy, dz = size
        t = 0.012
        boxes = [([dx / 2, dy / 2, t / 2], [0, 0, -dz / 2 + t / 2])]
        boxes += [([t / 2, dy / 2, dz / 2], [s * (dx / 2 - t / 2), 0, 0]) for s in (-1, 1)]
        boxes += [([dx / 2, t / 2, dz / 2], [0, s * (dy / 2 - t / 2), 0]) for s in (-1, 1)]
        return self.p.createCollisionShapeArray(
            shapeTypes=[self.p.GEOM_BOX] * len(boxes),
            halfExtents=[b[0] for b in boxes],
            collisionFramePositions=[b[1] for b in boxes],
        )

    def _bowl(self, obj: SceneObject) -> SimObject:
        """A lathe-turned bowl sized to the box, hollow: a URDF compound of thin boxes (a collision
        shape array holds at most 16 children, the wall needs more)."""
        dx, dy, dz = obj.size
        profile = BowlProfile(
            rim_radius=min(dx, dy) / 2,
            foot_radius=min(dx, dy) * 0.28,
            height=dz,
            wall=max(0.004, 0.035 * min(dx, dy)),
        )
        urdf = write_bowl_urdf(
            self.work / f"bowl_{obj.id}", np.random.default_rng(obj.id), profile, _mass(obj)
        )
        orn = self.p.getQuaternionFromEuler((0.0, 0.0, obj.yaw))
        x, y, z = obj.position
        body = self.p.loadURDF(str(urdf), [x, y, z - dz / 2], orn)  # the URDF's origin is the bowl's foot
        return SimObject(obj, body, "bowl", (0.0, 0.0), 0.0)

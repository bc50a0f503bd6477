"""The planner's view of a scene graph: objects as boxes on a table, what each class affords, where
the robot stands and what it can reach.

Planning, validation and the simulator all read the scene through `World`, so the symbolic checks
(reach, fit, free space) and the physics use the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from tangram.errors import StageFailed
from tangram.stages.base import read_artefact

# Classes that hold other objects (COCO has "bowl"; the rest are common open-vocabulary names).
CONTAINER_CLASSES = frozenset({"bowl", "tray", "basket", "bin", "crate", "container", "pot"})
# Classes whose top is not a flat support: nothing can be stacked on them.
NOT_FLAT_TOP = frozenset(
    {
        "sports ball",
        "ball",
        "apple",
        "orange",
        "teddy bear",
        "banana",
        "cup",
        "mug",
        "bottle",
        "wine glass",
        "vase",
        "broccoli",
        "donut",
        "bowl",
        "tray",
        "basket",
    }
)
ROUND_CLASSES = frozenset({"sports ball", "ball", "apple", "orange"})
# Classes with no stable upright pose worth checking: they may lie down wherever they are put.
MAY_TOPPLE = ROUND_CLASSES | {"teddy bear", "banana"}

# The Panda hand opens to 8 cm; leave room for the fingers to slide past the object. A round or
# cylindrical body slips between the open pads up to MAX_GRASP_WIDTH; a flat face spans the pads'
# whole width and needs 2 mm each side of their inner faces (7.8 cm apart in the simulated hand):
# OPEN_PADS_WIDTH, which the executor's ray-cast sections are held to as well.
MAX_GRASP_WIDTH = 0.077
OPEN_PADS_WIDTH = 0.074
# Round bodies the simulator builds as a cylinder as wide as its box's narrow side (cups and mugs as
# the mug mesh, MUG_CLASSES below), not as a box.
CYLINDER_CLASSES = frozenset({"cup", "mug", "bottle", "can", "wine glass", "vase", "glass"})
# A box is an upper bound of an object's sections: an irregular object (a teddy's neck) may be held
# where it is narrower. Only classes the simulator builds from a mesh with such a narrower part
# count: a bottle, vase or glass is built (and measured) as a cylinder as wide as its box's narrow
# side, so its narrowest section is that side.
IRREGULAR_CLASSES = frozenset({"teddy bear"})
MAX_IRREGULAR_BOX = 0.14
# A cup is built from pybullet_data's mug stretched over its box, handle along the long side: its
# round body spans the box's short side across and this share of the long side along (the mesh's
# short/long extent, 8.20 / 12.16 cm in mug_col.obj). A 12 cm square box holds an 8.2 cm body.
MUG_CLASSES = frozenset({"cup", "mug"})
MUG_BODY_RATIO = 0.674
MIN_GRASP_HEIGHT = 0.02
MIN_SIDE_HEIGHT = 0.04  # a side grasp needs the fingers' pads (about 2 cm) below the object's top
FINGER_CLEARANCE = 0.015  # free gap a finger needs beside the object, at the closing direction
MAX_OBJECT_HEIGHT = 0.45  # taller than this is not a tabletop object the arm lifts
# Top-down reach of the Panda's grasp frame, measured with its IK (see tangram/sim/robot.py).
REACH_MIN = 0.30  # closer, a top-down grasp at table height folds the elbow into itself
REACH_MAX = 0.78
MAX_WORK_HEIGHT = 0.40  # highest point a held object may be lifted to, above the table
ROBOT_SETBACK = 0.15  # the robot may stand up to this far outside the table edge, on a pedestal
BASE_CLEARANCE = 0.14  # free radius around the robot's base axis (its footprint plus a margin)
# The arm's rest pose (sim.robot.HOME), from the Panda URDF's link boxes in pybullet, in the base
# frame with z from the table top: links 1-4 stand within 0.26 m of the base axis above 0.14 m;
# links 5-8, the hand and fingers reach forward to 0.52 m, 0.13 m either side, above 0.42 m.
REST_COLUMN = (0.14, 0.26)  # (lowest z, radius) of the links above the base
REST_FOREARM = (0.42, 0.52, 0.13)  # (lowest z, forward reach, half width) of the forearm and hand
REST_MARGIN = 0.03
TRAY_WALL = 0.025  # room kept from a container's rim when placing into it
PLACE_MARGIN = 0.02  # gap kept between placed objects (the grip shifts objects by a few mm)


@dataclass(frozen=True)
class Rect:
    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @property
    def center(self) -> tuple[float, float]:
        return ((self.xmin + self.xmax) / 2, (self.ymin + self.ymax) / 2)

    def grow(self, d: float) -> Rect:
        return Rect(self.xmin - d, self.ymin - d, self.xmax + d, self.ymax + d)

    def overlaps(self, other: Rect) -> bool:
        return not (
            self.xmax <= other.xmin
            or other.xmax <= self.xmin
            or self.ymax <= other.ymin
            or other.ymax <= self.ymin
        )

    def contains(self, other: Rect) -> bool:
        return (
            self.xmin <= other.xmin
            and self.ymin <= other.ymin
            and other.xmax <= self.xmax
            and other.ymax <= self.ymax
        )

    @staticmethod
    def around(x: float, y: float, hx: float, hy: float) -> Rect:
        return Rect(x - hx, y - hy, x + hx, y + hy)


@dataclass(frozen=True)
class SceneObject:
    id: int
    class_name: str
    position: tuple[float, float, float]  # box centre, table frame, metres
    size: tuple[float, float, float]  # box extents along its own axes
    yaw: float = 0.0
    color: tuple[int, int, int] = (160, 160, 160)
    support: int | str = "table"  # what it rests on ("table" or an object id)
    inside: bool = False  # rests inside `support`, a container
    furniture: bool = False  # stands on the floor (chairs, couch, tv): a static obstacle

    @property
    def half_xy(self) -> tuple[float, float]:
        """Half extents of the axis-aligned footprint of the (yawed) box."""
        return self.half_in(0.0)

    def half_in(self, frame_yaw: float) -> tuple[float, float]:
        """Half extents of the footprint's bounding rectangle in a frame turned by `frame_yaw`."""
        c, s = abs(math.cos(self.yaw - frame_yaw)), abs(math.sin(self.yaw - frame_yaw))
        dx, dy = self.size[0], self.size[1]
        return (c * dx + s * dy) / 2, (s * dx + c * dy) / 2

    @property
    def height(self) -> float:
        return self.size[2]

    @property
    def is_container(self) -> bool:
        return self.class_name in CONTAINER_CLASSES

    @property
    def flat_top(self) -> bool:
        return self.class_name not in NOT_FLAT_TOP

    @property
    def round(self) -> bool:
        return self.class_name in ROUND_CLASSES

    @property
    def sphere_diameter(self) -> float:
        """A round object's body: the sphere the simulator builds, as wide as the box's smallest
        side, height included (a box from silhouettes only ever over-estimates, most along the
        direction the views saw least)."""
        return min(self.size)

    @property
    def grasp_width(self) -> float:
        """The narrowest horizontal section the fingers can close on: the box's narrower side, or
        for a cup the body of the mug the simulator stretches over its box (handle along the long
        side), which is narrower along the long side when the box is near square. A round object
        (ball, apple, orange) is its `sphere_diameter`, what the fingers close on (apple_orbit's
        half orbit: a 12.3 x 8.2 x 7.5 cm box, a 7.5 cm apple)."""
        if self.round:
            return self.sphere_diameter
        short, long = sorted(self.size[:2])
        if self.class_name in MUG_CLASSES:
            return min(short, long * MUG_BODY_RATIO)
        return short

    @property
    def grasp_limit(self) -> float:
        if self.class_name in IRREGULAR_CLASSES:
            return MAX_IRREGULAR_BOX
        if self.class_name in ROUND_CLASSES or self.class_name in CYLINDER_CLASSES:
            return MAX_GRASP_WIDTH
        return OPEN_PADS_WIDTH  # built as a box: a flat face

    def graspable(self) -> tuple[bool, str]:
        if self.furniture:
            return False, f"{self.label} is furniture standing on the floor, a static obstacle"
        if self.height > MAX_OBJECT_HEIGHT:
            return False, f"{self.label} is {self.height * 100:.0f} cm tall, more than the arm lifts"
        if self.is_container and max(self.size[0], self.size[1]) > MAX_GRASP_WIDTH:
            return False, f"{self.label} is a container too wide for the gripper"
        if self.grasp_width > self.grasp_limit:
            return False, (
                f"{self.label} is {self.grasp_width * 100:.1f} cm across at its narrowest; "
                f"the gripper opens to {min(self.grasp_limit, MAX_GRASP_WIDTH) * 100:.1f} cm"
            )
        if self.height < MIN_GRASP_HEIGHT:
            return False, f"{self.label} is too flat to grasp ({self.height * 100:.1f} cm)"
        return True, ""

    @property
    def label(self) -> str:
        return f"{self.class_name} {self.id}"


@dataclass
class World:
    objects: dict[int, SceneObject]
    table_size: tuple[float, float]
    table_center: tuple[float, float] = (0.0, 0.0)
    robot_base: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))  # x, y, yaw
    reach: tuple[float, float] = (REACH_MIN, REACH_MAX)  # planning band; execution may try a wider one
    floor_z: float | None = None  # the floor's height in the table frame, where the reconstruction found one
    placement_focus: tuple[int, ...] | None = None  # the task objects the base was placed for (None: all)
    placement_points: tuple[tuple[float, float], ...] = ()  # and the spots the task puts them

    def place_for(self, focus: Iterable[int] | None, points: Iterable[tuple[float, float]] = ()) -> None:
        """Re-place the robot's base to reach these objects and spots (None: every tabletop object)."""
        self.placement_focus = None if focus is None else tuple(sorted(set(focus)))
        self.placement_points = tuple((float(x), float(y)) for x, y in points)
        self.robot_base = place_robot(self, self.placement_focus, self.placement_points)

    def __post_init__(self) -> None:
        if self.robot_base == (0.0, 0.0, 0.0):
            self.robot_base = place_robot(self)

    @property
    def table_rect(self) -> Rect:
        cx, cy = self.table_center
        return Rect.around(cx, cy, self.table_size[0] / 2, self.table_size[1] / 2)

    def reach_distance(self, x: float, y: float) -> float:
        return math.hypot(x - self.robot_base[0], y - self.robot_base[1])

    def reachable(self, x: float, y: float) -> bool:
        return self.reach[0] <= self.reach_distance(x, y) <= self.reach[1]

    def containers(self) -> list[int]:
        return sorted(i for i, o in self.objects.items() if o.is_container and not o.furniture)

    def tabletop(self) -> dict[int, SceneObject]:
        """The objects the arm works with: everything but the furniture on the floor."""
        return {i: o for i, o in self.objects.items() if not o.furniture}

    def graspability(self, obj_id: int) -> dict[str, Any]:
        """Whether the Panda can take the object, from its measured size and its neighbours.

        Narrowest horizontal section (the box's narrow side, or the mesh section for irregular
        classes) against the 8 cm opening, the height for a top-down (>= 2 cm) and a side
        (>= 4 cm) approach, and the free gap beside it along the closing direction for the
        fingers (a neighbour closer than 1.5 cm blocks that approach).
        """
        obj = self.objects[obj_id]
        ok, why = obj.graspable()
        gap = self._finger_gap(obj)
        approaches = []
        if ok:
            if obj.height >= MIN_GRASP_HEIGHT:
                approaches.append("top-down")
            if obj.height >= MIN_SIDE_HEIGHT:
                approaches.append("side")
            if gap < FINGER_CLEARANCE:
                ok, why = False, (
                    f"{obj.label} has a neighbour {max(gap, 0.0) * 100:.1f} cm away where the fingers "
                    f"close; they need {FINGER_CLEARANCE * 100:.1f} cm"
                )
                approaches = []
        if ok:
            why = (
                f"{obj.label} is {obj.grasp_width * 100:.1f} cm across at its narrowest "
                f"(opening {min(obj.grasp_limit, MAX_GRASP_WIDTH) * 100:.1f} cm), {obj.height * 100:.1f} cm tall: "
                + ", ".join(approaches)
            )
        return {
            "graspable": ok,
            "reason": why,
            "narrowest_cm": round(obj.grasp_width * 100, 1),
            "height_cm": round(obj.height * 100, 1),
            "approaches": approaches,
            "finger_gap_cm": None if math.isinf(gap) else round(gap * 100, 1),
        }

    def _finger_gap(self, obj: SceneObject) -> float:
        """Smallest free gap between the object's footprint and a neighbour resting on the same
        support, beside the faces the fingers close on."""
        best = math.inf
        c, s = math.cos(obj.yaw), math.sin(obj.yaw)
        narrow_x = obj.size[0] <= obj.size[1]
        for other in self.objects.values():
            if other.id == obj.id or other.furniture or other.support != obj.support:
                continue
            if other.support == obj.id or obj.support == other.id:
                continue
            # the neighbour's centre in the object's own frame
            dx, dy = other.position[0] - obj.position[0], other.position[1] - obj.position[1]
            lx, ly = c * dx + s * dy, -s * dx + c * dy
            ohx, ohy = other.half_in(obj.yaw)
            if narrow_x:
                if abs(ly) >= obj.size[1] / 2 + ohy:  # not beside the closing faces
                    continue
                g = abs(lx) - obj.size[0] / 2 - ohx
            else:
                if abs(lx) >= obj.size[0] / 2 + ohx:
                    continue
                g = abs(ly) - obj.size[1] / 2 - ohy
            if abs(other.position[2] - obj.position[2]) > (other.size[2] + obj.size[2]) / 2:
                continue
            best = min(best, g)
        return best

    def describe(self, obj_id: int | str) -> str:
        if obj_id == "table":
            return "the table"
        obj = self.objects.get(obj_id)  # type: ignore[arg-type]
        return obj.label if obj else f"object {obj_id}"


def describe_placement(world: World) -> dict[str, Any]:
    """Where the robot stands and why: the table's extent, the task's objects (or, with no task
    focus, every tabletop object) and their distances from the base against the arm's reach band."""
    bx, by, yaw = world.robot_base
    table = world.table_rect
    inside = table.contains(Rect.around(bx, by, 0, 0))
    focus = world.placement_focus
    tabletop = world.tabletop()
    dists = {o.label: round(world.reach_distance(*o.position[:2]), 3) for o in tabletop.values()}
    task_ids = sorted(tabletop) if focus is None else [i for i in focus if i in tabletop]
    task_d = {tabletop[i].label: dists[tabletop[i].label] for i in task_ids}
    for x, y in world.placement_points:
        task_d[f"spot ({x:.2f}, {y:.2f})"] = round(world.reach_distance(x, y), 3)
    out_of_reach = [k for k, d in task_d.items() if not world.reach[0] <= d <= world.reach[1]]
    others_out = [k for k, d in dists.items() if k not in task_d and not world.reach[0] <= d <= world.reach[1]]
    where = "on the table top" if inside else "just outside the table's edge (on a pedestal)"
    basis = (
        "every tabletop object" if focus is None
        else "the task's objects and spots (" + ", ".join(task_d) + ")"
    )
    reason = (
        f"base at ({bx:.2f}, {by:.2f}) m facing {math.degrees(yaw):.0f} deg, {where}; table "
        f"{world.table_size[0]:.2f} x {world.table_size[1]:.2f} m; placed for {basis}: chosen to "
        f"minimise the farthest one's distance within the reach band "
        f"{world.reach[0]:.2f}-{world.reach[1]:.2f} m, clear of every tabletop object"
    )
    if task_d:
        reason += f" (farthest {max(task_d.values()):.2f} m)"
    if out_of_reach:
        reason += "; out of reach: " + ", ".join(out_of_reach)
    return {"base": [round(bx, 4), round(by, 4), round(yaw, 4)], "mount": "table top" if inside else "pedestal",
            "basis": "all" if focus is None else "task", "task_distances_m": task_d,
            "distances_m": dists, "out_of_reach": out_of_reach, "others_out_of_reach": others_out,
            "reason": reason}


def place_robot(
    world: World,
    focus: Iterable[int] | None = None,
    points: Iterable[tuple[float, float]] = (),
) -> tuple[float, float, float]:
    """Mount the robot at the table's edge, or nearer the objects when the edge is out of reach.

    `focus` names the objects the task works with (None: every tabletop object) and `points` the
    spots it puts them; the base is placed to reach those, while every tabletop object keeps clear
    of the base's footprint, and so does anything beside the table whose top rises above the
    table's (a chair's back at the edge, a plant on the floor). Grid search (2 cm) over the table
    top and a band just outside its edge for the base position that minimises the farthest focus
    object or point, with each of them in front of the base (the arm works forward, as from a
    table edge). Positions at the edge win whenever every focus object is in reach from one of
    them; otherwise the base stands on the table top at the edge of the objects' workspace. It
    faces the focus objects' centroid. With no objects, it stands behind the middle of the far
    (+y) edge.
    """
    cx = world.table_center[0]
    table = world.table_rect
    on_table = [o for o in world.objects.values() if not o.furniture and table.grow(0.05).contains(
        Rect.around(o.position[0], o.position[1], 0, 0))]
    wanted = None if focus is None else set(focus)
    objs = [o for o in on_table if wanted is None or o.id in wanted]
    extra = [tuple(p) for p in points]
    if not objs and not extra:
        objs = on_table
    if not objs and not extra:
        return cx, table.ymax + ROBOT_SETBACK, -math.pi / 2
    pts = np.array([o.position[:2] for o in objs] + extra, dtype=float).reshape(-1, 2)
    # whatever else rises above the top stands in the way too: a chair's back at the table's edge, a
    # plant on the floor beside it
    standing = on_table + [
        o for o in world.objects.values() if o not in on_table and o.position[2] + o.size[2] / 2 > 0
    ]
    obstacles = np.array([o.position[:2] for o in standing], dtype=float).reshape(-1, 2)
    radii = np.array([max(o.half_xy) for o in standing], dtype=float)
    area = table.grow(ROBOT_SETBACK)
    xs = np.arange(area.xmin, area.xmax + 1e-9, 0.02)
    ys = np.arange(area.ymin, area.ymax + 1e-9, 0.02)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    cand = np.stack([gx.ravel(), gy.ravel()], axis=1)
    centroid = pts.mean(axis=0)
    fwd = centroid - cand
    fwd /= np.maximum(np.linalg.norm(fwd, axis=1, keepdims=True), 1e-9)
    rel = pts[None, :, :] - cand[:, None, :]  # candidate x focus point x 2
    dist = np.linalg.norm(rel, axis=2)
    ahead = np.einsum("cok,ck->co", rel, fwd)
    tops = np.array([o.position[2] + o.size[2] / 2 for o in standing], dtype=float)
    ok = _rest_pose_clear(cand, fwd, obstacles, radii, tops) & (ahead >= 0.05).all(axis=1)
    far = dist.max(axis=1)
    # distance inside the table from its nearest edge (negative outside): prefer standing at the edge
    inset = np.minimum.reduce(
        [cand[:, 0] - table.xmin, table.xmax - cand[:, 0], cand[:, 1] - table.ymin, table.ymax - cand[:, 1]]
    )
    # keep 4 cm inside the reach band at both ends: objects shift a little when others are handled
    cost = (
        far
        + 10 * np.maximum(REACH_MIN + 0.04 - dist.min(axis=1), 0.0)
        + 100 * (~ok)
        + 10 * np.maximum(far - (REACH_MAX - 0.04), 0.0)
        + 0.5 * (inset > 0.05)
    )
    best = int(np.argmin(cost))  # first minimum in grid order: deterministic
    bx, by = cand[best]
    return float(bx), float(by), float(math.atan2(centroid[1] - by, centroid[0] - bx))


def _rest_pose_clear(
    cand: np.ndarray, fwd: np.ndarray, centres: np.ndarray, radii: np.ndarray, tops: np.ndarray
) -> np.ndarray:
    """Per candidate base (facing `fwd`): every object (a circle of `radius` round its centre,
    its top at `tops`) keeps clear of the base's footprint and of the arm standing in its rest
    pose: a tall object beside the base would touch links 1-4, one reaching the forearm's height
    in front of it the hand, and the arm could not go home."""
    rel = centres[None, :, :] - cand[:, None, :]
    dist = np.linalg.norm(rel, axis=2) - radii[None, :]
    need = np.where(tops[None, :] > REST_COLUMN[0] - REST_MARGIN, REST_COLUMN[1] + REST_MARGIN, BASE_CLEARANCE)
    ok = (dist >= need).all(axis=1)
    # distance from each object's centre to the forearm's segment (base -> reach along fwd)
    along = np.clip(np.einsum("cok,ck->co", rel, fwd), 0.0, REST_FOREARM[1])
    off = np.linalg.norm(rel - along[:, :, None] * fwd[:, None, :], axis=2) - radii[None, :]
    high = tops[None, :] > REST_FOREARM[0] - REST_MARGIN
    return ok & ~(high & (off < REST_FOREARM[2] + REST_MARGIN)).any(axis=1)


def world_from_scene_graph(data: dict[str, Any]) -> World:
    """Build the World from scene_graph.json's node-link data (see the scene-graph format)."""
    try:
        graph = nx.node_link_graph(data, edges="edges", multigraph=True, directed=True)
    except Exception as exc:  # networkx raises KeyError/TypeError/NetworkXError on malformed data
        raise StageFailed(f"scene graph is not node-link data: {exc}") from exc
    table = graph.nodes.get("table")
    if table is None:
        raise StageFailed("scene graph has no 'table' node")
    size = table.get("size") or [1.0, 1.0]
    pos = table.get("position") or [0.0, 0.0, 0.0]
    supports = _supports(graph)
    objects: dict[int, SceneObject] = {}
    for node, attrs in graph.nodes(data=True):
        if attrs.get("kind") != "object":
            continue
        try:
            obj_id = int(node)
            objects[obj_id] = SceneObject(
                id=obj_id,
                class_name=str(attrs["class_name"]),
                position=tuple(float(v) for v in attrs["position"]),  # type: ignore[arg-type]
                size=tuple(max(float(v), 0.005) for v in attrs["size"]),  # type: ignore[arg-type]
                yaw=float(attrs.get("yaw", 0.0) or 0.0),
                color=tuple(int(v) for v in (attrs.get("color") or (160, 160, 160))[:3]),  # type: ignore[arg-type]
                support=supports.get(obj_id, ("table", False))[0],
                inside=supports.get(obj_id, ("table", False))[1],
                furniture=bool(attrs.get("furniture", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StageFailed(f"scene-graph node {node!r} is malformed: {exc}") from exc
    floor = table.get("floor_z")
    return World(
        objects=objects,
        table_size=(float(size[0]), float(size[1])),
        table_center=(float(pos[0]), float(pos[1])),
        floor_z=None if floor is None else float(floor),
    )


def _supports(graph: nx.MultiDiGraph) -> dict[int, tuple[int | str, bool]]:
    """What each object rests on: an 'inside' edge wins over 'on', which wins over the node's field."""
    found: dict[int, tuple[int | str, bool]] = {}
    for u, v, rel in graph.edges(data="relation"):
        if not isinstance(u, int) or u == v:
            continue
        target: int | str = v if isinstance(v, int) else "table"
        if rel == "inside":
            found[u] = (target, True)
        elif rel in ("on", "supported_by") and not found.get(u, (None, False))[1]:
            found[u] = (target, False)
    for node, attrs in graph.nodes(data=True):
        if isinstance(node, int) and node not in found:
            sup = attrs.get("support")
            found[node] = (
                (sup, False) if isinstance(sup, int) and sup in graph and sup != node else ("table", False)
            )
    return found


def load_world(path: Path) -> tuple[World, dict[str, Any]]:
    data = read_artefact(path)
    return world_from_scene_graph(data), data


def scene_graph_from_objects(
    objects: list[dict[str, Any]], table_size: tuple[float, float] = (1.0, 0.8)
) -> dict[str, Any]:
    """Scene-graph node-link data from plain object descriptions, for tests, the bench and demos.

    Each object: {"id", "class_name", "position" or "xy" (centre on the table), "size", optional
    "yaw", "color", "on" (id of what it rests on), "inside" (container id)}. z is derived from the
    support's top when only "xy" is given. Relations other than on/inside are not computed here.
    """
    graph = nx.MultiDiGraph()
    graph.add_node("table", kind="table", size=list(table_size), position=[0.0, 0.0, 0.0])
    tops: dict[int | str, float] = {"table": 0.0}
    for obj in objects:
        oid = int(obj["id"])
        size = [float(v) for v in obj["size"]]
        support = obj.get("inside", obj.get("on", "table"))
        bottom = tops.get(support, 0.0) + (0.01 if "inside" in obj else 0.0)
        if "position" in obj:
            pos = [float(v) for v in obj["position"]]
        else:
            pos = [float(obj["xy"][0]), float(obj["xy"][1]), bottom + size[2] / 2]
        tops[oid] = pos[2] + size[2] / 2
        graph.add_node(
            oid,
            kind="object",
            class_name=obj["class_name"],
            position=pos,
            size=size,
            yaw=float(obj.get("yaw", 0.0)),
            color=list(obj.get("color", [160, 160, 160])),
            confidence=1.0,
            support=support if isinstance(support, int) else 0,
            observations=1,
        )
        graph.add_edge(oid, support, relation="inside" if "inside" in obj else "on")
    return nx.node_link_data(graph, edges="edges")

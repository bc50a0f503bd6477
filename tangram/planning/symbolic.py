"""Symbolic state of the tabletop and the preconditions/effects of each action.

Validation replays a plan on this state; the offline planner searches over it. Positions are kept
so free-space, fit and reach checks use real geometry, not just the symbols.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tangram.planning.actions import MAX_PUSH, Action
from tangram.planning.world import (
    MAX_WORK_HEIGHT,
    PLACE_MARGIN,
    TRAY_WALL,
    Rect,
    World,
)

CONTAINER_FLOOR = 0.01  # objects inside a container rest this far above its bottom
PUSH_BACKOFF = 0.05  # the pushing hand comes down this far behind the object's side


class Place(NamedTuple):
    kind: str  # "table", "on" (stacked on ref) or "in" (inside container ref)
    ref: int | None
    x: float
    y: float


@dataclass(frozen=True)
class State:
    holding: int | None
    places: tuple[tuple[int, Place], ...]  # sorted by id; the held object has no entry

    def place(self, obj: int) -> Place | None:
        for oid, pl in self.places:
            if oid == obj:
                return pl
        return None

    def as_dict(self) -> dict[int, Place]:
        return dict(self.places)

    def with_place(self, obj: int, place: Place | None, holding: int | None) -> State:
        places = [(o, p) for o, p in self.places if o != obj]
        if place is not None:
            places.append((obj, place))
        return State(holding=holding, places=tuple(sorted(places)))

    def key(self) -> tuple:
        """Search key: symbols plus positions rounded to 1 cm."""
        return (self.holding, tuple((o, p.kind, p.ref, round(p.x, 2), round(p.y, 2)) for o, p in self.places))

    def children(self, obj: int) -> list[int]:
        return [o for o, p in self.places if p.ref == obj]


def initial_state(world: World) -> State:
    places = []
    for oid, obj in world.objects.items():
        sup = obj.support
        if isinstance(sup, int) and sup in world.objects:
            kind = "in" if obj.inside or world.objects[sup].is_container else "on"
            places.append((oid, Place(kind, sup, obj.position[0], obj.position[1])))
        else:
            places.append((oid, Place("table", None, obj.position[0], obj.position[1])))
    return State(holding=None, places=tuple(sorted(places)))


def bottom_z(world: World, state: State, obj: int, depth: int = 0) -> float:
    place = state.place(obj)
    if place is None or place.kind == "table" or place.ref is None or depth > 20:
        return 0.0
    base = bottom_z(world, state, place.ref, depth + 1)
    if place.kind == "in":
        return base + CONTAINER_FLOOR
    return base + world.objects[place.ref].height


def footprint(world: World, state: State, obj: int) -> Rect:
    place = state.place(obj)
    hx, hy = world.objects[obj].half_xy
    assert place is not None
    return Rect.around(place.x, place.y, hx, hy)


def table_obstacles(world: World, state: State, exclude: int | None = None) -> list[Rect]:
    return [footprint(world, state, o) for o, p in state.places if p.kind == "table" and o != exclude]


def container_inner(world: World, container: int) -> Rect:
    """Where a held object may go inside a container, in the container's own frame (centre at 0,
    axes along its box): its footprint minus the walls (more for a bowl's sloping wall)."""
    obj = world.objects[container]
    hx, hy = obj.size[0] / 2, obj.size[1] / 2
    wall = max(TRAY_WALL, 0.24 * min(hx, hy)) if obj.class_name == "bowl" else TRAY_WALL
    return Rect.around(0.0, 0.0, hx - wall, hy - wall)


def to_container(world: World, state: State, container: int, x: float, y: float) -> tuple[float, float]:
    """World (table-frame) xy -> the container's frame."""
    place = state.place(container)
    assert place is not None
    yaw = world.objects[container].yaw
    dx, dy = x - place.x, y - place.y
    return math.cos(yaw) * dx + math.sin(yaw) * dy, -math.sin(yaw) * dx + math.cos(yaw) * dy


def from_container(world: World, state: State, container: int, u: float, v: float) -> tuple[float, float]:
    place = state.place(container)
    assert place is not None
    yaw = world.objects[container].yaw
    return place.x + math.cos(yaw) * u - math.sin(yaw) * v, place.y + math.sin(yaw) * u + math.cos(yaw) * v


def free_spot(
    region: Rect,
    half: tuple[float, float],
    obstacles: list[Rect],
    prefer: tuple[float, float],
    ok=lambda x, y: True,
    step: float = 0.01,
) -> tuple[float, float] | None:
    """The grid point nearest `prefer` where a box of `half` extents fits in `region` clear of obstacles.

    Deterministic (ties broken by grid order), so the planner and the simulator agree on spots.
    """
    hx, hy = half
    xs = np.arange(region.xmin + hx, region.xmax - hx + 1e-9, step)
    ys = np.arange(region.ymin + hy, region.ymax - hy + 1e-9, step)
    if xs.size == 0 or ys.size == 0:
        return None
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    cand = np.stack([gx.ravel(), gy.ravel()], axis=1)
    free = np.ones(len(cand), dtype=bool)
    for r in obstacles:
        g = r.grow(PLACE_MARGIN)
        inside = (
            (cand[:, 0] + hx > g.xmin)
            & (cand[:, 0] - hx < g.xmax)
            & (cand[:, 1] + hy > g.ymin)
            & (cand[:, 1] - hy < g.ymax)
        )
        free &= ~inside
    order = np.argsort(np.hypot(cand[:, 0] - prefer[0], cand[:, 1] - prefer[1]), kind="stable")
    for i in order:
        if free[i] and ok(float(cand[i, 0]), float(cand[i, 1])):
            return float(cand[i, 0]), float(cand[i, 1])
    return None


def container_spot(world: World, state: State, held: int, container: int) -> tuple[float, float] | None:
    """A free spot for `held` inside `container` (table-frame xy), packed in the container's frame."""
    inner = container_inner(world, container)
    yaw = world.objects[container].yaw
    occupied = []
    for o in state.children(container):
        if o != held:
            place = state.place(o)
            assert place is not None
            u, v = to_container(world, state, container, place.x, place.y)
            occupied.append(Rect.around(u, v, *world.objects[o].half_in(yaw)))
    hx, hy = world.objects[held].half_in(yaw)
    room_x, room_y = inner.xmax - inner.xmin, inner.ymax - inner.ymin
    if room_x < 4 * hx + PLACE_MARGIN and room_y < 4 * hy + PLACE_MARGIN:
        prefer = (0.0, 0.0)  # room for one: the middle (a bowl's lowest point)
    else:
        # room for several: fill from the corner nearest the robot, so later objects still fit
        bu, bv = to_container(world, state, container, *world.robot_base[:2])
        prefer = (inner.xmin if bu < 0 else inner.xmax, inner.ymin if bv < 0 else inner.ymax)
    spot = free_spot(inner, (hx, hy), occupied, prefer, step=0.005)
    return None if spot is None else from_container(world, state, container, *spot)


def table_region(world: World) -> Rect:
    return world.table_rect.grow(-0.02)


def check_place_at(world: World, state: State, held: int, x: float, y: float) -> list[str]:
    hx, hy = world.objects[held].half_xy
    rect = Rect.around(x, y, hx, hy)
    errors = []
    if not table_region(world).contains(rect):
        errors.append(f"({x:.2f}, {y:.2f}) puts {world.describe(held)} off the table")
    if not world.reachable(x, y):
        errors.append(
            f"({x:.2f}, {y:.2f}) is out of the arm's reach ({world.reach_distance(x, y):.2f} m from its base)"
        )
    hits = [
        o
        for o, p in state.places
        if p.kind == "table" and footprint(world, state, o).grow(PLACE_MARGIN / 2).overlaps(rect)
    ]
    if hits:
        errors.append(f"({x:.2f}, {y:.2f}) is taken by " + ", ".join(world.describe(o) for o in hits))
    return errors


def _check_exists(world: World, obj: int | None, role: str) -> list[str]:
    if obj is None or obj not in world.objects:
        known = ", ".join(str(i) for i in sorted(world.objects))
        return [f"{role} {obj} is not in the scene (ids: {known})"]
    return []


def _reach(world: World, state: State, obj: int, what: str) -> list[str]:
    place = state.place(obj)
    if place and not world.reachable(place.x, place.y):
        return [
            f"{world.describe(obj)} is out of the arm's reach to {what} "
            f"({world.reach_distance(place.x, place.y):.2f} m from its base)"
        ]
    return []


def pre_pick(world: World, state: State, obj: int) -> list[str]:
    errors = _check_exists(world, obj, "object")
    if errors:
        return errors
    if state.holding is not None:
        return [f"the gripper already holds {world.describe(state.holding)}"]
    ok, why = world.objects[obj].graspable()
    if not ok:
        errors.append(why)
    on_top = state.children(obj)
    if on_top:
        errors.append(
            f"{world.describe(obj)} supports "
            + ", ".join(world.describe(o) for o in on_top)
            + "; a support can't be picked"
        )
    return errors + _reach(world, state, obj, "pick it")


def _placement_errors(world: World, state: State, target: int, role: str, relation: str) -> list[str]:
    """What rules out any placement: an empty gripper, a missing target, the held object itself."""
    if state.holding is None:
        return ["the gripper holds nothing to place"]
    errors = _check_exists(world, target, role)
    if not errors and target == state.holding:
        errors = [f"{world.describe(state.holding)} can't be placed {relation} itself"]
    return errors


def pre_place_on(world: World, state: State, target: int) -> list[str]:
    errors = _placement_errors(world, state, target, "target", "on")
    if errors:
        return errors
    held = state.holding
    tgt, obj = world.objects[target], world.objects[held]
    if tgt.is_container:
        return [f"{world.describe(target)} is a container: use place_in"]
    if not tgt.flat_top:
        errors.append(f"{world.describe(target)} has no flat top to stack on")
    if obj.round:
        errors.append(f"{world.describe(held)} is round and would roll off {world.describe(target)}")
    if state.children(target):
        errors.append(
            f"{world.describe(target)} is not clear: "
            + ", ".join(world.describe(o) for o in state.children(target))
            + " on it"
        )
    (ohx, ohy), (thx, thy) = obj.half_xy, tgt.half_xy
    if ohx > 1.6 * thx or ohy > 1.6 * thy:
        errors.append(f"{world.describe(held)} is too large to rest on {world.describe(target)}")
    if bottom_z(world, state, target) + tgt.height + obj.height > MAX_WORK_HEIGHT - 0.1:
        errors.append(f"a stack on {world.describe(target)} would be too high for the arm")
    return errors + _reach(world, state, target, "place on it")


def pre_place_in(world: World, state: State, container: int) -> list[str]:
    errors = _placement_errors(world, state, container, "container", "in")
    if errors:
        return errors
    held = state.holding
    if not world.objects[container].is_container:
        return [f"{world.describe(container)} is not a container: use place_on"]
    if container_spot(world, state, held, container) is None:
        inner = container_inner(world, container)
        errors.append(
            f"{world.describe(held)} does not fit in {world.describe(container)} "
            f"(free inner area {100 * (inner.xmax - inner.xmin):.0f}x"
            f"{100 * (inner.ymax - inner.ymin):.0f} cm, "
            f"{len(state.children(container))} object(s) already inside)"
        )
    return errors + _reach(world, state, container, "place into it")


def pre_push(world: World, state: State, obj: int, dx: float, dy: float) -> list[str]:
    errors = _check_exists(world, obj, "object")
    if errors:
        return errors
    if state.holding is not None:
        return [f"the gripper holds {world.describe(state.holding)}; push needs it empty"]
    place = state.place(obj)
    assert place is not None
    dist = math.hypot(dx, dy)
    if not 0.02 <= dist <= MAX_PUSH:
        errors.append(f"a push must move 0.02-{MAX_PUSH:.2f} m, not {dist:.2f} m")
    if place.kind != "table":
        errors.append(f"{world.describe(obj)} is not on the table; only table objects can be pushed")
    if world.objects[obj].round:
        errors.append(f"{world.describe(obj)} is round and would roll away; pick it instead")
    if state.children(obj):
        errors.append(f"{world.describe(obj)} carries other objects; they would fall")
    if errors:
        return errors
    moved = state.with_place(obj, None, holding=obj)  # check the destination as if carried there
    errors += check_place_at(world, moved, obj, place.x + dx, place.y + dy)
    # the hand comes down behind the object, so that spot must be in reach too
    back = max(world.objects[obj].half_xy) + PUSH_BACKOFF + 0.01
    sx, sy = place.x - dx / dist * back, place.y - dy / dist * back
    if not world.reachable(sx, sy):
        errors.append(
            f"the hand can't reach behind {world.describe(obj)} to push it "
            f"({world.reach_distance(sx, sy):.2f} m from its base)"
        )
    return errors + _reach(world, state, obj, "push it")


def apply_action(world: World, state: State, action: Action) -> tuple[State, list[str]]:
    """Check `action`'s preconditions in `state`; return the successor state and the errors."""
    if action.name == "home":
        return state, []
    if action.name == "pick":
        errors = pre_pick(world, state, action.object)  # type: ignore[arg-type]
        return (state if errors else state.with_place(action.object, None, holding=action.object)), errors  # type: ignore[arg-type]
    if action.name == "push":
        errors = pre_push(world, state, action.object, action.dx or 0.0, action.dy or 0.0)  # type: ignore[arg-type]
        if errors:
            return state, errors
        place = state.place(action.object)  # type: ignore[arg-type]
        assert place is not None
        new = Place("table", None, place.x + (action.dx or 0.0), place.y + (action.dy or 0.0))
        return state.with_place(action.object, new, holding=None), []  # type: ignore[arg-type]
    held = state.holding
    if action.name == "place_on":
        errors = pre_place_on(world, state, action.target)  # type: ignore[arg-type]
        if errors:
            return state, errors
        tp = state.place(action.target)  # type: ignore[arg-type]
        assert tp is not None and held is not None
        return state.with_place(held, Place("on", action.target, tp.x, tp.y), holding=None), []
    if action.name == "place_in":
        errors = pre_place_in(world, state, action.target)  # type: ignore[arg-type]
        if errors:
            return state, errors
        spot = container_spot(world, state, held, action.target)  # type: ignore[arg-type]
        assert spot is not None and held is not None
        return state.with_place(held, Place("in", action.target, *spot), holding=None), []
    if action.name == "place_at":
        if held is None:
            return state, ["the gripper holds nothing to place"]
        errors = check_place_at(world, state, held, action.x or 0.0, action.y or 0.0)
        if errors:
            return state, errors
        return state.with_place(
            held, Place("table", None, action.x or 0.0, action.y or 0.0), holding=None
        ), []
    return state, [f"unknown action {action.name!r}"]

"""The offline planner: A* over the symbolic state with the simulator's own action vocabulary.

It needs no LLM: given a Goal (from tasks.parse_task) it searches pick / place_on / place_in /
place_at / push sequences whose preconditions hold at every step (the validator's own checks), so
blocked objects are moved out of the way, stacks are built bottom-up and full containers are
noticed. Costs: one per action; the heuristic counts the picks and places still needed.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tangram.errors import TangramError
from tangram.planning.actions import Action
from tangram.planning.goals import Atom, Goal
from tangram.planning.symbolic import (
    Place,
    State,
    apply_action,
    check_place_at,
    container_spot,
    footprint,
    free_spot,
    initial_state,
    pre_place_in,
    pre_place_on,
    table_obstacles,
    table_region,
)
from tangram.planning.world import World

MAX_EXPANSIONS = 20000


class PlanningFailed(TangramError):
    """The offline planner proved, or gave up proving, that no plan reaches the goal."""


@dataclass
class SearchResult:
    actions: list[Action]
    expansions: int
    seconds: float
    already_satisfied: bool


def _goal_objects(goal: Goal) -> dict[int, list[Atom]]:
    out: dict[int, list[Atom]] = {}
    for atom in goal.atoms:
        out.setdefault(atom.obj, []).append(atom)
    return out


def _relevant(state: State, goal: Goal) -> set[int]:
    """Objects worth picking: the goal's objects and whatever sits on them or on their targets."""
    seeds = {a.obj for a in goal.atoms} | {a.target for a in goal.atoms if isinstance(a.target, int)}
    out = {a.obj for a in goal.atoms}
    frontier = list(seeds)
    while frontier:
        node = frontier.pop()
        for child in state.children(node):
            if child not in out:
                out.add(child)
                frontier.append(child)
    return out


def _park_spot(world: World, state: State, held: int, goal: Goal) -> tuple[float, float] | None:
    """A free table spot near the robot's side, away from the goal's containers and targets."""
    targets = [
        footprint(world, state, a.target)
        for a in goal.atoms
        if isinstance(a.target, int) and state.place(a.target) is not None
    ]
    obstacles = table_obstacles(world, state) + [t.grow(0.03) for t in targets]
    obj = world.objects[held]
    return free_spot(
        table_region(world),
        obj.half_xy,
        obstacles,
        (obj.position[0], obj.position[1]),
        ok=world.reachable,
        step=0.02,
    )


def _candidates(world: World, state: State, goal: Goal, by_obj: dict[int, list[Atom]]) -> Iterator[Action]:
    held = state.holding
    if held is None:
        for obj in sorted(_relevant(state, goal)):
            yield Action("pick", object=obj)
        for atom in goal.atoms:
            place = state.place(atom.obj)
            if atom.kind == "at" and atom.push_ok and place is not None and not atom.satisfied(state):
                assert atom.xy is not None
                yield Action("push", object=atom.obj, dx=atom.xy[0] - place.x, dy=atom.xy[1] - place.y)
        return
    for atom in by_obj.get(held, []):
        if atom.kind == "in":
            yield Action("place_in", target=atom.target)  # type: ignore[arg-type]
        elif atom.kind == "on" and isinstance(atom.target, int):
            yield Action("place_on", target=atom.target)
        elif atom.kind == "at":
            assert atom.xy is not None
            yield Action("place_at", x=atom.xy[0], y=atom.xy[1])
        elif atom.kind == "region":
            assert atom.region is not None
            spot = free_spot(
                atom.region,
                world.objects[held].half_xy,
                table_obstacles(world, state),
                atom.region.center,
                ok=world.reachable,
                step=0.02,
            )
            if spot:
                yield Action("place_at", x=spot[0], y=spot[1])
    spot = _park_spot(world, state, held, goal)
    if spot:
        yield Action("place_at", x=spot[0], y=spot[1])


def _heuristic(state: State, goal: Goal) -> int:
    cost = 0
    for atom in goal.unsatisfied(state):
        cost += 1 if state.holding == atom.obj or atom.kind == "held" else 2
    if state.holding is not None and all(a.obj != state.holding for a in goal.unsatisfied(state)):
        cost += 1
    return cost


def precheck(world: World, goal: Goal, state: State) -> None:
    """Fail fast, with the validator's reason, when a goal atom can never hold.

    Each unsatisfied atom is checked on its own: the object must be graspable and in reach, and
    placing it must be possible with its target emptied (blockers can be moved; sizes can't change).
    """
    for atom in goal.unsatisfied(state):
        errors = []
        if not atom.push_ok:
            ok, why = world.objects[atom.obj].graspable()
            errors += [] if ok else [why]
        place = state.place(atom.obj)
        if place and not world.reachable(place.x, place.y):
            errors.append(
                f"{world.describe(atom.obj)} is {world.reach_distance(place.x, place.y):.2f} m "
                "from the arm's base"
            )
        alone = _alone(state, atom)
        if atom.kind == "in":
            errors += pre_place_in(world, alone, atom.target)  # type: ignore[arg-type]
        elif atom.kind == "on" and isinstance(atom.target, int):
            errors += pre_place_on(world, alone, atom.target)
        elif atom.kind == "at":
            assert atom.xy is not None
            errors += check_place_at(world, alone, atom.obj, *atom.xy)
        if errors:
            raise PlanningFailed(f"goal '{atom.describe(world)}' is impossible: " + "; ".join(errors))
    _check_capacity(world, goal, state)


def _check_capacity(world: World, goal: Goal, state: State) -> None:
    """Every container must take all the objects the goal puts in it (packed as the executor will)."""
    wanted: dict[int, list[int]] = {}
    for atom in goal.atoms:
        if atom.kind == "in" and isinstance(atom.target, int):
            wanted.setdefault(atom.target, []).append(atom.obj)
    for box, objs in wanted.items():
        # goal objects already inside stay; other contents could be taken out; the rest is as is
        sim = State(
            None,
            tuple(
                (o, p)
                for o, p in state.places
                if (o in objs and p.ref == box) or (o not in objs and p.ref != box)
            ),
        )
        fitted = 0
        for obj in objs:
            if state.place(obj) is not None and state.place(obj).ref == box:
                fitted += 1
                continue
            spot = container_spot(world, sim, obj, box)
            if spot is None:
                raise PlanningFailed(
                    f"{world.describe(box)} can't hold all of "
                    + ", ".join(world.describe(o) for o in objs)
                    + f" (only {fitted} fit side by side)"
                )
            sim = sim.with_place(obj, Place("in", box, *spot), holding=None)
            fitted += 1


def _alone(state: State, atom: Atom) -> State:
    """`atom`'s object held, its target emptied of everything else that could be moved away."""
    keep = tuple(
        (o, p)
        for o, p in state.places
        if o != atom.obj and (p.ref != atom.target or not isinstance(atom.target, int))
    )
    return State(holding=atom.obj, places=keep)


def plan_offline(world: World, goal: Goal, max_expansions: int = MAX_EXPANSIONS) -> SearchResult:
    start_t = time.perf_counter()
    start = initial_state(world)
    if goal.satisfied(start):
        return SearchResult([Action("home")], 0, time.perf_counter() - start_t, True)
    precheck(world, goal, start)
    by_obj = _goal_objects(goal)
    tie = itertools.count()
    # entries: (f, -g, tie, g, state, path); on equal f the deeper node goes first
    frontier: list[tuple[int, int, int, int, State, tuple[Action, ...]]] = [
        (_heuristic(start, goal), 0, next(tie), 0, start, ())
    ]
    best: dict[tuple, int] = {start.key(): 0}
    expansions = 0
    while frontier and expansions < max_expansions:
        _, _, _, g, state, path = heapq.heappop(frontier)
        if goal.satisfied(state):
            return SearchResult([*path, Action("home")], expansions, time.perf_counter() - start_t, False)
        expansions += 1
        for action in _candidates(world, state, goal, by_obj):
            nxt, errors = apply_action(world, state, action)
            if errors:
                continue
            key = nxt.key()
            if best.get(key, 1 << 30) <= g + 1:
                continue
            best[key] = g + 1
            heapq.heappush(
                frontier, (g + 1 + _heuristic(nxt, goal), -(g + 1), next(tie), g + 1, nxt, (*path, action))
            )
    why = "search space exhausted" if not frontier else f"gave up after {max_expansions} expansions"
    raise PlanningFailed(
        f"no plan reaches the goal ({why}): " + "; ".join(a.describe(world) for a in goal.unsatisfied(start))
    )

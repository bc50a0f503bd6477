"""Goals the offline planner understands, as conjunctions of atoms over the symbolic state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tangram.planning.symbolic import State
from tangram.planning.world import Rect, World

AT_TOLERANCE = 0.03  # metres


@dataclass(frozen=True)
class Atom:
    kind: str  # "in" (obj in container), "on" (obj on target or "table"), "at" (xy), "region", "held" (lifted)
    obj: int
    target: int | str | None = None
    xy: tuple[float, float] | None = None
    region: Rect | None = None
    push_ok: bool = False  # "at" goals from a push task may be reached by pushing

    def satisfied(self, state: State) -> bool:
        if self.kind == "held":  # picked up and lifted: in the gripper
            return state.holding == self.obj
        place = state.place(self.obj)
        if place is None:
            return False
        if self.kind == "in":
            return place.kind == "in" and place.ref == self.target
        if self.kind == "on":
            if self.target == "table":
                return place.kind == "table"
            return place.kind in ("on", "in") and place.ref == self.target
        if self.kind == "at":
            assert self.xy is not None
            return (
                place.kind == "table"
                and math.hypot(place.x - self.xy[0], place.y - self.xy[1]) <= AT_TOLERANCE
            )
        if self.kind == "region":
            assert self.region is not None
            return place.kind == "table" and self.region.contains(Rect.around(place.x, place.y, 0, 0))
        return False

    def describe(self, world: World) -> str:
        name = world.describe(self.obj)
        if self.kind == "held":
            return f"{name} held"
        if self.kind in ("in", "on"):
            return f"{name} {self.kind} {world.describe(self.target)}"  # type: ignore[arg-type]
        if self.kind == "at":
            assert self.xy is not None
            return f"{name} at ({self.xy[0]:.2f}, {self.xy[1]:.2f})"
        assert self.region is not None
        return (
            f"{name} in region x {self.region.xmin:.2f}..{self.region.xmax:.2f}, "
            f"y {self.region.ymin:.2f}..{self.region.ymax:.2f}"
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "object": self.obj}
        if self.target is not None:
            out["target"] = self.target
        if self.xy is not None:
            out["xy"] = [round(v, 4) for v in self.xy]
        if self.region is not None:
            out["region"] = [
                round(v, 4) for v in (self.region.xmin, self.region.ymin, self.region.xmax, self.region.ymax)
            ]
        return out


@dataclass
class Goal:
    form: str  # "in", "on", "clear_table", "stack", "sort", "at", "push", "home", "pick"
    atoms: list[Atom]
    notes: list[str] = field(default_factory=list)  # objects left out and why

    def satisfied(self, state: State) -> bool:
        # the gripper ends empty, except holding what a "pick up X" goal asks for
        held_ok = state.holding is None or any(a.kind == "held" and a.obj == state.holding for a in self.atoms)
        return held_ok and all(a.satisfied(state) for a in self.atoms)

    def unsatisfied(self, state: State) -> list[Atom]:
        return [a for a in self.atoms if not a.satisfied(state)]

    def to_json(self, world: World) -> dict[str, Any]:
        return {
            "form": self.form,
            "atoms": [a.to_json() for a in self.atoms],
            "description": [a.describe(world) for a in self.atoms],
            "notes": self.notes,
        }

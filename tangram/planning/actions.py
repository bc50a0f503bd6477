"""The action vocabulary the simulator executes, its JSON form and the JSON schema sent to the LLM.

JSON form of one action (objects are scene-graph ids):
  {"action": "pick", "object": 3}
  {"action": "place_on", "target": 5}        stack the held object on object 5
  {"action": "place_in", "container": 7}     drop the held object into container 7
  {"action": "place_at", "x": 0.1, "y": -0.2}  set the held object down on the table (metres)
  {"action": "push", "object": 3, "dx": 0.1, "dy": 0.0}  slide an object along the table (metres)
  {"action": "home"}                          return the arm to its rest pose
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ACTION_NAMES = ("pick", "place_on", "place_in", "place_at", "push", "home")
MAX_PLAN_LENGTH = 24
MAX_PUSH = 0.25  # metres in one push


class ActionParseError(ValueError):
    """An action dict that does not match the vocabulary."""


@dataclass(frozen=True)
class Action:
    name: str
    object: int | None = None  # pick, push
    target: int | None = None  # place_on, place_in (the container)
    x: float | None = None  # place_at
    y: float | None = None
    dx: float | None = None  # push
    dy: float | None = None

    def to_json(self) -> dict[str, Any]:
        if self.name == "pick":
            return {"action": "pick", "object": self.object}
        if self.name == "place_on":
            return {"action": "place_on", "target": self.target}
        if self.name == "place_in":
            return {"action": "place_in", "container": self.target}
        if self.name == "place_at":
            return {"action": "place_at", "x": round(self.x or 0.0, 4), "y": round(self.y or 0.0, 4)}
        if self.name == "push":
            return {
                "action": "push",
                "object": self.object,
                "dx": round(self.dx or 0.0, 4),
                "dy": round(self.dy or 0.0, 4),
            }
        return {"action": "home"}

    def __str__(self) -> str:
        if self.name in ("pick",):
            return f"pick({self.object})"
        if self.name in ("place_on", "place_in"):
            return f"{self.name}({self.target})"
        if self.name == "place_at":
            return f"place_at({self.x:.3f}, {self.y:.3f})"
        if self.name == "push":
            return f"push({self.object}, {self.dx:.3f}, {self.dy:.3f})"
        return "home()"


def _number(value: Any, key: str, what: str) -> float:
    """A JSON value (number or numeric string, never a bool) as a float, or ActionParseError."""
    message = f"'{key}' must be {what}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ActionParseError(message)
    try:
        return float(value)
    except ValueError as exc:
        raise ActionParseError(message) from exc


def _int(value: Any, key: str) -> int:
    number = _number(value, key, "an object id (integer)")
    if not number.is_integer():
        raise ActionParseError(f"'{key}' must be an object id (integer), got {value!r}")
    return int(number)


def _float(value: Any, key: str) -> float:
    number = _number(value, key, "a number in metres")
    if not math.isfinite(number):
        raise ActionParseError(f"'{key}' must be finite, got {value!r}")
    return number


_REQUIRED = {
    "pick": ("object",),
    "place_on": ("target",),
    "place_in": ("container",),
    "place_at": ("x", "y"),
    "push": ("object", "dx", "dy"),
    "home": (),
}


def parse_action(item: Any) -> Action:
    """One action dict (as the LLM or a user wrote it) -> Action, or ActionParseError saying why."""
    if not isinstance(item, dict):
        raise ActionParseError(f"an action must be a JSON object, got {item!r}")
    name = item.get("action")
    if name not in _REQUIRED:
        raise ActionParseError(f"unknown action {name!r}; allowed: {', '.join(ACTION_NAMES)}")
    missing = [k for k in _REQUIRED[name] if k not in item]
    if missing:
        raise ActionParseError(f"{name} needs {', '.join(missing)}")
    if name == "pick":
        return Action("pick", object=_int(item["object"], "object"))
    if name == "place_on":
        return Action("place_on", target=_int(item["target"], "target"))
    if name == "place_in":
        return Action("place_in", target=_int(item["container"], "container"))
    if name == "place_at":
        return Action("place_at", x=_float(item["x"], "x"), y=_float(item["y"], "y"))
    if name == "push":
        return Action(
            "push",
            object=_int(item["object"], "object"),
            dx=_float(item["dx"], "dx"),
            dy=_float(item["dy"], "dy"),
        )
    return Action("home")


def parse_plan(data: Any) -> list[Action]:
    """{"actions": [...]} (or a bare list) -> actions; ActionParseError names the first bad one."""
    items = data.get("actions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ActionParseError('the reply must be a JSON object {"actions": [...]}')
    if len(items) > MAX_PLAN_LENGTH:
        raise ActionParseError(f"plan has {len(items)} actions; at most {MAX_PLAN_LENGTH} are allowed")
    actions = []
    for i, item in enumerate(items):
        try:
            actions.append(parse_action(item))
        except ActionParseError as exc:
            raise ActionParseError(f"action {i + 1}: {exc}") from exc
    return actions


def _variant(name: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"action": {"type": "string", "enum": [name]}, **props},
        "required": ["action", *props],
        "additionalProperties": False,
    }


def plan_schema(object_ids: list[int], container_ids: list[int], bounded: bool = False) -> dict[str, Any]:
    """JSON schema of a plan for this scene: only its ids, only containers for place_in.

    `bounded` adds maxItems, which grammar-based servers (llama.cpp) honour and OpenAI's strict
    mode does not accept.
    """
    ids = {"type": "integer", "enum": sorted(object_ids)}
    number = {"type": "number"}
    variants = [_variant("pick", {"object": ids})]
    if object_ids:
        variants.append(_variant("place_on", {"target": ids}))
    if container_ids:
        variants.append(
            _variant("place_in", {"container": {"type": "integer", "enum": sorted(container_ids)}})
        )
    variants += [
        _variant("place_at", {"x": number, "y": number}),
        _variant("push", {"object": ids, "dx": number, "dy": number}),
        _variant("home", {}),
    ]
    if not object_ids:  # an empty enum is not a valid schema; only place_at/home remain
        variants = [v for v in variants if v["properties"]["action"]["enum"][0] in ("place_at", "home")]
    actions: dict[str, Any] = {"type": "array", "items": {"anyOf": variants}}
    if bounded:
        actions["maxItems"] = MAX_PLAN_LENGTH
    return {
        "type": "object",
        "properties": {"actions": actions},
        "required": ["actions"],
        "additionalProperties": False,
    }

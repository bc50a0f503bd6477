"""Tasks in words -> goals the offline planner can search for.

Supported forms (objects named by class, alias, colour, id or place: "the cup", "the red mug", "cup 3",
"object 3", "all the balls", "the object left of the cup" (left/right of, behind, in front of, near)):
  put/place/move/drop X in|into|inside Y        -> in(X, Y)
  put/place/stack X on|onto|on top of Y         -> on(X, Y) (in(X, Y) when Y is a container)
  clear the table [into|in|onto Y]              -> every graspable object in Y (default: largest container)
  stack A, B and C | stack the blocks | stack everything -> a tower, largest footprint at the bottom
  sort (the objects) by class|type|kind         -> each class into its own container, else its own table strip
  move|put X to the left|right|front|back [by N cm] / to (x, y)   -> at(X, xy)
  push X left|right|forward|back|away|towards [by N cm]           -> at(X, xy), reached by pushing
  pick up|grab|lift|take X                      -> held(X): in the gripper, lifted (the arm goes home with it)
  go home / home                                -> the arm's rest pose
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tangram.errors import TangramError
from tangram.planning.goals import Atom, Goal
from tangram.planning.symbolic import initial_state
from tangram.planning.world import Rect, World

SUPPORTED_FORMS = (
    "put X in Y",
    "put X on Y",
    "clear the table [into Y]",
    "stack A, B and C",
    "sort by class",
    "move X left/right/forward/back [by N cm]",
    "push X left/right [by N cm]",
    "pick up X",
    "go home",
)

ALIASES: dict[str, tuple[str, ...]] = {
    "cup": ("cup", "mug", "coffee cup"),
    "sports ball": ("sports ball", "ball", "soccer ball", "football"),
    "teddy bear": ("teddy bear", "teddy", "bear", "plush", "toy"),
    "cell phone": ("cell phone", "phone", "smartphone"),
    "dining table": ("dining table",),
    "block": ("block", "cube", "brick", "box"),
    "tray": ("tray",),
    "bowl": ("bowl",),
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 70, 200),
    "yellow": (230, 210, 40),
    "orange": (240, 140, 30),
    "purple": (130, 50, 160),
    "pink": (240, 130, 170),
    "brown": (130, 80, 40),
    "white": (235, 235, 235),
    "black": (25, 25, 25),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
}
DIRECTIONS = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "forward": (0.0, 1.0),
    "back": (0.0, -1.0),
    "backward": (0.0, -1.0),
    "front": (0.0, -1.0),
    "away": (0.0, 1.0),
    "towards": (0.0, -1.0),
}
DEFAULT_SHIFT = 0.10  # metres, when a move/push task gives no distance


class TaskNotUnderstood(TangramError):
    """The offline planner can't turn this task into a goal."""


@dataclass
class Mention:
    start: int
    end: int
    objects: list[int]
    plural: bool


def _plural(word: str) -> list[str]:
    return [word + "es", word + "s"] if word.endswith(("s", "x", "ch", "sh")) else [word + "s"]


def _vocabulary(world: World) -> list[tuple[str, str, bool]]:
    """(phrase, class_name, plural) for every class in the scene, longest phrase first."""
    vocab = []
    for cls in sorted({o.class_name for o in world.objects.values()}):
        names = set(ALIASES.get(cls, ())) | {cls, cls.split()[-1]}
        for name in names:
            vocab.append((name, cls, False))
            vocab += [(p, cls, True) for p in _plural(name)]
    vocab += [("objects", "*", True), ("things", "*", True), ("items", "*", True), ("everything", "*", True)]
    return sorted(vocab, key=lambda v: -len(v[0]))


def _by_color(world: World, ids: list[int], color: str) -> list[int]:
    ref = COLORS[color]
    dist = {i: sum((a - b) ** 2 for a, b in zip(world.objects[i].color, ref, strict=True)) for i in ids}
    best = min(dist.values())
    return [i for i in ids if dist[i] == best]


def find_mentions(text: str, world: World) -> list[Mention]:
    """Object mentions in reading order; explicit ids ("cup 3", "object 3", "#3") resolve to one object."""
    mentions: list[Mention] = []
    taken = [False] * len(text)
    for m in re.finditer(r"(?:\bobject|\bid|#)\s*(\d+)\b", text):
        oid = int(m.group(1))
        if oid not in world.objects:
            raise TaskNotUnderstood(
                f"the task names object {oid}, which is not in the scene "
                f"(ids: {', '.join(map(str, sorted(world.objects)))})"
            )
        mentions.append(Mention(m.start(), m.end(), [oid], False))
        taken[m.start() : m.end()] = [True] * (m.end() - m.start())
    for phrase, cls, plural in _vocabulary(world):
        for m in re.finditer(rf"\b{re.escape(phrase)}\b(?:\s+(\d+)\b)?", text):
            if any(taken[m.start() : m.end()]):
                continue
            ids = sorted(i for i, o in world.objects.items() if cls in ("*", o.class_name))
            if m.group(1) and int(m.group(1)) in ids:
                ids = [int(m.group(1))]
            before = text[: m.start()].split()
            if before and before[-1] in COLORS and len(ids) > 1:
                ids = _by_color(world, ids, before[-1])
            mentions.append(Mention(m.start(), m.end(), ids, plural or cls == "*"))
            taken[m.start() : m.end()] = [True] * (m.end() - m.start())
    return _resolve_spatial(text, world, sorted(mentions, key=lambda mm: mm.start))


SPATIAL = re.compile(
    r"\s+(?:that is |which is )?(?:to the |on the )?(left of|right of|behind|in front of|next to|near|beside)"
    r"\s+(?:the\s+)?$"
)


def _on_side(relation: str, x: float, y: float, rx: float, ry: float) -> bool:
    """Whether (x, y) lies on `relation`'s side of (rx, ry) (table frame: x right, y away from the camera)."""
    return {"left of": x < rx, "right of": x > rx, "behind": y > ry, "in front of": y < ry}.get(relation, True)


def _resolve_spatial(text: str, world: World, mentions: list[Mention]) -> list[Mention]:
    """"the object left of the cup": an ambiguous mention followed by a spatial phrase and another
    mention becomes the candidate nearest the reference on that side; the reference is consumed."""
    out: list[Mention] = []
    k = 0
    while k < len(mentions):
        m = mentions[k]
        ref = mentions[k + 1] if k + 1 < len(mentions) else None
        rel = SPATIAL.match(text[m.end : ref.start]) if ref is not None and len(m.objects) > 1 else None
        if rel is None or ref is None or len(ref.objects) != 1:
            out.append(m)
            k += 1
            continue
        rx, ry = (float(v) for v in world.objects[ref.objects[0]].position[:2])
        pool = [
            i for i in m.objects
            if i != ref.objects[0] and _on_side(rel.group(1), *map(float, world.objects[i].position[:2]), rx, ry)
        ]
        if not pool:
            raise TaskNotUnderstood(f"no {text[m.start : m.end]} {rel.group(1)} {world.describe(ref.objects[0])}")
        best = min(pool, key=lambda i: float(np.hypot(*(np.asarray(world.objects[i].position[:2]) - [rx, ry]))))
        out.append(Mention(m.start, ref.end, [best], False))
        k += 2
    return out


def _one(world: World, mention: Mention, role: str) -> int:
    if len(mention.objects) != 1:
        names = ", ".join(world.describe(i) for i in mention.objects)
        raise TaskNotUnderstood(
            f"the {role} is ambiguous ({names}); name it by id, e.g. '{world.describe(mention.objects[0])}'"
        )
    return mention.objects[0]


def _graspable(world: World, ids: list[int], exclude: set[int]) -> tuple[list[int], list[str]]:
    keep, notes = [], []
    for i in ids:
        if i in exclude:
            continue
        verdict = world.graspability(i)
        ok, why = verdict["graspable"], verdict["reason"]
        if ok:
            keep.append(i)
        else:
            notes.append(f"left out: {why}")
    return keep, notes


def _largest_container(world: World) -> int:
    if not world.containers():
        raise TaskNotUnderstood("clearing the table needs a container (tray, bowl, box...) in the scene")
    return max(world.containers(), key=lambda i: world.objects[i].size[0] * world.objects[i].size[1])


def _clear_table(text: str, world: World, mentions: list[Mention]) -> Goal:
    target_m = [
        m for m in mentions if re.search(r"\b(into|in|onto|on|to)\s+(the\s+)?\S*\s*$", text[: m.start])
    ]
    container = _one(world, target_m[-1], "container") if target_m else _largest_container(world)
    if not world.objects[container].is_container:
        raise TaskNotUnderstood(f"{world.describe(container)} is not a container to clear the table into")
    ids, notes = _graspable(world, sorted(world.objects), {container})
    return Goal("clear_table", [Atom("in", i, container) for i in ids], notes)


def _stack(text: str, world: World, mentions: list[Mention]) -> Goal:
    if len(mentions) == 2 and re.search(r"\bon(to)?\b", text[mentions[0].end : mentions[1].start]):
        top, base = _one(world, mentions[0], "object"), _one(world, mentions[1], "base")
        return Goal("stack", [Atom("on", top, base)])
    ids = sorted({i for m in mentions for i in m.objects}) or sorted(world.objects)
    ids, notes = _graspable(world, ids, set())
    if len(mentions) == 1 or not mentions:  # "stack the blocks" / "stack everything": flat-topped ones only
        notes += [
            f"left out: {world.describe(i)} has no flat top" for i in ids if not world.objects[i].flat_top
        ]
        ids = [i for i in ids if world.objects[i].flat_top]
    if len(ids) < 2:
        raise TaskNotUnderstood("a stack needs at least two graspable, flat-topped objects")
    # largest footprint at the bottom; a round or irregular object can only go on top
    order = sorted(
        ids,
        key=lambda i: (
            not world.objects[i].flat_top,
            -world.objects[i].size[0] * world.objects[i].size[1],
            i,
        ),
    )
    return Goal("stack", [Atom("on", order[k + 1], order[k]) for k in range(len(order) - 1)], notes)


def _sort(world: World) -> Goal:
    containers = set(world.containers())
    movable, notes = _graspable(world, sorted(world.objects), containers)
    classes = sorted({world.objects[i].class_name for i in movable})
    if not classes:
        raise TaskNotUnderstood("nothing graspable to sort")
    usable = sorted(containers, key=lambda i: -world.objects[i].size[0] * world.objects[i].size[1])
    if len(usable) >= len(classes):
        bins = dict(zip(classes, usable, strict=False))
        return Goal("sort", [Atom("in", i, bins[world.objects[i].class_name]) for i in movable], notes)
    # not enough containers: one strip of the reachable table per class, left to right
    table = world.table_rect.grow(-0.04)
    width = (table.xmax - table.xmin) / len(classes)
    strips = {
        c: Rect(table.xmin + k * width, table.ymin, table.xmin + (k + 1) * width, table.ymax)
        for k, c in enumerate(classes)
    }
    notes.append("not enough containers: each class gets its own strip of the table, left to right")
    return Goal(
        "sort", [Atom("region", i, region=strips[world.objects[i].class_name]) for i in movable], notes
    )


def _shift(text: str, world: World, mentions: list[Mention], push: bool) -> Goal | None:
    direction = next((d for d in DIRECTIONS if re.search(rf"\b{d}\b", text)), None)
    coords = re.search(r"\(?\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)?", text)
    if not mentions or (direction is None and coords is None):
        return None
    obj = _one(world, mentions[0], "object")
    place = initial_state(world).place(obj)
    assert place is not None
    if coords and not direction:
        xy = (float(coords.group(1)), float(coords.group(2)))
    else:
        dist = re.search(r"(\d+(?:\.\d+)?)\s*(cm|mm|m)\b", text)
        scale = {"cm": 0.01, "mm": 0.001, "m": 1.0}
        shift = float(dist.group(1)) * scale[dist.group(2)] if dist else DEFAULT_SHIFT
        ux, uy = DIRECTIONS[direction]  # type: ignore[index]
        xy = (place.x + ux * shift, place.y + uy * shift)
    return Goal("push" if push else "at", [Atom("at", obj, xy=xy, push_ok=push)])


def _put(text: str, world: World, mentions: list[Mention]) -> Goal | None:
    prep = re.search(r"\b(into|inside|in|onto|on top of|on)\b", text[mentions[0].end :]) if mentions else None
    if prep is None:
        return None
    cut = mentions[0].end + prep.start()
    movers = [i for m in mentions if m.start < cut for i in m.objects]
    targets = [m for m in mentions if m.start >= cut]
    if not targets:
        if re.search(r"\btable\b", text[cut:]):  # "put the cup on the table"
            return Goal("on", [Atom("on", i, "table") for i in sorted(set(movers))])
        return None
    target = _one(world, targets[0], "target")
    if any(len(m.objects) > 1 and not m.plural for m in mentions if m.start < cut):
        raise TaskNotUnderstood(
            "the object to move is ambiguous: "
            + ", ".join(world.describe(i) for i in movers)
            + "; name it by id"
        )
    movers = sorted(set(movers) - {target})
    inside = prep.group(1) in ("into", "inside", "in") or world.objects[target].is_container
    kind = "in" if inside else "on"
    if kind == "in" and not world.objects[target].is_container:
        raise TaskNotUnderstood(f"{world.describe(target)} is not a container")
    return Goal(kind, [Atom(kind, i, target) for i in movers])


def _pick(text: str, world: World, mentions: list[Mention]) -> Goal | None:
    """"pick up X" (grab, lift, take): X ends in the gripper."""
    if not mentions or not re.search(r"\b(pick|grab|lift|take)\b", text):
        return None
    return Goal("pick", [Atom("held", _one(world, mentions[0], "object"))])


def parse_task(task: str, world: World) -> Goal:
    """Turn a task in words into a Goal, or raise TaskNotUnderstood naming the supported forms."""
    text = " ".join(task.lower().replace(",", " , ").split())
    mentions = find_mentions(text, world)
    goal: Goal | None = None
    if re.fullmatch(r"(go |return |move )?(to )?home( position| pose)?\.?", text):
        goal = Goal("home", [])
    elif re.search(r"\bclear\b", text) and re.search(r"\btable\b", text):
        goal = _clear_table(text, world, mentions)
    elif re.search(r"\bsort\b", text):
        goal = _sort(world)
    elif re.search(r"\bstack\b", text):
        goal = _stack(text, world, mentions)
    elif re.search(r"\bpush\b", text):
        goal = _shift(text, world, mentions, push=True)
    else:
        goal = _put(text, world, mentions) or _pick(text, world, mentions) or _shift(text, world, mentions, push=False)
    if goal is None:
        raise TaskNotUnderstood(
            f"the offline planner does not understand {task!r}; it knows: " + "; ".join(SUPPORTED_FORMS)
        )
    if not goal.atoms and goal.form != "home":
        raise TaskNotUnderstood(f"{task!r} leaves nothing to do: " + "; ".join(goal.notes or ["no objects"]))
    return goal


def default_task_candidates(world: World) -> list[str]:
    """Sensible tasks for the scene, most ambitious first; the caller keeps the first one it can plan."""
    containers = sorted(world.containers(), key=lambda i: -_inner_area(world, i))
    movable = [
        i
        for i in sorted(world.tabletop())
        if i not in containers and world.graspability(i)["graspable"]
    ]
    candidates = []
    candidates += [f"clear the table into the {_ref(world, c)}" for c in containers]
    candidates += [f"put the {_ref(world, i)} in the {_ref(world, c)}" for c in containers for i in movable]
    flat = [i for i in movable if world.objects[i].flat_top]
    if len(flat) >= 2:
        candidates.append("stack " + " and ".join(f"object {i}" for i in flat[:2]))
    # no container, nothing to stack: still a real manipulation of the graspable objects on the
    # surface (move one aside), not "go home", which the user did not film a table for
    # to a free spot of its support: 10 cm aside first, then 5 cm (a small table, a base close by)
    for cm in (10, 5):
        for i in movable:
            candidates += [f"move the {_ref(world, i)} to the {side} by {cm} cm" for side in ("left", "right")]
            candidates += [f"move the {_ref(world, i)} {side} by {cm} cm" for side in ("forward", "back")]
    candidates.append("go home")
    return candidates


def _ref(world: World, obj: int) -> str:
    """How a task names an object: its class, plus its id when the class is not unique."""
    cls = world.objects[obj].class_name
    same = [i for i in world.objects if world.objects[i].class_name == cls]
    return cls if len(same) == 1 else f"{cls} {obj}"


def _inner_area(world: World, container: int) -> float:
    size = world.objects[container].size
    return float(size[0] * size[1])

"""Spatial relations between objects on a table, in the table frame (x right, y away from the first
camera, z up, table top z = 0, metres).

Thresholds scale with object size, because "near" for two mugs is not "near" for two chairs:
- on(u, v): u's bottom within a contact tolerance of v's top and u's footprint centre over v's
  footprint; on(u, table): u's bottom within tolerance of z = 0 (not below it: a chair under the
  desk is not on it) and u on no object, in no object.
- inside(u, v): v can hold things (a bowl, a cup, a tray; not a book or a ball: see CONTAINERS),
  u's footprint centre inside v's footprint, u smaller than v, u's bottom between v's bottom and
  its top (a cup in a bowl or a tray).
- supported_by(u, v): u on v or resting inside v (what holds it up).
- near(u, v): the gap between their footprints below near_factor times their mean size.
- left_of / right_of / in_front_of / behind: centre separation along x (right) or y (forward,
  away from the first camera) beyond half their mean size; in front = closer to that camera.
The contact tolerance grows with height: max(contact_tolerance, 15 % of the smaller height).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TABLE = "table"
SUPPORT_RELATIONS = frozenset({"on", "inside", "supported_by"})
RELATIONS = ("on", "supported_by", "inside", "near", "left_of", "right_of", "in_front_of", "behind")

Relation = tuple[int | str, str, int | str]


# COCO classes that can hold things; classes outside COCO (a "tray", a user's own detector) may too
CONTAINERS = frozenset(
    {"bowl", "cup", "vase", "sink", "suitcase", "handbag", "backpack", "wine glass", "toilet"}
)
_SOLID_COCO_NAMES = (
    "person|bicycle|car|motorcycle|airplane|bus|train|truck|boat|traffic light|fire hydrant|stop sign|"
    "parking meter|bench|bird|cat|dog|horse|sheep|cow|elephant|bear|zebra|giraffe|umbrella|tie|frisbee|"
    "skis|snowboard|sports ball|kite|baseball bat|baseball glove|skateboard|surfboard|tennis racket|"
    "bottle|fork|knife|spoon|banana|apple|sandwich|orange|broccoli|carrot|hot dog|pizza|donut|cake|chair|"
    "couch|potted plant|bed|dining table|tv|laptop|mouse|remote|keyboard|cell phone|microwave|oven|"
    "toaster|refrigerator|book|clock|scissors|teddy bear|hair drier|toothbrush"
)
SOLID_COCO = frozenset(_SOLID_COCO_NAMES.split("|"))  # the other COCO classes


def can_contain(class_name: str) -> bool:
    return class_name in CONTAINERS or class_name not in SOLID_COCO


@dataclass(frozen=True)
class Box:
    id: int
    position: np.ndarray  # centre, table frame
    size: np.ndarray  # along the box's own x, y and z
    yaw: float = 0.0
    class_name: str = ""  # "" = unknown: may contain things
    furniture: bool = False  # stands on the floor (chairs, sofas): never on the table or an object

    @property
    def bottom(self) -> float:
        return float(self.position[2] - self.size[2] / 2)

    @property
    def top(self) -> float:
        return float(self.position[2] + self.size[2] / 2)

    @property
    def extent(self) -> float:
        """Horizontal size: the larger footprint side."""
        return float(max(self.size[0], self.size[1]))

    def footprint(self) -> tuple[float, float, float, float]:
        """Axis-aligned (xmin, xmax, ymin, ymax) of the rotated footprint."""
        c, s = abs(np.cos(self.yaw)), abs(np.sin(self.yaw))
        hx = (c * self.size[0] + s * self.size[1]) / 2
        hy = (s * self.size[0] + c * self.size[1]) / 2
        x, y = self.position[:2]
        return x - hx, x + hx, y - hy, y + hy

    def covers_xy(self, point: np.ndarray, margin: float = 0.0) -> bool:
        """Whether an (x, y) point lies inside the rotated footprint grown by margin."""
        d = point[:2] - self.position[:2]
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])
        return bool(np.all(np.abs(local) <= self.size[:2] / 2 + margin))


def footprint_gap(a: Box, b: Box) -> float:
    """Distance between the two footprints' bounding rectangles (0 when they overlap)."""
    ax0, ax1, ay0, ay1 = a.footprint()
    bx0, bx1, by0, by1 = b.footprint()
    dx = max(bx0 - ax1, ax0 - bx1, 0.0)
    dy = max(by0 - ay1, ay0 - by1, 0.0)
    return float(np.hypot(dx, dy))


def contact_tolerance(a: Box, b: Box | None, base: float) -> float:
    heights = [a.size[2]] if b is None else [a.size[2], b.size[2]]
    return max(base, 0.15 * float(min(heights)))


def _on(u: Box, v: Box, base_tol: float) -> bool:
    tol = contact_tolerance(u, v, base_tol)
    return (
        abs(u.bottom - v.top) <= tol
        and v.covers_xy(u.position, margin=0.1 * v.extent)
        and u.position[2] > v.position[2]
    )


def _inside(u: Box, v: Box, base_tol: float) -> bool:
    tol = contact_tolerance(u, v, base_tol)
    smaller = u.size[0] * u.size[1] < v.size[0] * v.size[1] and u.extent <= 1.05 * v.extent
    return (
        can_contain(v.class_name)
        and smaller
        and v.covers_xy(u.position)
        and v.bottom - tol <= u.bottom < v.top - tol
    )


def support_relations(boxes: Sequence[Box], base_tol: float, table: Box | None = None) -> list[Relation]:
    """on / inside / supported_by, including resting on the table.

    table: the table top's extent (its footprint; z = 0 is its top). An object is on the table only
    with its bottom at the top (vertical contact) and its footprint centre over that extent (a
    bottle 2 m behind the desk at desk height is not on it). Furniture is never on anything.
    """
    out: list[Relation] = []
    for u in boxes:
        if u.furniture:
            continue
        held = False
        for v in boxes:
            if u.id == v.id or v.furniture:
                continue
            if _inside(u, v, base_tol):
                out += [(u.id, "inside", v.id), (u.id, "supported_by", v.id)]
                held = True
            elif _on(u, v, base_tol):
                out += [(u.id, "on", v.id), (u.id, "supported_by", v.id)]
                held = True
        over = table is None or table.covers_xy(u.position, margin=0.5 * u.extent)
        if not held and over and abs(u.bottom) <= contact_tolerance(u, None, base_tol):
            out += [(u.id, "on", TABLE), (u.id, "supported_by", TABLE)]
    return out


def spatial_relations(boxes: Sequence[Box], near_factor: float, skip: set[frozenset]) -> list[Relation]:
    """near and the four directions for every ordered pair not in `skip` (pairs already stacked)."""
    out: list[Relation] = []
    for u in boxes:
        for v in boxes:
            if u.id == v.id or frozenset((u.id, v.id)) in skip:
                continue
            mean_size = (u.extent + v.extent) / 2
            if footprint_gap(u, v) < near_factor * mean_size:
                out.append((u.id, "near", v.id))
            dx, dy = v.position[:2] - u.position[:2]
            margin = 0.5 * mean_size
            if dx > margin:
                out.append((u.id, "left_of", v.id))
            elif -dx > margin:
                out.append((u.id, "right_of", v.id))
            if dy > margin:
                out.append((u.id, "in_front_of", v.id))
            elif -dy > margin:
                out.append((u.id, "behind", v.id))
    return out


def compute_relations(
    boxes: Sequence[Box], near_factor: float, contact_tol: float, table: Box | None = None
) -> list[Relation]:
    support = support_relations(boxes, contact_tol, table)
    stacked = {frozenset((u, v)) for u, _, v in support if v != TABLE}
    return support + spatial_relations(boxes, near_factor, stacked)

"""Offline tracklet stitching: join the fragments of one object that a tracker gave several ids.

An online tracker loses an object when it is occluded, leaves the view, is detected with low
confidence for a while, or moves further between two frames than its motion model expects; when
the object is found again it gets a new id. With the whole video in hand, fragments that are the
same object can be joined afterwards. Two groups of fragments are joined when all of these hold:

- time: never seen in the same frame (one ends before the other starts, or fills a gap in it),
  and every gap where one hands over to the other is at most `max_gap_s` seconds of video time
  (so fps and frame stride do not change it);
- class: the same class or two classes of one confusable group (`CONFUSABLE_GROUPS`): a detector
  flickers between them on the same object (a cup seen as a bottle from some angles); two
  different classes must also be closer in time (`cross_class_max_gap_s`) and in appearance
  (`cross_class_min_appearance`);
- motion and position, at every hand-over: a box where the first was last seen (its last box, or
  its largest of the last `motion_window_s`, as an occluder cuts boxes down before a track is
  lost), held or moved at its fitted velocity over the gap (forward; the second's start
  backward likewise), lies within `max_distance + distance_per_s * gap_s` box sizes of the
  other's box (per axis, centre or either edge: see `_distance`), and the box sizes agree within
  `max_size_ratio` (`_sizes_agree`);
- appearance: the Bhattacharyya coefficient of the two fragments' hue-saturation histograms
  (`tangram.tracklets.appearance`) is at least `min_appearance`.

Among all admissible pairs the best one (lowest cost: normalised distance + appearance
dissimilarity + a small gap term) is joined first, then the candidates are recomputed; greedy
agglomeration, at most (number of tracks)^2 pair checks per join.

Every final object then gets one class by confidence-weighted vote over all of its detections,
and keeps the smallest raw tracker id among its members as its id (the rule is that simple so a
reader can map ids by hand: raw_tracks.json beside tracks.json has the tracker's own ids).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tangram.tracklets.appearance import similarity

# Classes a COCO detector confuses on the same physical object, seen on real footage (see
# ../shared/NOTES.md): upside-down cups come out as cup or bottle, fruit baskets as sandwich, bowl,
# vase or potted plant, tables as dining table, desk or bed, seats as chair, couch or bench.
# Two classes are confusable when some group holds both. The groups are deliberately narrow:
# a join needs motion, position and appearance agreement as well.
CONFUSABLE_GROUPS: dict[str, frozenset[str]] = {
    "drinkware": frozenset({"cup", "bottle", "vase", "wine glass"}),
    "containers": frozenset({"bowl", "sandwich", "vase", "potted plant", "cake", "pizza"}),
    "round fruit": frozenset({"apple", "orange", "sports ball", "donut"}),
    "surfaces": frozenset({"dining table", "desk", "bed", "bench"}),
    "seats": frozenset({"chair", "couch", "bench"}),
    "screens": frozenset({"tv", "laptop", "microwave"}),
    "bags": frozenset({"handbag", "backpack", "suitcase"}),
    "vehicles": frozenset({"car", "truck", "bus"}),
}


def confusable(a: str, b: str) -> bool:
    """The same class, or two classes of one confusable group."""
    return a == b or any(a in group and b in group for group in CONFUSABLE_GROUPS.values())


class DetectionLike(Protocol):
    track_id: int
    class_id: int
    class_name: str
    confidence: float
    box_xyxy: list[float]


@dataclass(frozen=True)
class StitchConfig:
    fps: float  # of the video: frame indices are converted to seconds with it
    max_gap_s: float = 3.0
    max_distance: float = 0.5  # box sizes between predicted and observed box (see `_distance`)
    distance_per_s: float = 0.5  # extra tolerance per second of gap: uncertainty grows with time
    max_size_ratio: float = 1.6  # box width or height may differ by this factor (see `_sizes_agree`)
    min_appearance: float = 0.6  # Bhattacharyya coefficient of the hue-saturation histograms
    # Two different (confusable) classes need stronger evidence: a walking camera brings another
    # object of a neighbouring class to the same image place within a second or two.
    cross_class_max_gap_s: float = 1.0
    cross_class_min_appearance: float = 0.8
    motion_window_s: float = 0.5  # the end of a fragment its velocity is fitted on
    max_extrapolation_s: float = 1.0  # constant velocity is trusted this far, then held


@dataclass(frozen=True)
class StitchedObject:
    track_id: int  # the final id: the smallest member raw id
    members: tuple[int, ...]  # raw tracker ids, ascending
    class_id: int
    class_name: str
    class_votes: dict[str, float]  # class name -> summed detection confidence


@dataclass
class StitchResult:
    objects: dict[int, StitchedObject]  # final id -> object
    final_of: dict[int, int]  # raw id -> final id
    joins: list[dict[str, Any]] = field(default_factory=list)  # what was joined, and why, in order


@dataclass
class _Group:
    members: list[int]
    frames: np.ndarray  # sorted frame indices
    boxes: np.ndarray  # (n, 4) xyxy, in frame order
    votes: dict[str, float]
    class_ids: dict[str, int]

    @property
    def first(self) -> int:
        return int(self.frames[0])

    @property
    def last(self) -> int:
        return int(self.frames[-1])

    @property
    def class_name(self) -> str:
        return vote(self.votes)


def vote(votes: Mapping[str, float]) -> str:
    """The class with the most summed confidence; ties go to the alphabetically first name."""
    return min(votes, key=lambda name: (-votes[name], name))


def stitch(frames: Mapping[int, Sequence[DetectionLike]], config: StitchConfig,
           appearance: Callable[[Sequence[int]], np.ndarray | None] | None = None) -> StitchResult:
    """Group the raw track ids of `frames` (frame index -> detections) into objects.

    `appearance(raw_ids)` returns the mean histogram of those tracks' crops (see
    `AppearanceBank.merged`), or None when unknown; without it appearance is not checked.
    """
    groups = _groups(frames)
    joins: list[dict[str, Any]] = []
    costs: dict[tuple[int, int], tuple[float, dict[str, Any]] | None] = {}  # pairs of group keys
    while True:
        best: tuple[float, int, int, dict[str, Any]] | None = None
        keys = sorted(groups)
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if (a, b) not in costs:
                    costs[a, b] = _pair_cost(groups[a], groups[b], config, appearance)
                scored = costs[a, b]
                if scored is not None and (best is None or scored[0] < best[0]):
                    best = (scored[0], a, b, scored[1])
        if best is None:
            break
        _, a, b, why = best
        ga, gb = groups.pop(a), groups.pop(b)
        joins.append({"joined": sorted(ga.members), "with": sorted(gb.members), **why})
        costs = {pair: c for pair, c in costs.items() if a not in pair and b not in pair}
        merged = _merge(ga, gb)
        groups[min(merged.members)] = merged
    objects: dict[int, StitchedObject] = {}
    final_of: dict[int, int] = {}
    for group in groups.values():
        final = min(group.members)
        name = group.class_name
        objects[final] = StitchedObject(final, tuple(sorted(group.members)), group.class_ids[name], name,
                                        {k: round(v, 4) for k, v in sorted(group.votes.items())})
        for raw in group.members:
            final_of[raw] = final
    return StitchResult(dict(sorted(objects.items())), dict(sorted(final_of.items())), joins)


def _groups(frames: Mapping[int, Sequence[DetectionLike]]) -> dict[int, _Group]:
    hits: dict[int, list[tuple[int, DetectionLike]]] = defaultdict(list)
    for index, dets in frames.items():
        for det in dets:
            hits[det.track_id].append((index, det))
    groups = {}
    for raw, obs in hits.items():
        obs.sort(key=lambda item: item[0])
        votes: dict[str, float] = defaultdict(float)
        class_ids: dict[str, int] = {}
        for _, det in obs:
            votes[det.class_name] += float(det.confidence)
            class_ids.setdefault(det.class_name, int(det.class_id))
        groups[raw] = _Group([raw], np.array([i for i, _ in obs]), np.array([d.box_xyxy for _, d in obs], float),
                             dict(votes), class_ids)
    return groups


def _merge(a: _Group, b: _Group) -> _Group:
    order = np.argsort(np.concatenate([a.frames, b.frames]), kind="stable")
    votes = dict(a.votes)
    for name, value in b.votes.items():
        votes[name] = votes.get(name, 0.0) + value
    return _Group(a.members + b.members, np.concatenate([a.frames, b.frames])[order],
                  np.concatenate([a.boxes, b.boxes])[order], votes, {**b.class_ids, **a.class_ids})


def _pair_cost(a: _Group, b: _Group, config: StitchConfig,
               appearance: Callable[[Sequence[int]], np.ndarray | None] | None
               ) -> tuple[float, dict[str, Any]] | None:
    """(cost, reasons) when groups `a` and `b` may be one object; None otherwise.

    They must never be seen in the same frame. One may fill a gap in the other: every hand-over
    from one to the other along the time line must then be continuous.
    """
    if not confusable(a.class_name, b.class_name) or np.intersect1d(a.frames, b.frames).size:
        return None
    owner = np.concatenate([np.zeros(len(a.frames), int), np.ones(len(b.frames), int)])
    order = np.argsort(np.concatenate([a.frames, b.frames]), kind="stable")
    frames, owner = np.concatenate([a.frames, b.frames])[order], owner[order]
    handovers = np.flatnonzero(owner[1:] != owner[:-1])
    cross_class = a.class_name != b.class_name
    max_gap_s = min(config.max_gap_s, config.cross_class_max_gap_s) if cross_class else config.max_gap_s
    reasons = []
    for i in handovers:
        before, after = (a, b) if owner[i] == 0 else (b, a)
        f1, f2 = int(frames[i]), int(frames[i + 1])
        checked = _continuity(before, after, f1, f2, config, max_gap_s)
        if checked is None:
            return None
        reasons.append(checked)
    sim = similarity(appearance(a.members), appearance(b.members)) if appearance is not None else None
    min_sim = max(config.min_appearance, config.cross_class_min_appearance) if cross_class else config.min_appearance
    if sim is not None and sim < min_sim:
        return None
    worst = max(reasons, key=lambda r: r["distance"] / r["tolerance"])
    gap_s = max(r["gap_s"] for r in reasons)
    cost = worst["distance"] / worst["tolerance"] + (1.0 - (sim if sim is not None else config.min_appearance)) \
        + 0.25 * gap_s / max(config.max_gap_s, 1e-6)
    return cost, {**worst, "gap_s": gap_s, "handovers": len(reasons),
                  "appearance": None if sim is None else round(sim, 3)}


def _continuity(before: _Group, after: _Group, f1: int, f2: int, config: StitchConfig,
                max_gap_s: float) -> dict[str, Any] | None:
    """Can `before`, last seen at frame f1, be `after`, seen again at frame f2? Reasons, or None."""
    gap = f2 - f1
    gap_s = gap / config.fps
    if gap_s > max_gap_s:
        return None
    tail = before.frames <= f1
    head = after.frames >= f2
    window = max(1, round(config.motion_window_s * config.fps))
    horizon = min(gap, config.max_extrapolation_s * config.fps)
    # Each end is its last box and its most complete (largest) box of the last `window` frames: an
    # occluder that hides the object cuts its box down before the track is lost (and the new
    # track starts from a cut box on the other side).
    ta, ba = before.frames[tail], before.boxes[tail]
    tb, bb = after.frames[head], after.boxes[head]
    ends_a, ends_b = _ends(ta, ba, f1, window), _ends(tb, bb, f2, window)
    velocity_a, velocity_b = _velocity(ta, ba, f1, window), _velocity(tb, bb, f2, window)
    forward = [box + np.tile(v * horizon, 2) for box in ends_a for v in (velocity_a, np.zeros(2))]
    backward = [box - np.tile(v * horizon, 2) for box in ends_b for v in (velocity_b, np.zeros(2))]
    distance = min([_distance(pa, eb) for pa in forward for eb in ends_b]
                   + [_distance(pb, ea) for pb in backward for ea in ends_a])
    tolerance = config.max_distance + config.distance_per_s * gap_s
    if distance > tolerance or not _sizes_agree(ends_a[-1], ends_b[-1], config.max_size_ratio):
        return None
    return {"gap_s": round(gap_s, 3), "distance": round(distance, 3), "tolerance": round(tolerance, 3)}


def _ends(frames: np.ndarray, boxes: np.ndarray, at: int, window: int) -> list[np.ndarray]:
    """[the box at frame `at`, the largest box within `window` frames of it]."""
    near = np.flatnonzero(np.abs(frames - at) <= window)
    areas = [_area(boxes[i]) for i in near]
    return [boxes[frames == at][0], boxes[near[int(np.argmax(areas))]]]


def _velocity(frames: np.ndarray, boxes: np.ndarray, at: int, window: int) -> np.ndarray:
    """Pixels per frame of the box centre, fitted over the observations within `window` frames of `at`."""
    near = np.abs(frames - at) <= window
    if near.sum() < 2 or np.ptp(frames[near]) == 0:
        return np.zeros(2)
    t = frames[near].astype(float)
    centres = (boxes[near, :2] + boxes[near, 2:]) / 2
    return np.array([np.polyfit(t, centres[:, k], 1)[0] for k in range(2)])


def _area(box: np.ndarray) -> float:
    return max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)


def _sizes_agree(a: np.ndarray, b: np.ndarray, max_ratio: float) -> bool:
    """Width or height agree within max_ratio, and neither differs by more than max_ratio squared:
    an object cut by an occluder or the image border loses one dimension, rarely both."""
    ratios = [max(a[k + 2] - a[k], 1.0) / max(b[k + 2] - b[k], 1.0) for k in (0, 1)]
    spread = [max(r, 1 / r) for r in ratios]
    return min(spread) <= max_ratio and max(spread) <= max_ratio ** 2


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two boxes are, in box sizes, per axis: the smallest offset of the centres or
    of either edge (an occluder or the image border moves one edge and the centre, not the
    other edge), over the larger box's width (height), combined as a Euclidean norm."""
    offsets = []
    for k in (0, 1):
        lo, hi = a[k] - b[k], a[k + 2] - b[k + 2]
        offset = min(abs(lo), abs(hi), abs(lo + hi) / 2)
        offsets.append(offset / max(a[k + 2] - a[k], b[k + 2] - b[k], 1.0))
    return float(np.hypot(*offsets))

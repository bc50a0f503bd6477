"""Metric scale for a monocular reconstruction.

Structure from motion recovers the scene up to scale. We take it from what the scene contains:
1. known_size: the user gives the height of one object class (most accurate);
2. consensus ("class_priors" when only tabletop objects vote): every credible object votes with
   its measured height and apparent width against its class's typical size (mug ~10 cm tall,
   apple ~8 cm across), and furniture votes too (a table top ~0.74 m above a found floor, chair
   tops ~0.85 m above it); votes are pooled per class, classes inconsistent with the rest are
   rejected (weighted median and MAD in log space), the rest averaged (see `_consensus`);
3. camera_height_prior: with a floor but nothing recognised, the camera is held ~1.5 m above it;
4. camera_distance_prior: else a hand-held tabletop video is filmed from about 0.6 m
   (factor-of-two uncertainty). Better than nothing; flagged by its uncertainty.
Evidence lists every vote and whether its class was kept.
Uncertainty is reported as a relative 1-sigma on metres_per_unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tangram.geometry.lifting import Object3D

# class -> (height m, width m, sigma of log size): typical sizes of tabletop instances of COCO
# classes. Width is the apparent width from the side (a mug's is between its diameter and its
# diameter plus handle).
CLASS_PRIORS: dict[str, tuple[float, float, float]] = {
    "cup": (0.095, 0.09, 0.25),  # mugs ~8-9 cm across (more with the handle), paper cups, glasses
    "mug": (0.095, 0.115, 0.2),
    "bowl": (0.07, 0.17, 0.3),
    "apple": (0.075, 0.08, 0.15),
    "orange": (0.075, 0.075, 0.15),
    "banana": (0.04, 0.19, 0.25),
    "bottle": (0.24, 0.07, 0.3),
    "wine glass": (0.19, 0.08, 0.25),
    "sports ball": (0.07, 0.07, 0.5),  # on a table: tennis ball, baseball; footballs are rarer
    "teddy bear": (0.22, 0.16, 0.7),  # from key-ring size to half a metre
    "book": (0.03, 0.23, 0.5),
    "cell phone": (0.01, 0.15, 0.25),
    "mouse": (0.04, 0.11, 0.2),
    "keyboard": (0.03, 0.44, 0.2),
    "laptop": (0.22, 0.34, 0.3),
    "remote": (0.02, 0.18, 0.25),
    "scissors": (0.015, 0.18, 0.3),
    "vase": (0.25, 0.12, 0.4),
    "donut": (0.035, 0.09, 0.25),
    "sandwich": (0.05, 0.12, 0.35),
    "carrot": (0.03, 0.17, 0.35),
    "broccoli": (0.1, 0.12, 0.4),
    "knife": (0.02, 0.22, 0.3),
    "fork": (0.02, 0.19, 0.25),
    "spoon": (0.02, 0.16, 0.3),
    "clock": (0.25, 0.25, 0.4),
    "potted plant": (0.3, 0.2, 0.5),
    "toothbrush": (0.02, 0.19, 0.25),
}
# An object more than this many times its class's typical size is a false detection (a tray taken
# for a book, a patch of table for a laptop), not a giant object: it is left out of the scene.
IMPLAUSIBLE_FACTOR = 3.0


def implausible_size(obj: Object3D) -> str | None:
    """Why a metric object's size rules it out, or None when it is plausible (or its class unknown)."""
    prior = CLASS_PRIORS.get(obj.class_name)
    if prior is None:
        return None
    largest, typical = float(np.max(obj.size)), max(prior[0], prior[1])
    if largest <= IMPLAUSIBLE_FACTOR * typical:
        return None
    return f"implausible size: {largest:.2f} m across, a {obj.class_name} is typically {typical:.2f} m"


# log-size noise of our measurements: the apparent width (box width at the object's depth) is the
# most direct; heights come from the hull's top (cone-shaped caps over flat tops, cut spheres) or
# from points (the top may be untextured), so they count for less
HEIGHT_SIGMA = {"hull": 0.2, "points": 0.35, "apparent_size": 0.45, "ray_plane": 0.5}
WIDTH_SIGMA = 0.1
CAMERA_DISTANCE_M = 0.6


@dataclass
class ScaleEstimate:
    metres_per_unit: float
    uncertainty: float  # relative 1 sigma
    method: str  # "known_size", "consensus", "class_priors", "camera_height_prior", "camera_distance_prior"
    evidence: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "metres_per_unit": self.metres_per_unit,
            "uncertainty": self.uncertainty,
            "evidence": self.evidence,
        }


def estimate_scale(
    objects: Sequence[Object3D],
    camera_distance: float,
    known: tuple[str, float] | None = None,
    extra_votes: Sequence[dict] = (),
    camera_height: float | None = None,
) -> ScaleEstimate:
    """metres per SfM unit.

    camera_distance: median camera-to-table-centre distance (SfM units); extra_votes: furniture and
    surface evidence (`furniture_votes`); camera_height: median camera height above a found floor
    (SfM units), the last-resort prior before the camera distance.
    """
    if known is not None:
        found = _from_known(objects, *known)
        if found is not None:
            return found
    found = _consensus([*object_votes(objects), *extra_votes])
    if found is not None:
        return found
    if camera_height is not None and camera_height > 0:
        return ScaleEstimate(
            CAMERA_HEIGHT_M / camera_height,
            0.35,
            "camera_height_prior",
            [{"camera_height_units": camera_height, "assumed_m": CAMERA_HEIGHT_M}],
        )
    return ScaleEstimate(
        CAMERA_DISTANCE_M / camera_distance,
        0.5,
        "camera_distance_prior",
        [{"camera_distance_units": camera_distance, "assumed_m": CAMERA_DISTANCE_M}],
    )


def _from_known(objects: Sequence[Object3D], class_name: str, height_m: float) -> ScaleEstimate | None:
    matches = [o for o in objects if o.class_name == class_name and o.size[2] > 0]
    if not matches:
        return None
    ratios = np.array([height_m / o.size[2] for o in matches])
    sigma = np.sqrt(np.mean([HEIGHT_SIGMA.get(o.method, 0.5) ** 2 for o in matches]) / len(matches))
    evidence = [
        {
            "track_id": o.track_id,
            "class_name": class_name,
            "measured_height_units": float(o.size[2]),
            "known_height_m": height_m,
        }
        for o in matches
    ]
    return ScaleEstimate(float(np.median(ratios)), float(sigma), "known_size", evidence)


def vote(track_id: int | str, class_name: str, dimension: str, measured: float, typical: float, sigma: float) -> dict:
    """One object's say on the scale: log(typical metres / measured units) with its 1-sigma."""
    return {
        "track_id": track_id,
        "class_name": class_name,
        "dimension": dimension,
        "measured_units": float(measured),
        "typical_m": float(typical),
        "sigma": float(sigma),
        "log_scale": float(np.log(typical / measured)),
    }


def object_votes(objects: Sequence[Object3D]) -> list[dict]:
    """Height and apparent-width votes of every object of a class with a size prior."""
    out = []
    for o in objects:
        prior = CLASS_PRIORS.get(o.class_name)
        if prior is None or o.info.get("placement") == "fallback":
            continue
        height, width, spread = prior
        measured = {
            "height": (float(o.size[2]), HEIGHT_SIGMA.get(o.method, 0.5)),
            "width": (float(o.info.get("apparent_width", 0.0)), WIDTH_SIGMA),
        }
        for what, typical in (("height", height), ("width", width)):
            value, meas_sigma = measured[what]
            if value > 0:
                out.append(vote(o.track_id, o.class_name, what, value, typical, float(np.hypot(spread, meas_sigma))))
    return out


def _consensus(votes: Sequence[dict]) -> ScaleEstimate | None:
    """Robust consensus of per-object votes, rejecting whole classes that disagree with the rest.

    1. each class's votes are pooled (inverse-variance mean in log space; its sigma is the larger of
       the pooled prior sigma and the spread of its own votes);
    2. the classes' weighted median and, from four classes on, the median absolute deviation (MAD)
       of the class votes; a class further from the median than max(2.5 sigma_class, 3 MAD) is
       rejected (a "sandwich" that is a fruit basket, a toy-sized ball). With three classes the MAD
       is the smaller of the two other classes' deviations (the median's own is zero), so two weak
       classes that agree with each other could never be rejected against a well-measured one;
    3. inverse-variance mean of the kept votes; the uncertainty is the larger of the pooled sigma and
       the spread of the kept class votes (honest when the priors claim more than the data show).
    """
    if not votes:
        return None
    by_class: dict[str, list[int]] = {}
    for k, v in enumerate(votes):
        by_class.setdefault(v["class_name"], []).append(k)
    names = sorted(by_class)
    logs = np.array([v["log_scale"] for v in votes])
    sig = np.array([v["sigma"] for v in votes])
    c_log, c_sig = [], []
    for name in names:
        idx = by_class[name]
        w = 1 / sig[idx] ** 2
        mean = float((w * logs[idx]).sum() / w.sum())
        spread = float(np.sqrt((w * (logs[idx] - mean) ** 2).sum() / w.sum())) if len(idx) > 1 else 0.0
        c_log.append(mean)
        c_sig.append(max(1 / np.sqrt(w.sum()), spread))
    c_log_a, c_sig_a = np.array(c_log), np.array(c_sig)
    median = _weighted_median(c_log_a, 1 / c_sig_a**2)
    mad = 1.4826 * float(np.median(np.abs(c_log_a - median))) if len(names) >= 4 else 0.0
    kept = np.abs(c_log_a - median) <= np.maximum(2.5 * c_sig_a, 3 * mad)
    if not kept.any():
        kept[int(np.argmin(np.abs(c_log_a - median) / c_sig_a))] = True
    w = 1 / c_sig_a[kept] ** 2
    mean = float((w * c_log_a[kept]).sum() / w.sum())
    pooled = 1 / np.sqrt(w.sum())
    spread = (
        float(np.sqrt((w * (c_log_a[kept] - mean) ** 2).sum() / w.sum() / (kept.sum() - 1)))
        if kept.sum() > 1
        else 0.0
    )
    keep_class = dict(zip(names, kept.tolist(), strict=True))
    evidence = []
    for v in votes:
        item = {k: (round(x, 6) if isinstance(x, float) else x) for k, x in v.items()}
        item["used"] = bool(keep_class[v["class_name"]])
        evidence.append(item)
    method = "consensus" if any(v.get("furniture") for v in votes) else "class_priors"
    return ScaleEstimate(float(np.exp(mean)), float(max(pooled, spread)), method, evidence)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


# Furniture: typical heights above the floor (metres) and log sigma. A table top stands 0.72-0.76 m
# above the floor in offices and dining rooms (desks the same); chairs reach 0.8-0.95 m with their
# backs; sofas 0.8-0.9 m. Widths are weaker evidence (chairs 0.45-0.6 m, seen from any side).
FURNITURE_HEIGHT: dict[str, tuple[float, float]] = {
    "dining table": (0.74, 0.08),
    "desk": (0.74, 0.08),
    "chair": (0.85, 0.2),
    "couch": (0.85, 0.25),
    "bench": (0.45, 0.3),
    "bed": (0.55, 0.35),
    "toilet": (0.75, 0.25),
}
FURNITURE_WIDTH: dict[str, tuple[float, float]] = {"chair": (0.5, 0.3), "couch": (1.9, 0.4)}
TABLE_CLASSES = frozenset({"dining table", "desk"})
CAMERA_HEIGHT_M = 1.5  # hand-held or head-mounted, standing


def furniture_votes(
    furniture: Sequence[tuple[int, str, float, float]], table_height: float | None, table_seen: bool
) -> list[dict]:
    """Votes from furniture: (track_id, class, top height above the floor, apparent width), units.

    table_height: the table top's height above the found floor (units); it votes as a dining table
    when a table was detected (table_seen), the surface the objects stand on.
    """
    out = []
    if table_height is not None and table_height > 0 and table_seen:
        typical, sigma = FURNITURE_HEIGHT["dining table"]
        out.append(vote("table", "dining table", "top above floor", table_height, typical, sigma))
    for tid, cls, top, width in furniture:
        if cls in TABLE_CLASSES:
            continue
        if top > 0 and cls in FURNITURE_HEIGHT:
            typical, sigma = FURNITURE_HEIGHT[cls]
            out.append(vote(tid, cls, "top above floor", top, typical, sigma))
        if width > 0 and cls in FURNITURE_WIDTH:
            typical, sigma = FURNITURE_WIDTH[cls]
            out.append(vote(tid, cls, "width", width, typical, sigma))
    for v in out:
        v["furniture"] = True
    return out

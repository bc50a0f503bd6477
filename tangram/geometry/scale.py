"""Metric scale for a monocular reconstruction.

Structure from motion recovers the scene up to scale. We take it from what the scene contains:
1. known_size: the user gives the height of one object class (most accurate);
2. class_priors: typical real sizes of recognised object classes (mug ~10 cm tall, apple ~8 cm
   across). Each object's measured height and width (unscaled) against its class prior gives a
   log-scale estimate with the prior's spread as uncertainty; estimates are combined by an inverse-
   variance weighted mean in log space over those within 2 sigma of the weighted median (robust to a
   toy-sized "sports ball", a giant teddy or a false detection);
3. camera_distance_prior: with no recognised object, a hand-held tabletop video is filmed from
   about 0.6 m (factor-of-two uncertainty). Better than nothing; flagged by its uncertainty.
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
HEIGHT_SIGMA = {"hull": 0.2, "points": 0.35, "ray_plane": 0.5}
WIDTH_SIGMA = 0.1
CAMERA_DISTANCE_M = 0.6


@dataclass
class ScaleEstimate:
    metres_per_unit: float
    uncertainty: float  # relative 1 sigma
    method: str  # "known_size", "class_priors" or "camera_distance_prior"
    evidence: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "metres_per_unit": self.metres_per_unit,
            "uncertainty": self.uncertainty,
            "evidence": self.evidence,
        }


def estimate_scale(
    objects: Sequence[Object3D], camera_distance: float, known: tuple[str, float] | None = None
) -> ScaleEstimate:
    """metres per SfM unit. camera_distance: median camera-to-table-centre distance (SfM units)."""
    if known is not None:
        found = _from_known(objects, *known)
        if found is not None:
            return found
    found = _from_priors(objects)
    if found is not None:
        return found
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


def _from_priors(objects: Sequence[Object3D]) -> ScaleEstimate | None:
    logs, sigmas, evidence = [], [], []
    for o in objects:
        prior = CLASS_PRIORS.get(o.class_name)
        if prior is None:
            continue
        height, width, spread = prior
        measured = {
            "height": (float(o.size[2]), HEIGHT_SIGMA.get(o.method, 0.5)),
            "width": (float(o.info.get("apparent_width", 0.0)), WIDTH_SIGMA),
        }
        for what, typical in (("height", height), ("width", width)):
            value, meas_sigma = measured[what]
            if value <= 0:
                continue
            logs.append(np.log(typical / value))
            sigmas.append(float(np.hypot(spread, meas_sigma)))
            evidence.append(
                {
                    "track_id": o.track_id,
                    "class_name": o.class_name,
                    "dimension": what,
                    "measured_units": value,
                    "typical_m": typical,
                    "sigma": sigmas[-1],
                }
            )
    if not logs:
        return None
    value, sigma, used = _robust_log_mean(np.array(logs), np.array(sigmas))
    for item, keep in zip(evidence, used, strict=True):
        item["used"] = bool(keep)
    return ScaleEstimate(float(np.exp(value)), float(sigma), "class_priors", evidence)


def _robust_log_mean(logs: np.ndarray, sigmas: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Inverse-variance mean of the estimates within 2 sigma of their weighted median.

    The median step makes one false detection (a "book" that is really a patch of table) unable to
    drag the scale; the mean over the consistent rest keeps the precision of many objects.
    """
    w = 1 / sigmas**2
    order = np.argsort(logs)
    cum = np.cumsum(w[order])
    median = float(logs[order][np.searchsorted(cum, cum[-1] / 2)])
    used = np.abs(logs - median) <= 2 * sigmas
    if not used.any():
        used[int(np.argmin(np.abs(logs - median) / sigmas))] = True
    w = w[used]
    mean = float((w * logs[used]).sum() / w.sum())
    # the spread of the estimates can exceed what the priors claim: take the larger of the two
    sigma_prior = 1 / np.sqrt(w.sum())
    spread = float(np.sqrt((w * (logs[used] - mean) ** 2).sum() / w.sum() / max(used.sum() - 1, 1)))
    return mean, float(max(sigma_prior, spread)), used

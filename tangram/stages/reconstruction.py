"""Stage `reconstruction`: keyframes -> COLMAP sparse model -> metric table frame -> objects in 3D.

Steps: pick keyframes (enough image motion between them, the sharpest of each step, capped; see
`tangram.geometry.keyframes`), run pycolmap (SIFT; every pair matched while that is the cheaper,
else each keyframe with its successors and its most similar keyframes by image retrieval,
`tangram.geometry.pairs`; incremental or global mapping, the largest model), find the table plane
under the tracked objects, turn the model into the table frame (x right, y away from the first
camera, z up, table top z = 0, origin where the camera's lines of sight meet the table, else the
centre of the visible table top), lift every track to 3D, estimate metric scale, write artefacts.

Objects are 3D entities: after SfM every track is triangulated from all its registered views
(`tangram.geometry.triangulation`), tracks whose 3D evidence coincides are fused
(`tangram.geometry.fusion`), and only then are short-lived objects filtered (on the fused object;
one that triangulates consistently from `min_object_views` keyframes stays). The table is the level
the tabletop objects stand on (`tangram.geometry.table`), furniture stands on the floor below it,
and the metric scale is a consensus of every credible object and piece of furniture
(`tangram.geometry.scale`).

Artefacts in `reconstruction/`:
- `sparse/`: the COLMAP model (binary cameras.bin, images.bin, points3D.bin...) in the metric table
  frame; `images/`: the keyframes it was built from.
- `cameras.json`: {"intrinsics": {model, width, height, params, fx, fy, cx, cy, focal_source
  ("given" | "self-calibrated"), focal_prior_px, focal_from_prior (found / prior)}, "frames":
  [{frame_index, image, world_from_camera 4x4}], "table_from_world": 4x4 (identity: the world IS
  the metric table frame), "sfm_from_world": 4x4 similarity back to COLMAP's raw frame, "scale":
  {method, metres_per_unit, uncertainty, evidence: [{track_id, class_name, dimension,
  measured_units, typical_m, sigma, log_scale, used}]}, "table": {plane, size, rect_size,
  rect_yaw, rect_center, method, floor_z (the floor's height, metres, or null), extent_points...}}.
- `points.ply`: the coloured sparse cloud (table frame, metres).
- `objects.json`: {"objects": [{track_id (the smallest member track id), class_name (voted over
  the members), kind ("object" or "furniture"), members (fused track ids), class_votes, centroid,
  box: {center, size, yaw}, placement ("points", "triangulation" or "fallback": how its position
  was found), support, fallback, method (what gave the box), views, triangulation {point,
  inlier_views, views, angle_deg, residual_px, credible, reason}, evidence {placement,
  agreeing_views, confidence} (why it counts as real: its own points, 3+ agreeing views, or a
  confident detector), notes, color, confidence, observations}], "unplaced": [{track_id,
  class_name, reason, members}] (no credible position or too little evidence: reported, not
  placed), "ignored_tracks": [{track_id, class_name, reason, members}], "confusable_classes":
  {group: [classes]}, "discovery": {eps_m, candidate_points, found, merged, rejected} or null}. Every
  object has `source`: "detector", or "geometry" for one discovered from the 3D points alone
  (`reconstruction.discover_objects`, `tangram.geometry.discovery`: class "object", no members or
  triangulation, plus `keyframes`, `boxes_2d` {frame_index: projected box xyxy} and `masks`
  {frame_index: the run's segmenter's mask in `discovered_masks/`}).
- `failed/` (only when the stage failed, kept by the runner): `diagnostics.json`, the partial
  `sparse/` model and `top_down.png` (see `write_failure`).
- `stats.json`: frames analysed/selected/registered, 3D points, reprojection error, timings.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from config import ReconstructionConfig, TangramConfig
from tangram.errors import StageFailed, TangramError
from tangram.fileio import write_json
from tangram.geometry import keyframes as kf
from tangram.geometry.camera import Intrinsics, View
from tangram.geometry.discovery import discover_in_scene, object_record
from tangram.geometry.export import write_ply
from tangram.geometry.fusion import CONFUSABLE_GROUPS, Fusion, TrackEvidence, apply_fusion, fuse_tracks, track_evidence
from tangram.geometry.lifting import Object3D, PointCloud, apparent_size, lift_objects
from tangram.geometry.observations import (
    Observations,
    drop_tracks,
    ensure_tracks,
    load_observations,
    object_colour,
)
from tangram.geometry.plane import TableFrame
from tangram.geometry.scale import CLASS_PRIORS, ScaleEstimate, estimate_scale, furniture_votes, implausible_size
from tangram.geometry.table import TableEstimate, TableNotFound, camera_up, estimate_table
from tangram.media import FrameSource, frame_name, open_media
from tangram.stages.base import StageContext, StageOutcome, StageSpec

log = logging.getLogger(__name__)

MAX_ANALYSED_FRAMES = 400  # longer videos are analysed at a stride
MAX_FURNITURE_M = 2.5  # no chair or sofa is taller or wider (a long sofa ~2.4 m)
STEPS = 7


@dataclass
class KeyframePlan:
    frames: list[int]
    matcher: str
    analysed: int
    info: dict[str, Any] = field(default_factory=dict)


def run(ctx: StageContext) -> StageOutcome:
    cfg = ctx.config.reconstruction
    started = time.perf_counter()
    source = open_media(ctx.input_path)
    obs = load_observations(ctx.upstream.get("tracking"), ctx.upstream.get("segmentation"))
    ensure_tracks(obs)
    attempt = Attempt()
    steps: dict[str, float] = {}  # seconds of the steps around SfM (SfM's own are in sfm.timings)
    try:
        ctx.progress(0, STEPS, "choosing keyframes")
        mark = time.perf_counter()
        attempt.plan = plan_keyframes(source, cfg, obs.mask_frames, attempt)
        images_at = time.perf_counter()
        images = write_keyframes(source, attempt.plan.frames, ctx.out_dir / "images")
        steps["keyframes"], steps["write_images"] = images_at - mark, time.perf_counter() - images_at
        ctx.progress(1, STEPS, f"structure from motion on {len(images)} keyframes")
        attempt.sfm = _run_sfm(ctx, cfg, attempt.plan, images)
        model = attempt.model = read_model(attempt.sfm.reconstruction)
        mark = time.perf_counter()
        log.info("reconstruction: %d of %d keyframes registered, %d 3D points, focal %.0f px (%s)",
                 attempt.sfm.num_registered, len(images), len(model.cloud.xyz), model.intrinsics["fx"],
                 _focal_source(cfg))
        ctx.progress(4, STEPS, "fusing tracks into objects, finding the table plane")
        try:
            scene = build_scene(model, obs, cfg, ctx.out_dir / "images", lambda: _run_segmenter(ctx))
        except TableNotFound as exc:
            attempt.table = exc
            raise StageFailed(f"no supporting surface found: {exc.reason}") from None
    except StageFailed as exc:
        write_failure(ctx.out_dir / "failed", str(exc), attempt, cfg)
        raise
    steps["scene"] = time.perf_counter() - mark
    _to_table_frame(attempt.sfm.reconstruction, scene.metric)
    ctx.progress(6, STEPS, "writing the model")
    mark = time.perf_counter()
    attempt.sfm.timings.update({k: round(v, 3) for k, v in steps.items()})
    summary = write_outputs(ctx.out_dir, attempt.sfm, attempt.plan, model, scene, obs, images, cfg)
    log.info("reconstruction: %s; writing %.1f s", ", ".join(f"{k} {v:.1f} s" for k, v in attempt.sfm.timings.items()),
             time.perf_counter() - mark)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    log.info("reconstruction: table %s (%d points), %d objects placed, %d unplaced, scale %s %.4g m/unit ±%.0f%%",
             scene.table.method, scene.table.inliers, len(scene.objects), len(scene.unplaced), scene.scale.method,
             scene.scale.metres_per_unit, 100 * scene.scale.uncertainty)
    ctx.progress(STEPS, STEPS, "done")
    return StageOutcome(backend=f"pycolmap:{attempt.plan.matcher}+{cfg.mapper}", summary=summary)


def _run_segmenter(ctx: StageContext) -> Any:
    """The run's own segmenter (SAM or GrabCut, as the segmentation stage used), for discovered objects."""
    from tangram.stages.segmentation import make_segmenter

    return make_segmenter(ctx.config.segmentation)


@dataclass
class Attempt:
    """What the stage got as far as; a failure writes it to `failed/` (see `write_failure`)."""

    plan: KeyframePlan | None = None  # set as soon as the keyframes are chosen (before the motion checks)
    sfm: Any = None  # tangram.geometry.sfm.SfmResult
    model: Model | None = None
    table: TableNotFound | None = None


def _focal_source(cfg: ReconstructionConfig) -> str:
    return "given" if cfg.intrinsics is not None else "self-calibrated"


def _focal_info(cfg: ReconstructionConfig, intrinsics: dict[str, Any]) -> dict[str, Any]:
    """How the focal length was found: given, or refined by COLMAP's bundle adjustment from its
    prior (1.2 x the larger image side when the images carry no EXIF focal length)."""
    if cfg.intrinsics is not None:
        return {"focal_source": _focal_source(cfg)}
    prior = 1.2 * max(int(intrinsics.get("width", 0)), int(intrinsics.get("height", 0)))
    return {
        "focal_source": _focal_source(cfg),
        "focal_prior_px": prior,
        "focal_from_prior": float(intrinsics["fx"]) / prior if prior else None,
    }


# --- tracks ------------------------------------------------------------------------------------------


def select_tracks(
    obs: Observations, cfg: ReconstructionConfig, evidence: dict[int, TrackEvidence] | None = None
) -> list[dict[str, Any]]:
    """Drop tracks (fused objects, see `tangram.geometry.fusion`) that are not objects; returns what
    was dropped and why.

    Short tracks (a few frames of a long video) are mostly detector noise; the filter runs on fused
    objects, so fragments of one real object count together, and an object that is short-lived
    but triangulates consistently from `min_object_views` registered views or more (a camera
    walking past it) is kept: noise does not agree with itself in 3D. Detections of surface classes
    ("dining table") are the supporting surface itself, which the table plane stands for.
    """
    frames = obs.processed_frames or len(obs.by_frame)
    ignored = []
    for tid, info in sorted(obs.tracks.items()):
        seen = len(obs.frames_of(tid))
        if info.class_name in cfg.surface_classes:
            ignored.append({"track_id": tid, "class_name": info.class_name, "reason": "supporting surface"})
        elif seen < max(1, cfg.min_track_fraction * frames) and not _consistent(evidence, tid, cfg):
            reason = f"seen in {seen} of {frames} frames"
            ignored.append({"track_id": tid, "class_name": info.class_name, "reason": reason})
    drop_tracks(obs, {i["track_id"] for i in ignored})
    return ignored


def _consistent(
    evidence: dict[int, TrackEvidence] | None, tid: int, cfg: ReconstructionConfig, extra_views: int = 0
) -> bool:
    """Credibly triangulated from at least min_object_views (+ extra_views) registered keyframes."""
    if evidence is None or tid not in evidence:
        return False
    tri = evidence[tid].triangulation
    return tri.credible and len(tri.inliers) >= cfg.min_object_views + extra_views


def _subset(obs: Observations, keep: set[int]) -> Observations:
    """The observations of some tracks only (detections shared, nothing copied deeply)."""
    by_frame = {f: [d for d in dets if d.track_id in keep] for f, dets in obs.by_frame.items()}
    return Observations(
        {f: d for f, d in by_frame.items() if d},
        {t: i for t, i in obs.tracks.items() if t in keep},
        obs.frame_images,
        obs.processed_frames,
    )


# --- keyframes ---------------------------------------------------------------------------------------


def plan_keyframes(
    source: FrameSource, cfg: ReconstructionConfig, preferred: list[int], attempt: Attempt | None = None
) -> KeyframePlan:
    """Which frames to reconstruct from and how to match them; StageFailed when no 3D is possible
    (the plan so far is left in `attempt` for the failure report)."""
    info = source.info
    if info.kind == "image":
        raise StageFailed(
            "a single image has no parallax: 3D reconstruction needs a moving camera "
            "(a video or several overlapping photos)"
        )
    if info.num_frames < cfg.min_keyframes:
        raise StageFailed(
            f"only {info.num_frames} frames: 3D reconstruction needs at least "
            f"{cfg.min_keyframes} views from a moving camera"
        )
    stride = max(1, math.ceil(info.num_frames / MAX_ANALYSED_FRAMES))
    stats = kf.analyse_frames(source.frames(stride=stride))
    if info.kind == "images" and info.num_frames <= cfg.max_keyframes:
        # a small photo set: every photo counts, there is no time order to exploit
        static = stats.max_displacement < cfg.static_threshold
        selection = kf.KeyframeSelection(
            [] if static else list(stats.indices),
            float(stats.cumulative_motion[-1]),
            stats.max_displacement,
            static,
        )
    else:
        selection = kf.select_keyframes(
            stats,
            cfg.max_keyframes,
            cfg.min_keyframes,
            cfg.keyframe_min_motion,
            cfg.static_threshold,
            preferred,
        )
    matcher = cfg.matcher if cfg.matcher != "auto" else auto_matcher(len(selection.frames), cfg)
    details = {
        "analysed_stride": stride,
        "total_motion": round(selection.total_motion, 4),
        "max_displacement": round(selection.max_displacement, 4),
        "static_threshold": cfg.static_threshold,
        "notes": selection.reasons,
    }
    plan = KeyframePlan(selection.frames, matcher, len(stats.indices), details)
    if attempt is not None:
        attempt.plan = plan
    _check_motion(selection, len(stats.indices), cfg)
    return plan


def auto_matcher(num_images: int, cfg: ReconstructionConfig) -> str:
    """Every pair while that is no more pairs than the window + retrieval plan, retrieval beyond."""
    from tangram.geometry.pairs import exhaustive_is_cheaper

    if cfg.exhaustive_max_images is not None:
        return "exhaustive" if num_images <= cfg.exhaustive_max_images else "retrieval"
    cheaper = exhaustive_is_cheaper(num_images, cfg.sequential_overlap, cfg.retrieval_neighbours)
    return "exhaustive" if cheaper else "retrieval"


def _check_motion(selection: kf.KeyframeSelection, analysed: int, cfg: ReconstructionConfig) -> None:
    if selection.static:
        raise StageFailed(
            f"camera barely moves: no parallax for 3D reconstruction (the view shifts at most "
            f"{selection.max_displacement:.1%} of the frame diagonal)"
        )
    if len(selection.frames) < cfg.min_keyframes:
        raise StageFailed(
            f"only {len(selection.frames)} usable keyframes of {analysed} frames: 3D reconstruction "
            f"needs at least {cfg.min_keyframes} views from a moving camera"
        )


def write_keyframes(source: FrameSource, frames: list[int], folder: Path) -> dict[int, str]:
    """Write the keyframes as JPEG at full resolution; frame_index -> file name."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for index, frame in source.frames(frames):
        name = frame_name(index)
        cv2.imwrite(str(folder / name), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        names[index] = name
    if len(names) < len(frames):
        raise StageFailed(
            f"could decode only {len(names)} of {len(frames)} keyframes from {source.info.path.name}"
        )
    return names


# --- structure from motion ---------------------------------------------------------------------------


def _run_sfm(ctx: StageContext, cfg: ReconstructionConfig, plan: KeyframePlan, images: dict[int, str]):
    from tangram.geometry.sfm import SfmOptions, run_sfm  # pycolmap loads only when the stage runs
    from tangram.geometry.sfm import image_sizes as sfm_sizes

    if cfg.intrinsics is not None:
        sizes = sorted(set(sfm_sizes(ctx.out_dir / "images", list(images.values())).values()))
        if len(sizes) > 1:
            listed = ", ".join(f"{w}x{h}" for w, h in sizes)
            raise StageFailed(
                f"--intrinsics describe one camera, but the photos have {len(sizes)} sizes ({listed}): "
                "leave --intrinsics out to calibrate each photo on its own, or give photos of one size"
            )
    steps = {"extracting SIFT features": 1, f"{plan.matcher} matching": 2, f"{cfg.mapper} mapping": 3}
    options = SfmOptions(
        matcher=plan.matcher,
        mapper=cfg.mapper,
        camera_model=cfg.camera_model,
        intrinsics=_colmap_intrinsics(cfg.intrinsics),
        max_image_size=cfg.max_image_size,
        max_num_features=cfg.max_features,
        overlap=cfg.sequential_overlap,
        neighbours=cfg.retrieval_neighbours,
        seed=cfg.seed,
    )
    sfm = run_sfm(
        ctx.out_dir / "images",
        [images[f] for f in plan.frames],
        options,
        lambda what: ctx.progress(steps.get(what, 1), STEPS, what),
    )
    if sfm.num_registered < 3:
        raise StageFailed(
            f"keyframes could not be matched into a 3D model: too little overlap, texture or camera "
            f"translation ({sfm.num_registered} of {len(images)} keyframes registered)"
        )
    return sfm


def _colmap_intrinsics(intrinsics: list[float] | None) -> list[float] | None:
    if intrinsics is None:
        return None
    if len(intrinsics) != 4:
        raise StageFailed("reconstruction.intrinsics must be [fx, fy, cx, cy] in pixels")
    fx, fy, cx, cy = intrinsics
    return [fx, fy, cx + 0.5, cy + 0.5]  # COLMAP puts pixel centres at +0.5


@dataclass
class Model:
    views: dict[int, View]  # frame_index -> registered view (SfM frame)
    cloud: PointCloud
    intrinsics: dict[str, Any]
    errors: np.ndarray  # per-point reprojection error (px)


_FRAME_RE = re.compile(r"frame_(\d+)\.")


def read_model(rec) -> Model:
    from tangram.geometry import sfm

    ids, xyz, rgb, err = sfm.point_arrays(rec)
    index_of = {int(i): k for k, i in enumerate(ids)}
    views, seen = {}, {}
    camera = next(iter(rec.cameras.values()))
    for image in sfm.registered_images(rec):
        frame = int(_FRAME_RE.search(image.name).group(1))
        cam = image.camera
        views[frame] = View(
            frame,
            Intrinsics(cam.model.name, cam.width, cam.height, tuple(map(float, cam.params))),
            sfm.world_from_camera(image),
            image.name,
        )
        pids, uv = sfm.observations(rec, image)
        seen[frame] = (np.array([index_of[int(p)] for p in pids], dtype=int), uv)
    return Model(views, PointCloud(xyz, rgb, seen), sfm.camera_intrinsics(camera), err)


# --- table frame, objects, scale ---------------------------------------------------------------------


@dataclass
class Scene:
    objects: list[Object3D]  # metric table frame: tabletop objects and furniture
    scale: ScaleEstimate
    table: TableEstimate
    metric: TableFrame
    ignored: list[dict[str, Any]]  # tracks left out, and why
    unplaced: list[dict[str, Any]]  # objects whose position is not credible, and why
    fusion: Fusion
    evidence: dict[int, TrackEvidence]  # per fused object (SfM frame)
    discovery: dict[str, Any] | None = None  # objects found from the 3D points alone (tangram.geometry.discovery)


def build_scene(model: Model, obs: Observations, cfg: ReconstructionConfig, images: Path | None = None,
                segmenter: Callable[[], Any] | None = None) -> Scene:
    """From the SfM model and the 2D tracks to metric objects on the right surfaces (obs is modified:
    fused tracks take their object's id); TableNotFound when no plane has the cameras above it.
    images: the keyframes' folder (discovered objects are then segmented there, by `segmenter()`:
    the run's segmenter, GrabCut when None)."""
    raw = track_evidence(obs, model.views, cfg.seed)
    fusion = fuse_tracks(obs, raw)
    apply_fusion(obs, fusion)
    evidence = track_evidence(obs, model.views, cfg.seed)  # fused objects, from all their views
    surfaces_seen = {info.class_name for info in obs.tracks.values()} & set(cfg.surface_classes)
    ignored = select_tracks(obs, cfg, evidence)
    furniture = {t for t, i in obs.tracks.items() if i.class_name in cfg.furniture_classes}
    tabletop = set(obs.tracks) - furniture
    anchors = [
        (evidence[t].bottom, evidence[t].width)
        for t in sorted(tabletop)
        if evidence[t].bottom is not None and evidence[t].width > 0
    ]
    table = estimate_table(model.views, model.cloud, _subset(obs, tabletop), min(model.views), anchors)
    objects, scale, oversized, unplaced = place_objects(
        model, table, obs, cfg, evidence, tabletop, furniture, bool(surfaces_seen)
    )
    ignored += oversized
    metric = table.frame.rescaled(scale.metres_per_unit)
    found, discovery = [], None
    if cfg.discover_objects:  # what no detector names: clusters of the points standing on the table
        used = [0, *obs.tracks, *(i for m in fusion.members.values() for i in m), *(i["track_id"] for i in ignored)]
        found, discovery = discover_in_scene(model, table, metric, objects, max(used) + 1, images,
                                             segmenter=segmenter)
    return Scene(objects + found, scale, table, metric, ignored, unplaced, fusion, evidence, discovery)


def place_objects(
    model: Model,
    table: TableEstimate,
    obs: Observations,
    cfg: ReconstructionConfig,
    evidence: dict[int, TrackEvidence],
    tabletop: set[int],
    furniture: set[int],
    table_seen: bool,
) -> tuple[list[Object3D], ScaleEstimate, list[dict[str, Any]], list[dict[str, Any]]]:
    """Objects in the metric table frame, the scale that made it metric, the objects left out
    because their metric size is implausible for their class (the scale is estimated without them),
    and the objects whose position is not credible."""
    t = table.frame.table_from_world
    views = {f: v.transformed(t) for f, v in model.views.items()}
    cloud = PointCloud(table.frame.apply(model.cloud.xyz), model.cloud.rgb, model.cloud.seen_in)
    tri = {
        tid: table.frame.apply(e.triangulation.point[None])[0]
        for tid, e in evidence.items()
        if e.triangulation.credible
    }
    unplaced: list[dict[str, Any]] = []
    objects = lift_objects(
        views, cloud, _subset(obs, tabletop), table.threshold, cfg.min_object_points, tri, table.frame, unplaced
    )
    for o in objects:
        _record_triangulation(o, evidence)
    chairs = lift_furniture(views, obs, furniture, tri, table.floor_z, unplaced)
    objects, chairs = (_corroborated(group, obs, evidence, cfg, unplaced) for group in (objects, chairs))
    distance = float(np.median([np.linalg.norm(v.centre) for v in views.values()]))
    floor_z = table.floor_z
    camera_height = (
        None if floor_z is None else float(np.median([v.centre[2] for v in views.values()]) - floor_z)
    )
    votes = furniture_votes(
        [(o.track_id, o.class_name, o.info["top_above_floor"], o.info["apparent_width"]) for o in chairs],
        None if floor_z is None else -floor_z,
        table_seen,
    )

    def scale_of(objs: list[Object3D]) -> ScaleEstimate:
        return estimate_scale(objs, distance, cfg.known_object_size, votes, camera_height)

    scale = scale_of(objects)
    # furniture several times any real chair's size is a false detection or a bad triangulation:
    # out of the scene and out of the scale
    huge = [o for o in chairs if float(np.max(o.size)) * scale.metres_per_unit > MAX_FURNITURE_M]
    if huge:
        chairs = [o for o in chairs if o not in huge]
        ids = {o.track_id for o in huge}
        votes = [v for v in votes if v["track_id"] not in ids]
        scale = scale_of(objects)
    reasons = {o.track_id: implausible_size(o.scaled(scale.metres_per_unit)) for o in objects}
    leaked = {
        o.track_id
        for o in objects
        if reasons[o.track_id] and o.info.get("placement") == "points" and o.track_id in tri
    }
    if leaked:
        # implausibly big from its points: background points leaked in through its boxes; place it
        # from its silhouettes' triangulation instead
        again = lift_objects(
            views, cloud, _subset(obs, leaked), table.threshold, cfg.min_object_points, tri, table.frame,
            unplaced, without_points=leaked,
        )
        redo = {o.track_id: o for o in again}
        for o in again:
            _record_triangulation(o, evidence)
            o.info["points_dropped"] = "its points box was implausibly large: background points"
        objects = [redo.get(o.track_id, o) for o in objects if o.track_id not in leaked or o.track_id in redo]
        reasons = {o.track_id: implausible_size(o.scaled(scale.metres_per_unit)) for o in objects}
    odd = [o for o in objects if reasons[o.track_id]]
    dropped = []
    if odd:
        # left out of the scale; left out of the scene too unless many views place it consistently
        # (a real object the detector misnames: a fruit basket called "sandwich")
        scale = scale_of([o for o in objects if not reasons[o.track_id]])
        for o in odd:
            why = implausible_size(o.scaled(scale.metres_per_unit))
            if why is None:
                continue
            alias = _plausible_alias(o.scaled(scale.metres_per_unit))
            if alias is not None:  # the detector's confusion, not a false detection: a basket as "sandwich"
                o.info["size_note"] = f"{why}; kept: the size fits a {alias}, a class it is confused with"
            elif _consistent(evidence, o.track_id, cfg):
                o.info["size_note"] = why + "; kept: placed consistently from many views, left out of the scale"
            else:
                dropped.append({"track_id": o.track_id, "class_name": o.class_name, "reason": why})
        objects = [o for o in objects if o.track_id not in {d["track_id"] for d in dropped}]
    dropped += [
        {"track_id": o.track_id, "class_name": o.class_name,
         "reason": f"implausible size: {float(np.max(o.size)) * scale.metres_per_unit:.1f} m across"}
        for o in huge
    ]
    return [o.scaled(scale.metres_per_unit) for o in objects + chairs], scale, dropped, unplaced


CROSS_CHECK_VIEWS = 3  # a triangulation from this many agreeing views has a view that checks the others


def _record_triangulation(obj: Object3D, evidence: dict[int, TrackEvidence]) -> None:
    """The object's triangulation into its record; one the lifting found hidden behind what the
    views saw (`lifting.hidden_behind_points`) is recorded as not credible, with that reason."""
    obj.info["triangulation"] = evidence[obj.track_id].triangulation.as_dict()
    if why := obj.info.pop("triangulation_rejected", None):
        obj.info["triangulation"].update(credible=False, reason=why)


def _corroborated(
    objects: list[Object3D],
    obs: Observations,
    evidence: dict[int, TrackEvidence],
    cfg: ReconstructionConfig,
    unplaced: list[dict[str, Any]],
) -> list[Object3D]:
    """The objects whose 3D evidence is credible; the others go to `unplaced` with the reason.

    Credible: the object's own SIFT points place it (they are multi-view consistent by
    construction), or at least CROSS_CHECK_VIEWS views agree on its triangulation, or else its mean
    detection confidence reaches `min_uncorroborated_confidence` (a detector sure of it, seen from
    too few views to check)."""
    kept = []
    for o in objects:
        tri = evidence[o.track_id].triangulation
        placement = o.info.get("placement", "points")
        agreeing = len(tri.inliers) if tri.credible and o.info.get("triangulation", {}).get("credible", True) else 0
        confidence = obs.tracks[o.track_id].mean_confidence
        o.info["evidence"] = {"placement": placement, "agreeing_views": agreeing, "confidence": round(confidence, 3)}
        if placement == "points" or agreeing >= CROSS_CHECK_VIEWS or confidence >= cfg.min_uncorroborated_confidence:
            kept.append(o)
            continue
        how = (f"triangulated from {agreeing} views only, none left to check them" if agreeing
               else "placed from single views' rays")
        unplaced.append({
            "track_id": o.track_id, "class_name": o.class_name,
            "reason": (f"too little evidence: {how}, at a mean detection confidence of {confidence:.2f} "
                       f"(needs its own 3D points, {CROSS_CHECK_VIEWS} agreeing views, or a confidence of "
                       f"{cfg.min_uncorroborated_confidence:.2f})"),
        })
    return kept


def _plausible_alias(obj: Object3D) -> str | None:
    """A class the detector confuses with obj's (`CONFUSABLE_GROUPS`) for which its size is plausible."""
    for group in CONFUSABLE_GROUPS.values():
        if obj.class_name in group:
            for other in sorted(group - {obj.class_name}):
                if implausible_size(replace(obj, class_name=other)) is None and other in CLASS_PRIORS:
                    return other
    return None


def lift_furniture(
    views: dict[int, View],
    obs: Observations,
    furniture: set[int],
    tri: dict[int, np.ndarray],
    floor_z: float | None,
    unplaced: list[dict[str, Any]],
) -> list[Object3D]:
    """Chairs, sofas...: boxes from the triangulated centre and the silhouettes' apparent size,
    standing on the floor when one was found (table frame, unit scale)."""
    out = []
    for tid in sorted(furniture):
        cls = obs.tracks[tid].class_name
        if tid not in tri:
            unplaced.append({"track_id": tid, "class_name": cls, "reason": "no credible triangulation"})
            continue
        frames = [f for f in obs.frames_of(tid) if f in views]
        boxes = {f: next(d.box for d in obs.detections(f) if d.track_id == tid) for f in frames}
        centre = tri[tid]
        width, height = apparent_size({f: views[f] for f in frames}, boxes, centre)
        top = float(centre[2] + height / 2)
        bottom = float(floor_z) if floor_z is not None and floor_z < top else float(centre[2] - height / 2)
        box_centre = np.array([centre[0], centre[1], (top + bottom) / 2])
        size = np.array([width, width, top - bottom])
        info = {
            "apparent_width": width,
            "placement": "triangulation",
            "kind": "furniture",
            "top_above_floor": 0.0 if floor_z is None else top - float(floor_z),
        }
        out.append(
            Object3D(tid, cls, centre.copy(), box_centre, size, 0.0, 0, True, "apparent_size", len(frames), info)
        )
    return out


def _to_table_frame(rec, metric: TableFrame) -> None:
    from tangram.geometry.sfm import similarity_transform

    similarity_transform(rec, metric.table_from_world)


# --- artefacts ---------------------------------------------------------------------------------------


def write_outputs(
    out: Path,
    sfm,
    plan: KeyframePlan,
    model: Model,
    scene: Scene,
    obs: Observations,
    images: dict[int, str],
    cfg: ReconstructionConfig,
) -> dict[str, Any]:
    from tangram.geometry import sfm as sfm_mod

    table, metric, scale, objects, ignored = scene.table, scene.metric, scene.scale, scene.objects, scene.ignored

    rec = sfm.reconstruction
    (out / "sparse").mkdir(parents=True, exist_ok=True)
    rec.write(out / "sparse")
    per_image = len(rec.cameras) > 1  # photos of several sizes: one camera each
    frames = [
        {
            "frame_index": int(_FRAME_RE.search(im.name).group(1)),
            "image": f"images/{im.name}",
            "world_from_camera": sfm_mod.world_from_camera(im),
            **({"intrinsics": sfm_mod.camera_intrinsics(im.camera)} if per_image else {}),
        }
        for im in sfm_mod.registered_images(rec)
    ]
    write_json(
        out / "cameras.json",
        {
            "intrinsics": {**model.intrinsics, **_focal_info(cfg, model.intrinsics)},
            "frames": frames,
            "table_from_world": np.eye(4),
            "sfm_from_world": np.linalg.inv(metric.table_from_world),
            "scale": scale.as_dict(),
            "table": _table_dict(table, metric),
        },
    )
    _, xyz, rgb, _ = sfm_mod.point_arrays(rec)
    write_ply(out / "points.ply", xyz, rgb)
    image_paths = {f: out / "images" / name for f, name in images.items()}
    write_json(
        out / "objects.json",
        {
            "frame": "table (metres, z up, table top z=0)",
            "objects": [_object_dict(o, obs, image_paths, scene) for o in objects],
            "unplaced": [_with_members(u, scene) for u in scene.unplaced],
            "ignored_tracks": [_with_members(i, scene) for i in ignored],
            "confusable_classes": {k: sorted(g) for k, g in CONFUSABLE_GROUPS.items()},
            "discovery": scene.discovery,
        },
    )
    stats = _stats(sfm, plan, rec, table, scale, objects, obs)
    stats["ignored_tracks"] = len(ignored)
    stats["objects_unplaced"] = len(scene.unplaced)
    stats["tracks_in"] = sum(len(m) for m in scene.fusion.members.values())
    stats["tracks_fused"] = sum(len(m) - 1 for m in scene.fusion.members.values())
    stats["placement"] = {
        k: sum(o.info.get("placement") == k for o in objects) for k in ("points", "triangulation", "fallback")
    }
    write_json(out / "stats.json", stats)
    return {
        k: stats[k]
        for k in (
            "frames_selected",
            "frames_registered",
            "points3D",
            "mean_reprojection_error_px",
            "objects",
            "scale_method",
            "metres_per_unit",
        )
    }


def _table_dict(table: TableEstimate, metric: TableFrame) -> dict[str, Any]:
    return {
        "plane_in_sfm": [*table.plane.normal.tolist(), table.plane.offset],
        "size": list(metric.size),
        "rect_size": list(metric.rect_size),
        "rect_yaw": metric.rect_yaw,
        "rect_center": list(metric.rect_center),
        "origin": metric.origin,
        "inliers": table.inliers,
        "candidates": table.candidates,
        "method": table.method,
        "floor_z": None if table.floor_z is None else table.floor_z * metric.scale,
        "extent_points": table.table_points,
    }


def _object_dict(o: Object3D, obs: Observations, images: dict[Path, Path], scene: Scene) -> dict[str, Any]:
    if o.info.get("source") == "geometry":
        return object_record(o)
    track = obs.tracks[o.track_id]
    ev = scene.evidence.get(o.track_id)
    return {
        "track_id": o.track_id,
        "class_name": o.class_name,
        "source": "detector",
        "kind": o.info.get("kind", "object"),
        "members": scene.fusion.members.get(o.track_id, [o.track_id]),
        "class_votes": scene.fusion.classes.get(o.track_id, {}),
        "centroid": o.centroid.tolist(),
        "box": {"center": o.centre.tolist(), "size": o.size.tolist(), "yaw": o.yaw},
        "placement": o.info.get("placement", "points"),
        "support": o.support,
        "fallback": o.fallback,
        "method": o.method,
        "views": o.views,
        "triangulation": None if ev is None else _tri_metric(ev, scene),
        "evidence": o.info.get("evidence"),
        "notes": [o.info[k] for k in ("size_note", "points_dropped") if k in o.info],
        "color": object_colour(obs, o.track_id, images),
        "confidence": track.mean_confidence,
        "observations": track.num_frames,
    }


def _tri_metric(ev: TrackEvidence, scene: Scene) -> dict[str, Any]:
    out = ev.triangulation.as_dict()
    if ev.triangulation.point is not None:
        out["point"] = scene.metric.apply(ev.triangulation.point[None])[0].tolist()
    return out


def _with_members(item: dict[str, Any], scene: Scene) -> dict[str, Any]:
    return {**item, "members": scene.fusion.members.get(item["track_id"], [item["track_id"]])}


def _stats(
    sfm,
    plan: KeyframePlan,
    rec,
    table: TableEstimate,
    scale: ScaleEstimate,
    objects: list[Object3D],
    obs: Observations,
) -> dict[str, Any]:
    return {
        "frames_analysed": plan.analysed,
        "frames_selected": len(plan.frames),
        "frames_registered": sfm.num_registered,
        "registered_ratio": sfm.num_registered / len(plan.frames),
        "models": sfm.num_models,
        "points3D": int(rec.num_points3D()),
        "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
        "mean_track_length": float(rec.compute_mean_track_length()),
        "matcher": plan.matcher,
        "keyframes": plan.frames,
        "keyframe_selection": plan.info,
        "timings_s": sfm.timings,
        "table_inliers": table.inliers,
        "scale_method": scale.method,
        "metres_per_unit": scale.metres_per_unit,
        "scale_uncertainty": scale.uncertainty,
        "objects": len(objects),
        "objects_fallback": sum(o.fallback for o in objects),
        "tracks_not_placed": sorted(set(obs.tracks) - {o.track_id for o in objects}),
    }


def write_failure(folder: Path, reason: str, attempt: Attempt, cfg: ReconstructionConfig) -> None:
    """What a failed reconstruction got as far as, in `failed/` (kept by the runner as
    `reconstruction/failed/`): `diagnostics.json` (the reason; keyframes analysed and selected with
    the motion figures; frames registered and which, models, 3D points, reprojection error, the
    focal length found; every table-plane candidate with its inliers, the cameras' side and tilt,
    and the rule it broke), `sparse/` (the COLMAP model, SfM frame) and `top_down.png` (cameras and
    points seen from above, the candidates' points coloured)."""
    from tangram.geometry.plots import plot_failed_top_down

    folder.mkdir(parents=True, exist_ok=True)
    diag: dict[str, Any] = {"reason": reason, "intrinsics_given": cfg.intrinsics is not None}
    plan, sfm, model = attempt.plan, attempt.sfm, attempt.model
    if plan is not None:
        diag["keyframes"] = {"analysed": plan.analysed, "selected": len(plan.frames), "frames": plan.frames,
                             "matcher": plan.matcher, **plan.info}
    if sfm is not None:
        diag["sfm"] = {"selected": sfm.num_input, "registered": sfm.num_registered, "models": sfm.num_models,
                       "timings_s": sfm.timings}
        if sfm.reconstruction is not None:
            (folder / "sparse").mkdir(exist_ok=True)
            sfm.reconstruction.write(folder / "sparse")
            diag["sfm"]["mean_reprojection_error_px"] = float(sfm.reconstruction.compute_mean_reprojection_error())
    if model is not None:
        diag["sfm"]["registered_frames"] = sorted(model.views)
        diag["points3D"] = len(model.cloud.xyz)
        diag["intrinsics"] = {**model.intrinsics, **_focal_info(cfg, model.intrinsics)}
    up = camera_up(model.views) if model is not None else None
    table = attempt.table
    if table is not None:
        diag["table"] = {
            "inlier_band_units": table.threshold,
            "camera_up": None if up is None else {"direction": up.direction.tolist(), "spread": up.spread,
                                                  "reliable": up.reliable},
            "candidates": [c.as_dict() for c in table.planes],
        }
    write_json(folder / "diagnostics.json", diag)
    if model is not None and len(model.cloud.xyz):
        planes = table.planes if table is not None else []
        threshold = table.threshold if table is not None else 0.0
        poses = [model.views[f].world_from_camera for f in sorted(model.views)]
        plot_failed_top_down(model.cloud.xyz, model.cloud.rgb, poses, None if up is None else up.direction,
                             planes, threshold, reason, folder / "top_down.png")


def preflight(config: TangramConfig) -> None:
    """Bad intrinsics or a missing pycolmap are one-line errors before the run starts."""
    cfg = config.reconstruction
    if cfg.intrinsics is not None and (len(cfg.intrinsics) != 4 or min(cfg.intrinsics[:2]) <= 0):
        raise TangramError("reconstruction.intrinsics must be [fx, fy, cx, cy] in pixels, focal lengths > 0")
    try:
        import pycolmap  # noqa: F401
    except ImportError as exc:
        raise TangramError(f"pycolmap is not installed ({exc}): pip install pycolmap") from None


STAGE = StageSpec(
    name="reconstruction",
    requires=("tracking", "segmentation"),
    config_sections=("reconstruction", "segmentation"),  # discovered objects use the run's segmenter
    run=run,
    offloadable=True,
    uses_input=True,
    preflight=preflight,
)

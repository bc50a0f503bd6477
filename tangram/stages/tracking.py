"""Stage `tracking`: Ultralytics YOLO detection, a multi-object tracker, then offline stitching.

Detection runs at `low_conf` so the tracker's second association stage sees low-confidence
boxes (they keep existing tracks alive; starting a track still needs `conf`). The tracker
(BoT-SORT with camera-motion compensation by default; any Ultralytics tracker config works) runs
with a track buffer given in seconds, converted to frames with the video's fps and the frame
stride. Its raw ids are then stitched over the whole video (`tangram.tracklets.stitching`): fragments
of one object (lost to occlusion, low confidence, fast motion or class flicker between
confusable classes) become one object with one voted class, keeping the smallest member raw id.

Artefacts in `tracking/`:
- `tracks.json` (format "tangram.tracks/2"; "tangram.tracks/1" files still load):
  {"format", "backend": "ultralytics:<weights file>", "tracker": the tracker setting,
   "tracker_config": {effective tracker settings, as in tracker.yaml},
   "reid": {"enabled": bool, "source": "detector features" | null, "reason": str},
   "stitching": {"enabled", "raw_tracks", "final_tracks", "settings": {...},
                 "joins": [{"joined": [raw ids], "with": [raw ids], "gap_s", "distance", "tolerance",
                            "appearance"}]},
   "video": {"path", "kind", "fps", "width", "height", "num_frames"},  # num_frames = decoded
   "frame_stride": n,
   "frames": [{"frame_index": i, "detections": [
        {"track_id": int >= 1,               # the final object id, what every later stage uses
         "class_id": int, "class_name": str, # the object's voted class
         "confidence": float,
         "box_xyxy": [x1, y1, x2, y2],       # pixels of the original frame
         "raw_track_id": int,                # the tracker's id for this box
         "detected_class_name": str}]}],     # what the detector called it in this frame
   "tracks": {"<track_id>": {"class_name", "num_frames", "first_frame", "last_frame",
                             "mean_confidence", "members": [raw tracker ids, ascending],
                             "class_votes": {class name: summed confidence}}}}
  Only every `frame_stride`-th frame appears in `frames`. Detections the tracker has not (yet)
  confirmed carry no id and are left out: an object id means the same object in every stage.
  Id rule: a final object keeps the smallest raw tracker id among its members.
- `raw_tracks.json`: the tracker's own output before stitching, in the same format (track_id =
  raw_track_id, members = [track_id], classes as detected, "stitching" absent): for debugging.
- `tracker.yaml`: the effective Ultralytics tracker configuration the tracker ran with.
- `preview.mp4`: the tracked frames with boxes, final ids and voted classes drawn (rendered after
  stitching, from `tracks.json`).

Detectors (`Detector`, made by `make_detector` from `tracking.weights`, as `Segmenter` and
`make_segmenter` are for segmentation): Ultralytics YOLO with its tracker, on the runtime the weights
file's suffix names (`DETECTOR_RUNTIMES`: PyTorch .pt, ONNX Runtime .onnx, LiteRT .tflite). The
stage's preflight makes one, so missing weights, an unknown format or a missing runtime package
fail with one line before anything runs.
"""

from __future__ import annotations

import importlib.util
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from config import TangramConfig, TrackingConfig
from tangram.errors import TangramError
from tangram.fileio import read_json, write_json
from tangram.media import open_media
from tangram.models import cache_dir, is_online, resolve_yolo_weights
from tangram.stages.base import StageContext, StageOutcome, StageSpec
from tangram.tracklets import AppearanceBank, StitchConfig, stitch, vote

FORMAT = "tangram.tracks/2"
READABLE_FORMATS = ("tangram.tracks/1", FORMAT)


@dataclass
class Detection:
    track_id: int
    class_id: int
    class_name: str
    confidence: float
    box_xyxy: list[float]
    raw_track_id: int | None = None  # the tracker's id (format 2); None in format 1 files
    detected_class_name: str | None = None  # the detector's class in this frame (format 2)


@dataclass
class Tracks:
    """tracks.json in memory; `load` and `save` are the only readers and writers."""

    backend: str
    tracker: str
    video: dict[str, Any]
    frame_stride: int
    frames: dict[int, list[Detection]] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)  # final id -> raw ids; empty: itself
    extra: dict[str, Any] = field(default_factory=dict)  # tracker_config, reid, stitching

    @classmethod
    def load(cls, stage_dir: Path, name: str = "tracks.json") -> Tracks:
        data = read_json(Path(stage_dir) / name)
        if data.get("format", "tangram.tracks/1") not in READABLE_FORMATS:
            raise TangramError(f"{Path(stage_dir) / name} has format {data.get('format')!r}, "
                               f"expected one of {', '.join(READABLE_FORMATS)}")
        frames = {f["frame_index"]: [Detection(**d) for d in f["detections"]] for f in data["frames"]}
        members = {int(k): [int(m) for m in v["members"]] for k, v in data.get("tracks", {}).items()
                   if "members" in v}
        extra = {k: data[k] for k in ("tracker_config", "reid", "stitching") if k in data}
        return cls(data["backend"], data["tracker"], data["video"], data["frame_stride"], frames, members, extra)

    def save(self, stage_dir: Path, name: str = "tracks.json") -> None:
        write_json(Path(stage_dir) / name, {
            "format": FORMAT,
            "backend": self.backend,
            "tracker": self.tracker,
            **self.extra,
            "video": self.video,
            "frame_stride": self.frame_stride,
            "frames": [{"frame_index": i, "detections": [d.__dict__ for d in dets]}
                       for i, dets in sorted(self.frames.items())],
            "tracks": self.track_summary(),
        })

    def track_summary(self) -> dict[str, dict[str, Any]]:
        seen: dict[int, list[tuple[int, Detection]]] = defaultdict(list)
        for index, dets in self.frames.items():
            for det in dets:
                seen[det.track_id].append((index, det))
        summary = {}
        for track_id, hits in sorted(seen.items()):
            votes: dict[str, float] = defaultdict(float)
            for _, d in hits:
                votes[d.class_name] += d.confidence
            summary[str(track_id)] = {
                "class_name": vote(votes),  # the class with the most summed confidence
                "num_frames": len(hits),
                "first_frame": min(i for i, _ in hits),
                "last_frame": max(i for i, _ in hits),
                "mean_confidence": round(float(np.mean([d.confidence for _, d in hits])), 4),
                "members": self.members.get(track_id, [track_id]),
                "class_votes": {k: round(v, 4) for k, v in sorted(votes.items())},
            }
        return summary


def prepare_ultralytics_env() -> None:
    """Before importing ultralytics: a writable config dir, no pip auto-installs, and offline
    mode when the network is unreachable, so nothing in ultralytics waits on it."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics"))
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    if "YOLO_OFFLINE" not in os.environ and not is_online():
        os.environ["YOLO_OFFLINE"] = "1"


@dataclass(frozen=True)
class DetectorRuntime:
    name: str  # "pytorch", "onnx", "tflite"
    module: str  # what Ultralytics imports to run weights of this suffix
    package: str  # what to pip-install when it is missing


# Weights suffix -> the runtime Ultralytics runs it on. Other Ultralytics exports (TensorRT,
# OpenVINO...) are not offered: nothing here tests them.
DETECTOR_RUNTIMES: dict[str, DetectorRuntime] = {
    ".pt": DetectorRuntime("pytorch", "torch", "torch"),
    ".onnx": DetectorRuntime("onnx", "onnxruntime", "onnxruntime"),
    ".tflite": DetectorRuntime("tflite", "ai_edge_litert", "ai-edge-litert"),
}


class Detector(Protocol):
    """An object detector with its multi-object tracker: one frame in, that frame's tracked
    detections out; the tracker's state persists from call to call on one detector."""

    backend: str  # tracks.json and the manifest: "ultralytics:<weights file name>"
    runtime: str  # a DetectorRuntime name
    weights: Path

    def reid_features(self) -> bool:
        """Whether the tracker can read ReID features from this detector's own network."""
        ...

    def track(self, frame_bgr: np.ndarray, tracker_yaml: Path, cfg: TrackingConfig) -> list[Detection]:
        """Detect on one frame (BGR) and update the tracker configured by `tracker_yaml`; the
        detections the tracker confirmed, raw tracker ids as `track_id`."""
        ...


class UltralyticsDetector:
    """Ultralytics YOLO (`model.track(persist=True)`) on PyTorch, ONNX Runtime or LiteRT."""

    def __init__(self, weights: Path, runtime: DetectorRuntime):
        prepare_ultralytics_env()
        from ultralytics import YOLO

        # exported formats (.onnx, .tflite) don't always carry the task: these weights are detectors
        try:
            self.model = YOLO(str(weights), task="detect")
        except Exception as exc:  # torch, onnx and tflite loaders each raise their own types
            raise TangramError(f"cannot load YOLO weights {weights}: {str(exc).splitlines()[0][:200]}") from None
        self.weights = weights
        self.runtime = runtime.name
        self.backend = f"ultralytics:{weights.name}"

    def reid_features(self) -> bool:
        return _detector_features_available(self.model)

    def track(self, frame_bgr: np.ndarray, tracker_yaml: Path, cfg: TrackingConfig) -> list[Detection]:
        result = self.model.track(frame_bgr, persist=True, tracker=str(tracker_yaml), conf=min(cfg.conf, cfg.low_conf),
                                  iou=cfg.iou, imgsz=cfg.imgsz, classes=cfg.classes, device=cfg.device,
                                  agnostic_nms=cfg.agnostic_nms, verbose=False)[0]
        return _detections(result)


def detector_runtime(weights_setting: str) -> DetectorRuntime:
    """The runtime for a weights setting, by its suffix; a one-line TangramError when the format is
    not one TANGRAM runs or its runtime package is not installed."""
    runtime = DETECTOR_RUNTIMES.get(Path(weights_setting).suffix.lower())
    if runtime is None:
        known = ", ".join(f"{r.name} ({suffix})" for suffix, r in DETECTOR_RUNTIMES.items())
        raise TangramError(f"unsupported YOLO weights format: {weights_setting} (TANGRAM runs Ultralytics "
                           f"detectors as {known})")
    if importlib.util.find_spec(runtime.module) is None:
        raise TangramError(f"YOLO weights {Path(weights_setting).name} need the {runtime.name} runtime: "
                           f"pip install {runtime.package}")
    return runtime


def make_detector(cfg: TrackingConfig) -> Detector:
    """The detector for `cfg.weights` (a path, a name in $TANGRAM_MODEL_DIR, or an Ultralytics
    asset downloaded when online), on the runtime its suffix names. A warm worker
    (`tangram.execution.warm`) loads it once per process and gives it back with a fresh tracker."""
    from tangram.execution import warm

    return warm.model("detector", cfg.weights, cfg.device, lambda: _ultralytics_detector(cfg.weights),
                      reset=_new_tracker)


def _new_tracker(detector: UltralyticsDetector) -> None:
    """Forget the last input's tracker: the next `track(persist=True)` builds one from its yaml (ids from 1)."""
    predictor = getattr(detector.model, "predictor", None)
    if predictor is not None and hasattr(predictor, "trackers"):
        del predictor.trackers


def load_yolo(weights_setting: str) -> tuple[Any, Path]:
    """The bare Ultralytics model behind a detector, and its weights file (benches compare with it)."""
    detector = _ultralytics_detector(weights_setting)
    return detector.model, detector.weights


def _ultralytics_detector(weights_setting: str) -> UltralyticsDetector:
    runtime = detector_runtime(weights_setting)  # an unknown format is named before any look-up
    return UltralyticsDetector(resolve_yolo_weights(weights_setting), runtime)


def tracker_settings(cfg: TrackingConfig, fps: float, detector: Detector) -> tuple[dict[str, Any], dict[str, Any]]:
    """(effective tracker config, ReID report) from the base tracker YAML and TrackingConfig.

    Only keys the base config has are overridden (ByteTrack has no gmc_method or ReID keys), except
    `track_buffer`, which every Ultralytics tracker reads: `track_buffer_s` seconds of video in
    tracked frames (fps / frame_stride of them per second).
    """
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    try:
        base = dict(YAML.load(check_yaml(cfg.tracker)))
    except Exception as exc:  # a missing file or a name Ultralytics does not ship
        raise TangramError(f"cannot read tracker config {cfg.tracker!r}: {str(exc).splitlines()[0][:200]}") from None
    wanted: dict[str, Any] = {
        "track_high_thresh": cfg.conf,
        "track_low_thresh": cfg.low_conf,
        "new_track_thresh": cfg.conf,
        "match_thresh": cfg.match_thresh,
        "gmc_method": cfg.gmc_method,
        "with_reid": cfg.with_reid,
    }
    settings = {**base, **{k: v for k, v in wanted.items() if k in base}}
    settings["track_buffer"] = max(1, round(cfg.track_buffer_s * fps / cfg.frame_stride))
    reid: dict[str, Any] = {"enabled": False, "source": None, "reason": "the tracker has no ReID"}
    if "with_reid" in base:
        if not cfg.with_reid:
            reid["reason"] = "switched off (tracking.with_reid = false)"
        elif settings.get("model", "auto") != "auto":
            reid = {"enabled": True, "source": str(settings["model"]), "reason": "ReID model from the tracker config"}
        elif detector.reid_features():
            reid = {"enabled": True, "source": "detector features",
                    "reason": "model: auto reads the PyTorch detector's own features"}
        else:
            # Ultralytics would swap in a classifier (yolo26n-cls.pt) it downloads: not offline,
            # and not the detector's features. Association then uses motion and IoU alone.
            settings["with_reid"] = False
            reid["reason"] = ("off: 'model: auto' needs a PyTorch (.pt) detector to read features from, "
                              "these weights are an export (TFLite/ONNX...); association uses motion and IoU")
    return settings, reid


def _detector_features_available(model: Any) -> bool:
    """Mirrors Ultralytics' own check (trackers/track.py) for ReID from the detector's features."""
    try:
        import torch
        from ultralytics.nn.modules.head import Detect
    except ImportError:
        return False
    net = getattr(model, "model", None)
    head = getattr(net, "model", [None])[-1] if isinstance(net, torch.nn.Module) else None
    return isinstance(head, Detect) and not getattr(head, "end2end", False)


def run(ctx: StageContext) -> StageOutcome:
    cfg = ctx.config.tracking
    detector = make_detector(cfg)
    source = open_media(ctx.input_path)
    info = source.info
    fps = info.fps if info.kind == "video" and info.fps > 0 else cfg.image_fps
    settings, reid = tracker_settings(cfg, fps, detector)
    from ultralytics.utils import YAML

    tracker_yaml = ctx.out_dir / "tracker.yaml"
    YAML.save(tracker_yaml, settings)
    raw = Tracks(detector.backend, cfg.tracker, {}, cfg.frame_stride,
                 extra={"tracker_config": settings, "reid": reid})
    appearance = AppearanceBank()
    decoded = 0
    for frame_index, frame in source.frames(stride=cfg.frame_stride):
        dets = detector.track(frame, tracker_yaml, cfg)
        for det in dets:
            appearance.add(det.track_id, frame, det.box_xyxy)
        raw.frames[frame_index] = dets
        decoded = frame_index + 1
        ctx.progress(decoded, info.num_frames, "frames")
    raw.video = {"path": str(info.path), "kind": info.kind, "fps": info.fps, "width": info.width,
                 "height": info.height, "num_frames": decoded}
    raw.save(ctx.out_dir, "raw_tracks.json")
    tracks = stitch_tracks(raw, cfg, fps, appearance)
    tracks.save(ctx.out_dir)
    if cfg.write_preview:
        ctx.progress(0, len(tracks.frames), "preview")
        write_preview(ctx.out_dir / "preview.mp4", tracks, source, fps / cfg.frame_stride,
                      lambda done, total: ctx.progress(done, total, "preview"))
    summary = tracks.track_summary()
    return StageOutcome(tracks.backend, {
        "frames": decoded,
        "tracked_frames": len(tracks.frames),
        "tracks": len(summary),
        "raw_tracks": tracks.extra["stitching"]["raw_tracks"],
        "reid": reid["enabled"],
        "classes": sorted({t["class_name"] for t in summary.values()}),
    })


def stitch_tracks(raw: Tracks, cfg: TrackingConfig, fps: float, appearance: AppearanceBank | None) -> Tracks:
    """The final tracks: raw ids grouped into objects (or kept as they are with `stitch` off)."""
    settings = StitchConfig(fps=fps, max_gap_s=cfg.stitch_max_gap_s, min_appearance=cfg.stitch_min_appearance)
    if cfg.stitch:
        result = stitch(raw.frames, settings, appearance.merged if appearance is not None else None)
        final_of, objects, joins = result.final_of, result.objects, result.joins
    else:
        final_of = {d.track_id: d.track_id for dets in raw.frames.values() for d in dets}
        objects, joins = {}, []
    frames: dict[int, list[Detection]] = {}
    for index, dets in raw.frames.items():
        out = []
        for det in dets:
            final = final_of[det.track_id]
            obj = objects.get(final)
            class_id, class_name = (obj.class_id, obj.class_name) if obj else (det.class_id, det.class_name)
            out.append(Detection(final, class_id, class_name, det.confidence, det.box_xyxy, det.track_id,
                                 det.class_name))
        frames[index] = out
    members = {final: list(obj.members) for final, obj in objects.items()}
    stitching = {"enabled": cfg.stitch, "raw_tracks": len(final_of), "final_tracks": len(set(final_of.values())),
                 "settings": {k: v for k, v in settings.__dict__.items()}, "joins": joins}
    return Tracks(raw.backend, raw.tracker, raw.video, raw.frame_stride, frames, members,
                  {**raw.extra, "stitching": stitching})


def _detections(result: Any) -> list[Detection]:
    boxes = result.boxes
    if boxes is None or boxes.id is None:
        return []
    names = result.names
    return [
        Detection(int(tid), int(cls), names[int(cls)], round(float(conf), 4),
                  [round(float(v), 2) for v in xyxy], int(tid), names[int(cls)])
        for tid, cls, conf, xyxy in zip(boxes.id.tolist(), boxes.cls.tolist(), boxes.conf.tolist(),
                                        boxes.xyxy.tolist(), strict=True)
    ]


def write_preview(path: Path, tracks: Tracks, source: Any, fps: float, progress: Any = None) -> None:
    """Draw the final tracks on the re-decoded tracked frames (supervision) into an H.264 video."""
    import supervision as sv

    from tangram.video import VideoWriter

    width, height = int(tracks.video["width"]), int(tracks.video["height"])
    size = _preview_size(width, height)
    scale = size[0] / width
    boxes = sv.BoxAnnotator(thickness=2, color_lookup=sv.ColorLookup.TRACK)
    labels = sv.LabelAnnotator(text_scale=0.5, text_padding=3, color_lookup=sv.ColorLookup.TRACK)
    indices = sorted(tracks.frames)
    # ultrafast: a preview is for looking at; encode cost must not rival tracking's
    with VideoWriter(path, fps, size, preset="ultrafast") as writer:
        for done, (index, frame) in enumerate(source.frames(indices=indices), start=1):
            if scale != 1:
                import cv2

                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            dets = tracks.frames.get(index, [])
            if dets:
                detections = sv.Detections(
                    xyxy=np.array([d.box_xyxy for d in dets], float) * scale,
                    confidence=np.array([d.confidence for d in dets], float),
                    class_id=np.array([d.class_id for d in dets], int),
                    tracker_id=np.array([d.track_id for d in dets], int))
                text = [f"#{d.track_id} {d.class_name} {d.confidence:.2f}" for d in dets]
                frame = labels.annotate(boxes.annotate(frame.copy(), detections), detections, labels=text)
            writer.write(frame)
            if progress is not None:
                progress(done, len(indices))


def _preview_size(width: int, height: int, max_width: int = 960) -> tuple[int, int]:
    """Previews of big videos are scaled down: they are for looking at, and encode cost grows with size."""
    if width <= max_width:
        return width, height
    return max_width, round(height * max_width / width / 2) * 2


def preflight(config: TangramConfig) -> None:
    make_detector(config.tracking)  # a one-line TangramError for missing, unknown or unloadable weights


STAGE = StageSpec(
    name="tracking",
    requires=(),
    config_sections=("tracking",),
    run=run,
    offloadable=False,
    preflight=preflight,
)

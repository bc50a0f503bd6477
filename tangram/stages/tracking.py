"""Stage `tracking`: Ultralytics YOLO detection, a multi-object tracker, then offline stitching.

Detection runs at `low_conf` so the tracker's second association stage sees low-confidence
boxes (they keep existing tracks alive; starting a track still needs `conf`). The tracker
(BoT-SORT by default, its camera-motion compensation off: see `TrackingConfig.gmc_method`; any
Ultralytics tracker config works) runs with a track buffer given in seconds, converted to frames
with the video's fps and the frame stride. Its raw ids are then stitched over the whole video
(`tangram.tracklets.stitching`): fragments of one object (lost to occlusion, low confidence, fast
motion or class flicker between confusable classes) become one object with one voted class,
keeping the smallest member raw id.

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
- `preview.mp4`: the tracked frames with boxes, final ids and voted classes drawn, made without
  decoding the video again: the decoding thread also shrinks each tracked frame to preview size (at
  most 960 pixels wide); a background thread draws the tracker's raw ids on it while the pass runs
  (ffmpeg encodes in its own process), and the clean frame is kept. When stitching changes no drawn
  label (id and class), that video is the preview; otherwise the kept frames are drawn again with
  the final labels (the manifest's tracking summary says which). Kept frames stay in memory up to
  `PREVIEW_MEMORY_BYTES`, then go to an anonymous JPEG spool file, so memory is bounded for any
  length and resolution.

Speed: frames are decoded in a background thread into a bounded queue, so decoding overlaps
inference. The first frame goes to the detector alone (it loads the runtime); after it, lists of up
to `tracking.batch` consecutive frames of one size (fewer for big frames, `BATCH_BYTES`) where the
export takes a batch: PyTorch .pt, or an ONNX exported with a dynamic batch. Fixed-batch exports get
one frame per call: the int8 TFLite and the int8 ONNX in ../shared/models are both exported at
batch 1. Ultralytics updates the tracker once per frame, in list order, so the ids do not depend on
the list length. A LiteRT detector runs on `tracking.inference_threads` (default: every usable
core); Ultralytics alone builds it on one core fewer than the machine has, one on 2 cores, where
inference is three quarters of the stage. The detections are the same on any thread count.

Detectors (`Detector`, made by `make_detector` from `tracking.weights`, as `Segmenter` and
`make_segmenter` are for segmentation): Ultralytics YOLO with its tracker, on the runtime the weights
file's suffix names (`DETECTOR_RUNTIMES`: PyTorch .pt, ONNX Runtime .onnx, LiteRT .tflite). The
stage's preflight makes one, so missing weights, an unknown format or a missing runtime package
fail with one line before anything runs.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import numpy as np

from config import TangramConfig, TrackingConfig
from tangram.errors import TangramError
from tangram.execution.device import usable_cores
from tangram.fileio import read_json, write_json
from tangram.media import open_media
from tangram.models import cache_dir, is_online, resolve_yolo_weights
from tangram.stages.base import StageContext, StageOutcome, StageSpec
from tangram.tracklets import AppearanceBank, StitchConfig, stitch, vote

FORMAT = "tangram.tracks/2"
READABLE_FORMATS = ("tangram.tracks/1", FORMAT)
BATCH_BYTES = 64 * 2**20  # at most this much decoded video per detector call (a 4K frame is 25 MB)
PREVIEW_MEMORY_BYTES = 256 * 2**20  # preview frames held in memory; later ones are spooled as JPEG
PREVIEW_MAX_WIDTH = 960


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

    def network_batch(self) -> int | None:
        """How many frames one forward pass of the network takes: None for a dynamic batch (PyTorch,
        a dynamic ONNX), the export's batch (1 for the int8 TFLite and ONNX here) otherwise."""
        ...

    def track(self, frame_bgr: np.ndarray, tracker_yaml: Path, cfg: TrackingConfig) -> list[Detection]:
        """Detect on one frame (BGR) and update the tracker configured by `tracker_yaml`; the
        detections the tracker confirmed, raw tracker ids as `track_id`."""
        ...

    def track_batch(self, frames_bgr: list[np.ndarray], tracker_yaml: Path,
                    cfg: TrackingConfig) -> list[list[Detection]]:
        """`track` on consecutive frames of one size in one call: the tracker is updated frame by
        frame in list order, so the result equals one `track` call per frame."""
        ...


class UltralyticsDetector:
    """Ultralytics YOLO (`model.track(persist=True)`) on PyTorch, ONNX Runtime or LiteRT."""

    def __init__(self, weights: Path, runtime: DetectorRuntime, threads: int | None = None):
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
        self.threads = threads or usable_cores()

    def reid_features(self) -> bool:
        return _detector_features_available(self.model)

    def network_batch(self) -> int | None:
        if self.runtime == "pytorch":
            return None
        backend = getattr(getattr(self.model, "predictor", None), "model", None)
        if backend is not None:  # after the first frame: what Ultralytics' AutoBackend runs with
            return None if backend.metadata.get("dynamic") else int(backend.batch)
        if self.runtime == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(self.weights), providers=["CPUExecutionProvider"])
            batch = session.get_inputs()[0].shape[0]
        else:
            from ai_edge_litert.interpreter import Interpreter

            signature = Interpreter(str(self.weights)).get_input_details()[0]["shape_signature"]
            batch = int(signature[0])
        return batch if isinstance(batch, int) and batch > 0 else None  # a named or -1 axis is dynamic

    def track(self, frame_bgr: np.ndarray, tracker_yaml: Path, cfg: TrackingConfig) -> list[Detection]:
        return self.track_batch([frame_bgr], tracker_yaml, cfg)[0]

    def track_batch(self, frames_bgr: list[np.ndarray], tracker_yaml: Path,
                    cfg: TrackingConfig) -> list[list[Detection]]:
        # A list source is one Ultralytics call: a fixed-batch export is run frame by frame inside
        # AutoBackend, and the tracker callback updates one tracker per result, in list order.
        with _litert_threads(self.threads if self.runtime == "tflite" else None):
            results = self.model.track(list(frames_bgr), persist=True, tracker=str(tracker_yaml),
                                       conf=min(cfg.conf, cfg.low_conf), iou=cfg.iou, imgsz=cfg.imgsz,
                                       classes=cfg.classes, device=cfg.device, agnostic_nms=cfg.agnostic_nms,
                                       verbose=False)
        return [_detections(result) for result in results]


_litert_lock = threading.Lock()


@contextmanager
def _litert_threads(threads: int | None) -> Iterator[None]:
    """LiteRT's interpreter on `threads` CPU threads while Ultralytics builds it (on the first call):
    Ultralytics reads the count from its LiteRT backend module (`NUM_THREADS`, the machine's cores
    less one), so it is set there for the call and put back after it (other models in the process,
    the benches' bare Ultralytics loop among them, keep Ultralytics' own choice)."""
    if threads is None:
        yield
        return
    from ultralytics.nn.backends import litert

    with _litert_lock:
        before = litert.NUM_THREADS
        litert.NUM_THREADS = threads
        try:
            yield
        finally:
            litert.NUM_THREADS = before


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

    return warm.model("detector", cfg.weights, f"{cfg.device or 'auto'}/{cfg.inference_threads or 'all'}",
                      lambda: _ultralytics_detector(cfg.weights, cfg.inference_threads), reset=_new_tracker)


def _new_tracker(detector: UltralyticsDetector) -> None:
    """Forget the last input's tracker: the next `track(persist=True)` builds one from its yaml (ids from 1)."""
    predictor = getattr(detector.model, "predictor", None)
    if predictor is not None and hasattr(predictor, "trackers"):
        del predictor.trackers


def load_yolo(weights_setting: str) -> tuple[Any, Path]:
    """The bare Ultralytics model behind a detector, and its weights file (benches compare with it)."""
    detector = _ultralytics_detector(weights_setting)
    return detector.model, detector.weights


def _ultralytics_detector(weights_setting: str, threads: int | None = None) -> UltralyticsDetector:
    runtime = detector_runtime(weights_setting)  # an unknown format is named before any look-up
    return UltralyticsDetector(resolve_yolo_weights(weights_setting), runtime, threads)


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
    # frames per detector call: tracking.batch, fewer when frames are big (memory stays bounded)
    per_call = max(1, min(cfg.batch, BATCH_BYTES // max(1, info.width * info.height * 3)))
    preview_path, live_path = ctx.out_dir / "preview.mp4", ctx.out_dir / "preview.raw-ids.mp4"
    preview = "off"
    size = _preview_size(info.width, info.height)
    spool = PreviewSpool(ctx.out_dir, PREVIEW_MEMORY_BYTES, size) if cfg.write_preview else None
    try:
        with _live_preview(live_path if spool is not None else None, fps / cfg.frame_stride, size) as live:
            decoded, per_call = _track_frames(ctx, detector, tracker_yaml, source, per_call, raw, appearance,
                                              spool, live)
        raw.video = {"path": str(info.path), "kind": info.kind, "fps": info.fps, "width": info.width,
                     "height": info.height, "num_frames": decoded}
        raw.save(ctx.out_dir, "raw_tracks.json")
        tracks = stitch_tracks(raw, cfg, fps, appearance)
        tracks.save(ctx.out_dir)
        if cfg.write_preview:
            relabelled = _relabelled(tracks)
            if relabelled == 0 or spool is None:  # no label changed: the preview drawn in the pass is final
                os.replace(live_path, preview_path)
                preview = "drawn in the tracking pass"
            else:
                ctx.progress(0, len(tracks.frames), "preview")
                write_preview(preview_path, tracks, spool, fps / cfg.frame_stride,
                              lambda done, total: ctx.progress(done, total, "preview"))
                preview = f"redrawn from the kept frames: stitching relabelled {relabelled} detections"
    finally:
        if spool is not None:
            spool.close()
        live_path.unlink(missing_ok=True)
    summary = tracks.track_summary()
    return StageOutcome(tracks.backend, {
        "frames": decoded,
        "tracked_frames": len(tracks.frames),
        "tracks": len(summary),
        "raw_tracks": tracks.extra["stitching"]["raw_tracks"],
        "reid": reid["enabled"],
        "classes": sorted({t["class_name"] for t in summary.values()}),
        "detector_batch": {"frames_per_call": per_call, "network_batch": detector.network_batch()},
        "preview": preview,
    })


def _track_frames(ctx: StageContext, detector: Detector, tracker_yaml: Path, source: Any, per_call: int,
                  raw: Tracks, appearance: AppearanceBank, spool: PreviewSpool | None,
                  live: _InBackground | None) -> tuple[int, int]:
    """The tracking pass: frames decoded (and shrunk for the preview) in a background thread, tracked
    in frame order, up to `per_call` frames per detector call (the first frame alone: it loads the
    runtime, which then says whether the export takes batches). Fills `raw`, `appearance` and
    `spool`, draws the raw ids into `live`; returns (frames decoded, frames per call)."""
    cfg = ctx.config.tracking
    decoded, size = 0, [1]  # frames for the next call; a list, so that `_batches` reads it live
    frames = source.frames(stride=cfg.frame_stride)
    shrink = spool.shrink if spool is not None else None
    with closing(prefetch(_decoded(frames, shrink), depth=max(2, per_call))) as prefetched:
        for batch in _batches(prefetched, lambda: size[0]):
            tracked = detector.track_batch([frame for _, frame, _ in batch], tracker_yaml, cfg)
            for (frame_index, frame, shrunk), dets in zip(batch, tracked, strict=True):
                for det in dets:
                    appearance.add(det.track_id, frame, det.box_xyxy)
                raw.frames[frame_index] = dets
                if spool is not None and shrunk is not None:
                    small, stored = shrunk
                    scale = spool.add(frame_index, stored, frame.shape)
                    if live is not None:  # draw on a copy: the kept frame stays clean for a redraw
                        live.write(small.copy() if small is stored else small, dets, scale)
                decoded = frame_index + 1
                ctx.progress(decoded, source.info.num_frames, "frames")
            del batch, tracked, frame  # the next batch is decoded meanwhile: hold no more than one
            size[0] = min(per_call, detector.network_batch() or per_call)
    return decoded, size[0]


def _relabelled(tracks: Tracks) -> int:
    """Detections whose drawn label (id, class) stitching changed from the tracker's."""
    return sum(d.track_id != d.raw_track_id or d.class_name != d.detected_class_name
               for dets in tracks.frames.values() for d in dets)


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


T = TypeVar("T")


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """`items`, produced by a background thread at most `depth` items ahead (a bounded queue), so
    that producing them (decoding: OpenCV releases the GIL) overlaps the consumer's work. An
    exception in the producer is raised here; leaving the loop early stops the producer."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put("item", item):
                    break
            else:
                put("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator's cleanup (VideoCapture.release) runs in the thread that ran it

    thread = threading.Thread(target=produce, name="tangram-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with suppress(queue.Empty):
                box.get(timeout=0.05)
        thread.join()


Shrunk = tuple[np.ndarray, "np.ndarray | bytes"]  # (preview frame, what the spool keeps of it)


def _decoded(frames: Iterable[tuple[int, np.ndarray]],
             shrink: Callable[[np.ndarray], Shrunk] | None) -> Iterator[tuple[int, np.ndarray, Shrunk | None]]:
    """(index, frame, preview frame or None): run in the decoding thread, so the shrinking is too."""
    for index, frame in frames:
        yield index, frame, shrink(frame) if shrink is not None else None


def _batches(frames: Iterable[tuple[int, np.ndarray, Any]],
             size: Callable[[], int]) -> Iterator[list[tuple[int, np.ndarray, Any]]]:
    """Consecutive frames in lists of up to `size()`, never mixing frame sizes (Ultralytics
    letterboxes a list of one size like a single frame; mixed sizes would change the detections)."""
    batch: list[tuple[int, np.ndarray, Any]] = []
    for item in frames:
        if batch and (len(batch) >= size() or item[1].shape != batch[0][1].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


class PreviewSpool:
    """The tracked frames at preview size, in frame order, for a redraw once the final ids are known:
    in memory up to `memory_bytes`, then as JPEG in an anonymous temporary file in `directory`
    (deleted on close), so memory stays bounded whatever the video's length and resolution."""

    def __init__(self, directory: Path, memory_bytes: int, size: tuple[int, int], jpeg_quality: int = 95):
        self.directory = Path(directory)
        self.memory_bytes = memory_bytes
        self.size = size  # (width, height) of every preview frame
        self.jpeg_quality = jpeg_quality
        self._entries: list[tuple[int, np.ndarray | tuple[int, int], tuple[float, float]]] = []
        self._planned = 0  # bytes `shrink` has decided to keep in memory
        self._file: IO[bytes] | None = None

    def close(self) -> None:
        self._entries.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    def shrink(self, frame: np.ndarray) -> Shrunk:
        """A decoded frame at preview size, and what to keep of it: the pixels while the memory
        budget lasts, JPEG bytes after. Runs in the decoding thread, in frame order."""
        import cv2

        small = frame
        if frame.shape[1::-1] != self.size:
            # bilinear down to half size (5x cheaper than INTER_AREA at 1296 -> 960 wide), area below it
            mild = self.size[0] * 2 >= frame.shape[1] and self.size[1] * 2 >= frame.shape[0]
            small = cv2.resize(frame, self.size, interpolation=cv2.INTER_LINEAR if mild else cv2.INTER_AREA)
        if self._planned + small.nbytes <= self.memory_bytes:
            self._planned += small.nbytes
            return small, small
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise TangramError("cannot JPEG-encode a preview frame")
        return small, jpeg.tobytes()

    def add(self, index: int, stored: np.ndarray | bytes, frame_shape: tuple[int, ...]) -> tuple[float, float]:
        """Keep frame `index` (`shrink`'s second value); returns the (x, y) scale from the pixels of
        the frame its boxes are measured on (`frame_shape`) to preview pixels."""
        kept: np.ndarray | tuple[int, int]
        if isinstance(stored, bytes):
            if self._file is None:
                # closed in close(); anonymous, so nothing is left behind even on kill -9
                self._file = tempfile.TemporaryFile(dir=self.directory, prefix=".preview-spool-")  # noqa: SIM115
            self._file.seek(0, os.SEEK_END)
            kept = (self._file.tell(), len(stored))
            self._file.write(stored)
        else:
            kept = stored
        scale = (self.size[0] / frame_shape[1], self.size[1] / frame_shape[0])
        self._entries.append((index, kept, scale))
        return scale

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, tuple[float, float]]]:
        """(frame_index, preview frame, (x, y) box scale), one frame in memory at a time from the file."""
        import cv2

        for index, kept, scale in self._entries:
            if isinstance(kept, np.ndarray):
                yield index, kept, scale
                continue
            assert self._file is not None
            offset, length = kept
            self._file.seek(offset)
            yield index, cv2.imdecode(np.frombuffer(self._file.read(length), np.uint8), cv2.IMREAD_COLOR), scale


class _Drawer:
    """Boxes, ids, classes and confidences drawn with supervision into an H.264 preview video."""

    def __init__(self, writer: Any):
        import supervision as sv

        self._sv = sv
        self.writer = writer
        self.boxes = sv.BoxAnnotator(thickness=2, color_lookup=sv.ColorLookup.TRACK)
        self.labels = sv.LabelAnnotator(text_scale=0.5, text_padding=3, color_lookup=sv.ColorLookup.TRACK)

    def write(self, frame: np.ndarray, dets: list[Detection], scale: tuple[float, float]) -> None:
        """Draw `dets` (boxes in frame pixels, `scale`d to the preview) on `frame`, in place, and write it."""
        if dets:
            sx, sy = scale
            detections = self._sv.Detections(
                xyxy=np.array([d.box_xyxy for d in dets], float) * [sx, sy, sx, sy],
                confidence=np.array([d.confidence for d in dets], float),
                class_id=np.array([d.class_id for d in dets], int),
                tracker_id=np.array([d.track_id for d in dets], int))
            text = [f"#{d.track_id} {d.class_name} {d.confidence:.2f}" for d in dets]
            frame = self.labels.annotate(self.boxes.annotate(frame, detections), detections, labels=text)
        self.writer.write(frame)


class _InBackground:
    """`write(*args)` calls `fn(*args)` in one background thread, in call order, with at most
    `depth` calls waiting; the thread's first error is raised by the next `write` or by `close`."""

    def __init__(self, fn: Callable[..., None], depth: int):
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(fn,), name="tangram-preview", daemon=True)
        self._thread.start()

    def _work(self, fn: Callable[..., None]) -> None:
        while (args := self._queue.get()) is not None:
            if self._error is None:  # after an error, keep draining so that `write` never blocks
                try:
                    fn(*args)
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc

    def write(self, *args: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(args)

    def close(self, check: bool = True) -> None:
        self._queue.put(None)
        self._thread.join()
        if check and self._error is not None:
            raise self._error


@contextmanager
def _live_preview(path: Path | None, fps: float, size: tuple[int, int]) -> Iterator[_InBackground | None]:
    """A preview video drawn during the tracking pass (raw tracker ids) by a background thread, off
    the detector's path; None when `path` is None. ultrafast: a preview is for looking at; encoding
    (in ffmpeg's own process) must not rival tracking."""
    if path is None:
        yield None
        return
    from tangram.video import VideoWriter

    with VideoWriter(path, fps, size, preset="ultrafast") as writer:
        drawer = _InBackground(_Drawer(writer).write, depth=8)
        try:
            yield drawer
        except BaseException:
            drawer.close(check=False)
            raise
        drawer.close()


def write_preview(path: Path, tracks: Tracks, frames: Iterable[tuple[int, np.ndarray, tuple[float, float]]],
                  fps: float, progress: Callable[[int, int], None] | None = None) -> None:
    """Draw the final tracks on preview frames kept from the tracking pass (`PreviewSpool`: frame
    index, frame at preview size, box scale) into an H.264 video; the frames are drawn on in place."""
    total = len(tracks.frames)
    size = _preview_size(int(tracks.video["width"]), int(tracks.video["height"]))
    from tangram.video import VideoWriter

    with VideoWriter(path, fps, size, preset="ultrafast") as writer:
        drawer = _Drawer(writer)
        for done, (index, frame, scale) in enumerate(frames, start=1):
            drawer.write(frame, tracks.frames.get(index, []), scale)
            if progress is not None:
                progress(done, total)


def _preview_size(width: int, height: int, max_width: int = PREVIEW_MAX_WIDTH) -> tuple[int, int]:
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

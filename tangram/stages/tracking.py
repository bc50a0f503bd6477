"""Stage `tracking`: Ultralytics YOLO detection with a multi-object tracker (ByteTrack default).

Artefacts in `tracking/`:
- `tracks.json` (format "tangram.tracks/1"):
  {"format", "backend": "ultralytics:<weights file>", "tracker",
   "video": {"path", "kind", "fps", "width", "height", "num_frames"},  # num_frames = decoded
   "frame_stride": n,
   "frames": [{"frame_index": i, "detections": [
        {"track_id": int >= 1, "class_id": int, "class_name": str, "confidence": float,
         "box_xyxy": [x1, y1, x2, y2]}]}],          # pixels of the original frame
   "tracks": {"<track_id>": {"class_name", "num_frames", "first_frame", "last_frame",
                             "mean_confidence"}}}
  Only every `frame_stride`-th frame appears in `frames`. Detections the tracker has not (yet)
  confirmed carry no id and are left out: an object id means the same object in every stage.
- `preview.mp4`: the frames with boxes, class names and track ids drawn.
"""

from __future__ import annotations

import os
from collections import defaultdict
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from config import TangramConfig
from tangram.errors import TangramError
from tangram.fileio import read_json, write_json
from tangram.media import open_media
from tangram.models import cache_dir, is_online, resolve_yolo_weights
from tangram.stages.base import StageContext, StageOutcome, StageSpec

FORMAT = "tangram.tracks/1"


@dataclass
class Detection:
    track_id: int
    class_id: int
    class_name: str
    confidence: float
    box_xyxy: list[float]


@dataclass
class Tracks:
    """tracks.json in memory; `load` and `save` are the only readers and writers."""

    backend: str
    tracker: str
    video: dict[str, Any]
    frame_stride: int
    frames: dict[int, list[Detection]] = field(default_factory=dict)

    @classmethod
    def load(cls, stage_dir: Path) -> Tracks:
        data = read_json(Path(stage_dir) / "tracks.json")
        frames = {f["frame_index"]: [Detection(**d) for d in f["detections"]] for f in data["frames"]}
        return cls(data["backend"], data["tracker"], data["video"], data["frame_stride"], frames)

    def save(self, stage_dir: Path) -> None:
        write_json(Path(stage_dir) / "tracks.json", {
            "format": FORMAT,
            "backend": self.backend,
            "tracker": self.tracker,
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
            names = [d.class_name for _, d in hits]
            summary[str(track_id)] = {
                "class_name": max(set(names), key=names.count),  # the class the track was mostly
                "num_frames": len(hits),
                "first_frame": min(i for i, _ in hits),
                "last_frame": max(i for i, _ in hits),
                "mean_confidence": round(float(np.mean([d.confidence for _, d in hits])), 4),
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


def load_yolo(weights_setting: str) -> tuple[Any, Path]:
    weights = resolve_yolo_weights(weights_setting)
    prepare_ultralytics_env()
    from ultralytics import YOLO

    # exported formats (.onnx, .tflite) don't always carry the task: these weights are detectors
    try:
        return YOLO(str(weights), task="detect"), weights
    except Exception as exc:  # torch, onnx and tflite loaders each raise their own types
        raise TangramError(f"cannot load YOLO weights {weights}: {str(exc).splitlines()[0][:200]}") from None


def run(ctx: StageContext) -> StageOutcome:
    cfg = ctx.config.tracking
    model, weights = load_yolo(cfg.weights)
    source = open_media(ctx.input_path)
    info = source.info
    tracks = Tracks(f"ultralytics:{weights.name}", cfg.tracker, {}, cfg.frame_stride)
    decoded = 0
    with _preview_writer(ctx, info.fps / cfg.frame_stride, _preview_size(info.width, info.height)) as preview:
        for frame_index, frame in source.frames(stride=cfg.frame_stride):
            result = model.track(frame, persist=True, tracker=cfg.tracker, conf=cfg.conf, iou=cfg.iou,
                                 imgsz=cfg.imgsz, classes=cfg.classes, device=cfg.device, verbose=False)[0]
            tracks.frames[frame_index] = _detections(result)
            if preview is not None:
                preview.write(result.plot(line_width=2))
            decoded = frame_index + 1
            ctx.progress(decoded, info.num_frames, "frames")
    tracks.video = {"path": str(info.path), "kind": info.kind, "fps": info.fps, "width": info.width,
                    "height": info.height, "num_frames": decoded}
    tracks.save(ctx.out_dir)
    summary = tracks.track_summary()
    return StageOutcome(tracks.backend, {
        "frames": decoded,
        "tracked_frames": len(tracks.frames),
        "tracks": len(summary),
        "classes": sorted({t["class_name"] for t in summary.values()}),
    })


def _detections(result: Any) -> list[Detection]:
    boxes = result.boxes
    if boxes is None or boxes.id is None:
        return []
    names = result.names
    return [
        Detection(int(tid), int(cls), names[int(cls)], round(float(conf), 4),
                  [round(float(v), 2) for v in xyxy])
        for tid, cls, conf, xyxy in zip(boxes.id.tolist(), boxes.cls.tolist(), boxes.conf.tolist(),
                                        boxes.xyxy.tolist(), strict=True)
    ]


def _preview_writer(ctx: StageContext, fps: float, size: tuple[int, int]) -> AbstractContextManager:
    if not ctx.config.tracking.write_preview:
        return nullcontext()
    from tangram.video import VideoWriter

    # ultrafast: the preview is encoded while tracking runs and must not slow it down
    return VideoWriter(ctx.out_dir / "preview.mp4", fps, size, preset="ultrafast")


def _preview_size(width: int, height: int, max_width: int = 960) -> tuple[int, int]:
    """Previews of big videos are scaled down: they are for looking at, and encode cost grows with size."""
    if width <= max_width:
        return width, height
    return max_width, round(height * max_width / width / 2) * 2


def preflight(config: TangramConfig) -> None:
    load_yolo(config.tracking.weights)  # raises a one-line TangramError for missing or bad weights


STAGE = StageSpec(
    name="tracking",
    requires=(),
    config_sections=("tracking",),
    run=run,
    offloadable=False,
    preflight=preflight,
)

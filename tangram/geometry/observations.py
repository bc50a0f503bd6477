"""Upstream 2D observations of the tracked objects: boxes from tracking, masks from segmentation.

Frames with a mask use it (tight silhouette); frames with only a tracker box use the box, which
over-covers the object, so callers treat box evidence as weaker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tangram.errors import StageFailed
from tangram.fileio import read_json


@dataclass
class Detection:
    track_id: int
    class_name: str
    box: np.ndarray  # x1, y1, x2, y2 (pixels of the original frame)
    confidence: float = 1.0
    mask_path: Path | None = None


@dataclass
class TrackInfo:
    class_name: str
    num_frames: int = 0
    mean_confidence: float = 0.0


@dataclass
class Observations:
    by_frame: dict[int, list[Detection]] = field(default_factory=dict)
    tracks: dict[int, TrackInfo] = field(default_factory=dict)
    frame_images: dict[int, Path] = field(default_factory=dict)  # keyframe JPEGs written by segmentation
    processed_frames: int = 0  # frames the tracker looked at (with or without detections)

    @property
    def mask_frames(self) -> list[int]:
        return sorted(f for f, dets in self.by_frame.items() if any(d.mask_path for d in dets))

    def detections(self, frame_index: int) -> list[Detection]:
        return self.by_frame.get(frame_index, [])

    def frames_of(self, track_id: int) -> list[int]:
        return sorted(f for f, dets in self.by_frame.items() if any(d.track_id == track_id for d in dets))


def load_observations(tracking_dir: Path | None, segmentation_dir: Path | None) -> Observations:
    """Read tracks.json and masks.json (either may be missing); a malformed file raises StageFailed."""
    obs = Observations()
    if tracking_dir is not None and (tracking_dir / "tracks.json").is_file():
        _read_tracks(obs, tracking_dir / "tracks.json")
    if segmentation_dir is not None and (segmentation_dir / "masks.json").is_file():
        _read_masks(obs, segmentation_dir)
    return obs


def _read_tracks(obs: Observations, path: Path) -> None:
    try:
        data = read_json(path)
        obs.processed_frames = len(data["frames"])
        for frame in data["frames"]:
            dets = [
                Detection(
                    int(d["track_id"]),
                    str(d["class_name"]),
                    np.array(d["box_xyxy"], float),
                    _number(d.get("confidence"), 1.0),
                )
                for d in frame["detections"]
                if d.get("track_id") is not None
            ]
            if dets:
                obs.by_frame[int(frame["frame_index"])] = dets
        for tid, info in data.get("tracks", {}).items():
            obs.tracks[int(tid)] = TrackInfo(
                str(info["class_name"]),
                int(info.get("num_frames", 0)),
                float(info.get("mean_confidence", 0.0)),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise StageFailed(f"tracking/tracks.json is malformed ({exc.__class__.__name__}: {exc})") from exc


def _read_masks(obs: Observations, seg_dir: Path) -> None:
    try:
        data = read_json(seg_dir / "masks.json")
        for key in data["keyframes"]:
            index = int(key["frame_index"])
            if key.get("image"):
                obs.frame_images[index] = seg_dir / key["image"]
            dets = obs.by_frame.setdefault(index, [])
            for m in key["masks"]:
                _attach_mask(dets, m, seg_dir)
    except (KeyError, TypeError, ValueError) as exc:
        raise StageFailed(f"segmentation/masks.json is malformed ({exc.__class__.__name__}: {exc})") from exc


def _attach_mask(dets: list[Detection], m: dict, seg_dir: Path) -> None:
    tid = int(m["track_id"])
    path = seg_dir / m["mask"] if m.get("mask") else None
    for det in dets:
        if det.track_id == tid:
            det.mask_path = path
            return
    dets.append(
        Detection(
            tid, str(m["class_name"]), np.array(m["box_xyxy"], float), _number(m.get("score"), 1.0), path
        )
    )


def _number(value: object, default: float) -> float:
    return default if value is None else float(value)  # GrabCut masks carry score null


def ensure_tracks(obs: Observations) -> None:
    """Fill track summaries for ids only seen in masks (no tracks.json)."""
    for dets in obs.by_frame.values():
        for det in dets:
            if det.track_id not in obs.tracks:
                obs.tracks[det.track_id] = TrackInfo(
                    det.class_name, len(obs.frames_of(det.track_id)), det.confidence
                )


def read_mask(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """Boolean mask, resized (nearest) to shape=(h, w) when given; None if unreadable."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        return None
    if shape is not None and mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 127


def box_mask(box: np.ndarray, shape: tuple[int, int], scale: float = 1.0, shrink: float = 0.0) -> np.ndarray:
    """Boolean mask of a box (pixels scaled by `scale`), optionally shrunk by a fraction per side."""
    x1, y1, x2, y2 = np.asarray(box, float) * scale
    dx, dy = (x2 - x1) * shrink, (y2 - y1) * shrink
    out = np.zeros(shape, bool)
    r1, r2 = int(np.floor(y1 + dy)), int(np.ceil(y2 - dy))
    c1, c2 = int(np.floor(x1 + dx)), int(np.ceil(x2 - dx))
    out[max(r1, 0) : max(r2, 0), max(c1, 0) : max(c2, 0)] = True
    return out


def track_ids(obs: Observations, frames: Iterable[int] | None = None) -> list[int]:
    frames = obs.by_frame.keys() if frames is None else frames
    return sorted({d.track_id for f in frames for d in obs.detections(f)})


def object_colour(
    obs: Observations, track_id: int, images: dict[int, Path], max_frames: int = 5
) -> list[int]:
    """Median RGB of the object: inside its (eroded) masks where there are masks, else the middle of
    its boxes. images: frame_index -> image file, used when segmentation wrote no frame image."""
    samples: list[np.ndarray] = []
    frames = [f for f in obs.frames_of(track_id) if f in obs.frame_images or f in images]
    with_mask = [f for f in frames if _det(obs, f, track_id).mask_path is not None]
    for f in (with_mask or frames)[:max_frames]:
        image = cv2.imread(str(obs.frame_images.get(f) or images[f]), cv2.IMREAD_COLOR)
        if image is None:
            continue
        det = _det(obs, f, track_id)
        region = read_mask(det.mask_path, image.shape[:2]) if det.mask_path is not None else None
        if region is not None:
            region = cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        if region is None or not region.any():
            region = box_mask(det.box, image.shape[:2], shrink=0.3)
        if region.any():
            samples.append(image[region])
    if not samples:
        return [128, 128, 128]
    b, g, r = np.median(np.vstack(samples), axis=0)
    return [int(r), int(g), int(b)]


def _det(obs: Observations, frame: int, track_id: int) -> Detection:
    return next(d for d in obs.detections(frame) if d.track_id == track_id)


def drop_tracks(obs: Observations, track_ids: set[int]) -> None:
    """Forget these tracks everywhere (detections and summaries)."""
    for frame, dets in list(obs.by_frame.items()):
        kept = [d for d in dets if d.track_id not in track_ids]
        if kept:
            obs.by_frame[frame] = kept
        else:
            del obs.by_frame[frame]
    for tid in track_ids:
        obs.tracks.pop(tid, None)

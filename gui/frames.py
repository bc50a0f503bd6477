"""Frames for the video views: random access into a video or an image folder, and the drawing of
track boxes, ids and masks onto them. No Qt here: frames are BGR uint8 arrays.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from gui.artefacts import Box, MaskRef
from tangram.errors import TangramError
from tangram.media import open_media

log = logging.getLogger(__name__)

# A seek costs a keyframe decode; reading forward is cheaper for short gaps.
_MAX_FORWARD_GRAB = 48


class FrameReader:
    """Frame `frame_index` of a video, an image folder or one image, as decoded by tangram.media."""

    def __init__(self, path: Path | str):
        self.source = open_media(path)  # TangramError on bad input
        self.info = self.source.info
        self._video = _Capture(self.info.path) if self.info.kind == "video" else None

    def read(self, frame_index: int) -> np.ndarray | None:
        if self._video is not None:
            return self._video.read(frame_index)
        try:
            return self.source.read(frame_index)
        except TangramError:
            return None

    def close(self) -> None:
        if self._video is not None:
            self._video.close()


class VideoFile:
    """Sequential-friendly random access to an mp4 (the tracking preview, the simulation video)."""

    def __init__(self, path: Path):
        self.path = path
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise TangramError(f"cannot open video {path.name}")
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 10.0
        self.count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cap.release()
        self._reader = _Capture(path)

    def read(self, index: int) -> np.ndarray | None:
        return self._reader.read(index)

    def close(self) -> None:
        self._reader.close()


class _Capture:
    def __init__(self, path: Path):
        self.path = path
        self._cap: cv2.VideoCapture | None = None
        self._next = 0

    def read(self, index: int) -> np.ndarray | None:
        if self._cap is None:
            self._cap = cv2.VideoCapture(str(self.path))
            self._next = 0
        gap = index - self._next
        if gap < 0 or gap > _MAX_FORWARD_GRAB:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        else:
            for _ in range(gap):
                self._cap.grab()
        ok, frame = self._cap.read()
        self._next = index + 1
        return frame if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# -- drawing -------------------------------------------------------------------------------------

# Distinct colours (BGR), one per track id, the same in boxes and masks.
_PALETTE = [
    (75, 25, 230), (75, 180, 60), (25, 225, 255), (200, 130, 0), (48, 130, 245), (180, 30, 145),
    (240, 240, 70), (230, 50, 240), (60, 245, 210), (212, 190, 250), (128, 128, 0), (255, 190, 220),
    (40, 110, 170), (200, 250, 255), (0, 0, 128), (195, 255, 170), (0, 128, 128), (180, 215, 255),
]


def track_colour(track_id: int) -> tuple[int, int, int]:
    return _PALETTE[track_id % len(_PALETTE)]


class MaskCache:
    """Mask PNGs decoded once: playing a video draws the same keyframe masks again and again."""

    def __init__(self, size: int = 64):
        self._items: OrderedDict[Path, np.ndarray | None] = OrderedDict()
        self._size = size

    def get(self, path: Path) -> np.ndarray | None:
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            log.warning("mask %s cannot be read", path)
        self._items[path] = mask
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return mask


def draw_masks(frame: np.ndarray, masks: list[MaskRef], cache: MaskCache, alpha: float = 0.45) -> None:
    """Blend each mask in its track's colour and outline it, in place."""
    for ref in masks:
        mask = cache.get(ref.path)
        if mask is None:
            continue
        if mask.shape[:2] != frame.shape[:2]:
            mask = cv2.resize(mask, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
        inside = mask > 127
        colour = np.array(track_colour(ref.track_id), np.float32)
        frame[inside] = (frame[inside] * (1 - alpha) + colour * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(frame, contours, -1, track_colour(ref.track_id), 2)


def draw_boxes(frame: np.ndarray, boxes: list[Box]) -> None:
    """Track boxes with '#id class conf' labels, in place; line width follows the frame size."""
    thickness = max(1, round(max(frame.shape[:2]) / 400))
    scale = max(0.4, max(frame.shape[:2]) / 1600)
    for box in boxes:
        colour = track_colour(box.track_id)
        x1, y1, x2, y2 = (round(v) for v in box.box_xyxy)
        cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thickness)
        label = f"#{box.track_id} {box.class_name}"
        if box.confidence is not None:
            label += f" {box.confidence:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(y1, th + base + 2)
        cv2.rectangle(frame, (x1, top - th - base - 2), (x1 + tw + 4, top), colour, -1)
        cv2.putText(frame, label, (x1 + 2, top - base - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)

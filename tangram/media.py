"""Reading the run's input: a video file, a folder of images, or one image.

Frames are decoded one at a time (never the whole video in memory), as BGR uint8 arrays.
frame_index is the 0-based position in decoding order (video) or in sorted file-name order
(folder); a single image is frame 0. Frames written to disk are named by `frame_name`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tangram.errors import TangramError

# FFmpeg's own messages ("moov atom not found") would bypass our one-line errors and the log.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)  # decoder chatter off

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def frame_name(frame_index: int, suffix: str = ".jpg") -> str:
    return f"frame_{frame_index:06d}{suffix}"


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # "video", "images" or "image"
    path: Path
    fps: float
    width: int
    height: int
    num_frames: int  # from the container for videos: decoding may end earlier if truncated
    bytes: int


class FrameSource:
    """Sequential access to the frames of a validated input (see `open_media`)."""

    def __init__(self, info: MediaInfo, image_files: list[Path] | None = None):
        self.info = info
        self._image_files = image_files

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.frames()

    def frames(self, indices: Iterable[int] | None = None, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame_index, BGR frame) in order: the given indices, or every `stride`-th frame."""
        wanted = None if indices is None else set(indices)
        if self._image_files is not None:
            count = len(self._image_files)
            for index in sorted(wanted) if wanted is not None else range(0, count, stride):
                if 0 <= index < count:
                    yield index, _read_image(self._image_files[index])
        else:
            yield from self._video_frames(wanted, stride)

    def _video_frames(self, wanted: set[int] | None, stride: int) -> Iterator[tuple[int, np.ndarray]]:
        cap = cv2.VideoCapture(str(self.info.path))
        last = max(wanted, default=-1) if wanted is not None else None
        index = 0
        try:
            while last is None or index <= last:
                if (index % stride == 0) if wanted is None else (index in wanted):
                    ok, frame = cap.read()
                    if not ok:
                        return
                    yield index, frame
                elif not cap.grab():  # grab() skips decoding frames nobody asked for
                    return
                index += 1
        finally:
            cap.release()

    def read(self, frame_index: int) -> np.ndarray:
        for _, frame in self.frames([frame_index]):
            return frame
        raise TangramError(f"frame {frame_index} cannot be read from {self.info.path}")


def open_media(path: Path | str) -> FrameSource:
    """Validate the input and return a FrameSource; bad input raises a one-line TangramError."""
    path = Path(path).expanduser()
    if not path.exists():
        raise TangramError(f"input not found: {path}")
    if path.is_dir():
        return _open_folder(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        image = _read_image(path)
        h, w = image.shape[:2]
        return FrameSource(MediaInfo("image", path, 0.0, w, h, 1, path.stat().st_size), [path])
    if suffix in VIDEO_SUFFIXES:
        return _open_video(path)
    raise TangramError(
        f"unsupported input {path.name}: expected a video ({', '.join(sorted(VIDEO_SUFFIXES))}), "
        "an image, or a folder of images"
    )


def _open_folder(path: Path) -> FrameSource:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise TangramError(f"no images in folder {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    first = _read_image(files[0])
    h, w = first.shape[:2]
    size = sum(f.stat().st_size for f in files)
    return FrameSource(MediaInfo("images", path, 0.0, w, h, len(files), size), files)


def _open_video(path: Path) -> FrameSource:
    if path.stat().st_size == 0:
        raise TangramError(f"video is empty (0 bytes): {path}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise TangramError(f"cannot open video {path}: not a video, or corrupt or truncated")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise TangramError(f"video has no readable frames: {path}")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
    finally:
        cap.release()
    h, w = frame.shape[:2]
    info = MediaInfo("video", path, fps, w, h, max(count, 1), path.stat().st_size)
    return FrameSource(info)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise TangramError(f"cannot read image {path}: not an image, or corrupt")
    return image

"""Writing MP4 videos: H.264 through imageio-ffmpeg's ffmpeg when present, else OpenCV's mp4v.

H.264 plays in browsers and every desktop player; OpenCV's pip wheels can't encode it, so the
ffmpeg binary from imageio-ffmpeg does. All writers take BGR uint8 frames of one size.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

log = logging.getLogger(__name__)


def _ffmpeg_exe() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


class VideoWriter:
    """Context manager; the file appears under its final name only once it is complete."""

    def __init__(self, path: Path | str, fps: float, size: tuple[int, int], preset: str = "veryfast",
                 crf: int = 23, threads: int | None = None):
        self.path = Path(path)
        self.fps = max(float(fps), 1.0)
        self.size = size  # (width, height)
        self.preset = preset  # x264 speed/size trade-off: "ultrafast" for previews made on the fly
        self.crf = crf  # x264 quality: lower is better, 16 is near-lossless
        self.threads = threads  # 1 makes the encoding byte-for-byte reproducible
        self.codec = "h264" if _ffmpeg_exe() else "mp4v"
        # ".mp4" stays last so ffmpeg and OpenCV pick the container from the name
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._proc: subprocess.Popen | None = None
        self._cv: cv2.VideoWriter | None = None
        self.frames = 0

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.codec == "h264":
            self._proc = subprocess.Popen(self._ffmpeg_cmd(), stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        else:
            self._cv = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        return self

    def _ffmpeg_cmd(self) -> list[str]:
        w, h = self.size
        return [
            _ffmpeg_exe() or "ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{w}x{h}", "-r", f"{self.fps:g}", "-i", "-",
            # even sizes and yuv420p: what H.264 players expect
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", self.preset,
            "-crf", str(self.crf), "-pix_fmt", "yuv420p",
            *(["-threads", str(self.threads)] if self.threads else []),
            "-movflags", "+faststart", "-f", "mp4", str(self._tmp),
        ]

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[1::-1] != tuple(self.size):
            frame = cv2.resize(frame, self.size)
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        elif self._cv is not None:
            self._cv.write(frame)
        self.frames += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        failed = exc_type is not None
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            stderr = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            if self._proc.wait() != 0 and not failed:
                failed = True
                exc = RuntimeError(f"ffmpeg failed writing {self.path.name}: {stderr.strip()[:200]}")
        if self._cv is not None:
            self._cv.release()
        if failed:
            self._tmp.unlink(missing_ok=True)
            if exc_type is None and exc is not None:
                raise exc
        else:
            os.replace(self._tmp, self.path)

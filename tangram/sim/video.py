"""Film the simulation: an MP4 of the execution and PNG key frames after each action.

pybullet's CPU TinyRenderer works in DIRECT mode with no display. The camera stands across the
table from the robot, looking down at the workspace, so the arm and the objects both show.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from tangram.video import VideoWriter


class Camera:
    def __init__(
        self,
        client,
        target: tuple[float, float, float],
        robot_xy: tuple[float, float],
        size: tuple[int, int],
        distance: float = 1.35,
    ) -> None:
        self.p = client
        self.width, self.height = size
        # Opposite the robot, raised 55 degrees above the table, turned a little for depth.
        away = math.atan2(target[1] - robot_xy[1], target[0] - robot_xy[0]) + 0.35
        eye = (
            target[0] + distance * math.cos(away) * 0.57,
            target[1] + distance * math.sin(away) * 0.57,
            target[2] + distance * 0.82,
        )
        self.view = client.computeViewMatrix(eye, target, (0, 0, 1))
        self.proj = client.computeProjectionMatrixFOV(50.0, self.width / self.height, 0.05, 6.0)

    def rgb(self) -> np.ndarray:
        img = self.p.getCameraImage(
            self.width,
            self.height,
            self.view,
            self.proj,
            renderer=self.p.ER_TINY_RENDERER,
            flags=self.p.ER_NO_SEGMENTATION_MASK,
        )
        return np.reshape(np.asarray(img[2], dtype=np.uint8), (self.height, self.width, 4))[:, :, :3]


class Recorder:
    """Writes a frame every `every` physics steps to the MP4."""

    def __init__(self, camera: Camera, path: Path | None, fps: int, steps_per_second: int = 240) -> None:
        self.camera = camera
        self.every = max(1, round(steps_per_second / fps))
        self.count = 0
        self.frames = 0
        self.writer: VideoWriter | None = None
        self.codec: str | None = None
        if path is not None:
            # single-threaded x264: the same seed gives the same video bytes
            self.writer = VideoWriter(path, fps, (camera.width, camera.height), crf=20, threads=1).__enter__()
            self.codec = self.writer.codec

    def on_steps(self, n: int) -> None:
        if self.writer is None:
            return
        for _ in range(n):
            self.count += 1
            if self.count % self.every == 0:
                self.write(self.camera.rgb())

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
            self.frames += 1

    def keyframe(self, path: Path, caption: str) -> np.ndarray:
        rgb = self.camera.rgb().copy()
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        cv2.rectangle(bgr, (0, 0), (bgr.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(
            bgr, caption[:70], (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), bgr)
        return rgb

    def close(self) -> None:
        if self.writer is not None:
            self.writer.__exit__(None, None, None)
            self.writer = None

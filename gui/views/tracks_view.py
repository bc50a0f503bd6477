"""The input video with track boxes, ids and (on segmentation keyframes) mask overlays."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.artefacts import MaskData, TrackData, load_masks, load_tracks
from gui.frames import FrameReader, MaskCache, VideoFile, draw_boxes, draw_masks
from gui.views.base import ResultView, describe_missing
from gui.views.player import VideoPlayer
from tangram.errors import TangramError

log = logging.getLogger(__name__)


class TrackedFrames:
    """FrameProvider over the tracked frames: the original input when it is still there (boxes and
    masks drawn here, in one colour per track), else the tracking stage's preview.mp4 (boxes
    already drawn by the tracker), else a blank canvas with the boxes."""

    def __init__(self, tracks: TrackData, tracking_dir: Path, masks: MaskData | None):
        self.tracks = tracks
        self.masks = masks
        self.count = len(tracks.frame_indices)
        fps = float(tracks.video.get("fps") or 0.0)
        self.fps = fps / tracks.frame_stride if fps > 0 else 5.0  # image folders have no fps
        self.show_boxes = True
        self.show_masks = True
        self.source_name = "input"
        self._reader: FrameReader | None = None
        self._preview: VideoFile | None = None
        self._mask_cache = MaskCache()
        self._open_source(tracking_dir)

    def _open_source(self, tracking_dir: Path) -> None:
        try:
            self._reader = FrameReader(self.tracks.video["path"])
            return
        except (TangramError, KeyError) as exc:
            log.info("input of the run is not readable here (%s); showing the tracking preview", exc)
        preview = tracking_dir / "preview.mp4"
        if preview.is_file():
            try:
                self._preview = VideoFile(preview)
                self.source_name = "tracking preview"
                return
            except TangramError:
                pass
        self.source_name = "boxes only (the input video is gone)"

    def frame(self, position: int) -> np.ndarray | None:
        index = self.tracks.frame_indices[position]
        if self._reader is not None:
            frame = self._reader.read(index)
            draw_own_boxes = True
        elif self._preview is not None:
            frame = self._preview.read(position)
            draw_own_boxes = False
        else:
            w, h = int(self.tracks.video.get("width", 640)), int(self.tracks.video.get("height", 480))
            frame = np.full((h, w, 3), 40, np.uint8)
            draw_own_boxes = True
        if frame is None:
            return None
        if self.show_masks and self.masks and index in self.masks.keyframes:
            draw_masks(frame, self.masks.keyframes[index], self._mask_cache)
        if self.show_boxes and draw_own_boxes:
            draw_boxes(frame, self.tracks.boxes.get(index, []))
        return frame

    def caption(self, position: int) -> str:
        index = self.tracks.frame_indices[position]
        text = f"frame {index}  ({position + 1}/{self.count})  {len(self.tracks.boxes.get(index, []))} boxes"
        if self.masks and index in self.masks.keyframes:
            text += f", {len(self.masks.keyframes[index])} masks"
        return text

    def close(self) -> None:
        if self._reader:
            self._reader.close()
        if self._preview:
            self._preview.close()


class TracksView(ResultView):
    title = "Video"
    stages = ("tracking", "segmentation")

    def build_content(self) -> QWidget:
        self.player = VideoPlayer()
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.boxes_box = QCheckBox("Boxes and ids")
        self.masks_box = QCheckBox("Masks")
        for box in (self.boxes_box, self.masks_box):
            box.setChecked(True)
            box.toggled.connect(self._overlay_changed)
        top = QHBoxLayout()
        top.addWidget(self.info, 1)
        top.addWidget(self.boxes_box)
        top.addWidget(self.masks_box)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(top)
        layout.addWidget(self.player, 1)
        self.frames: TrackedFrames | None = None
        return content

    def load(self, run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
        tracks = load_tracks(run_dir / "tracking")
        masks, mask_note = self._masks(run_dir, records)
        self.clear()
        self.frames = TrackedFrames(tracks, run_dir / "tracking", masks)
        self.player.set_provider(self.frames)
        self._overlay_changed()
        names = ", ".join(f"#{tid} {t.get('class_name', '?')}" for tid, t in sorted(tracks.tracks.items()))
        self.info.setText(
            f"{len(tracks.tracks)} tracks ({names or 'none'}) over {self.frames.count} frames, "
            f"{tracks.backend}; shown on the {self.frames.source_name}. {mask_note}")

    def _masks(self, run_dir: Path, records: dict[str, dict[str, Any]]) -> tuple[MaskData | None, str]:
        record = records.get("segmentation")
        if record is None or record.get("status") != "done":
            return None, "Masks: " + describe_missing("segmentation", record)
        masks = load_masks(run_dir / "segmentation")
        self.masks_box.setEnabled(True)
        return masks, f"Masks ({masks.backend}) on {len(masks.keyframes)} keyframes."

    def _overlay_changed(self) -> None:
        if self.frames is not None:
            self.frames.show_boxes = self.boxes_box.isChecked()
            self.frames.show_masks = self.masks_box.isChecked()
            self.player.refresh()

    def clear(self) -> None:
        self.player.set_provider(None)
        if self.frames is not None:
            self.frames.close()
            self.frames = None

    def keyframe_positions(self) -> list[int]:
        """Player positions of the frames that carry masks (for jumping to them)."""
        if not self.frames or not self.frames.masks:
            return []
        keys = self.frames.masks.keyframes
        return [i for i, index in enumerate(self.frames.tracks.frame_indices) if index in keys]

"""A small video player: OpenCV decodes, a QTimer paces, a widget paints (no QtMultimedia needed)."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
from PyQt6.QtCore import QRectF, QSize, Qt, QTimer
from PyQt6.QtGui import QColor, QImage, QPainter
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider, QVBoxLayout, QWidget


class FrameProvider(Protocol):
    count: int
    fps: float

    def frame(self, position: int) -> np.ndarray | None: ...  # BGR, or None when it cannot be read
    def caption(self, position: int) -> str: ...


def to_qimage(bgr: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # copy: rgb goes away


class ImageCanvas(QWidget):
    """Paints one image scaled to fit, keeping its aspect ratio."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def sizeHint(self) -> QSize:
        return QSize(640, 400)

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 30, 30))
        if self._image is not None and not self._image.isNull():
            size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - size.width()) / 2
            y = (self.height() - size.height()) / 2
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(QRectF(x, y, size.width(), size.height()), self._image)
        painter.end()


class VideoPlayer(QWidget):
    """Play / pause, a frame slider and a caption under the picture."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._provider: FrameProvider | None = None
        self._position = 0
        self.canvas = ImageCanvas()
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._on_play_toggled)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self.seek)
        self.caption = QLabel()
        self.caption.setMinimumWidth(160)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._advance)
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.caption)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(controls)
        self.set_provider(None)

    def set_provider(self, provider: FrameProvider | None) -> None:
        self.pause()
        self._provider = provider
        count = provider.count if provider else 0
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(count - 1, 0))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        for widget in (self.play_button, self.slider):
            widget.setEnabled(count > 1)
        self._position = 0
        if provider and count:
            self._timer.setInterval(max(15, round(1000 / max(provider.fps, 1.0))))
            self.seek(0)
        else:
            self.canvas.set_image(None)
            self.caption.setText("")

    def refresh(self) -> None:
        """Redraw the current frame (after overlay settings changed)."""
        if self._provider and self._provider.count:
            self.seek(self._position)

    def seek(self, position: int) -> None:
        if not self._provider or not self._provider.count:
            return
        position = int(np.clip(position, 0, self._provider.count - 1))
        self._position = position
        if self.slider.value() != position:
            self.slider.blockSignals(True)
            self.slider.setValue(position)
            self.slider.blockSignals(False)
        frame = self._provider.frame(position)
        self.canvas.set_image(to_qimage(frame) if frame is not None else None)
        caption = self._provider.caption(position)
        self.caption.setText(caption if frame is not None else f"{caption} (cannot be decoded)")

    def position(self) -> int:
        return self._position

    def play(self) -> None:
        self.play_button.setChecked(True)

    def pause(self) -> None:
        self.play_button.setChecked(False)

    def is_playing(self) -> bool:
        return self._timer.isActive()

    def _on_play_toggled(self, playing: bool) -> None:
        if playing and self._provider and self._provider.count > 1:
            if self._position >= self._provider.count - 1:
                self.seek(0)  # play again from the start
            self._timer.start()
            self.play_button.setText("Pause")
        else:
            self._timer.stop()
            self.play_button.setText("Play")

    def _advance(self) -> None:
        if not self._provider or self._position >= self._provider.count - 1:
            self.pause()
            return
        self.seek(self._position + 1)

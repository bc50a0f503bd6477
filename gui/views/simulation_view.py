"""The simulated robot execution: its video, and the result record beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QBrush, QColor
from PyQt6.QtWidgets import QLabel, QSplitter, QTabWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from gui.artefacts import find_video, read_json_file
from gui.frames import VideoFile
from gui.views.base import ResultView, fill_json_tree
from gui.views.player import VideoPlayer


class VideoFrames:
    """FrameProvider over an mp4 file."""

    def __init__(self, path: Path):
        self.video = VideoFile(path)
        self.count = self.video.count
        self.fps = self.video.fps

    def frame(self, position: int) -> np.ndarray | None:
        return self.video.read(position)

    def caption(self, position: int) -> str:
        return f"{position / self.fps:5.1f} s  ({position + 1}/{self.count})"

    def close(self) -> None:
        self.video.close()


def result_headline(result: dict[str, Any]) -> str:
    """One sentence from result.json (tangram.sim/1): success, steps, the reason of a failure."""
    parts = []
    if isinstance(result.get("success"), bool):
        parts.append("The robot completed the plan." if result["success"] else "The robot did NOT complete the plan.")
    steps = result.get("actions") or result.get("steps")
    if isinstance(steps, list):
        ok = sum(1 for s in steps if isinstance(s, dict) and s.get("success") is True)
        parts.append(f"{ok} of {len(steps)} actions succeeded.")
    if result.get("failure_reason"):
        parts.append(f"Why: {result['failure_reason']}.")
    if isinstance(result.get("goal_satisfied"), bool):
        parts.append("Goal reached in the final state." if result["goal_satisfied"]
                     else "Goal not reached in the final state.")
    return " ".join(parts) or "Simulation finished."


def result_video(folder: Path, result: dict[str, Any]) -> Path | None:
    """result.json's video when it names one that exists, else any *.mp4 in the folder."""
    video = result.get("video")
    if isinstance(video, dict) and video.get("path") and (folder / video["path"]).is_file():
        return folder / video["path"]
    return find_video(folder)


class SimulationView(ResultView):
    title = "Simulation"
    stages = ("simulation",)

    def build_content(self) -> QWidget:
        self.player = VideoPlayer()
        self.headline = QLabel()
        self.headline.setWordWrap(True)
        self.actions = QTreeWidget()
        self.actions.setHeaderLabels(["#", "action", "result", "why"])
        self.actions.setRootIsDecorated(False)
        self.result_tree = QTreeWidget()
        self.result_tree.setHeaderLabels(["field", "value"])
        tabs = QTabWidget()
        tabs.addTab(self.actions, "Actions")
        tabs.addTab(self.result_tree, "result.json")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.player)
        splitter.addWidget(tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([600, 380])
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self.headline)
        layout.addWidget(splitter, 1)
        self.frames: VideoFrames | None = None
        return content

    def load(self, run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
        folder = run_dir / "simulation"
        result = read_json_file(folder / "result.json")
        video = result_video(folder, result if isinstance(result, dict) else {})
        self.clear()
        fill_json_tree(self.result_tree, result)
        self._fill_actions(result.get("actions") if isinstance(result, dict) else None)
        self.result_tree.expandToDepth(0)
        self.result_tree.resizeColumnToContents(0)
        text = result_headline(result) if isinstance(result, dict) else "Simulation finished."
        if video is not None:
            self.frames = VideoFrames(video)
            self.player.set_provider(self.frames)
            text += f" Video: {video.relative_to(folder)} ({self.frames.count} frames)."
        else:
            text += " No video was recorded (simulation.record_video is off)."
        self.headline.setText(text)

    def _fill_actions(self, actions: Any) -> None:
        for i, step in enumerate(actions if isinstance(actions, list) else [], 1):
            step = step if isinstance(step, dict) else {"action": step}
            action = step.get("action")
            if isinstance(action, dict):
                args = ", ".join(f"{k}={v}" for k, v in action.items() if k != "action")
                action = f"{action.get('action', '?')}({args})"
            ok = step.get("success")
            item = QTreeWidgetItem([str(i), str(action), {True: "✔ done", False: "✘ failed"}.get(ok, "–"),
                                    str(step.get("reason") or "")])
            if isinstance(ok, bool):
                item.setForeground(2, QBrush(QColor("#1a7f37" if ok else "#c62828")))
            self.actions.addTopLevelItem(item)
        for col in range(3):
            self.actions.resizeColumnToContents(col)

    def action_count(self) -> int:
        return self.actions.topLevelItemCount()

    def clear(self) -> None:
        self.actions.clear()
        self.player.set_provider(None)
        if self.frames is not None:
            self.frames.close()
            self.frames = None
        self.result_tree.clear()

"""The common frame of every result view: its content, or a sentence saying why there is none."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QLabel, QStackedWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from gui.artefacts import ArtefactError
from tangram.errors import TangramError
from tangram.stages import STAGE_TITLES, available_stages

log = logging.getLogger(__name__)


def describe_missing(stage: str, record: dict[str, Any] | None) -> str:
    """Why a stage has no output to show, from its manifest record."""
    title = STAGE_TITLES.get(stage, stage)
    if record is None:
        if stage not in available_stages():
            return f"The {title.lower()} stage is not available in this installation."
        return f"{title} has not run yet."
    status = record.get("status", "unknown")
    reason = record.get("reason") or "no reason recorded"
    if status == "failed":
        return f"{title} failed: {reason}"
    if status == "skipped":
        return f"{title} was skipped: {reason}"
    return f"{title}: {status}"


class ResultView(QWidget):
    """Subclasses set `title` and `stages` (the first is the one shown) and implement
    `build_content` and `load`; `load` raises ArtefactError when the files are not usable."""

    title = "Result"
    stages: tuple[str, ...] = ()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._message = QLabel()
        self._message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._message.setWordWrap(True)
        self._message.setObjectName("viewMessage")
        self._message.setStyleSheet("color: #555; font-size: 14px; padding: 24px;")
        self._stack = QStackedWidget()
        self._stack.addWidget(self._message)
        self._stack.addWidget(self.build_content())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._stack)
        self._has_content = False
        self.show_message(describe_missing(self.stages[0], None) if self.stages else "")

    # -- for subclasses ---------------------------------------------------------------------

    def build_content(self) -> QWidget:
        raise NotImplementedError

    def load(self, run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        """Release what the content holds (open videos, figures)."""

    # -- for the main window ----------------------------------------------------------------

    def update_from(self, run_dir: Path | None, records: dict[str, dict[str, Any]]) -> None:
        """Show the run's output for this view's stage, or the reason there is none."""
        stage = self.stages[0]
        record = records.get(stage)
        if run_dir is None or record is None or record.get("status") != "done":
            self.clear()
            self.show_message(describe_missing(stage, record))
            return
        try:
            self.load(run_dir, records)
        except (ArtefactError, TangramError) as exc:
            self._fail(f"{self.title} cannot be shown: {exc}")
        except Exception as exc:  # a bug in a view must not take the window down
            log.exception("%s view failed to load %s", self.title, run_dir)
            self._fail(f"{self.title} cannot be shown ({type(exc).__name__}: {exc}); details are in the log.")
        else:
            self._has_content = True
            self._stack.setCurrentIndex(1)

    def stage_running(self, stage: str, where: str) -> None:
        if self.stages and stage == self.stages[0]:
            self.clear()
            self.show_message(f"{STAGE_TITLES.get(stage, stage)} is running ({where})…")

    def show_message(self, text: str) -> None:
        self._has_content = False
        self._message.setText(text)
        self._stack.setCurrentIndex(0)

    def has_content(self) -> bool:
        return self._has_content

    def message(self) -> str:
        return "" if self._has_content else self._message.text()

    def _fail(self, text: str) -> None:
        self.clear()
        self.show_message(text)


def fill_json_tree(tree: QTreeWidget, data: Any) -> None:
    """Show JSON data as an expandable key/value tree (dicts and lists become branches)."""
    tree.clear()
    _add_children(tree, None, data if isinstance(data, dict | list) else {"value": data})


def _add_children(tree: QTreeWidget, parent: QTreeWidgetItem | None, data: Any) -> None:
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in children:
        item = _item(tree, parent, str(key), value)
        _add_children(tree, item, value)


def _item(tree: QTreeWidget, parent: QTreeWidgetItem | None, key: str, value: Any) -> QTreeWidgetItem:
    if isinstance(value, dict):
        text = f"{{{len(value)}}}"
    elif isinstance(value, list):
        text = f"[{len(value)}]"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    item = QTreeWidgetItem([key, text])
    if parent is None:
        tree.addTopLevelItem(item)
    else:
        parent.addChild(item)
    return item

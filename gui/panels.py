"""The left-hand panels: run settings, per-stage progress, and earlier runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QBrush, QColor
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tangram.errors import TangramError
from tangram.runner import list_runs, load_manifest
from tangram.stages import MODES, STAGE_ORDER, STAGE_TITLES, available_stages

INPUT_FILTER = ("Videos and images (*.mp4 *.mov *.avi *.mkv *.m4v *.webm *.jpg *.jpeg *.png *.bmp *.tif *.tiff)"
                ";;All (*)")
STATUS_COLOURS = {"done": "#1a7f37", "failed": "#c62828", "skipped": "#b26a00", "running": "#1565c0",
                  "cancelled": "#6d4c41"}
LIGHT_COLOURS = {"ok": "#2e7d32", "error": "#c62828", "testing": "#f9a825", "off": "#9e9e9e"}


class RunPanel(QGroupBox):
    """Input, run name, task, stages, Thunder switch and the Run / Cancel buttons."""

    run_requested = pyqtSignal()
    cancel_requested = pyqtSignal()
    thunder_test_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Run", parent)
        self.input_edit = QLineEdit()
        self.input_edit.setPlaceholderText("built-in sample scene")
        self.input_edit.setToolTip("A video, a folder of images or one image; or drop a file on the window")
        self.file_button = QPushButton("File…")
        self.folder_button = QPushButton("Folder…")
        self.sample_button = QPushButton("Sample")
        self.sample_button.setToolTip("Use the built-in sample scene (rendered once with pybullet)")
        self.file_button.clicked.connect(self._pick_file)
        self.folder_button.clicked.connect(self._pick_folder)
        self.sample_button.clicked.connect(self.input_edit.clear)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("from the input's name")
        self.task_edit = QLineEdit()
        self.task_edit.setPlaceholderText("a sensible default task for the scene")
        self.mode_combo = QComboBox()
        for mode, stage in MODES.items():
            self.mode_combo.addItem(f"{mode}: up to {STAGE_TITLES[stage].lower()}", mode)
        self.mode_combo.setCurrentIndex(list(MODES).index("full"))
        self.force_box = QCheckBox("Re-run finished stages")
        self.thunder_box = QCheckBox("Offload heavy stages to Thunder")
        self.thunder_light = QLabel("●")
        self.thunder_status = QLabel()
        self.thunder_status.setWordWrap(True)
        self.thunder_test = QPushButton("Test")
        self.thunder_test.clicked.connect(self.thunder_test_requested)
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self._layout()
        self.set_thunder_light("off", "not configured", "Thunder is not configured")

    def _layout(self) -> None:
        input_row = QHBoxLayout()
        for widget in (self.input_edit, self.file_button, self.folder_button, self.sample_button):
            input_row.addWidget(widget)
        input_row.setStretch(0, 1)
        thunder_row = QHBoxLayout()
        thunder_row.addWidget(self.thunder_box)
        thunder_row.addWidget(self.thunder_light)
        thunder_row.addWidget(self.thunder_status, 1)
        thunder_row.addWidget(self.thunder_test)
        stage_row = QHBoxLayout()
        stage_row.addWidget(self.mode_combo, 1)
        stage_row.addWidget(self.force_box)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form = QFormLayout(self)
        form.addRow("Input", input_row)
        form.addRow("Run name", self.name_edit)
        form.addRow("Task", self.task_edit)
        form.addRow("Stages", stage_row)
        form.addRow("Thunder", thunder_row)
        form.addRow(buttons)

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a video or image", self._start_dir(),
                                              INPUT_FILTER)
        if path:
            self.input_edit.setText(path)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder of images", self._start_dir())
        if path:
            self.input_edit.setText(path)

    def _start_dir(self) -> str:
        current = Path(self.input_edit.text()).expanduser()
        return str(current.parent if current.parent.is_dir() else Path.cwd())

    def input_path(self) -> Path | None:
        text = self.input_edit.text().strip()
        return Path(text).expanduser() if text else None

    def mode(self) -> str:
        return str(self.mode_combo.currentData())

    def set_mode(self, mode: str) -> None:
        index = self.mode_combo.findData(mode)
        if index >= 0:
            self.mode_combo.setCurrentIndex(index)

    def set_running(self, running: bool) -> None:
        for widget in (self.input_edit, self.file_button, self.folder_button, self.sample_button,
                       self.name_edit, self.task_edit, self.mode_combo, self.force_box, self.thunder_box,
                       self.run_button):
            widget.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def set_thunder_light(self, state: str, short: str, text: str) -> None:
        self.thunder_state = state
        self.thunder_light.setStyleSheet(f"color: {LIGHT_COLOURS.get(state, '#9e9e9e')}; font-size: 18px;")
        for widget in (self.thunder_light, self.thunder_status):
            widget.setToolTip(text)
        self.thunder_status.setText(short)


class StageTable(QTreeWidget):
    """One row per stage: status, where it ran, backend, seconds and a progress bar."""

    COLUMNS = ("Stage", "Status", "Where", "Backend", "Time", "Progress")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setHeaderLabels(list(self.COLUMNS))
        self.setRootIsDecorated(False)
        self.items: dict[str, QTreeWidgetItem] = {}
        self.bars: dict[str, QProgressBar] = {}
        installed = set(available_stages())
        for stage in STAGE_ORDER:
            item = QTreeWidgetItem([STAGE_TITLES[stage], "" if stage in installed else "not installed"])
            self.addTopLevelItem(item)
            bar = QProgressBar()
            bar.setMaximumHeight(16)
            bar.setTextVisible(True)
            bar.setValue(0)
            bar.setFormat("")
            self.setItemWidget(item, 5, bar)
            self.items[stage], self.bars[stage] = item, bar
        for col, width in enumerate((110, 75, 95, 120, 50)):
            self.setColumnWidth(col, width)

    def reset(self, stages: list[str], status: str = "waiting") -> None:
        installed = set(available_stages())
        for stage in stages:
            self._set(stage, status if stage in installed else "not installed", "", "", "")
            self.bars[stage].setRange(0, 100)
            self.bars[stage].setValue(0)
            self.bars[stage].setFormat("")

    def started(self, stage: str, where: str) -> None:
        self._set(stage, "running", where, "", "")
        bar = self.bars[stage]
        bar.setRange(0, 0)  # busy until the stage reports a total

    def progress(self, stage: str, completed: float, total: float, description: str) -> None:
        bar = self.bars[stage]
        if total > 0:
            bar.setRange(0, 1000)
            bar.setValue(round(1000 * min(completed / total, 1.0)))
            bar.setFormat(f"{completed:g}/{total:g} {description}".strip())
        else:
            bar.setRange(0, 0)
        bar.setToolTip(description)

    def finished(self, stage: str, record: dict[str, Any]) -> None:
        status = str(record.get("status", "?"))
        seconds = record.get("seconds")
        time_text = f"{seconds:.1f}s" if isinstance(seconds, int | float) else ""
        self._set(stage, status, str(record.get("where", "") if status == "done" else ""),
                  str(record.get("backend", "")), time_text)
        item = self.items[stage]
        item.setToolTip(1, str(record.get("reason", "")))
        item.setToolTip(2, str(record.get("where", "")))
        item.setToolTip(3, str(record.get("backend", "")))
        bar = self.bars[stage]
        bar.setRange(0, 100)
        bar.setValue(100 if status == "done" else 0)
        bar.setFormat(status)
        bar.setToolTip(str(record.get("reason", "")))

    def mark(self, stage: str, status: str) -> None:
        """A status without a record (e.g. cancelled)."""
        self.items[stage].setText(1, status)
        self._colour(stage, status)
        bar = self.bars[stage]
        bar.setRange(0, 100)
        bar.setFormat(status)

    def status(self, stage: str) -> str:
        return self.items[stage].text(1)

    def where(self, stage: str) -> str:
        return self.items[stage].text(2)

    def _set(self, stage: str, status: str, where: str, backend: str, seconds: str) -> None:
        item = self.items[stage]
        for col, text in enumerate((status, where, backend, seconds), 1):
            item.setText(col, text)
        self._colour(stage, status)

    def _colour(self, stage: str, status: str) -> None:
        self.items[stage].setForeground(1, QBrush(QColor(STATUS_COLOURS.get(status, "#444444"))))


class RunsPanel(QWidget):
    """Earlier runs under exports/, newest first; double-click (or Open) shows one."""

    open_requested = pyqtSignal(str)

    def __init__(self, exports_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.exports_dir = exports_dir
        self.list = QListWidget()
        self.list.itemActivated.connect(
            lambda item: self.open_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        open_button = QPushButton("Open")
        open_button.clicked.connect(self._open_selected)
        browse = QPushButton("Open folder…")
        browse.clicked.connect(self._browse)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        buttons = QHBoxLayout()
        for button in (open_button, browse, refresh):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel(f"Earlier runs in {exports_dir}/"))
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for run_dir in list_runs(self.exports_dir) if self.exports_dir.is_dir() else []:
            item = QListWidgetItem(f"{run_dir.name}   {_run_summary(run_dir)}")
            item.setData(Qt.ItemDataRole.UserRole, str(run_dir))
            self.list.addItem(item)

    def run_names(self) -> list[str]:
        return [Path(self.list.item(i).data(Qt.ItemDataRole.UserRole)).name for i in range(self.list.count())]

    def _open_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.open_requested.emit(item.data(Qt.ItemDataRole.UserRole))

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a TANGRAM run folder", str(self.exports_dir))
        if path:
            self.open_requested.emit(path)


def _run_summary(run_dir: Path) -> str:
    try:
        stages = load_manifest(run_dir).get("stages", {})
    except (TangramError, ValueError, OSError):
        return "(unreadable manifest)"
    done = sum(1 for r in stages.values() if r.get("status") == "done")
    failed = [s for s, r in stages.items() if r.get("status") == "failed"]
    text = f"{done}/{len(STAGE_ORDER)} done"
    return text + (f", failed: {', '.join(failed)}" if failed else "")

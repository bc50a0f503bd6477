"""TANGRAM's main window: run settings and stage progress on the left, result views and the live
log on the right. The pipeline runs in a RunWorker thread; this class only reacts to its signals.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent
from PyQt6.QtWidgets import (
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from config import TangramConfig, ThunderConfig
from gui.panels import RunPanel, RunsPanel, StageTable
from gui.report_action import open_report
from gui.thunder_status import ThunderStatus, configured_status, connection_test, switched_on
from gui.views import ResultView, all_views
from gui.views.base import describe_missing
from gui.worker import LogBridge, RunRequest, RunWorker
from tangram.errors import TangramError
from tangram.runner import RunResult, load_manifest, stages_until
from tangram.stages import MODES, STAGE_TITLES

log = logging.getLogger(__name__)

BANNER_STYLES = {
    "info": "background: #e3f2fd; color: #0d47a1;",
    "ok": "background: #e8f5e9; color: #1b5e20;",
    "warn": "background: #fff8e1; color: #8d6e00;",
    "error": "background: #ffebee; color: #b71c1c;",
}


class MainWindow(QMainWindow):
    thunder_checked = pyqtSignal(object)  # ThunderStatus, from the test thread
    run_ended = pyqtSignal(str)  # outcome: done / cancelled / failed, once the worker thread is over

    def __init__(self, config: TangramConfig, input_path: Path | str | None = None, name: str | None = None,
                 *, thunder: bool | None = None, mode: str | None = None):
        super().__init__()
        self.config = config
        self.exports_dir = Path(config.run.exports_dir)
        self.run_dir: Path | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.worker: RunWorker | None = None
        self.last_outcome = ""  # done / cancelled / failed, for callers and tests
        self._follow_run = True
        self._thunder_tested = False
        self.setWindowTitle("TANGRAM")
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self._build()
        self._fill_defaults(input_path, name, thunder, mode)
        self.log_bridge = LogBridge(config)
        self.log_bridge.record.connect(self._append_log)
        self.log_bridge.attach()
        self.thunder_checked.connect(self._on_thunder_checked)
        self._initial_thunder_status()

    # -- layout -----------------------------------------------------------------------------

    def _build(self) -> None:
        self.panel = RunPanel()
        self.panel.run_requested.connect(self.start_run)
        self.panel.cancel_requested.connect(self.cancel_run)
        self.panel.thunder_test_requested.connect(self.test_thunder)
        self.panel.thunder_box.toggled.connect(self._on_thunder_toggled)
        self.stage_table = StageTable()
        self.runs = RunsPanel(self.exports_dir)
        self.runs.open_requested.connect(self.open_run)
        left = QSplitter(Qt.Orientation.Vertical)
        for widget in (self.panel, self.stage_table, self.runs):
            left.addWidget(widget)
        left.setStretchFactor(1, 1)
        left.setStretchFactor(2, 1)

        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tabs = QTabWidget()
        self.views: dict[str, ResultView] = {}
        for view in all_views():
            self.views[view.stages[0]] = view
            self.tabs.addTab(view, view.title)
        self.tabs.tabBarClicked.connect(self._stop_following)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setPlaceholderText("The run's log appears here.")
        right_split = QSplitter(Qt.Orientation.Vertical)
        right_split.addWidget(self.tabs)
        right_split.addWidget(self.log_view)
        right_split.setStretchFactor(0, 4)
        right_split.setStretchFactor(1, 1)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.banner)
        right_layout.addWidget(right_split, 1)

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setStretchFactor(1, 1)
        main.setSizes([580, 860])
        self.setCentralWidget(main)
        self._build_menu()
        self.statusBar().showMessage(f"Results go to {self.exports_dir.resolve()}/<run name>/")

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&File")
        open_run = QAction("&Open run folder…", self)
        open_run.triggered.connect(self.runs._browse)
        quit_action = QAction("&Quit", self)
        quit_action.triggered.connect(self.close)
        self.open_report_action = QAction("Open &report in browser", self)
        self.open_report_action.setShortcut("Ctrl+R")
        self.open_report_action.triggered.connect(self.open_report)
        menu.addAction(open_run)
        menu.addAction(self.open_report_action)
        menu.addSeparator()
        menu.addAction(quit_action)

    def _fill_defaults(self, input_path: Path | str | None, name: str | None, thunder: bool | None,
                       mode: str | None) -> None:
        if input_path is not None:
            self.panel.input_edit.setText(str(input_path))
        if name:
            self.panel.name_edit.setText(name)
        if self.config.planning.task:
            self.panel.task_edit.setText(self.config.planning.task)
        if mode:
            self.panel.set_mode(mode)
        self.panel.thunder_box.setChecked(self.config.thunder.enabled if thunder is None else thunder)

    # -- running ----------------------------------------------------------------------------

    def exit_code(self) -> int:
        """As the CLI's: 0 nothing run or every stage done, 1 a stage failed or the run stopped, 130
        cancelled (the last run decides)."""
        worker = self.worker
        if worker is None or worker.outcome == "running":
            return 0
        if worker.outcome == "done":
            return 0 if worker.result is not None and worker.result.ok else 1
        return 130 if worker.outcome == "cancelled" else 1

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def start_run(self) -> None:
        if self.is_running():
            return
        try:
            request = self._request()
            stages = stages_until(request.until)
        except TangramError as exc:
            self.show_banner(f"Cannot start: {exc}", "error")
            return
        self.last_outcome = ""
        self._follow_run = True
        self._stages = stages
        self.stage_table.reset(stages)
        self.worker = worker = RunWorker(request, self)
        worker.preparing.connect(lambda text: self.show_banner(text[:1].upper() + text[1:], "info"))
        worker.run_dir_known.connect(self._on_run_dir)
        worker.stage_started.connect(self._on_stage_started)
        worker.stage_progress.connect(self.stage_table.progress)
        worker.stage_finished.connect(self._on_stage_finished)
        worker.succeeded.connect(self._on_succeeded)
        worker.cancelled.connect(self._on_cancelled)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_thread_finished)
        self.panel.set_running(True)
        self.show_banner("Running… (Cancel stops at the next progress step; finished stages are kept)",
                         "info")
        worker.start()

    def _request(self) -> RunRequest:
        config = self.config.model_copy(deep=True)
        config.planning.task = self.panel.task_edit.text().strip() or None
        thunder = self.panel.thunder_box.isChecked()
        if thunder:
            config.thunder = switched_on(config)
        return RunRequest(config=config, input_path=self.panel.input_path(),
                          name=self.panel.name_edit.text().strip() or None, until=MODES[self.panel.mode()],
                          force=("all",) if self.panel.force_box.isChecked() else (), thunder=thunder)

    def cancel_run(self) -> None:
        if self.is_running() and self.worker is not None:
            self.worker.cancel()
            self.panel.cancel_button.setEnabled(False)
            self.show_banner("Cancelling: the run stops at the stage's next progress step…", "warn")

    def _on_run_dir(self, path: str) -> None:
        self.run_dir = Path(path)
        try:
            self.records = dict(load_manifest(self.run_dir).get("stages", {}))
        except (TangramError, ValueError, OSError):
            self.records = {}
        for stage in self._stages:
            self.records.pop(stage, None)
        self._update_views()
        for stage in self._stages:
            view = self.views.get(stage)
            if view is not None:
                view.show_message(f"Waiting for {STAGE_TITLES[stage].lower()}…")
        self.setWindowTitle(f"TANGRAM: {self.run_dir.name}")

    def _on_stage_started(self, stage: str, where: str) -> None:
        self.stage_table.started(stage, where)
        for view in self.views.values():
            view.stage_running(stage, where)
        self.statusBar().showMessage(f"{STAGE_TITLES[stage]} running ({where})")

    def _on_stage_finished(self, stage: str, record: dict[str, Any]) -> None:
        self.records[stage] = record
        self.stage_table.finished(stage, record)
        self._update_views(stage)
        view = self.views.get(stage)
        if view is not None and self._follow_run and view.has_content():
            self.tabs.setCurrentWidget(view)

    def _on_succeeded(self, result: RunResult) -> None:
        self.last_outcome = "done"
        self.records = dict(result.manifest.get("stages", {}))
        records = {s: result.record(s) for s in result.stages}
        problems = [(s, r) for s, r in records.items() if r.get("status") != "done"]
        if problems:
            # the first problem explains the rest (later stages are skipped because of it)
            stage, record = problems[0]
            more = f" ({len(problems) - 1} later stage(s) skipped or failed too)" if len(problems) > 1 else ""
            self.show_banner(f"Run finished, but {STAGE_TITLES[stage].lower()} {record.get('status')}: "
                             f"{record.get('reason', 'no reason recorded')}{more}", "warn")
        else:
            self.show_banner(f"Run finished: {len(result.stages)} stages done, results in {result.run_dir}/",
                             "ok")

    def _on_cancelled(self) -> None:
        self.last_outcome = "cancelled"
        self._mark_unfinished("cancelled")
        self.show_banner("Cancelled. Finished stages are kept: press Run again to resume.", "warn")

    def _on_failed(self, message: str) -> None:
        self.last_outcome = "failed"
        self._mark_unfinished("stopped")
        self.show_banner(f"The run stopped: {message}", "error")

    def _on_thread_finished(self) -> None:
        self.panel.set_running(False)
        self.runs.refresh()
        self.statusBar().showMessage(f"Run {self.last_outcome or 'ended'}", 10000)
        self.run_ended.emit(self.last_outcome)

    def _mark_unfinished(self, status: str) -> None:
        """The stage that was running gets `status`; the ones still waiting did not run at all."""
        for stage in getattr(self, "_stages", []):
            state = self.stage_table.status(stage)
            view = self.views.get(stage)
            if state == "running":
                self.stage_table.mark(stage, status)
                if view is not None and not view.has_content():
                    view.show_message(f"{STAGE_TITLES[stage]} was {status} before it finished; "
                                      "run again to resume.")
            elif state == "waiting":
                self.stage_table.mark(stage, "not run")
                if view is not None and not view.has_content():
                    view.show_message(describe_missing(stage, self.records.get(stage)))

    # -- earlier runs -----------------------------------------------------------------------

    def open_run(self, path: str | Path) -> None:
        if self.is_running():
            self.show_banner("A run is in progress: cancel it or wait before opening another.", "warn")
            return
        run_dir = Path(path)
        try:
            manifest = load_manifest(run_dir)
        except (TangramError, ValueError, OSError) as exc:
            self.show_banner(f"Cannot open {run_dir}: {exc}", "error")
            return
        self.run_dir = run_dir
        self.records = dict(manifest.get("stages", {}))
        self.stage_table.reset(list(self.stage_table.items), status="")
        for stage, record in self.records.items():
            if stage in self.stage_table.items:
                self.stage_table.finished(stage, record)
        self._update_views()
        input_path = manifest.get("input", {}).get("path")
        if input_path:
            self.panel.input_edit.setText(input_path)
        self.panel.name_edit.setText(run_dir.name)
        self.setWindowTitle(f"TANGRAM: {run_dir.name}")
        self.show_banner(f"Opened run {run_dir} (press Run to resume or update it).", "info")

    def _update_views(self, stage: str | None = None) -> None:
        for view in self.views.values():
            if stage is None or stage in view.stages:
                view.update_from(self.run_dir, self.records)

    def _stop_following(self, index: int) -> None:
        if self.is_running():
            self._follow_run = False  # the user picked a tab: stop switching tabs under them

    # -- Thunder ------------------------------------------------------------------------------

    def _initial_thunder_status(self) -> None:
        status = configured_status(switched_on(self.config))
        if status is not None:
            self._on_thunder_checked(status)
        elif self.panel.thunder_box.isChecked():
            self.test_thunder()
        else:
            self.panel.set_thunder_light("off", "switched off", "Thunder is configured; Test checks the connection")

    def _on_thunder_toggled(self, on: bool) -> None:
        if on and not self._thunder_tested and configured_status(switched_on(self.config)) is None:
            self.test_thunder()

    def test_thunder(self) -> None:
        """Run the connection test in a background thread; the light turns yellow meanwhile."""
        cfg = switched_on(self.config)
        status = configured_status(cfg)
        if status is not None:
            self._on_thunder_checked(status)
            return
        self.panel.set_thunder_light("testing", "testing…", f"testing the connection to {cfg.ssh_host}…")
        self.panel.thunder_test.setEnabled(False)
        threading.Thread(target=self._run_thunder_test, args=(cfg,), name="thunder-test", daemon=True).start()

    def _run_thunder_test(self, cfg: ThunderConfig) -> None:  # in the test thread
        status = connection_test(cfg)
        with contextlib.suppress(RuntimeError):  # the window was closed meanwhile
            self.thunder_checked.emit(status)

    def _on_thunder_checked(self, status: ThunderStatus) -> None:
        self._thunder_tested = status.state in ("ok", "error")
        self.panel.thunder_test.setEnabled(True)
        self.panel.set_thunder_light(status.state, status.short, "\n".join([status.text, *status.details]))
        log.log(logging.INFO if self._thunder_tested else logging.DEBUG, "Thunder: %s", status.text)

    # -- messages, drops, closing -----------------------------------------------------------

    def open_report(self) -> None:
        """The run's report.html in the system browser (written first if missing or out of date)."""
        if self.run_dir is None:
            self.show_banner("No run to report on yet: run the pipeline or open a run folder first.", "warn")
            return
        opened, message = open_report(self.run_dir)
        self.show_banner(message, "info" if opened else "error")

    def show_banner(self, text: str, kind: str = "info") -> None:
        self.banner.setText(text)
        self.banner.setStyleSheet(f"{BANNER_STYLES.get(kind, '')} padding: 8px; border-radius: 4px;")
        self.banner.setProperty("kind", kind)
        self.banner.setVisible(bool(text))

    def banner_text(self) -> str:
        return self.banner.text() if self.banner.isVisible() else ""

    def _append_log(self, line: str, level: int) -> None:
        colour = "#b71c1c" if level >= logging.ERROR else "#8d6e00" if level >= logging.WARNING else "#222"
        self.log_view.appendHtml(f'<span style="color:{colour}; white-space:pre">{html.escape(line)}</span>')

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls() if event.mimeData() else []
        if urls and urls[0].isLocalFile() and not self.is_running():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            self.panel.input_edit.setText(urls[0].toLocalFile())
            self.show_banner(f"Input: {urls[0].toLocalFile()}", "info")
            event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.is_running() and self.worker is not None:
            self.statusBar().showMessage("Cancelling the run before closing…")
            self.worker.cancel()
            self.worker.wait()  # the runner stops at the next progress step; finished stages are kept
        for view in self.views.values():
            view.clear()
        self.log_bridge.detach()
        super().closeEvent(event)

"""Running the pipeline off the UI thread, and bringing its progress and log back as Qt signals.

Signals emitted from the worker thread reach slots in the UI thread through Qt's queued
connections, so the UI never blocks and widgets are only touched from the UI thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QThread, pyqtSignal

from config import TangramConfig
from tangram.errors import TangramError
from tangram.logs import RedactSecrets
from tangram.media import open_media
from tangram.runner import Cancelled, Pipeline, RunResult, default_input, default_run_name, thunder_offload_policy
from tangram.settings import secret_values

log = logging.getLogger(__name__)


@dataclass
class RunRequest:
    config: TangramConfig
    input_path: Path | None  # None: the built-in sample scene
    name: str | None  # None: from the input's name
    until: str  # last stage to run
    force: tuple[str, ...] = ()
    thunder: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class RunWorker(QThread):
    """One pipeline run. `cancel()` may be called from the UI thread at any time."""

    preparing = pyqtSignal(str)  # a sentence: what happens before the first stage
    run_dir_known = pyqtSignal(str)
    stage_started = pyqtSignal(str, str)  # stage, where
    stage_progress = pyqtSignal(str, float, float, str)  # stage, completed, total (-1: unknown), text
    stage_finished = pyqtSignal(str, dict)  # stage, manifest record
    succeeded = pyqtSignal(object)  # RunResult
    cancelled = pyqtSignal()
    failed = pyqtSignal(str)  # a sentence a person understands

    def __init__(self, request: RunRequest, parent: QObject | None = None):
        super().__init__(parent)
        self.request = request
        self.cancel_event = threading.Event()
        self.result: RunResult | None = None
        self.outcome = "running"  # then: done, cancelled, failed

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self) -> None:  # runs in the worker thread
        try:
            result = self._run_pipeline()
        except Cancelled:
            self.outcome = "cancelled"
            self.cancelled.emit()
        except TangramError as exc:
            self.outcome = "failed"
            self.failed.emit(str(exc))
        except Exception as exc:  # a bug or library failure: report it, keep the window alive
            log.exception("the run stopped on an unexpected error")
            self.outcome = "failed"
            self.failed.emit(f"unexpected error ({type(exc).__name__}: {exc}); the log has the details")
        else:
            self.result = result
            self.outcome = "done"
            self.succeeded.emit(result)

    def _run_pipeline(self) -> RunResult:
        req = self.request
        input_path = req.input_path
        if input_path is None:
            self.preparing.emit("preparing the built-in sample scene (rendered once, then cached)…")
            input_path = default_input()
        if self.cancel_event.is_set():
            raise Cancelled("run cancelled")
        name = req.name or default_run_name(open_media(input_path).info.path)
        self.run_dir_known.emit(str(Path(req.config.run.exports_dir) / name))
        offload = thunder_offload_policy(req.config) if req.thunder else None
        pipeline = Pipeline(req.config, observer=_SignalObserver(self), offload=offload,
                            cancel_event=self.cancel_event)
        return pipeline.run(input_path, name=name, until=req.until, force=req.force)


class _SignalObserver:
    """RunObserver that forwards to the worker's signals (called in the worker thread)."""

    def __init__(self, worker: RunWorker):
        self._worker = worker

    def stage_started(self, stage: str, where: str) -> None:
        self._worker.stage_started.emit(stage, where)

    def stage_progress(self, stage: str, completed: float, total: float | None, description: str) -> None:
        self._worker.stage_progress.emit(stage, float(completed), -1.0 if total is None else float(total),
                                         description)

    def stage_finished(self, stage: str, record: dict[str, Any]) -> None:
        self._worker.stage_finished.emit(stage, dict(record))


class LogBridge(QObject):
    """A logging handler's Qt side: records from any thread arrive in the UI thread as text."""

    record = pyqtSignal(str, int)  # formatted line, level

    def __init__(self, config: TangramConfig, level: int = logging.INFO):
        super().__init__()
        self.handler = _SignalHandler(self)
        self.handler.setLevel(level)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                                    datefmt="%H:%M:%S"))
        self.handler.addFilter(RedactSecrets(secret_values(config)))

    def attach(self) -> None:
        root = logging.getLogger()
        root.addHandler(self.handler)
        self._previous_level = root.level
        # the runner raises the root level to DEBUG while it runs; outside runs INFO must still pass
        if root.level > self.handler.level or root.level == logging.NOTSET:
            root.setLevel(self.handler.level)

    def detach(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        if getattr(self, "_previous_level", None) is not None and root.level == self.handler.level:
            root.setLevel(self._previous_level)


class _SignalHandler(logging.Handler):
    def __init__(self, bridge: LogBridge):
        super().__init__()
        self._bridge = bridge

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(RuntimeError):  # the window is gone while a thread still logs
            self._bridge.record.emit(self.format(record), record.levelno)

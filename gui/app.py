"""`run_gui`: the GUI's entry point for `python main.py --gui`, `python -m gui` and `demo.py --gui`."""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from config import TangramConfig

if TYPE_CHECKING:
    from PyQt6.QtWidgets import QWidget

log = logging.getLogger("gui")


def run_gui(config: TangramConfig, input_path: Path | str | None = None, name: str | None = None, *,
            thunder: bool | None = None, mode: str | None = None) -> int:
    """Open the main window with these presets and return the exit code when it closes."""
    try:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
    except ImportError as exc:
        from tangram.errors import TangramError

        raise TangramError(f"the GUI needs PyQt6 (pip install 'tangram[gui]'): {exc}") from None
    from gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("TANGRAM")
    window = MainWindow(config, input_path=input_path, name=name, thunder=thunder, mode=mode)
    previous_hook = sys.excepthook
    sys.excepthook = _excepthook_for(window)
    previous_sigint = _close_on_ctrl_c(window)
    # Qt's event loop never returns to Python on its own: a timer lets Python notice Ctrl+C
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(250)
    window.show()
    try:
        app.exec()
    finally:
        ticker.stop()
        sys.excepthook = previous_hook
        signal.signal(signal.SIGINT, previous_sigint)
    return window.exit_code()


def _close_on_ctrl_c(window: QWidget) -> Any:
    """Ctrl+C in the terminal closes the window like its close button (a run is cancelled first)."""
    return signal.signal(signal.SIGINT, lambda *_: window.close())


def _excepthook_for(window: object) -> object:
    """PyQt6 aborts the process on an exception escaping a slot; show it in the window instead."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        log.error("unexpected error in the GUI:\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        show = getattr(window, "show_banner", None)
        if show is not None:
            show(f"Something went wrong ({kind.__name__}: {exc}). The window keeps working; "
                 "details are in the log.", "error")

    return hook

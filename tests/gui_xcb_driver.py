"""Drives `python main.py --gui` from inside the GUI process, for tests/test_gui_xcb.py.

Usage: python tests/gui_xcb_driver.py RUN_DIR SHOT_DIR FACTS_JSON -- CLI ARGS (e.g. --gui)

It calls tangram.cli.main with the CLI arguments, exactly as main.py does (so the platform check
runs first), wrapping gui.app.run_gui only to add a timer once Qt is up. The timer waits for the
main window to be exposed on the display, selects RUN_DIR under "Earlier runs" and presses Open,
waits for the tracking view to show a frame, writes two screenshots (the window by Qt's grab, the
X root window by QScreen.grabWindow(0)) and FACTS_JSON, then closes the window like a user.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

TIMEOUT_S = 120.0
_KEEP: list[Any] = []  # the polling timer lives as long as the process


def _drive(run_dir: Path, shots: Path, facts_path: Path) -> None:
    from PyQt6.QtCore import QTimer
    from PyQt6.QtGui import QGuiApplication
    from PyQt6.QtWidgets import QApplication, QPushButton

    from gui.main_window import MainWindow

    app = QApplication.instance()
    start = time.monotonic()
    state: dict[str, Any] = {"step": "wait_window"}
    facts: dict[str, Any] = {"platform": QGuiApplication.platformName()}

    def finish(window: MainWindow | None, error: str | None = None) -> None:
        facts["error"] = error
        facts["seconds"] = round(time.monotonic() - start, 1)
        facts_path.write_text(json.dumps(facts, indent=1))
        timer.stop()
        if window is not None:
            window.close()
        else:
            app.quit()

    def tick() -> None:
        windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        window = windows[0] if windows else None
        if time.monotonic() - start > TIMEOUT_S:
            finish(window, f"timed out at step {state['step']}")
            return
        if window is None or window.windowHandle() is None or not window.windowHandle().isExposed():
            return
        if state["step"] == "wait_window":
            facts["exposed_after_s"] = round(time.monotonic() - start, 1)
            facts["runs_listed"] = window.runs.run_names()
            items = [window.runs.list.item(i) for i in range(window.runs.list.count())]
            match = [it for it in items if Path(it.data(0x0100)).resolve() == run_dir]  # Qt.UserRole
            if not match:
                finish(window, f"{run_dir.name} is not listed under earlier runs")
                return
            window.runs.list.setCurrentItem(match[0])
            opens = [b for b in window.runs.findChildren(QPushButton) if b.text() == "Open"]
            opens[0].click()
            state["step"] = "wait_views"
            return
        tracks = window.views["tracking"]
        image = tracks.player.canvas.image()
        if not tracks.has_content() or image is None or image.isNull():
            return
        window.tabs.setCurrentWidget(tracks)
        app.processEvents()
        shots.mkdir(parents=True, exist_ok=True)
        facts["window_png"] = str(shots / "xcb_window.png")
        facts["screen_png"] = str(shots / "xcb_screen.png")
        facts["window_saved"] = window.grab().save(facts["window_png"])
        screen = window.screen()
        facts["screen_saved"] = screen.grabWindow(0).save(facts["screen_png"])
        geo = window.geometry()
        facts["window_geometry"] = [geo.x(), geo.y(), geo.width(), geo.height()]
        sgeo = screen.geometry()
        facts["screen_size"] = [sgeo.width(), sgeo.height()]
        facts["title"] = window.windowTitle()
        facts["banner"] = window.banner_text()
        facts["has_content"] = {stage: view.has_content() for stage, view in window.views.items()}
        facts["stage_status"] = {s: window.records[s]["status"] for s in window.records}
        facts["tracked_frames"] = tracks.frames.count if tracks.frames is not None else None
        masks = tracks.frames.masks if tracks.frames is not None else None
        facts["mask_keyframes"] = len(masks.keyframes) if masks else 0
        finish(window)

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(100)
    _KEEP.append(timer)


def main() -> int:
    sep = sys.argv.index("--")
    run_dir, shots, facts_path = (Path(a) for a in sys.argv[1:sep])
    cli_args = sys.argv[sep + 1:]

    import gui.app
    from tangram.cli import main as cli_main

    original = gui.app.run_gui

    def run_gui(*args: Any, **kwargs: Any) -> int:
        from PyQt6.QtWidgets import QApplication

        app = QApplication.instance() or QApplication(sys.argv[:1])  # run_gui reuses it
        assert app is not None
        _drive(run_dir.resolve(), shots, facts_path)
        return original(*args, **kwargs)

    gui.app.run_gui = run_gui
    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main())

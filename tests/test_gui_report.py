"""The GUI's "Open report in browser" action (Qt offscreen): the system browser is asked to open the
run's report.html, written first when the run folder has none. The URL handler Qt offers for this
stands in for the browser, so nothing is launched."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QObject, QUrl, pyqtSlot
from PyQt6.QtGui import QDesktopServices

from gui.main_window import MainWindow
from tangram.runner import Pipeline, default_input


class Browser(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @pyqtSlot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


@pytest.fixture
def browser():
    handler = Browser()
    QDesktopServices.setUrlHandler("file", handler, "open")
    yield handler
    QDesktopServices.unsetUrlHandler("file")


def test_open_report_writes_and_opens_it(qtbot, make_config, browser: Browser) -> None:
    config = make_config(tracking={"frame_stride": 5})
    run = Pipeline(config).run(default_input(), name="quick", until="tracking").run_dir
    (run / "report.html").unlink()  # the runner wrote one; the action writes it again when missing
    win = MainWindow(config)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.open_report_action.trigger()
    assert browser.urls == [] and "No run to report on yet" in win.banner_text()

    win.open_run(run)
    win.open_report_action.trigger()
    report = run / "report.html"
    assert [Path(u.toLocalFile()) for u in browser.urls] == [report.resolve()]
    assert report.is_file() and 'data-section="tracking" data-status="done"' in report.read_text()
    assert "Report opened in your browser" in win.banner_text()

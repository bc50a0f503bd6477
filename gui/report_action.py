"""The "Open report" action: a run's report.html in the system browser (tangram.report's public API)."""

from __future__ import annotations

import logging
from pathlib import Path

from PyQt6.QtCore import QUrl
from PyQt6.QtGui import QDesktopServices

from tangram.report import write_run_report
from tangram.report.common import REPORT_NAME

log = logging.getLogger(__name__)


def report_path(run_dir: Path) -> Path:
    """The run's report, written first when it is missing or older than the run's manifest."""
    report, manifest = run_dir / REPORT_NAME, run_dir / "manifest.json"
    if not report.is_file() or (manifest.is_file() and manifest.stat().st_mtime_ns > report.stat().st_mtime_ns):
        write_run_report(run_dir)
    return report


def open_report(run_dir: Path) -> tuple[bool, str]:
    """(opened, message for the banner)."""
    try:
        report = report_path(run_dir)
    except Exception as exc:  # a broken run folder is a message, not a crash
        log.warning("report for %s: %s", run_dir, exc)
        return False, f"Could not write the report of {run_dir}: {exc}"
    if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(report.resolve()))):
        return False, f"No browser could be started; open {report} yourself."
    return True, f"Report opened in your browser: {report}"

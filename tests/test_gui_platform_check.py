"""The --gui pre-flight check (issue 20): no display -> one line, exit 2; plugin check passes."""

import os
import subprocess
import sys
from pathlib import Path

from gui import platform_check

ROOT = Path(__file__).resolve().parents[1]


def test_no_display_one_line_exit_2() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "main.py", "--gui"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No display" in lines[0] and "QT_QPA_PLATFORM=offscreen" in lines[0]


def test_xcb_plugin_libraries_load() -> None:
    plugin = platform_check.xcb_plugin()
    assert plugin is not None
    assert platform_check.missing_libraries(plugin) == []

"""The desktop GUI on a real X display (issue 20): `python main.py --gui` under Xvfb with
QT_QPA_PLATFORM=xcb (not offscreen), so Qt loads its xcb platform plugin and its system libraries.

The sample scene's run (built-in clip, tracking + GrabCut segmentation) is opened through the
window's "Earlier runs" list; tests/gui_xcb_driver.py presses Open inside the GUI process and saves
test-artifacts/gui/xcb_window.png (Qt's grab) and xcb_screen.png (the X root window).
The fixture installs xvfb and the plugin's libraries (scripts/setup_gui.sh) when it runs as root on
Debian/Ubuntu, and skips only when Xvfb is absent and cannot be installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT
from xvfb import private_xvfb

from gui import platform_check
from tangram.runner import Pipeline, default_input

pytest.importorskip("PyQt6.QtWidgets")

SHOTS = ROOT / "test-artifacts" / "gui"
SCREEN = (1600, 1000)


def _install_xvfb() -> str | None:
    if shutil.which("Xvfb"):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "Xvfb is not installed and this is not root with apt-get (apt-get install xvfb)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-qq", "xvfb"], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "xvfb"]):
        subprocess.run(cmd, env=env, capture_output=True, timeout=600)
        if shutil.which("Xvfb"):
            return None
    return "Xvfb could not be installed with apt-get (offline?)"


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """A private Xvfb server (unix socket only, no TCP); yields its DISPLAY, stopped by its pid."""
    reason = _install_xvfb()
    if reason:
        pytest.skip(reason)
    plugin = platform_check.xcb_plugin()
    assert plugin is not None
    if platform_check.missing_libraries(plugin):  # the test setup installs them (root + apt)
        subprocess.run(["bash", str(ROOT / "scripts" / "setup_gui.sh")], timeout=600,
                       env={**os.environ, "TANGRAM_VENV": str(Path(sys.executable).parents[1])})
    with private_xvfb(*SCREEN) as display:
        yield display


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory, yolo_weights: str) -> Path:
    """The sample scene's run folder: tracking (every 5th frame) and GrabCut segmentation."""
    from tangram.settings import load_config

    exports = tmp_path_factory.mktemp("xcb") / "exports"
    config = load_config(env={}, overrides={
        "run": {"exports_dir": str(exports)},
        "tracking": {"weights": yolo_weights, "frame_stride": 5},
        "segmentation": {"backend": "grabcut"}})
    result = Pipeline(config).run(default_input(), name="sample", until="segmentation")
    assert result.ok
    return result.run_dir


def test_gui_on_real_x_display(xvfb: str, sample_run: Path, yolo_weights: str, tmp_path: Path) -> None:
    plugin = platform_check.xcb_plugin()
    assert plugin is not None and platform_check.missing_libraries(plugin) == [], \
        "scripts/setup_gui.sh did not make Qt's xcb plugin loadable"
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", TANGRAM_EXPORTS_DIR=str(sample_run.parent),
               TANGRAM_YOLO_WEIGHTS=yolo_weights)
    facts_path = tmp_path / "facts.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "gui_xcb_driver.py"), str(sample_run),
                           str(SHOTS), str(facts_path), "--", "--gui"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "qt.qpa" not in proc.stderr, proc.stderr[-3000:]  # no plugin warnings
    facts = json.loads(facts_path.read_text())
    assert facts["error"] is None, facts
    assert facts["platform"] == "xcb"
    assert facts["screen_size"] == list(SCREEN)
    assert "sample" in facts["runs_listed"] and facts["title"] == "TANGRAM: sample"
    assert facts["stage_status"] == {"tracking": "done", "segmentation": "done"}
    assert facts["has_content"]["tracking"]  # the video view: boxes, and masks on keyframes
    assert not facts["has_content"]["reconstruction"]  # not run: the view shows the reason
    assert facts["tracked_frames"] > 0 and facts["mask_keyframes"] > 0

    window = cv2.imread(facts["window_png"])
    screen = cv2.imread(facts["screen_png"])
    assert window is not None and screen is not None
    assert screen.shape[:2] == (SCREEN[1], SCREEN[0])
    x, y, w, h = facts["window_geometry"]
    assert window.shape[:2] == (h, w) and w >= 800 and h >= 600
    # the X server really shows the window: its region of the root window is what Qt painted,
    # and the rest of the screen is Xvfb's empty (black) root
    on_screen = screen[y:y + h, x:x + w].astype(np.int16)
    same = (np.abs(on_screen - window.astype(np.int16)).max(axis=2) <= 8).mean()
    assert same > 0.95, f"only {same:.1%} of the window's pixels are on the X screen"
    outside = screen.copy()
    outside[y:y + h, x:x + w] = 0
    assert outside.max() <= 8 or (outside.mean() < 1.0)
    assert window.std() > 20  # widgets, text and the video frame, not a blank grab

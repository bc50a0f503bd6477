"""The desktop GUI under QT_QPA_PLATFORM=offscreen (set in conftest): real runs on real data,
driven through the window's own buttons. Screenshots of every view go to test-artifacts/gui/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, real_file

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import Qt

from gui.main_window import MainWindow
from gui.views.base import describe_missing
from tangram.runner import load_manifest

SHOTS = ROOT / "test-artifacts" / "gui"
RUN_TIMEOUT_MS = 240_000
TASK = "go home"  # a task the offline planner parses; the Task field must reach plan.json


def _shot(widget, name: str) -> Path:
    from PyQt6.QtWidgets import QApplication

    QApplication.processEvents()  # pending layout requests (a banner that grew a line) before the grab
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"screenshot {path} not written"
    return path


def _image_array(view) -> np.ndarray:
    image = view.player.canvas.image()
    assert image is not None and not image.isNull()
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3)


@pytest.fixture
def window(qtbot, make_config):
    def make(**sections) -> MainWindow:
        win = MainWindow(make_config(**sections))
        qtbot.addWidget(win)
        win.show()
        qtbot.waitExposed(win)
        return win

    return make


def _run_and_wait(qtbot, win: MainWindow) -> None:
    with qtbot.waitSignal(win.run_ended, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(win.panel.run_button, Qt.MouseButton.LeftButton)


@pytest.mark.slow
def test_run_fills_every_view_and_reopens(qtbot, window, apple_video: Path) -> None:
    """The whole pipeline on the real apple video, started with the Run button; every view shows its
    stage's output, or the manifest's reason when the stage did not finish."""
    win = window(segmentation={"backend": "grabcut"})
    win.panel.input_edit.setText(str(apple_video))
    win.panel.name_edit.setText("apple")
    win.panel.task_edit.setText(TASK)
    started: list[tuple[str, str]] = []
    with qtbot.waitSignal(win.run_ended, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(win.panel.run_button, Qt.MouseButton.LeftButton)
        assert win.is_running() and not win.panel.run_button.isEnabled()
        win.worker.stage_started.connect(lambda stage, where: started.append((stage, where)))
    assert win.last_outcome == "done", win.banner_text()
    run_dir = Path(win.config.run.exports_dir) / "apple"
    records = load_manifest(run_dir)["stages"]
    assert records["tracking"]["status"] == "done"
    assert win.exit_code() == (0 if all(r["status"] == "done" for r in records.values()) else 1)
    assert ("tracking", "local") in started
    for stage, record in records.items():  # the table shows what the manifest says
        assert win.stage_table.status(stage) == record["status"]
        if record["status"] == "done":
            assert win.stage_table.where(stage) == record["where"]

    for stage, view in win.views.items():
        record = records.get(stage)
        if record and record["status"] == "done":
            assert view.has_content(), f"{stage}: {view.message()}"
        else:  # not installed yet, skipped or failed: the view says why, from the manifest
            assert view.message() == describe_missing(stage, record)
        win.tabs.setCurrentWidget(view)
        qtbot.wait(50)
        _shot(win, f"run_{stage}")
    _check_views(qtbot, win, run_dir, records)
    assert "tracking: done" in win.log_view.toPlainText()  # the live log got the runner's records

    # the run is listed under earlier runs; a fresh window opens it with the same content
    assert "apple" in win.runs.run_names()
    other = window()
    other.open_run(run_dir)
    for stage, view in other.views.items():
        assert view.has_content() == win.views[stage].has_content(), stage
    assert other.panel.name_edit.text() == "apple"
    assert other.panel.input_edit.text() == str(apple_video.resolve())


def _check_views(qtbot, win: MainWindow, run_dir: Path, records: dict) -> None:
    """Each view's content matches its artefacts (checked for the stages that finished)."""
    import json

    tracks = win.views["tracking"]
    assert tracks.frames is not None and tracks.frames.count == records["tracking"]["summary"]["tracked_frames"]
    assert tracks.frames.source_name == "input"
    assert _image_array(tracks).std() > 10  # a real picture, not a blank canvas

    done = {s for s, r in records.items() if r["status"] == "done"}
    if "reconstruction" in done:
        cloud = win.views["reconstruction"]
        objects = json.loads((run_dir / "reconstruction" / "objects.json").read_text())["objects"]
        assert cloud.counts["objects"] == len(objects)
        assert cloud.counts["points"] == records["reconstruction"]["summary"]["points3D"]
        assert cloud.shown_points > 0
        _drag_rotates_and_wheel_zooms(qtbot, cloud)
    if "scene_graph" in done:
        graph = win.views["scene_graph"]
        data = json.loads((run_dir / "scene_graph" / "scene_graph.json").read_text())
        assert graph.relations.topLevelItemCount() == len(data["edges"])
    if "planning" in done:
        plan = json.loads((run_dir / "planning" / "plan.json").read_text())
        assert win.views["planning"].step_count() == len(plan["actions"])
        assert plan["task"] == TASK  # the Task field reached the planner
    if "simulation" in done:
        sim = win.views["simulation"]
        result = json.loads((run_dir / "simulation" / "result.json").read_text())
        assert sim.action_count() == len(result["actions"])
        assert sim.frames is not None and sim.frames.count == result["video"]["frames"]
        assert _image_array(sim).std() > 5


def _drag_rotates_and_wheel_zooms(qtbot, cloud) -> None:
    from PyQt6.QtCore import QPoint

    win = cloud.window()
    win.tabs.setCurrentWidget(cloud)
    canvas = cloud.canvas
    azim, xlim = cloud.ax.azim, cloud.ax.get_xlim3d()
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=centre)
    for step in range(1, 6):
        qtbot.mouseMove(canvas, QPoint(centre.x() + 20 * step, centre.y()))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(centre.x() + 100, centre.y()))
    assert cloud.ax.azim != azim  # dragging turned the view
    from matplotlib.backend_bases import MouseEvent

    canvas.callbacks.process("scroll_event", MouseEvent("scroll_event", canvas, centre.x(), centre.y(), button="up",
                                                        step=1))
    assert np.ptp(cloud.ax.get_xlim3d()) < np.ptp(xlim)  # scrolling up zoomed in


@pytest.mark.slow
def test_masks_overlay_and_playback(qtbot, window, tmp_path: Path) -> None:
    desk = tmp_path / "desk"  # a copy: deleted below, as when a run folder moves to another machine
    shutil.copytree(real_file("tum_office_desk"), desk)
    win = window(segmentation={"backend": "grabcut", "keyframe_stride": 4})
    win.panel.input_edit.setText(str(desk))
    win.panel.name_edit.setText("masks")
    win.panel.set_mode("segment")
    _run_and_wait(qtbot, win)
    assert win.last_outcome == "done", win.banner_text()

    view = win.views["tracking"]
    keyframes = view.keyframe_positions()
    assert len(keyframes) >= 2
    win.tabs.setCurrentWidget(view)
    view.player.seek(keyframes[1])
    with_masks = _image_array(view).astype(int)
    _shot(win, "video_masks")
    view.masks_box.setChecked(False)
    without = _image_array(view).astype(int)
    changed = np.abs(with_masks - without).sum(axis=2) > 30
    assert changed.mean() > 0.01  # the masks cover a visible part of the frame
    view.masks_box.setChecked(True)

    view.player.seek(0)
    view.player.play()
    qtbot.waitUntil(lambda: view.player.position() >= 3, timeout=10_000)
    view.player.pause()
    assert not view.player.is_playing()
    view.player.slider.setValue(5)
    assert view.player.position() == 5
    assert view.player.caption.text().startswith(f"frame {view.frames.tracks.frame_indices[5]} ")

    # the input is gone: the view falls back to the tracker's preview video, masks still drawn
    shutil.rmtree(desk)
    win.open_run(Path(win.config.run.exports_dir) / "masks")
    view = win.views["tracking"]
    assert view.has_content()
    assert view.frames.source_name == "tracking preview"
    view.player.seek(keyframes[1])
    on_preview = _image_array(view).astype(int)
    assert on_preview.std() > 10
    view.masks_box.setChecked(False)
    assert (np.abs(_image_array(view).astype(int) - on_preview).sum(axis=2) > 30).mean() > 0.01


@pytest.mark.slow
def test_cancel_midway_then_resume(qtbot, window) -> None:
    desk = real_file("tum_office_desk")
    # a keyframe per tracked frame: segmentation reports progress often enough to cancel inside it
    win = window(segmentation={"backend": "grabcut", "keyframe_stride": 1, "max_keyframes": 3})
    win.panel.input_edit.setText(str(desk))
    win.panel.name_edit.setText("cancel_me")
    win.panel.set_mode("segment")

    def cancel_in_segmentation(stage: str, completed: float, total: float, text: str) -> None:
        if stage == "segmentation" and completed >= 1:
            win.cancel_run()

    with qtbot.waitSignal(win.run_ended, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(win.panel.run_button, Qt.MouseButton.LeftButton)
        win.worker.stage_progress.connect(cancel_in_segmentation)
    assert win.last_outcome == "cancelled", win.banner_text()
    assert "run again to resume" in win.banner_text().lower()
    assert win.stage_table.status("segmentation") == "cancelled"
    assert win.panel.run_button.isEnabled()
    _shot(win, "cancelled")

    run_dir = Path(win.config.run.exports_dir) / "cancel_me"
    manifest = load_manifest(run_dir)
    assert manifest["stages"]["tracking"]["status"] == "done"
    assert "segmentation" not in manifest["stages"]
    assert not list(run_dir.glob(".tmp-*")), "a cancelled stage left its temp folder"
    tracked_at = manifest["stages"]["tracking"]["finished_at"]

    _run_and_wait(qtbot, win)  # Run again: resumes
    assert win.last_outcome == "done", win.banner_text()
    manifest = load_manifest(run_dir)
    assert manifest["stages"]["tracking"]["finished_at"] == tracked_at  # reused, not re-run
    assert manifest["stages"]["segmentation"]["status"] == "done"
    assert "tracking: up to date" in win.log_view.toPlainText()
    assert win.views["tracking"].keyframe_positions()
    _shot(win, "resumed")


def test_bad_input_is_a_message_not_a_crash(qtbot, window, tmp_path: Path) -> None:
    win = window()
    win.panel.input_edit.setText(str(tmp_path / "no_such_video.mp4"))
    _run_and_wait(qtbot, win)
    assert win.last_outcome == "failed"
    assert win.banner.property("kind") == "error"
    assert "input not found" in win.banner_text()
    assert "Traceback" not in win.banner_text()
    assert win.panel.run_button.isEnabled() and not win.panel.cancel_button.isEnabled()
    assert win.stage_table.status("tracking") == "not run"  # nothing started: nothing to resume
    assert win.views["tracking"].message() == "Tracking has not run yet."
    _shot(win, "bad_input")

    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    win.panel.input_edit.setText(str(notes))
    _run_and_wait(qtbot, win)
    assert "cannot open video" in win.banner_text()


def test_open_folder_that_is_not_a_run(qtbot, window, tmp_path: Path) -> None:
    win = window()
    win.open_run(tmp_path)
    assert win.banner.property("kind") == "error"
    assert "not a TANGRAM run folder" in win.banner_text()


@pytest.mark.slow
def test_a_stage_that_fails_shows_its_reason(qtbot, window) -> None:
    """One photo: tracking and segmentation work, reconstruction fails (no parallax) and the later
    stages are skipped; each view shows the manifest's reason, and the one-frame video shows."""
    bus = real_file("bus.jpg")
    win = window(segmentation={"backend": "grabcut", "grabcut_iterations": 1})
    win.panel.input_edit.setText(str(bus))
    _run_and_wait(qtbot, win)
    assert win.last_outcome == "done", win.banner_text()
    assert win.banner.property("kind") == "warn"  # finished, but not every stage completed
    assert win.exit_code() == 1
    records = load_manifest(Path(win.config.run.exports_dir) / "bus")["stages"]
    assert records["reconstruction"]["status"] == "failed"
    assert win.views["reconstruction"].message() == f"Reconstruction failed: {records['reconstruction']['reason']}"
    assert "parallax" in win.views["reconstruction"].message()
    for stage in ("scene_graph", "planning", "simulation"):
        assert records[stage]["status"] == "skipped"
        assert win.views[stage].message().endswith(f"was skipped: {records[stage]['reason']}")
    assert win.stage_table.status("reconstruction") == "failed"
    video = win.views["tracking"]
    assert video.has_content() and video.frames.count == 1
    assert not video.player.play_button.isEnabled()  # nothing to play in one frame
    win.tabs.setCurrentWidget(win.views["reconstruction"])
    _shot(win, "failed_stage")


def test_views_explain_missing_stages(qtbot, window, tmp_path: Path, apple_video: Path) -> None:
    """A run folder whose stages failed or were skipped: each view shows the manifest's reason."""
    from tangram.fileio import write_json

    run_dir = tmp_path / "exports" / "broken"
    run_dir.mkdir(parents=True)
    write_json(run_dir / "manifest.json", {"run": "broken", "input": {"path": str(apple_video)}, "stages": {
        "tracking": {"status": "done", "backend": "ultralytics:x", "where": "local", "seconds": 1.0},
        "segmentation": {"status": "failed", "reason": "SAM checkpoint sam_vit_b.pth not found"},
        "reconstruction": {"status": "skipped", "reason": "needs segmentation failed"},
    }})
    win = window()
    win.open_run(run_dir)
    # tracking says done but its folder is gone: a sentence, not a traceback
    assert not win.views["tracking"].has_content()
    assert "tracks.json is missing" in win.views["tracking"].message()
    assert win.views["reconstruction"].message() == "Reconstruction was skipped: needs segmentation failed"
    assert win.stage_table.status("segmentation") == "failed"
    _shot(win, "missing_stages")


def test_thunder_light_is_grey_when_not_configured(qtbot, window) -> None:
    win = window(thunder={"enabled": False, "ssh_host": "", "ssh_user": ""})
    assert win.panel.thunder_state == "off"
    assert win.panel.thunder_status.text() in ("not configured", "not installed")
    win.panel.thunder_box.setChecked(True)  # switching on does not try to connect to nothing
    assert win.panel.thunder_state == "off"
    qtbot.mouseClick(win.panel.thunder_test, Qt.MouseButton.LeftButton)
    assert win.panel.thunder_state == "off"


def test_run_gui_entry_point_opens_and_closes(qtbot, make_config, apple_video: Path) -> None:
    """`main.py --gui` and `python -m gui` go through run_gui: presets land in the window."""
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from gui.app import run_gui

    seen: dict[str, object] = {}

    def inspect_and_close() -> None:
        win = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
        seen.update(input=win.panel.input_edit.text(), name=win.panel.name_edit.text(), mode=win.panel.mode(),
                    thunder=win.panel.thunder_box.isChecked())
        win.close()

    QTimer.singleShot(300, inspect_and_close)
    assert run_gui(make_config(), input_path=apple_video, name="preset", mode="track") == 0
    assert seen == {"input": str(apple_video), "name": "preset", "mode": "track", "thunder": False}


def test_python_m_gui_help() -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "gui", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--input" in proc.stdout and "--thunder" in proc.stdout


def test_ply_reader_reads_what_reconstruction_writes(tmp_path: Path) -> None:
    from gui.artefacts import read_ply
    from tangram.geometry.export import write_ply

    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(500, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(500, 3), dtype=np.uint8)
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    write_ply(tmp_path / "points.ply", xyz, rgb, faces)  # binary, with a face element after the vertices
    cloud = read_ply(tmp_path / "points.ply")
    np.testing.assert_array_equal(cloud.xyz, xyz.astype(np.float64))
    np.testing.assert_array_equal(cloud.rgb, rgb)

    ascii_ply = tmp_path / "ascii.ply"
    ascii_ply.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                         "property float z\nend_header\n0 1 2\n3.5 4 5\n")
    cloud = read_ply(ascii_ply)
    assert cloud.rgb is None
    np.testing.assert_allclose(cloud.xyz, [[0, 1, 2], [3.5, 4, 5]])


@pytest.mark.slow
def test_thunder_light_and_where_a_stage_ran(qtbot, request) -> None:
    """Against the loopback OpenSSH host of the Thunder tests: the light turns green from the real
    connection test, and an offloaded stage's row names the host it ran on."""
    try:
        make_thunder_config = request.getfixturevalue("thunder_config")
        request.getfixturevalue("worker_env")  # the worker installed once per session
    except pytest.FixtureLookupError:
        pytest.skip("the Thunder test fixtures (tests/thunder_fixtures.py) are not loaded")
    desk = real_file("tum_office_desk")
    win = MainWindow(make_thunder_config(offload="always"))
    qtbot.addWidget(win)
    win.show()
    assert win.panel.thunder_box.isChecked()  # config.thunder.enabled presets the switch
    qtbot.waitUntil(lambda: win.panel.thunder_state in ("ok", "error"), timeout=60_000)
    assert win.panel.thunder_state == "ok", win.panel.thunder_light.toolTip()
    assert win.panel.thunder_status.text().startswith("connected")
    _shot(win, "thunder_connected")

    win.panel.input_edit.setText(str(desk))
    win.panel.name_edit.setText("offloaded")
    win.panel.set_mode("segment")
    _run_and_wait(qtbot, win)
    assert win.last_outcome == "done", win.banner_text()
    records = load_manifest(Path(win.config.run.exports_dir) / "offloaded")["stages"]
    assert records["tracking"]["where"] == "local"  # not offloadable
    assert records["segmentation"]["where"] not in ("", "local"), records["segmentation"]
    assert win.stage_table.where("segmentation") == records["segmentation"]["where"]
    _shot(win, "thunder_run")


def test_dropping_a_file_sets_the_input(qtbot, window, apple_video: Path) -> None:
    from PyQt6.QtCore import QMimeData, QPoint, QPointF, QUrl
    from PyQt6.QtGui import QDragEnterEvent, QDropEvent

    win = window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(apple_video))])
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    enter.ignore()
    win.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    win.dropEvent(drop)
    assert win.panel.input_path() == apple_video


@pytest.mark.slow
def test_closing_the_window_mid_run_cancels_cleanly(qtbot, window, apple_video: Path) -> None:
    win = window()
    win.panel.input_edit.setText(str(apple_video))
    win.panel.name_edit.setText("closed")
    qtbot.mouseClick(win.panel.run_button, Qt.MouseButton.LeftButton)
    worker = win.worker
    qtbot.waitUntil(lambda: win.stage_table.bars["tracking"].value() > 0, timeout=60_000)
    win.close()  # cancels, waits for the worker thread, keeps what finished
    assert not worker.isRunning()
    assert worker.outcome == "cancelled"
    assert win.exit_code() == 130
    run_dir = Path(win.config.run.exports_dir) / "closed"
    assert "tracking" not in load_manifest(run_dir)["stages"]
    assert not list(run_dir.glob(".tmp-*"))

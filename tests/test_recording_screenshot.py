"""The sample run's recording.rrd in the Rerun viewer on a real X display (issue 18).

The viewer binary the rerun-sdk wheel ships (`rerun_cli/rerun`, what `tangram view` starts) runs under
a private Xvfb with its wgpu renderer on Mesa's software Vulkan (lavapipe, Debian's
`mesa-vulkan-drivers`, installed by scripts/setup_test_deps.sh). llvmpipe's OpenGL is not enough: the
viewer then exits with "Adapter does not support drawing to texture format R32Float".
The picture is the viewer's own `--screenshot-to` (it reads back the frame it drew and quits): an
X-side grab of the window (xwd, PIL's ImageGrab) stays black here, under Xvfb as under Xvnc, because
lavapipe's presented frames never reach the X server's copy of the window.

A blueprint (.rbl, the viewer's own layout format) shows one 3D view of `world` on a white background
without the grid, so the white area locates the 3D view in the screenshot without any pixel
coordinates, and everything non-white inside it was drawn from the recording. The check: the view
fills most of the window; the sparse points' own colours (reconstruction/points.ply) are on screen
to within 2/255 for hundreds of different points (the viewer's dark UI matches ~40 of them, all
greys); the Panda's arm (its line-strip colour, 240/120/40) is drawn. The PNG is kept as
test-artifacts/rerun_viewer.png.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from scipy.spatial import cKDTree
from xvfb import private_xvfb

from tangram.recording.run import RunFolder

rerun_cli = pytest.importorskip("rerun_cli")
rrb = pytest.importorskip("rerun.blueprint")

SHOT = ROOT / "test-artifacts" / "rerun_viewer.png"
WINDOW = (960, 600)  # logical points; the screenshot comes back at the viewer's 2 pixels per point
BACKGROUND = (255, 255, 255)
ARM = (240, 120, 40)  # tangram/recording/rerun.py: world/robot/arm
LAVAPIPE = "/usr/share/vulkan/icd.d/lvp_icd.*.json"
SETUP = "run `bash scripts/setup_test_deps.sh` as root (it installs xvfb and mesa-vulkan-drivers)"


@pytest.fixture()
def xvfb() -> Iterator[str]:
    """A private Xvfb (unix socket only), its DISPLAY; stopped by its pid afterwards. The screen is 4x
    the window so that the pointer, at its centre, is off the window (no hover tooltips)."""
    assert shutil.which("Xvfb"), f"Xvfb is not installed: {SETUP}"
    with private_xvfb(4 * WINDOW[0], 4 * WINDOW[1]) as display:
        yield display


def _viewer_screenshot(rrd: Path, blueprint: Path, out: Path, display: str, home: Path) -> str:
    """The viewer opens rrd with blueprint, writes its screenshot to out and quits; returns its log.
    Killed (its whole process group) after 60 s."""
    exe = Path(rerun_cli.__file__).parent / "rerun"
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "RERUN_CLI_PATH")}
    env.update(DISPLAY=display, WGPU_BACKEND="vulkan", XDG_RUNTIME_DIR=str(home), HOME=str(home),
               RUST_LOG="warn")
    cmd = [str(exe), "--bind", "127.0.0.1", "--port", "auto", "--hide-welcome-screen",
           "--window-size", f"{WINDOW[0]}x{WINDOW[1]}", "--screenshot-to", str(out), str(rrd), str(blueprint)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"the Rerun viewer did not save its screenshot within 60 s:\n{log[-3000:]}")
    assert proc.returncode == 0 and out.is_file(), f"the Rerun viewer failed (status {proc.returncode}):\n{log[-3000:]}"
    return log


@pytest.mark.slow
def test_rerun_viewer_shows_the_3d_view(sample_run: Path, xvfb: str, tmp_path: Path) -> None:
    assert glob.glob(LAVAPIPE), f"no software Vulkan driver (lavapipe) at {LAVAPIPE}: {SETUP}"
    rrd = sample_run / "recording.rrd"
    assert rrd.is_file()
    blueprint = tmp_path / "world.rbl"
    rrb.Blueprint(rrb.Spatial3DView(origin="/world", name="world", background=list(BACKGROUND), line_grid=False),
                  collapse_panels=True).save("tangram", blueprint)  # write_rrd's application id
    out = tmp_path / "viewer.png"
    t0 = time.perf_counter()
    log = _viewer_screenshot(rrd, blueprint, out, xvfb, tmp_path)
    seconds = time.perf_counter() - t0
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, SHOT)
    assert "app creation error" not in log, log[-3000:]

    image = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    h, w, _ = image.shape
    assert (w, h) in {(WINDOW[0], WINDOW[1]), (2 * WINDOW[0], 2 * WINDOW[1])}, (w, h)
    # the 3D view: the rows and columns that are mostly its white background
    white = (image >= np.array(BACKGROUND) - 4).all(axis=-1)
    rows = np.flatnonzero(white.mean(axis=1) > 0.3)
    cols = np.flatnonzero(white.mean(axis=0) > 0.3)
    assert len(rows) and len(cols), f"no white 3D view in {SHOT} (blueprint not applied?)"
    view = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    view_white = white[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    assert view.shape[0] * view.shape[1] > 0.6 * h * w, (view.shape, (h, w))  # the one view fills the window
    drawn = view[~view_white]
    assert 0.005 < len(drawn) / view_white.size < 0.6, len(drawn) / view_white.size  # something, not noise

    # the recording's own colours: the sparse points, point by point
    points = RunFolder(sample_run).points()
    assert points is not None
    colours = np.unique(points[1], axis=0)
    dist, nearest = cKDTree(colours.astype(float)).query(drawn.astype(float))
    hit = len(np.unique(nearest[dist <= 2]))
    assert hit > max(100, 0.2 * len(colours)), (hit, len(colours))
    # the Panda's arm at the viewer's first sim_time
    arm = int((np.abs(view - np.array(ARM)).sum(axis=-1) < 40).sum())
    assert arm > 0.0005 * view_white.size, arm
    print(f"viewer screenshot {w}x{h} in {seconds:.1f} s: view {view.shape[1]}x{view.shape[0]}, "
          f"{len(drawn) / view_white.size:.1%} drawn, {hit}/{len(colours)} point colours, {arm} arm pixels")


def _quat_yaw(q: Any) -> float:
    return float(np.arctan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z)))


def _footprint(pose: Any, scale: Any) -> np.ndarray:
    """The x-y corners (5, closed) of a box marker in its frame."""
    yaw = _quat_yaw(pose.orientation)
    c, s = np.cos(yaw), np.sin(yaw)
    half = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1], [1, 1]]) * [scale.x / 2, scale.y / 2]
    return half @ np.array([[c, s], [-s, c]]) + [pose.position.x, pose.position.y]


@pytest.mark.slow
def test_mcap_picture_from_its_own_messages(sample_run: Path) -> None:
    """The README's Foxglove/ROS 2 picture, drawn with matplotlib from robot.mcap's decoded ROS 2
    messages only (no Foxglove here): top-down in the table frame, /scene/objects boxes, /tf paths of
    the hand and the objects; /joint_states over simulation time with /sim/actions. Kept as
    test-artifacts/robot_mcap.png; the plan's object ends inside its target's box on /tf."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    topics: dict[str, list[tuple[int, Any]]] = {}
    with open(sample_run / "simulation" / "robot.mcap", "rb") as stream:
        for _, channel, message, decoded in make_reader(
                stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            topics.setdefault(channel.topic, []).append((message.log_time, decoded))
    states = [m for _, m in topics["/joint_states"]]
    t0 = states[0].header.stamp.sec + states[0].header.stamp.nanosec * 1e-9
    t = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in states]) - t0
    joints = np.array([m.position for m in states])
    paths: dict[str, list[tuple[float, float]]] = {}
    for _, tf in topics["/tf"]:
        for tr in tf.transforms:
            paths.setdefault(tr.child_frame_id, []).append((tr.transform.translation.x, tr.transform.translation.y))
    markers = topics["/scene/objects"][0][1].markers
    boxes = {m.id: m for m in markers if m.ns == "objects"}
    table = next(m for m in markers if m.ns == "table")
    base = next(tr.transform.translation for tr in topics["/tf_static"][0][1].transforms
                if tr.child_frame_id == "panda_link0")
    atom = json.loads(topics["/plan"][0][1].data)["goal"]["atoms"][0]

    fig, (top, right) = plt.subplots(1, 2, figsize=(12, 5.6), gridspec_kw={"width_ratios": [1, 1.4]})
    top.fill(*_footprint(table.pose, table.scale).T, color=(table.color.r, table.color.g, table.color.b), alpha=0.35,
             label="table (/scene/objects)")
    for i, m in boxes.items():
        rgb = (m.color.r, m.color.g, m.color.b)
        top.plot(*_footprint(m.pose, m.scale).T, color=rgb, lw=2)
        top.annotate(m.text or str(i), (m.pose.position.x, m.pose.position.y), fontsize=8, ha="center")
        path = np.array(paths[f"object_{i}"])
        if np.ptp(path, axis=0).max() > 0.01:
            top.plot(*path.T, "--", color=rgb, lw=1.5, label=f"object_{i} on /tf")
    hand = np.array(paths["panda_hand"])
    top.plot(*hand.T, color="k", lw=1, label="panda_hand on /tf")
    top.plot(base.x, base.y, "ks", label="panda_link0 (/tf_static)")
    top.set(aspect="equal", xlabel="x in table frame [m]", ylabel="y [m]", title="top-down: markers and /tf")
    top.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    for k, name in enumerate(states[0].name[:7]):
        right.plot(t, joints[:, k], label=name)
    for stamp, action in topics["/sim/actions"]:
        x = stamp * 1e-9 - t0
        right.axvline(x, color="0.6", lw=0.8)
        right.annotate(action.data, (x, 0.98), xycoords=("data", "axes fraction"), fontsize=8, va="top",
                       ha="left", bbox={"fc": "white", "ec": "none", "alpha": 0.8})
    right.set(xlabel="simulation time [s]", ylabel="joint position [rad]")
    right.set_title("/joint_states (arm) and /sim/actions")
    right.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 0.12))
    fig.suptitle(f"{sample_run.name}/simulation/robot.mcap read back with mcap_ros2 (drawn with matplotlib)")
    fig.tight_layout()
    picture = ROOT / "test-artifacts" / "robot_mcap.png"
    picture.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(picture, dpi=110)
    plt.close(fig)

    assert len(states) == len(topics["/tf"]) and t[-1] > 1.0 and joints.shape[1] == 9
    # the plan's object, on its last /tf, inside its target's measured box (x-y)
    from matplotlib.path import Path as Outline

    target = boxes[int(atom["target"])]
    assert Outline(_footprint(target.pose, target.scale)).contains_point(paths[f"object_{atom['object']}"][-1]), atom

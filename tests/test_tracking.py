"""Tracking on real video: one apple, one id, every frame; preview video in H.264."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tangram.runner import Pipeline
from tangram.stages.tracking import Tracks


def test_apple_orbit_yields_one_apple_track_over_the_whole_video(make_config, apple_video: Path) -> None:
    result = Pipeline(make_config()).run(apple_video, name="apple", until="tracking")
    tracks = Tracks.load(result.run_dir / "tracking")
    summary = tracks.track_summary()
    apples = {tid: t for tid, t in summary.items() if t["class_name"] == "apple"}
    assert len(apples) == 1, summary
    (apple,) = apples.values()
    assert apple["num_frames"] == 50 and apple["first_frame"] == 0 and apple["last_frame"] == 49
    assert tracks.video["num_frames"] == 50 and tracks.video["width"] == 1296

    preview = result.run_dir / "tracking/preview.mp4"
    cap = cv2.VideoCapture(str(preview))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert fourcc in {"avc1", "h264"}  # H.264 through imageio-ffmpeg
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 50
    cap.release()


def test_coffee_static_camera_keeps_one_cup_id(make_config) -> None:
    from conftest import real_file

    video = real_file("coffee_static_camera.mp4")
    result = Pipeline(make_config(tracking={"write_preview": False})).run(video, name="coffee", until="tracking")
    summary = Tracks.load(result.run_dir / "tracking").track_summary()
    cups = {tid: t for tid, t in summary.items() if t["class_name"] == "cup"}
    assert len(cups) == 1, summary
    (cup,) = cups.values()
    assert cup["num_frames"] >= 0.8 * result.manifest["stages"]["tracking"]["summary"]["frames"]


def test_frame_stride_and_image_folder(make_config, tmp_path: Path) -> None:
    from conftest import real_file

    folder = real_file("tum_office_desk")
    result = Pipeline(make_config(tracking={"frame_stride": 4})).run(folder, name="tum", until="tracking")
    tracks = Tracks.load(result.run_dir / "tracking")
    assert sorted(tracks.frames) == [0, 4, 8, 12, 16]
    classes = {t["class_name"] for t in tracks.track_summary().values()}
    assert classes & {"bottle", "teddy bear", "cup", "book", "keyboard", "tv", "mouse"}, classes


@pytest.mark.slow
def test_4k_video_streams_within_memory(tmp_path: Path, yolo_weights: str) -> None:
    """A 4K video is decoded one frame at a time: peak memory stays far below the decoded video."""
    video = tmp_path / "uhd.mp4"
    from tangram.video import VideoWriter

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (216, 384, 3), dtype=np.uint8), (3840, 2160))
    with VideoWriter(video, 10, (3840, 2160)) as writer:
        for i in range(40):  # 40 decoded 4K frames = 1.0 GB if held in memory
            writer.write(np.roll(base, 8 * i, axis=1))
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (this big pytest
    # process) across exec, while VmHWM belongs to the new address space alone.
    code = (
        "import re, sys; from tangram.cli import main; rc = main(sys.argv[1:]); "
        "print('RSS', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, "--input", str(video), "--mode", "track",
                           "--exports-dir", str(tmp_path / "exports"), "--yolo-weights", yolo_weights],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split("RSS")[-1]) / 1024
    print(f"4K tracking peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 1800, f"peak RSS {peak_mb:.0f} MB: frames are being held in memory"

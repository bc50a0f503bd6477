"""Tracking on real video: one apple, one id, every frame; preview video in H.264."""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
    summary = result.manifest["stages"]["tracking"]["summary"]
    # the int8 TFLite is exported at batch 1: one frame per call; one id, so the pass's preview is final
    assert summary["detector_batch"] == {"frames_per_call": 1, "network_batch": 1}
    assert summary["preview"] == "drawn in the tracking pass"
    assert sorted(p.name for p in (result.run_dir / "tracking").iterdir()) == [
        "preview.mp4", "raw_tracks.json", "tracker.yaml", "tracks.json"]  # no spool or raw-id video left

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


# Ultralytics' AutoBackend format for each of TANGRAM's detector runtimes
_ULTRALYTICS_FORMAT = {"pytorch": "pt", "onnx": "onnx", "tflite": "litert"}


@pytest.mark.parametrize("weights", ["yolov8n_int8.tflite", "yolov8n_int8.onnx", "yolov8n.pt"])
def test_make_detector_runs_each_weights_file_on_its_runtime(weights: str, tmp_path: Path) -> None:
    """Every detector file on this machine loads on the runtime its suffix names, and tracks a real
    photo (bus.jpg: one bus and four people) through that runtime."""
    from conftest import real_file
    from ultralytics.utils import YAML

    from config import TrackingConfig
    from tangram.models import find_local
    from tangram.stages.tracking import make_detector, tracker_settings

    trained = find_local(weights) is not None
    if not trained:
        # No trained .pt offline: Ultralytics builds the same network from its yolov8n.yaml with
        # untrained weights, saved as a real .pt; the runtime is then checked, not the detections.
        from ultralytics import YOLO

        assert Path(weights).suffix == ".pt", f"{weights} should be in ../shared/models"
        YOLO("yolov8n.yaml").save(tmp_path / weights)
        weights = str(tmp_path / weights)
    cfg = TrackingConfig(weights=weights)
    detector = make_detector(cfg)
    expected = {".tflite": "tflite", ".onnx": "onnx", ".pt": "pytorch"}[Path(weights).suffix]
    assert detector.runtime == expected and detector.backend == f"ultralytics:{Path(weights).name}"
    assert detector.reid_features() is (expected == "pytorch")  # exports carry no PyTorch features
    settings, _ = tracker_settings(cfg, 30.0, detector)
    YAML.save(tmp_path / "tracker.yaml", settings)
    dets = detector.track(cv2.imread(str(real_file("bus.jpg"))), tmp_path / "tracker.yaml", cfg)
    assert detector.model.predictor.model.format == _ULTRALYTICS_FORMAT[expected]  # the runtime that ran
    names = sorted(d.class_name for d in dets)
    if trained:
        assert names.count("bus") == 1 and names.count("person") >= 3, names


def test_make_detector_names_what_is_wrong_with_the_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from config import TrackingConfig
    from tangram.errors import TangramError
    from tangram.settings import load_config
    from tangram.stages import tracking
    from tangram.stages.tracking import DETECTOR_RUNTIMES, DetectorRuntime, detector_runtime, make_detector

    assert [detector_runtime(w).name for w in ("a.pt", "b.onnx", "c.TFLITE")] == ["pytorch", "onnx", "tflite"]
    with pytest.raises(TangramError, match=r"YOLO weights not found: .*missing\.onnx"):
        make_detector(TrackingConfig(weights=str(tmp_path / "missing.onnx")))
    engine = tmp_path / "yolov8n.engine"
    engine.write_bytes(b"TensorRT plan")
    with pytest.raises(TangramError, match=r"unsupported YOLO weights format: .*yolov8n\.engine .*onnx \(\.onnx\)"):
        make_detector(TrackingConfig(weights=str(engine)))
    garbage = tmp_path / "garbage.pt"  # PyTorch weights load at once (exports on their first frame)
    garbage.write_bytes(b"not a model")
    with pytest.raises(TangramError, match="cannot load YOLO weights"):
        make_detector(TrackingConfig(weights=str(garbage)))
    garbage = garbage.rename(tmp_path / "garbage.onnx")
    # a runtime package that is not installed: named, with what to install
    monkeypatch.setitem(DETECTOR_RUNTIMES, ".onnx", DetectorRuntime("onnx", "no_such_runtime_module", "onnxruntime"))
    with pytest.raises(TangramError, match="need the onnx runtime: pip install onnxruntime"):
        tracking.preflight(load_config(env={}, overrides={"tracking": {"weights": str(garbage)}}))


def test_sample_preview_is_redrawn_with_the_stitched_labels(sample_run: Path) -> None:
    """On the sample, stitching's class vote relabels detections: the preview is redrawn from the
    frames kept in the tracking pass (the video is not decoded again), one frame per tracked frame."""
    summary = json.loads((sample_run / "manifest.json").read_text())["stages"]["tracking"]["summary"]
    assert summary["preview"].startswith("redrawn from the kept frames: stitching relabelled ")
    cap = cv2.VideoCapture(str(sample_run / "tracking/preview.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["tracked_frames"]
    cap.release()


@pytest.mark.parametrize("runtime", ["tflite", "pytorch"])
def test_batched_tracking_equals_frame_by_frame(runtime: str, apple_video: Path, yolo_weights: str,
                                                tmp_path: Path) -> None:
    """Frames in lists of 4 give the same ids and boxes as one call per frame: the tracker is updated
    frame by frame in order. The int8 TFLite is fixed at batch 1 (Ultralytics runs a list one frame
    at a time); PyTorch runs the list as one network batch (an untrained yolov8n from Ultralytics'
    yaml at conf 0: hundreds of boxes per frame)."""
    from ultralytics.utils import YAML

    from config import TrackingConfig
    from tangram.media import open_media
    from tangram.stages.tracking import make_detector, tracker_settings

    frames = [frame for _, frame in open_media(apple_video).frames(indices=range(8))]
    if runtime == "pytorch":
        from ultralytics import YOLO

        YOLO("yolov8n.yaml").save(tmp_path / "yolov8n.pt")
        cfg = TrackingConfig(weights=str(tmp_path / "yolov8n.pt"), conf=0.0, low_conf=0.0)
    else:
        cfg = TrackingConfig(weights=yolo_weights)
    runs = []
    for size in (1, 4):
        detector = make_detector(cfg)
        settings, _ = tracker_settings(cfg, 30.0, detector)
        YAML.save(tmp_path / "tracker.yaml", settings)
        runs.append([dets for i in range(0, 8, size)
                     for dets in detector.track_batch(frames[i:i + size], tmp_path / "tracker.yaml", cfg)])
        assert detector.network_batch() == (None if runtime == "pytorch" else 1)
    single, batched = runs
    assert [[d.track_id for d in dets] for dets in single] == [[d.track_id for d in dets] for dets in batched]
    for a, b in zip((d for dets in single for d in dets), (d for dets in batched for d in dets), strict=True):
        assert a.class_id == b.class_id and a.box_xyxy == pytest.approx(b.box_xyxy, abs=0.05)
        assert a.confidence == pytest.approx(b.confidence, abs=2e-4)
    assert sum(map(len, single)) >= (5 if runtime == "tflite" else 500)  # the apple from its 2nd frame


def test_prefetch_and_preview_spool_bound_memory(tmp_path: Path) -> None:
    """The decoding thread runs at most `depth` items ahead, hands its errors over and stops when the
    consumer leaves; the preview spool keeps frames in memory up to its budget, then as JPEG on disk."""
    import threading

    from tangram.stages.tracking import PreviewSpool, prefetch

    produced: list[int] = []

    def numbers(n: int):
        for i in range(n):
            produced.append(i)
            yield i

    it = prefetch(numbers(100), depth=3)
    assert next(it) == 0
    time.sleep(0.5)
    assert len(produced) == 5  # 1 taken + 3 queued + 1 waiting to be put, and no more
    it.close()  # leaving early stops the thread
    assert not any(t.name == "tangram-decode" for t in threading.enumerate())

    def failing():
        yield 1
        raise ValueError("corrupt frame")

    with pytest.raises(ValueError, match="corrupt frame"):
        list(prefetch(failing(), depth=2))

    rng = np.random.default_rng(1)
    frames = [cv2.resize(rng.integers(0, 255, (36, 64, 3), dtype=np.uint8), (1296, 720)) for _ in range(4)]
    spool = PreviewSpool(tmp_path, memory_bytes=2 * 960 * 534 * 3, size=(960, 534))
    for i, frame in enumerate(frames):
        small, stored = spool.shrink(frame)
        assert small.shape == (534, 960, 3) and (stored is small) == (i < 2)  # 2 fit the budget, 2 spill
        assert spool.add(10 + i, stored, frame.shape) == pytest.approx((960 / 1296, 534 / 720))
    kept = list(spool)
    assert [i for i, _, _ in kept] == [10, 11, 12, 13]
    expected = cv2.resize(frames[3], (960, 534), interpolation=cv2.INTER_LINEAR)
    assert kept[3][1].shape == (534, 960, 3) and np.abs(kept[3][1].astype(int) - expected).mean() < 3  # JPEG
    spool.close()
    assert list(tmp_path.iterdir()) == []  # the spool file is anonymous: nothing left behind


def test_litert_detector_runs_on_every_core_with_the_same_detections(apple_video: Path, yolo_weights: str,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ultralytics builds LiteRT's interpreter on the machine's cores less one (one core on a 2-core
    machine); TANGRAM's detector asks for `tracking.inference_threads` (default: every usable core)
    while its interpreter is built, and leaves Ultralytics' own setting as it was. The detections
    are the same on 1 thread and on 2."""
    from ai_edge_litert import interpreter as litert_interpreter
    from ultralytics.nn.backends import litert
    from ultralytics.utils import YAML

    from config import TrackingConfig
    from tangram.execution import warm
    from tangram.media import open_media
    from tangram.stages.tracking import make_detector, tracker_settings, usable_cores

    built: list[int] = []
    original = litert_interpreter.Interpreter.__init__

    def spy(self, *args, **kwargs):  # records the thread count, builds the real interpreter
        built.append(kwargs.get("num_threads"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(litert_interpreter.Interpreter, "__init__", spy)
    before = litert.NUM_THREADS
    frames = [frame for _, frame in open_media(apple_video).frames(indices=range(6))]
    runs = []
    assert not warm.enabled()  # a fresh detector (and interpreter) for each setting
    for threads in (1, 2, None):
        cfg = TrackingConfig(weights=yolo_weights, inference_threads=threads)
        detector = make_detector(cfg)
        settings, _ = tracker_settings(cfg, 30.0, detector)
        YAML.save(tmp_path / "tracker.yaml", settings)
        runs.append([[(d.track_id, d.class_id, d.box_xyxy) for d in dets]
                     for f in frames for dets in [detector.track(f, tmp_path / "tracker.yaml", cfg)]])
    assert built == [1, 2, usable_cores()]
    assert before == litert.NUM_THREADS  # Ultralytics keeps its own setting for other models
    assert runs[0] == runs[1] == runs[2] and sum(map(len, runs[0])) >= 4

"""Offline tracklet stitching (tangram.tracklets) and the tracking stage's artefacts around it.

The unit tests build fragment sets the way a tracker loses an object (a gap, a new id, a class
flicker); the stage tests run the real detector and tracker on real clips and on the occlusion
scenario, whose ground truth is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from config import TrackingConfig
from tangram.fileio import read_json, write_json
from tangram.tracklets import CONFUSABLE_GROUPS, StitchConfig, confusable, id_summary, stitch


@dataclass
class Det:
    track_id: int
    class_id: int
    class_name: str
    confidence: float
    box_xyxy: list[float]


def _moving(track_id: int, frames: range, name: str = "cup", x0: float = 100.0, vx: float = 4.0,
            conf: float = 0.8, size: float = 60.0) -> dict[int, list[Det]]:
    """One box of `size` px moving `vx` px per frame from x0 at frame 0."""
    return {f: [Det(track_id, 41 if name == "cup" else 39, name, conf,
                    [x0 + vx * f, 200.0, x0 + vx * f + size, 200.0 + size])] for f in frames}


def _union(*parts: dict[int, list[Det]]) -> dict[int, list[Det]]:
    out: dict[int, list[Det]] = {}
    for part in parts:
        for f, dets in part.items():
            out.setdefault(f, []).extend(dets)
    return out


CFG = StitchConfig(fps=10.0)


def test_confusable_groups_are_symmetric_and_narrow() -> None:
    assert confusable("cup", "bottle") and confusable("bottle", "cup")
    assert confusable("dining table", "bed") and confusable("sandwich", "bowl")
    assert confusable("chair", "chair")
    assert not confusable("cup", "chair") and not confusable("dining table", "cup")
    assert not confusable("bottle", "bowl")  # vase is in both groups, but that makes no chain
    assert all(len(group) >= 2 for group in CONFUSABLE_GROUPS.values())


def test_fragment_after_a_gap_joins_with_class_flicker_and_vote() -> None:
    # A cup tracked 0-19, lost for 6 frames (occluded), found again as a "bottle" for 3 frames and
    # a cup after: three raw ids, one object; the vote says cup; the id is the smallest raw id.
    frames = _union(_moving(7, range(0, 20)), _moving(12, range(26, 29), "bottle", conf=0.4),
                    _moving(15, range(29, 50)))
    result = stitch(frames, CFG)
    assert list(result.objects) == [7]
    obj = result.objects[7]
    assert obj.members == (7, 12, 15) and obj.class_name == "cup" and obj.class_id == 41
    assert obj.class_votes["bottle"] == pytest.approx(1.2)
    assert result.final_of == {7: 7, 12: 7, 15: 7}
    assert len(result.joins) == 2


def test_never_joins_tracks_seen_in_the_same_frame() -> None:
    # Two cups side by side (the second overlaps the first's time span by one frame only).
    frames = _union(_moving(1, range(0, 20)), _moving(2, range(19, 40), x0=100 + 4 * 19 + 2))
    assert len(stitch(frames, CFG).objects) == 2


def test_a_fragment_may_fill_a_gap_of_another() -> None:
    # The tracker lost id 1 for frames 20-24 and a short id 9 covered them: one object.
    main = {f: d for f, d in _moving(1, range(0, 50)).items() if not 20 <= f < 25}
    frames = _union(main, _moving(9, range(20, 25)))
    result = stitch(frames, CFG)
    assert result.objects[1].members == (1, 9)


@pytest.mark.parametrize("change", ["far", "class", "gap", "size", "appearance"])
def test_no_join_when_one_cue_disagrees(change: str) -> None:
    start = {"far": 26, "class": 26, "gap": 26 + 40, "size": 26, "appearance": 26}[change]
    x0 = 100.0 + (300.0 if change == "far" else 0.0)
    second = _moving(5, range(start, start + 20), "chair" if change == "class" else "cup", x0=x0,
                     size=150.0 if change == "size" else 60.0)
    frames = _union(_moving(1, range(0, 20)), second)
    hists = {1: np.eye(1, 128, 3).ravel(), 5: np.eye(1, 128, 3 if change != "appearance" else 90).ravel()}
    result = stitch(frames, CFG, lambda ids: hists[ids[0]] if len(ids) == 1 else None)
    assert len(result.objects) == 2, result.joins


def test_gap_limit_is_in_seconds_not_frames() -> None:
    # The same 1.5 s gap: 15 frames at 10 fps, 45 at 30 fps. Both join under a 2 s limit.
    for fps, gap in ((10.0, 15), (30.0, 45)):
        frames = _union(_moving(1, range(0, 20), vx=0.0), _moving(2, range(20 + gap, 40 + gap), vx=0.0))
        assert len(stitch(frames, StitchConfig(fps=fps, max_gap_s=2.0)).objects) == 1
        assert len(stitch(frames, StitchConfig(fps=fps, max_gap_s=1.0)).objects) == 2


def test_track_buffer_is_converted_from_seconds(yolo_weights: str) -> None:
    from tangram.stages.tracking import make_detector, tracker_settings

    detector = make_detector(TrackingConfig(weights=yolo_weights))
    settings, reid = tracker_settings(TrackingConfig(track_buffer_s=2.0, frame_stride=3), 30.0, detector)
    assert settings["track_buffer"] == 20  # 2 s of a 30 fps video tracked every 3rd frame
    assert settings["tracker_type"] == "botsort" and settings["track_low_thresh"] == 0.1
    # the int8 TFLite detector has no PyTorch features: ReID falls back, and says why
    assert settings["with_reid"] is False and reid["enabled"] is False and "PyTorch" in reid["reason"]
    bytetrack, reid = tracker_settings(TrackingConfig(tracker="bytetrack.yaml"), 10.0, detector)
    assert bytetrack["track_buffer"] == 20 and "gmc_method" not in bytetrack and not reid["enabled"]


def test_format_1_files_still_load(tmp_path: Path) -> None:
    from tangram.stages.tracking import Tracks

    write_json(tmp_path / "tracks.json", {
        "format": "tangram.tracks/1", "backend": "ultralytics:x.pt", "tracker": "bytetrack.yaml",
        "video": {"fps": 10}, "frame_stride": 1,
        "frames": [{"frame_index": 0, "detections": [{"track_id": 3, "class_id": 41, "class_name": "cup",
                                                       "confidence": 0.9, "box_xyxy": [0, 0, 10, 10]}]}],
        "tracks": {"3": {"class_name": "cup", "num_frames": 1, "first_frame": 0, "last_frame": 0,
                         "mean_confidence": 0.9}}})
    tracks = Tracks.load(tmp_path)
    assert tracks.frames[0][0].raw_track_id is None
    assert tracks.track_summary()["3"]["members"] == [3]
    assert id_summary(tmp_path) == {"raw": 1, "final": 1, "per_class": {"cup": {"raw": 1, "final": 1}}}


@pytest.fixture(scope="module")
def hololens_tracking(tmp_path_factory: pytest.TempPathFactory, yolo_weights: str) -> Path:
    from conftest import real_file

    from tangram.runner import Pipeline
    from tangram.settings import load_config

    video = real_file("hololens_office.mp4")
    config = load_config(env={}, overrides={"run": {"exports_dir": str(tmp_path_factory.mktemp("exports"))},
                                            "tracking": {"weights": yolo_weights}})
    result = Pipeline(config).run(video, name="hololens", until="tracking")
    assert result.ok, result.manifest
    return result.run_dir / "tracking"


def test_stitching_real_tracker_output(hololens_tracking: Path) -> None:
    """hololens_office: the tracker's raw ids fragment; the final ids are fewer, each is one raw
    id or a union of raw ids never seen in the same frame, and the artefacts agree."""
    from tangram.stages.tracking import Tracks

    final, raw = Tracks.load(hololens_tracking), Tracks.load(hololens_tracking, "raw_tracks.json")
    data = read_json(hololens_tracking / "tracks.json")
    assert data["format"] == "tangram.tracks/2" and data["reid"]["enabled"] is False
    assert read_json(hololens_tracking / "raw_tracks.json")["tracks"].keys() == \
        {str(d.track_id) for dets in raw.frames.values() for d in dets}
    summary = id_summary(hololens_tracking)
    print(f"hololens_office ids: {summary}")
    assert summary["final"] < summary["raw"] and summary["final"] <= 0.85 * summary["raw"]
    members = {int(k): v["members"] for k, v in data["tracks"].items()}
    assert sorted(m for ms in members.values() for m in ms) == sorted(int(k) for k in raw.track_summary())
    assert all(final_id == min(ms) for final_id, ms in members.items())  # the id rule
    for index, dets in final.frames.items():
        ids = [d.track_id for d in dets]
        assert len(ids) == len(set(ids)), f"frame {index}: one final id twice"
        # same boxes as the raw output, relabelled
        assert [d.box_xyxy for d in dets] == [d.box_xyxy for d in raw.frames[index]]
        assert all(d.raw_track_id in members[d.track_id] for d in dets)
    # the tracker ran with the YAML saved beside the tracks
    from ultralytics.utils import YAML

    assert YAML.load(hololens_tracking / "tracker.yaml") == data["tracker_config"]
    assert data["tracker_config"]["track_buffer"] == 20  # 2 s at 10 fps

"""Recordings of a real run folder (the pipeline on the rendered sample, up to planning, GrabCut):
the Rerun .rrd read back with rerun.chunk.RrdReader and the ROS 2 MCAP read back with mcap's reader
and the mcap_ros2 decoder, checked against the run's own artefacts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT

from tangram.errors import TangramError
from tangram.recording import write_mcap, write_rrd


@pytest.fixture(scope="session")
def plan_run(sample_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's sample run up to planning: a copy without its simulation."""
    run = Path(shutil.copytree(sample_run, tmp_path_factory.mktemp("recording") / "sample",
                               ignore=shutil.ignore_patterns("*.rrd", "*.mcap", "simulation")))
    manifest = _read(run / "manifest.json")
    del manifest["stages"]["simulation"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.fixture
def run_copy(plan_run: Path, tmp_path: Path) -> Path:
    """A private copy, so tests that edit the run folder do not disturb the others."""
    return Path(shutil.copytree(plan_run, tmp_path / "run", ignore=shutil.ignore_patterns("*.rrd", "*.mcap")))


def _read(path: Path) -> Any:
    return json.loads(path.read_text())


def _rrd(path: Path) -> tuple[dict[str, dict[str, list]], dict[str, list[int]]]:
    """entity -> component -> values (rows of all chunks), and entity -> `frame` timeline values."""
    from rerun.chunk import RrdReader

    components: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    frames: dict[str, list[int]] = defaultdict(list)
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        for name in batch.schema.names:  # not log_time: wall clock, and not convertible without pandas
            if name == "frame":
                frames[chunk.entity_path] += batch.column(name).to_pylist()
            elif ":" in name:
                components[chunk.entity_path][name] += batch.column(name).to_pylist()
    return components, frames


def _mcap(path: Path) -> dict[str, list[tuple[str, Any]]]:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    topics: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, _, message in reader.iter_decoded_messages():
            topics[channel.topic].append((schema.name, message))
    return topics


@pytest.mark.slow
def test_rrd_holds_the_runs_cameras_points_objects_and_keyframes(plan_run: Path) -> None:
    out = write_rrd(plan_run)
    assert out == plan_run / "recording.rrd" and not list(plan_run.glob(".recording.rrd.*"))
    comps, frames = _rrd(out)
    cameras = _read(plan_run / "reconstruction" / "cameras.json")
    objects = _read(plan_run / "reconstruction" / "objects.json")["objects"]
    tracks = _read(plan_run / "tracking" / "tracks.json")
    masks = _read(plan_run / "segmentation" / "masks.json")

    registered = {f["frame_index"] for f in cameras["frames"]}
    logged_cameras = {int(e.split("/")[3]) for e in comps if e.startswith("/world/cameras/") and e.count("/") == 3}
    assert logged_cameras == registered and len(registered) >= 10
    first = cameras["frames"][0]
    pose = np.array(first["world_from_camera"])
    cam = comps[f"/world/cameras/{first['frame_index']}"]
    assert np.allclose(cam["Transform3D:translation"][0][0], pose[:3, 3], atol=1e-5)
    assert np.allclose(np.reshape(cam["Transform3D:mat3x3"][0][0], (3, 3), order="F"), pose[:3, :3], atol=1e-5)
    assert cam["Pinhole:image_from_camera"][0][0][0] == pytest.approx(cameras["intrinsics"]["fx"], rel=1e-5)

    logged_objects = {int(e.rsplit("/", 1)[1]) for e in comps if e.startswith("/world/objects/")}
    assert logged_objects == {o["track_id"] for o in objects} and objects
    for o in objects:
        box = comps[f"/world/objects/{o['track_id']}"]
        assert np.allclose(box["Boxes3D:half_sizes"][0][0], np.array(o["box"]["size"]) / 2, atol=1e-6)
        assert np.allclose(box["Boxes3D:centers"][0][0], o["box"]["center"], atol=1e-6)
        assert o["class_name"] in box["Boxes3D:labels"][0][0]

    from tangram.geometry.export import read_ply_vertices

    xyz, _ = read_ply_vertices(plan_run / "reconstruction" / "points.ply")
    assert len(comps["/world/points"]["Points3D:positions"][0]) == len(xyz) > 100
    assert len(comps["/world/points"]["Points3D:colors"][0]) == len(xyz)
    assert "/world/table" in comps

    keyframes = registered | {k["frame_index"] for k in masks["keyframes"]}
    assert sorted(frames["/video/image"]) == sorted(keyframes)
    dets = {f["frame_index"]: f["detections"] for f in tracks["frames"]}
    boxes_at = dict(zip(frames["/video/boxes"], comps["/video/boxes"]["Boxes2D:half_sizes"], strict=True))
    for frame in keyframes:
        assert len(boxes_at[frame] or []) == len(dets.get(frame, []))
    assert sorted(frames["/video/masks"]) == sorted(k["frame_index"] for k in masks["keyframes"] if k["masks"])


def _tf_matrix(t: Any) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    q = t.transform.rotation
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    m[:3, 3] = [t.transform.translation.x, t.transform.translation.y, t.transform.translation.z]
    return m


@pytest.mark.slow
def test_mcap_has_tf_static_markers_and_the_plan(plan_run: Path) -> None:
    out = write_mcap(plan_run)
    assert out == plan_run / "robot.mcap"  # this run has no simulation
    topics = _mcap(out)
    assert set(topics) == {"/tf_static", "/scene/objects", "/plan"}
    assert [s for s, _ in topics["/tf_static"]] == ["tf2_msgs/msg/TFMessage"]
    cameras = _read(plan_run / "reconstruction" / "cameras.json")
    objects = _read(plan_run / "reconstruction" / "objects.json")["objects"]

    transforms = {t.child_frame_id: t for t in topics["/tf_static"][0][1].transforms}
    assert transforms["table"].header.frame_id == "world"
    for o in objects:
        tf = transforms[f"object_{o['track_id']}"]
        assert tf.header.frame_id == "table"
        assert np.allclose(_tf_matrix(tf)[:3, 3], o["box"]["center"], atol=1e-9)
    for f in cameras["frames"]:
        assert np.allclose(_tf_matrix(transforms[f"camera_{f['frame_index']}"]), f["world_from_camera"], atol=1e-6)

    markers = topics["/scene/objects"][0][1].markers
    cubes = {m.id: m for m in markers if m.ns == "objects"}
    assert set(cubes) == {o["track_id"] for o in objects}
    for o in objects:
        m = cubes[o["track_id"]]
        assert m.type == 1 and m.header.frame_id == "table" and o["class_name"] in m.text
        assert np.allclose([m.scale.x, m.scale.y, m.scale.z], o["box"]["size"], atol=1e-9)
    assert [m.ns for m in markers].count("table") == 1

    assert json.loads(topics["/plan"][0][1].data) == _read(plan_run / "planning" / "plan.json")


@pytest.mark.slow
def test_stages_that_did_not_run_or_failed_are_left_out(run_copy: Path) -> None:
    for stage in ("scene_graph", "planning"):
        shutil.rmtree(run_copy / stage)
    manifest = _read(run_copy / "manifest.json")
    manifest["stages"]["reconstruction"]["status"] = "failed"  # its files stay, as a stale folder would
    (run_copy / "manifest.json").write_text(json.dumps(manifest))

    comps, frames = _rrd(write_rrd(run_copy))
    assert not [e for e in comps if e.startswith("/world/") and e != "/world"]
    masks = _read(run_copy / "segmentation" / "masks.json")
    assert sorted(frames["/video/image"]) == sorted(k["frame_index"] for k in masks["keyframes"])
    assert _mcap(write_mcap(run_copy)) == {}


def test_a_missing_or_foreign_folder_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(TangramError, match="no such run folder"):
        write_rrd(tmp_path / "nope")
    with pytest.raises(TangramError, match="not a TANGRAM run folder"):
        write_mcap(tmp_path)
    for fmt in ("rerun", "mcap"):
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", fmt, str(tmp_path / "nope")],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [f"tangram: error: no such run folder: {tmp_path / 'nope'}"]
    assert not list(tmp_path.iterdir())


def test_a_corrupt_artefact_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "tracking").mkdir()
    (tmp_path / "tracking" / "tracks.json").write_text("{not json")
    with pytest.raises(TangramError, match=r"tracks\.json is not readable JSON"):
        write_rrd(tmp_path)
    assert not list(tmp_path.glob("*.rrd")) and not list(tmp_path.glob(".recording.rrd.*"))


@pytest.mark.slow
def test_cli_export_writes_both_files(plan_run: Path) -> None:
    for fmt, name in (("rerun", "recording.rrd"), ("mcap", "robot.mcap")):
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", fmt, str(plan_run)],
                              capture_output=True, text=True, timeout=300, cwd=plan_run)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(plan_run / name) and (plan_run / name).stat().st_size > 1000


@pytest.mark.slow
def test_mcap_goes_into_the_simulation_folder_of_a_simulated_run(sample_run: Path, tmp_path: Path) -> None:
    """A copy of the session's whole sample run, simulation included."""
    run = Path(shutil.copytree(sample_run, tmp_path / "sample", ignore=shutil.ignore_patterns("*.rrd", "*.mcap")))
    assert _read(run / "manifest.json")["stages"]["simulation"]["status"] == "done"
    out = write_mcap(run)
    assert out == run / "simulation" / "robot.mcap" and not (run / "robot.mcap").exists()
    topics = _mcap(out)
    assert json.loads(topics["/plan"][0][1].data) == _read(run / "planning" / "plan.json")

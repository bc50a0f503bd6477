"""Recordings of a real run folder (the session's pipeline run on the rendered sample, GrabCut; copies
of it up to planning): the Rerun .rrd read back with rerun.chunk.RrdReader and the ROS 2 MCAP read
back with mcap's reader and the mcap_ros2 decoder, checked against the run's own artefacts; the
runner writes both after the run, reuses them on a resume and leaves them out with --no-recording;
`tangram view` without a display."""

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


# --- written by the runner after every run; the simulation's motion ---------------------------------


def test_the_run_wrote_both_recordings_listed_and_linked(sample_run: Path) -> None:
    """The session's Pipeline.run itself wrote them (no export call), listed them and linked them."""
    records = _read(sample_run / "manifest.json")["recordings"]
    assert set(records) == {"rrd", "mcap"}
    for kind, rel in (("rrd", "recording.rrd"), ("mcap", "simulation/robot.mcap")):
        assert records[kind]["status"] == "done" and records[kind]["path"] == rel
        assert records[kind]["bytes"] == (sample_run / rel).stat().st_size > 10_000
    assert not list(sample_run.rglob(".recording.rrd.*")) and not list(sample_run.rglob(".robot.mcap.*"))
    html = (sample_run / "report.html").read_text()
    assert 'href="recording.rrd"' in html and 'href="simulation/robot.mcap"' in html


@pytest.mark.slow
def test_mcap_replays_the_whole_simulation(sample_run: Path) -> None:
    from tangram.sim.trajectory import load_trajectory

    topics = _mcap(sample_run / "simulation" / "robot.mcap")
    assert {"/tf_static", "/tf", "/joint_states", "/scene/objects", "/plan", "/sim/actions"} <= set(topics)
    result = _read(sample_run / "simulation" / "result.json")
    traj = load_trajectory(sample_run / "simulation" / "trajectory.npz")
    states = [m for _, m in topics["/joint_states"]]
    stamps = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in states])
    assert len(states) == result["trajectory"]["samples"] == len(traj["t"])
    assert states[0].name == [*(f"panda_joint{i}" for i in range(1, 8)), "panda_finger_joint1", "panda_finger_joint2"]
    # from the first physics step to the last: every action's sim time is inside, at 30 Hz
    span = stamps[-1] - stamps[0]
    assert span == pytest.approx(result["trajectory"]["sim_seconds"], abs=1e-3)
    assert span >= result["timing"]["sim_seconds"] - 1e-3 and np.all(np.diff(stamps) <= 1 / 30 + 1e-6)
    assert len(topics["/sim/actions"]) == len(result["actions"])
    # the arm ends where 'home' puts it
    assert np.allclose(states[-1].position[:7], [0.0, -0.5, 0.0, -2.3, 0.0, 1.85, np.pi / 4], atol=0.05)

    final = {t.child_frame_id: t for t in topics["/tf"][-1][1].transforms}
    for oid, pose in result["final_poses"].items():
        tf = final[f"object_{oid}"]
        assert tf.header.frame_id == "table"
        m = _tf_matrix(tf)
        assert np.allclose(m[:3, 3], pose["position"], atol=1e-3)  # result.json rounds to 0.1 mm
        assert np.arctan2(m[1, 0], m[0, 0]) == pytest.approx(pose["yaw"], abs=2e-3)
    sim_cubes = {m.id: m for m in topics["/scene/objects"][0][1].markers if m.ns == "sim_objects"}
    assert {str(i) for i in sim_cubes} == set(result["final_poses"])
    assert all(m.frame_locked and m.header.frame_id == f"object_{i}" for i, m in sim_cubes.items())
    assert "panda_hand" in final and "panda_link0" in {t.child_frame_id for t in topics["/tf_static"][0][1].transforms}
    assert not [t for t in topics["/tf_static"][0][1].transforms if t.child_frame_id.startswith("object_")]


@pytest.mark.slow
def test_rrd_has_the_simulation_on_sim_time(sample_run: Path) -> None:
    from rerun.chunk import RrdReader

    result = _read(sample_run / "simulation" / "result.json")
    n = result["trajectory"]["samples"]
    sim_time: dict[str, list] = defaultdict(list)
    comps: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for chunk in RrdReader(sample_run / "recording.rrd").stream():
        batch = chunk.to_record_batch()
        if chunk.entity_path.startswith(("/world/robot", "/robot", "/sim", "/world/sim_objects")):
            assert "frame" not in batch.schema.names  # on sim_time (or static) only
        if "sim_time" in batch.schema.names:
            sim_time[chunk.entity_path] += batch.column("sim_time").cast("int64").to_pylist()  # ns
            for name in batch.schema.names:
                if ":" in name:
                    comps[chunk.entity_path][name] += batch.column(name).to_pylist()
    joints = [e for e in sim_time if e.startswith("/robot/joints/")]
    assert len(joints) == 9 and all(len(sim_time[e]) == n for e in joints)
    last_ns = max(sim_time["/robot/joints/panda_joint1"])
    assert last_ns / 1e9 == pytest.approx(result["trajectory"]["sim_seconds"], abs=1e-3)
    assert len(sim_time["/world/robot/arm"]) == n and "/world/robot/links" in sim_time
    texts = [t for row in comps["/sim/actions"]["TextLog:text"] for t in row]
    assert len(texts) == 2 * len(result["actions"]) and texts[-1].endswith("ok")
    for oid, pose in result["final_poses"].items():
        path = f"/world/sim_objects/{oid}"
        rows = sorted(zip(sim_time[path], comps[path]["Transform3D:translation"], strict=True))
        assert np.allclose(rows[-1][1][0], pose["position"], atol=1e-3)


@pytest.fixture
def sim_copy(sample_run: Path, tmp_path: Path) -> Path:
    """A private copy of the whole sample run, recordings included, under tmp_path/exports/sample."""
    return Path(shutil.copytree(sample_run, tmp_path / "exports" / "sample"))


@pytest.mark.slow
def test_a_resumed_run_reuses_its_recordings(sim_copy: Path, yolo_weights: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Pipeline.run again on the copy: every stage is up to date, so both files are kept as they are."""
    from tangram.runner import Pipeline, default_input
    from tangram.settings import load_config

    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (sim_copy / "recording.rrd",
                                                                  sim_copy / "simulation" / "robot.mcap")}
    config = load_config(env={}, overrides={"run": {"exports_dir": str(sim_copy.parent)},
                                            "tracking": {"weights": yolo_weights},
                                            "segmentation": {"backend": "grabcut"}})
    with caplog.at_level("INFO", logger="tangram"):
        result = Pipeline(config).run(default_input(), name="sample")
    reused = {r.message.split(":")[0] for r in caplog.records if ": up to date (" in r.message}
    assert result.ok and reused == set(result.stages)
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in before} == before
    assert sum("up to date, reusing it" in r.message for r in caplog.records) == 2


@pytest.mark.slow
def test_changed_stages_rewrite_and_recording_off_removes_stale_files(sim_copy: Path) -> None:
    from tangram.runner import write_run_recordings

    manifest = _read(sim_copy / "manifest.json")
    rrd, mcap_file = sim_copy / "recording.rrd", sim_copy / "simulation" / "robot.mcap"
    mcap_before = mcap_file.stat().st_mtime_ns
    manifest["stages"]["reconstruction"]["output_id"] = "changed"  # as if reconstruction had run again
    write_run_recordings(sim_copy, manifest, enabled=False)
    assert not rrd.exists() and not mcap_file.exists()  # both read reconstruction: stale, removed
    assert _read(sim_copy / "manifest.json")["recordings"] == {}
    manifest = _read(sim_copy / "manifest.json")
    manifest["stages"]["reconstruction"]["output_id"] = "changed again"
    write_run_recordings(sim_copy, manifest)
    records = _read(sim_copy / "manifest.json")["recordings"]
    assert records["rrd"]["status"] == records["mcap"]["status"] == "done"
    assert rrd.is_file() and mcap_file.stat().st_mtime_ns > mcap_before


def test_no_recording_flag_turns_it_off() -> None:
    from tangram.cli import build_run_parser, cli_overrides
    from tangram.settings import load_config

    assert load_config(env={}).run.recording is True
    args = build_run_parser().parse_args(["--no-recording"])
    assert load_config(env={}, overrides=cli_overrides(args)).run.recording is False
    assert load_config(env={"TANGRAM_RUN_RECORDING": "false"}).run.recording is False


@pytest.mark.slow
def test_a_missing_optional_library_is_one_log_line(run_copy: Path) -> None:
    """rerun-sdk and mcap-ros2-support made unimportable in a fresh interpreter (None in sys.modules
    is how Python says 'not installed'): the run's hook records why and raises nothing."""
    code = (
        "import sys, json, logging; sys.modules['rerun'] = None; sys.modules['mcap_ros2'] = None\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s %(message)s')\n"
        "from pathlib import Path; from tangram.runner import write_run_recordings\n"
        f"run = Path({str(run_copy)!r}); m = json.loads((run / 'manifest.json').read_text())\n"
        "m['stages']['simulation'] = {'status': 'done', 'output_id': 'x'}\n"
        "write_run_recordings(run, m); print(json.dumps(m['recordings']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout.strip().splitlines()[-1])
    assert records["rrd"]["status"] == records["mcap"]["status"] == "unavailable"
    assert "rerun" in records["rrd"]["reason"] and "mcap_ros2" in records["mcap"]["reason"]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(("INFO tangram.recording", "WARNING"))]
    assert len(lines) == 2 and all("not written" in ln for ln in lines)
    assert not (run_copy / "recording.rrd").exists()


def test_view_without_a_display_says_how_to_open_it(sample_run: Path, tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "view", str(sample_run)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(sample_run / "recording.rrd") in lines[0] and "rerun" in lines[0]
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "view", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"tangram: error: no such run folder: {tmp_path / 'nope'}"]

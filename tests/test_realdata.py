"""Real footage with metric ground truth: hololens_office (a head-mounted camera walking round a long
dining table in an office), through the whole pipeline with the offline detector and GrabCut masks.

Targets (issue 9): camera RMS after Sim(3) <= 5 cm, metric scale within 20 % of the truth, the table
(the plane the tabletop objects stand on, above a found floor) and the fruit baskets found (whatever
the detector calls them), no chair on the table, and nothing "on" the table beyond its extent. One
pipeline run serves every test (module-scoped fixture, ~3 min on 2 CPU cores).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_file

from tangram.fileio import read_json
from tangram.geometry.evaluation import camera_centre_errors
from tangram.geometry.graph import read_node_link, relation_set
from tangram.geometry.relations import TABLE
from tangram.tracklets import CONFUSABLE_GROUPS

HOLO_K = [495.57, 495.48, 269.50, 169.19]
FURNITURE = {"chair", "couch", "bench", "bed", "dining table", "toilet"}
BASKETS = CONFUSABLE_GROUPS["containers"]  # the fruit baskets come out as sandwich / bowl / vase / ...


@pytest.fixture(scope="module")
def holo(tmp_path_factory: pytest.TempPathFactory, yolo_weights: str):
    from tangram.runner import Pipeline
    from tangram.settings import load_config

    overrides = {
        "run": {"exports_dir": str(tmp_path_factory.mktemp("exports"))},
        "tracking": {"weights": yolo_weights},
        "segmentation": {"backend": "grabcut"},
        "reconstruction": {"intrinsics": HOLO_K},
    }
    result = Pipeline(load_config(env={}, overrides=overrides)).run(
        real_file("hololens_office.mp4"), name="holo", until="scene_graph"
    )
    assert result.ok, result.manifest["stages"]
    return result.run_dir


@pytest.mark.slow
def test_hololens_cameras_and_metric_scale_match_the_ground_truth(holo) -> None:
    cams = read_json(holo / "reconstruction" / "cameras.json")
    poses = np.loadtxt(real_file("hololens_office") / "poses.txt").reshape(-1, 4, 4)
    pred = {f["frame_index"]: np.array(f["world_from_camera"]) for f in cams["frames"]}
    err = camera_centre_errors(pred, {f: poses[f] for f in pred})
    ratio = 1 / err["sim3_scale"]  # our metres over true metres
    scale = cams["scale"]
    print(
        f"hololens_office: {err['frames']} cameras, RMS {err['rmse_m'] * 100:.1f} cm after Sim(3); scale "
        f"{ratio:.3f} of truth ({scale['method']}, ±{scale['uncertainty']:.0%}); table height above the "
        f"floor {-(cams['table']['floor_z'] or 0):.2f} m"
    )
    assert err["frames"] >= 30
    # measured 2.6 cm: the target is 5 cm, COLMAP's own drift on this walk is the whole error
    assert err["rmse_m"] <= 0.05
    # measured 1.03: the target is 20 %; it comes from a consensus of the table height above the
    # floor, chairs and tabletop objects, not from one class
    assert 0.8 <= ratio <= 1.2
    assert scale["method"] == "consensus"
    used = {e["class_name"] for e in scale["evidence"] if e["used"]}
    assert len(used) >= 2  # more than one class agrees
    assert abs(np.log(ratio)) < 3 * max(scale["uncertainty"], 0.05)  # the uncertainty is honest


@pytest.mark.slow
def test_hololens_table_baskets_and_chairs_are_on_the_right_surfaces(holo) -> None:
    cams = read_json(holo / "reconstruction" / "cameras.json")
    table = cams["table"]
    # the table is the surface the tabletop objects stand on, above a floor: office and dining tables
    # stand 0.70-0.76 m tall; the bound allows for the scale's own 20 %
    assert table["floor_z"] is not None and 0.55 <= -table["floor_z"] <= 0.95
    graph = read_node_link(holo / "scene_graph" / "scene_graph.json")
    rels = relation_set(graph)
    classes = {n: d.get("class_name") for n, d in graph.nodes(data=True) if d.get("kind") == "object"}
    on_table = {u for u, r, v in rels if r == "on" and v == TABLE}
    print(f"hololens_office objects: {sorted(classes.items())}; on the table: {sorted(on_table)}")
    baskets = [n for n, c in classes.items() if c in BASKETS]
    assert baskets, "no fruit basket found"
    assert any(n in on_table for n in baskets)
    assert not any(classes[n] in FURNITURE for n in on_table)  # chairs stand on the floor
    _assert_on_table_within_extent(graph, on_table, table)


def _assert_on_table_within_extent(graph, on_table: set, table: dict) -> None:
    """Everything "on" the table has its footprint centre over the table's extent (its rectangle,
    grown by half the object's size: a basket may overhang the edge, a bottle 1 m away may not)."""
    c = np.array(table["rect_center"], float)
    yaw = float(table["rect_yaw"])
    rot = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
    for n in on_table:
        node = graph.nodes[n]
        local = rot @ (np.array(node["position"][:2]) - c)
        margin = 0.5 * max(node["size"][:2]) + 0.02
        assert np.all(np.abs(local) <= np.array(table["rect_size"]) / 2 + margin), (n, node["class_name"])

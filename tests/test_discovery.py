"""Objects the detector has no name for (tangram.geometry.discovery): synthetic clouds, then the sample run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import look_at

from tangram.geometry.camera import Intrinsics, View
from tangram.geometry.discovery import discover, pca_box
from tangram.geometry.lifting import Object3D
from tangram.geometry.plane import TableFrame

BAND = 0.006  # metres: the table fit's inlier band (1 % of a 0.6 m camera distance)
TABLE = TableFrame(np.eye(4), (1.2, 0.8), (1.2, 0.8), 0.0, (0.0, 0.0))
# (centre xy, size xyz, yaw): what the synthetic scene holds; the last one overlaps the detected cup
BLOBS = (
    (np.array([-0.30, 0.10]), np.array([0.08, 0.08, 0.06]), 0.3),
    (np.array([0.05, -0.20]), np.array([0.15, 0.05, 0.03]), 1.0),
    (np.array([0.30, 0.15]), np.array([0.06, 0.06, 0.05]), 0.0),
)
CUP = Object3D(1, "cup", np.array([0.3, -0.15, 0.05]), np.array([0.3, -0.15, 0.05]), np.array([0.08, 0.08, 0.1]),
               0.0, 40, False, "hull", 10)
EMPTY_AREA = (np.array([-0.45, -0.30]), 0.1)  # centre, half side: no object there




def _surface(rng: np.random.Generator, centre: np.ndarray, size: np.ndarray, yaw: float, n: int) -> np.ndarray:
    """n points on the visible faces (top and sides) of a box standing on the table."""
    local = rng.uniform(-0.5, 0.5, (n, 3)) * size
    face = rng.integers(0, 3, n)  # 0: top, 1: an x side, 2: a y side
    local[face == 0, 2] = size[2] / 2
    local[face == 1, 0] = np.sign(local[face == 1, 0]) * size[0] / 2
    local[face == 2, 1] = np.sign(local[face == 2, 1]) * size[1] / 2
    c, s = math.cos(yaw), math.sin(yaw)
    xy = local[:, :2] @ np.array([[c, s], [-s, c]]) + centre
    return np.column_stack([xy, local[:, 2] + size[2] / 2]) + rng.normal(0, 0.001, (n, 3))


def _scene(seed: int = 0) -> tuple[np.ndarray, dict, dict[int, View]]:
    rng = np.random.default_rng(seed)
    table = np.column_stack([rng.uniform(-0.6, 0.6, 1500), rng.uniform(-0.4, 0.4, 1500), rng.normal(0, 0.002, 1500)])
    blobs = [_surface(rng, c, s, y, 60) for c, s, y in BLOBS]
    cup = _surface(rng, CUP.centre[:2], CUP.size, 0.0, 50)
    # a blob overlapping the detected cup's box by 1 cm (the detector's object seen again, its box short)
    stray = _surface(rng, CUP.centre[:2] + np.array([0.06, 0.0]), np.array([0.06, 0.06, 0.08]), 0.0, 40)
    # sparse noise over the table (mismatches), none dense enough to be an object
    noise = np.column_stack([rng.uniform(-0.6, 0.6, 40), rng.uniform(-0.4, 0.4, 40), rng.uniform(0.02, 0.3, 40)])
    xyz = np.vstack([table, *blobs, cup, stray, noise])
    intr = Intrinsics("PINHOLE", 640, 480, (500.0, 500.0, 320.0, 240.0))
    views = {}
    for k, az in enumerate(np.linspace(-1.0, 1.0, 8)):
        eye = np.array([0.7 * math.sin(az), -0.7 * math.cos(az), 0.45])
        views[k] = View(k, intr, look_at(eye, np.zeros(3)))
    # every point seen in 6 of the 8 views (a random 2 miss it)
    seen = {f: [] for f in views}
    for i in range(len(xyz)):
        for f in rng.choice(8, 6, replace=False):
            seen[int(f)].append(i)
    seen_in = {}
    for f, idx in seen.items():
        idx = np.array(idx)
        uv, _ = views[f].project(xyz[idx])
        seen_in[f] = (idx, uv)
    return xyz, seen_in, views


@pytest.fixture(scope="module")
def found():
    xyz, seen_in, views = _scene()
    return discover(xyz, seen_in, views, TABLE, BAND, [CUP], first_id=7)


def test_three_blobs_found_within_tolerance(found) -> None:
    assert len(found.objects) == 3, found.summary()
    for (centre, size, _), obj in zip(BLOBS, sorted(found.objects, key=lambda o: o.centre[0]), strict=True):
        assert np.linalg.norm(obj.centre[:2] - centre) < 0.01  # 1 cm on a noise-free blob
        assert abs(obj.centre[2] - size[2] / 2) < 0.01  # stands on the table
        assert sorted(obj.size[:2]) == pytest.approx(sorted(size[:2]), abs=0.02)  # PCA footprint
        assert obj.size[2] == pytest.approx(size[2], abs=0.01)
        assert len(obj.views) >= 6 and 0.5 < obj.confidence <= 1.0
        assert len(obj.boxes_2d) >= 6  # projected into every keyframe that sees it
    assert [o.object_id for o in found.objects] == [7, 8, 9]


def test_no_object_on_the_empty_area_and_overlap_merged(found) -> None:
    (cx, cy), half = EMPTY_AREA
    assert not [o for o in found.objects if abs(o.centre[0] - cx) < half and abs(o.centre[1] - cy) < half]
    # the blob touching the detected cup is the cup seen again: merged (dropped), not a new object
    assert all(np.linalg.norm(o.centre[:2] - CUP.centre[:2]) > 0.1 for o in found.objects)
    assert [m["into"] for m in found.merged] == [1], found.summary()


def test_eps_follows_the_scene_scale() -> None:
    """The same scene twice as large: eps doubles, the same objects are found (nothing tuned to metres)."""
    xyz, seen_in, views = _scene(1)
    small = discover(xyz, seen_in, views, TABLE, BAND, [CUP], first_id=7)
    big_views = {f: View(f, v.intrinsics, np.block([[v.world_from_camera[:3, :3], 2 * v.world_from_camera[:3, 3:]],
                                                    [np.zeros((1, 3)), np.ones((1, 1))]])) for f, v in views.items()}
    big_table = TableFrame(np.eye(4), (2.4, 1.6), (2.4, 1.6), 0.0, (0.0, 0.0))
    big_cup = CUP.scaled(2.0)
    big = discover(2 * xyz, seen_in, big_views, big_table, 2 * BAND, [big_cup], first_id=7)
    assert big.eps == pytest.approx(2 * small.eps, rel=1e-6)
    assert len(big.objects) == len(small.objects) == 3
    for a, b in zip(small.objects, big.objects, strict=True):
        assert np.allclose(2 * a.centre, b.centre, atol=1e-6)


def test_outside_the_table_and_hovering_rejected() -> None:
    rng = np.random.default_rng(3)
    xyz, seen_in, views = _scene(2)
    narrow = TableFrame(np.eye(4), (0.5, 0.8), (0.5, 0.8), 0.0, (0.0, 0.0))  # x in [-0.25, 0.25]: two blobs off it
    out = discover(xyz, seen_in, views, narrow, BAND, [CUP], first_id=7)
    assert [round(float(o.centre[0]), 2) for o in out.objects] == [0.05]
    # a dense cloud 20 cm above the table (a lamp over it): not an object standing on the table
    lamp = rng.normal([0.0, 0.2, 0.25], 0.01, (40, 3))
    xyz2 = np.vstack([xyz, lamp])
    extra = np.arange(len(xyz), len(xyz2))
    seen2 = {f: (np.concatenate([idx, extra]), np.vstack([uv, views[f].project(lamp)[0]]))
             for f, (idx, uv) in seen_in.items()}
    out2 = discover(xyz2, seen2, views, TABLE, BAND, [CUP], first_id=7)
    assert len(out2.objects) == 3
    assert any("hovers" in r["reason"] for r in out2.rejected)
    # a cabinet's side at the table's end: a vertical slab from 30 cm above the top down past it
    slab = np.column_stack([rng.uniform(-0.57, -0.55, 120), rng.uniform(-0.1, 0.1, 120), rng.uniform(-0.3, 0.3, 120)])
    xyz3 = np.vstack([xyz, slab])
    extra = np.arange(len(xyz), len(xyz3))
    seen3 = {f: (np.concatenate([idx, extra]), np.vstack([uv, views[f].project(slab)[0]]))
             for f, (idx, uv) in seen_in.items()}
    out3 = discover(xyz3, seen3, views, TABLE, BAND, [CUP], first_id=7)
    assert len(out3.objects) == 3
    assert any("below the table top" in r["reason"] for r in out3.rejected), out3.rejected


def test_pca_box_of_a_rotated_block() -> None:
    rng = np.random.default_rng(4)
    pts = _surface(rng, np.array([0.1, 0.2]), np.array([0.15, 0.05, 0.03]), 0.7, 400)
    centre, size, yaw = pca_box(pts)
    assert centre == pytest.approx([0.1, 0.2, 0.015], abs=0.005)
    assert size == pytest.approx([0.15, 0.05, 0.03], abs=0.01)  # side faces fix the extremes
    assert math.cos(2 * (yaw - 0.7)) > 0.99


def test_sample_run_has_no_false_discovery(sample_run: Path) -> None:
    """On the default sample every discovered object is a real one (the tray, which no COCO class
    names, may be found): each lies within 5 cm of a ground-truth object in the plane, over the table."""
    from tangram.sample_scene import ensure_sample, load_sample
    from tangram.sim.ground_truth import gt_objects_in_table

    sample = load_sample(ensure_sample(0).parent)  # the default input sample_run ran on
    data = json.loads((sample_run / "reconstruction" / "objects.json").read_text())
    cams = json.loads((sample_run / "reconstruction" / "cameras.json").read_text())
    assert data["discovery"] is not None
    assert {o["source"] for o in data["objects"] if o["class_name"] != "object"} == {"detector"}
    truth = gt_objects_in_table(sample, [f["frame_index"] for f in cams["frames"]])
    true_xy = np.array([t["position"][:2] for t in truth.values()])
    table = cams["table"]
    for o in (o for o in data["objects"] if o["source"] == "geometry"):
        xy = np.array(o["box"]["center"][:2])
        assert np.min(np.linalg.norm(true_xy - xy, axis=1)) < 0.05, o
        assert np.all(np.abs(xy - table["rect_center"]) <= np.array(table["rect_size"]) / 2), o


def test_sample_run_places_no_phantom_detection(sample_run: Path) -> None:
    """Issue 15: a detection without credible evidence (the default sample's "knife", triangulated from
    2 views at confidence 0.22) is not an object but `unplaced`, with its reason; every placed
    detection lies over a true object's footprint (grown by 2 cm), one per true object."""
    from tangram.sample_scene import ensure_sample, load_sample
    from tangram.sim.ground_truth import gt_objects_in_table

    sample = load_sample(ensure_sample(0).parent)
    data = json.loads((sample_run / "reconstruction" / "objects.json").read_text())
    cams = json.loads((sample_run / "reconstruction" / "cameras.json").read_text())
    truth = list(gt_objects_in_table(sample, [f["frame_index"] for f in cams["frames"]]).values())
    placed = [o for o in data["objects"] if o["source"] == "detector"]
    assert len(placed) == len(truth), [o["class_name"] for o in placed]
    for o in placed:
        xy = np.array(o["box"]["center"][:2])
        outside = min(float(np.max(np.abs(xy - t["position"][:2]) - np.array(t["size"][:2]) / 2)) for t in truth)
        assert outside <= 0.02, (o["class_name"], outside)
    assert all(u["reason"] for u in data["unplaced"])
    assert "knife" not in {o["class_name"] for o in data["objects"]}


def test_planner_picks_a_discovered_object_by_id() -> None:
    """"pick up object 7" names a discovered object (class "object") by id; the offline planner
    picks it and ends holding it; "put object 7 in the bowl" works like for any detected object."""
    from tangram.planning.search import plan_offline
    from tangram.planning.tasks import parse_task
    from tangram.planning.validate import validate_plan
    from tangram.planning.world import scene_graph_from_objects, world_from_scene_graph

    world = world_from_scene_graph(json.loads(json.dumps(scene_graph_from_objects([
        {"id": 1, "class_name": "cup", "xy": (-0.15, 0.05), "size": (0.06, 0.085, 0.09)},
        {"id": 2, "class_name": "bowl", "xy": (0.05, 0.15), "size": (0.17, 0.17, 0.07)},
        {"id": 7, "class_name": "object", "xy": (0.15, -0.05), "size": (0.05, 0.04, 0.04)},
    ]))))
    goal = parse_task("pick up object 7", world)
    assert goal.form == "pick" and [(a.kind, a.obj) for a in goal.atoms] == [("held", 7)]
    result = plan_offline(world, goal)
    assert [(a.name, a.object) for a in result.actions] == [("pick", 7), ("home", None)]
    check = validate_plan(world, result.actions, goal)
    assert check.valid and check.goal_satisfied, check.errors
    put = plan_offline(world, parse_task("put object 7 in the bowl", world))
    assert [a.name for a in put.actions] == ["pick", "place_in", "home"]


def test_task_names_a_discovered_object_by_its_place() -> None:
    """Several unnamed objects: "the object left of the cup" picks the nearest one on that side."""
    from tangram.planning.tasks import parse_task
    from tangram.planning.world import scene_graph_from_objects, world_from_scene_graph

    world = world_from_scene_graph(json.loads(json.dumps(scene_graph_from_objects([
        {"id": 1, "class_name": "cup", "xy": (0.0, 0.05), "size": (0.06, 0.085, 0.09)},
        {"id": 2, "class_name": "bowl", "xy": (0.05, 0.25), "size": (0.17, 0.17, 0.07)},
        {"id": 7, "class_name": "object", "xy": (-0.15, 0.0), "size": (0.05, 0.04, 0.04)},
        {"id": 8, "class_name": "object", "xy": (0.2, -0.05), "size": (0.05, 0.04, 0.04)},
        {"id": 9, "class_name": "object", "xy": (-0.3, 0.1), "size": (0.05, 0.04, 0.04)},
    ]))))
    assert [a.obj for a in parse_task("pick up the object left of the cup", world).atoms] == [7]
    assert [a.obj for a in parse_task("pick up the object to the right of the cup", world).atoms] == [8]
    goal = parse_task("put the object left of the cup in the bowl", world)
    assert [(a.kind, a.obj, a.target) for a in goal.atoms] == [("in", 7, 2)]

"""Reconstruction: geometry units, failure cases, and the stage on the sample scored against its ground truth.

The sample test feeds the stage tracks and masks written from the ground truth: that isolates the
3D stages (pycolmap, table frame, lifting, scale, relations) from detector and segmenter errors.
`tests/test_scene_graph.py` runs the whole pipeline with the real upstream stages on real videos.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import look_at, real_file

from tangram.errors import StageFailed
from tangram.fileio import read_json
from tangram.geometry import keyframes as kf
from tangram.geometry.camera import Intrinsics, View
from tangram.geometry.evaluation import camera_centre_errors, object_position_errors, score_relations, umeyama
from tangram.geometry.export import read_ply_vertices, write_ply
from tangram.geometry.lifting import Object3D
from tangram.geometry.plane import build_table_frame, ransac_plane
from tangram.geometry.scale import estimate_scale
from tangram.media import open_media
from tangram.sample_scene import SampleScene, ensure_sample, load_sample
from tangram.sim.ground_truth import gt_objects_in_table, gt_relations, write_gt_upstream
from tangram.stages.base import StageContext
from tangram.stages.reconstruction import plan_keyframes

# --- geometry units -----------------------------------------------------------------------------------


def test_camera_projection_and_rays_round_trip() -> None:
    intr = Intrinsics("SIMPLE_RADIAL", 640, 480, (500.0, 320.0, 240.0, 0.05))
    view = View(0, intr, look_at(np.array([0.5, -0.8, 0.6]), np.zeros(3)))
    points = np.random.default_rng(0).uniform(-0.2, 0.2, (50, 3))
    uv, depth = view.project(points)
    assert np.all(depth > 0)
    origin, dirs = view.rays(uv)
    # each point lies on its own back-projected ray
    along = ((points - origin) * dirs).sum(axis=1)
    assert np.allclose(origin + along[:, None] * dirs, points, atol=1e-6)


def test_ransac_plane_finds_the_table_among_outliers() -> None:
    rng = np.random.default_rng(1)
    table = np.column_stack([rng.uniform(-1, 1, (400, 2)), rng.normal(0, 0.002, 400)])
    clutter = rng.uniform(-1, 1, (150, 3))
    tilt = np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    points = np.vstack([table, clutter]) @ tilt.T
    plane, inliers = ransac_plane(points, threshold=0.01)
    assert abs(abs(plane.normal @ (tilt @ [0, 0, 1])) - 1) < 1e-3
    assert inliers[:400].mean() > 0.97 and inliers[400:].mean() < 0.1


def test_wide_objects_reaching_two_levels_stand_on_the_one_with_more_points() -> None:
    """A fruit basket (0.4 m wide, bottom uncertain) reaches both the table top and a sparse layer
    of clutter 0.3 m above it: the table, with ten times the points, is the supporting level."""
    from tangram.geometry.plane import Plane
    from tangram.geometry.table import _plane_under

    rng = np.random.default_rng(3)
    table = np.column_stack([rng.uniform(-1, 1, (500, 2)), rng.normal(0, 0.003, 500)])
    clutter = np.column_stack([rng.uniform(-1, 1, (50, 2)), 0.3 + rng.normal(0, 0.003, 50)])
    floor = np.column_stack([rng.uniform(-2, 2, (900, 2)), -0.75 + rng.normal(0, 0.003, 900)])
    xyz = np.vstack([table, clutter, floor])
    up = np.array([0.0, 0.0, 1.0])
    ref, top, low = Plane(up, 0.0), Plane(up, -0.3), Plane(up, 0.75)  # z = 0, 0.3 and -0.75
    wide = [(np.array([0.2, 0.0, 0.17]), 0.4), (np.array([-0.3, 0.2, 0.1]), 0.5)]
    assert _plane_under([low, top], ref, wide, 0.01, xyz) is ref
    # objects whose bottoms are only near the upper level stand there, however few its points
    small = [(np.array([0.2, 0.0, 0.305]), 0.08), (np.array([-0.3, 0.2, 0.298]), 0.07)]
    assert _plane_under([low, top], ref, small, 0.01, xyz) is top


def test_a_wide_bottom_at_the_edge_of_its_window_does_not_flip_the_supporting_level() -> None:
    """Heights from hololens_office's PNG frames (units, table top at 0 with 717 points): a basket
    and two floor plants beside the table give bottoms at -0.85, -0.36 and -0.07; a 217-point layer
    lies 0.4 below the top, the floor 1.9 below. The basket's bottom sat 3 mm outside its 2-sigma
    window of the table, so counting the bottoms inside windows chose the layer; the table must win
    on either side of that edge. And bottles whose bottoms scatter by a third of a metre (TUM desk,
    cut by the image's edge) cannot outvote a desk with three times the points of a layer above it."""
    from tangram.geometry.plane import Plane
    from tangram.geometry.table import _plane_under

    def cloud(counts: dict[float, int], seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.vstack([np.column_stack([rng.uniform(-2, 2, (n, 2)), h + rng.normal(0, 0.01, n)])
                          for h, n in counts.items()])

    up = np.array([0.0, 0.0, 1.0])
    counts = {0.0: 717, -1.875: 963, -0.798: 122, -0.398: 217}
    xyz = cloud(counts, 5)
    ref, *levels = [Plane(up, -h) for h in counts]
    for first in (-0.845, -0.851, -0.86):  # inside, just outside, well outside the table's window
        anchors = [(np.array([0.0, 0.0, first]), 1.696), (np.array([0.5, 0.5, -0.363]), 1.49),
                   (np.array([-0.5, 0.5, -0.069]), 1.046)]
        assert _plane_under(levels, ref, anchors, 0.0585, xyz) is ref, first
    counts = {0.0: 532, -1.83: 91, -0.44: 55, 0.39: 162, 0.8: 121}
    xyz = cloud(counts, 6)
    ref, *levels = [Plane(up, -h) for h in counts]
    bottoms = [-0.54, 0.31, 0.62, 0.24, 1.16, 1.52, -0.07, 1.19]
    anchors = [(np.array([0.1 * k, 0.0, b]), 0.06) for k, b in enumerate(bottoms)]
    assert _plane_under(levels, ref, anchors, 0.066, xyz) is ref


def test_the_floor_is_a_fitted_plane_measured_under_the_table() -> None:
    """A floor 3 degrees off the table's normal (a reconstruction slightly bent over the room) spans
    several height levels; its height under the table's centre is what the table stands on."""
    from tangram.geometry.plane import Plane
    from tangram.geometry.table import _height_under, floor_plane

    rng = np.random.default_rng(6)
    tilt = np.deg2rad(3.0)
    fx, fy = rng.uniform(-4, 4, 3000), rng.uniform(-3, 3, 3000)
    floor = np.column_stack([fx, fy, -1.8 + np.tan(tilt) * fx + rng.normal(0, 0.01, 3000)])
    top = np.column_stack([rng.uniform(0.5, 1.5, (600, 2)), rng.normal(0, 0.005, 600)])
    clutter = np.column_stack([rng.uniform(-4, 4, (150, 2)), rng.uniform(-1.5, 0.5, 150)])
    xyz = np.vstack([floor, top, clutter])
    table = Plane(np.array([0.0, 0.0, 1.0]), 0.0)
    cameras = np.column_stack([rng.uniform(-2, 2, (20, 2)), np.full(20, 1.5)])
    found = floor_plane(xyz, table, 0.02, cameras)
    assert found is not None
    height = _height_under(table, found, top.mean(axis=0))
    truth = -1.8 + np.tan(tilt) * top[:, 0].mean()  # the floor right under the table's centre
    assert height == pytest.approx(truth, abs=0.03)
    # with nothing well below the top (a close-up of a table), there is no floor
    assert floor_plane(np.vstack([top, top[:50] - [0, 0, 0.05]]), table, 0.02, cameras) is None


def test_retrieval_pairs_link_a_loop_and_stay_linear() -> None:
    """An orbit whose last images see what the first saw: the window links neighbours, retrieval
    links the ends; the pair count is at most n (window + neighbours), and exhaustive matching is
    chosen only while it is no more pairs than that."""
    from tangram.geometry.pairs import bag_of_words, exhaustive_is_cheaper, window_and_retrieval_pairs

    rng = np.random.default_rng(0)
    n, places = 40, rng.uniform(0, 255, (20, 50, 128))  # 20 places round the orbit, 50 features each
    descriptors = []
    for i in range(n):
        place = round(i / n * 20) % 20  # image 39 is back at place 0
        descriptors.append((places[place] + rng.normal(0, 4, (50, 128))).clip(0, 255).astype(np.uint8))
    words = bag_of_words(descriptors, seed=0)
    pairs = window_and_retrieval_pairs(words @ words.T, window=3, neighbours=2)
    assert (0, n - 1) in pairs or (1, n - 1) in pairs  # the loop is closed
    assert all((i, i + 1) in pairs for i in range(n - 1))
    assert len(pairs) <= n * 5 and len(set(pairs)) == len(pairs) and all(a < b for a, b in pairs)
    assert window_and_retrieval_pairs(words @ words.T, 3, 2) == pairs  # deterministic
    assert exhaustive_is_cheaper(11, 3, 2) and not exhaustive_is_cheaper(12, 3, 2)


def test_table_frame_axes_follow_the_first_camera() -> None:
    rng = np.random.default_rng(2)
    top = np.column_stack([rng.uniform(-0.6, 0.6, 300), rng.uniform(-0.4, 0.4, 300), np.full(300, 0.75)])
    camera = look_at(np.array([0.0, -1.0, 1.3]), np.array([0.0, 0.0, 0.75]))
    plane, _ = ransac_plane(top, 0.005)
    frame = build_table_frame(plane, camera, top, camera[:3, 3][None])
    assert np.allclose(frame.apply(top)[:, 2], 0.0, atol=1e-9)  # table top at z = 0
    cam = frame.apply(camera[:3, 3][None])[0]
    assert cam[2] > 0.5 and cam[1] < -0.9 and abs(cam[0]) < 0.02  # camera above, behind (y < 0)
    assert abs(frame.apply(np.array([[0.3, 0.0, 0.75]]))[0, 0] - 0.3) < 0.01  # world x is table x here
    assert sorted(frame.rect_size) == pytest.approx([0.8, 1.2], rel=0.1)  # 2-98 % trimmed extent


def test_umeyama_recovers_a_similarity() -> None:
    rng = np.random.default_rng(3)
    src = rng.normal(size=(20, 3))
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    dst = 2.5 * src @ rot.T + [1.0, -2.0, 0.5]
    s, r, t = umeyama(src, dst)
    assert s == pytest.approx(2.5) and np.allclose(r, rot) and np.allclose(t, [1.0, -2.0, 0.5])


def _obj(tid: int, cls: str, height: float, width: float, method: str = "hull") -> Object3D:
    return Object3D(
        tid,
        cls,
        np.zeros(3),
        np.zeros(3),
        np.array([width, width, height]),
        0.0,
        20,
        False,
        method,
        5,
        {"apparent_width": width},
    )


def test_scale_from_known_size_and_from_class_priors() -> None:
    # a scene reconstructed at 1/5 of metric size: a mug of 9.5 cm measures 0.019 units
    known = estimate_scale([_obj(1, "cup", 0.019, 0.018)], 1.0, ("cup", 0.095))
    assert known.method == "known_size" and known.metres_per_unit == pytest.approx(5.0)
    priors = estimate_scale([_obj(1, "apple", 0.015, 0.016), _obj(2, "cup", 0.019, 0.018)], 1.0)
    assert priors.method == "class_priors"
    assert priors.metres_per_unit == pytest.approx(5.0, rel=0.1)
    assert 0.0 < priors.uncertainty < 0.3
    # nothing recognisable: the camera-distance prior, with a large uncertainty
    fallback = estimate_scale([_obj(1, "tray", 0.02, 0.08)], 2.0)
    assert fallback.method == "camera_distance_prior" and fallback.uncertainty >= 0.5


def test_ply_round_trip(tmp_path: Path) -> None:
    xyz = np.random.default_rng(4).normal(size=(10, 3))
    rgb = np.arange(30, dtype=np.uint8).reshape(10, 3)
    write_ply(tmp_path / "p.ply", xyz, rgb)
    back_xyz, back_rgb = read_ply_vertices(tmp_path / "p.ply")
    assert np.allclose(back_xyz, xyz, atol=1e-6) and np.array_equal(back_rgb, rgb)


def test_keyframes_are_spread_by_motion_and_capped() -> None:
    # 100 frames; the camera moves only during the second half
    steps = np.r_[np.zeros(50), np.full(50, 0.01)]
    stats = kf.FrameStats(list(range(100)), np.ones(100), steps, max_displacement=0.3)
    sel = kf.select_keyframes(stats, max_keyframes=10, min_keyframes=3, min_step=0.05)
    assert 3 <= len(sel.frames) <= 10
    assert sum(f < 50 for f in sel.frames) <= 1  # motionless frames add no parallax
    static = kf.select_keyframes(kf.FrameStats(list(range(20)), np.ones(20), np.zeros(20), 0.002), 10, 3)
    assert static.static and static.frames == []


# --- inputs that cannot be reconstructed ---------------------------------------------------------------


def test_static_camera_is_refused_with_a_clear_reason() -> None:
    from config import default_config

    source = open_media(real_file("coffee_static_camera.mp4"))
    with pytest.raises(StageFailed, match="camera barely moves: no parallax"):
        plan_keyframes(source, default_config().reconstruction, [])


def test_single_image_is_refused() -> None:
    from config import default_config

    with pytest.raises(StageFailed, match="single image has no parallax"):
        plan_keyframes(open_media(real_file("bus.jpg")), default_config().reconstruction, [])


# --- the sample scene, scored -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sample() -> SampleScene:
    return load_sample(ensure_sample(0).parent)


@pytest.fixture(scope="session")
def gt_run(sample: SampleScene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reconstruction + scene_graph on the sample, fed ground-truth tracks and masks (every 5th frame)."""
    from config import default_config
    from tangram.stages import reconstruction, scene_graph

    root = tmp_path_factory.mktemp("gt_run")
    write_gt_upstream(sample, root / "tracking", root / "segmentation", range(0, sample.num_frames, 5))
    config = default_config()
    upstream = {"tracking": root / "tracking", "segmentation": root / "segmentation"}
    (root / "reconstruction").mkdir()
    reconstruction.run(
        StageContext("reconstruction", sample.video_path, root / "reconstruction", upstream, config)
    )
    (root / "scene_graph").mkdir()
    scene_graph.run(
        StageContext(
            "scene_graph",
            sample.video_path,
            root / "scene_graph",
            {"reconstruction": root / "reconstruction"},
            config,
        )
    )
    return root


def test_sample_cameras_match_ground_truth(sample: SampleScene, gt_run: Path) -> None:
    stats = read_json(gt_run / "reconstruction" / "stats.json")
    cams = read_json(gt_run / "reconstruction" / "cameras.json")
    pred = {f["frame_index"]: np.array(f["world_from_camera"]) for f in cams["frames"]}
    err = camera_centre_errors(pred, {f: sample.world_from_camera(f) for f in pred})
    scale_error = 1 / err["sim3_scale"] - 1  # our metres against true metres
    print(
        f"sample SfM: {stats['frames_registered']}/{stats['frames_selected']} keyframes registered of "
        f"{stats['frames_analysed']} frames, {stats['points3D']} points, reprojection "
        f"{stats['mean_reprojection_error_px']:.2f} px; camera centres after Sim(3): median "
        f"{err['median_m'] * 1000:.1f} mm, max {err['max_m'] * 1000:.1f} mm, rotation "
        f"{err['median_rotation_deg']:.2f} deg; scale error {scale_error:+.1%} "
        f"(reported 1 sigma {cams['scale']['uncertainty']:.0%}, {cams['scale']['method']})"
    )
    assert stats["frames_registered"] == stats["frames_selected"] >= 10
    assert stats["frames_selected"] < sample.num_frames / 2  # keyframe selection, not every frame
    assert err["median_m"] < 0.01 and err["median_rotation_deg"] < 1.0
    assert stats["mean_reprojection_error_px"] < 1.5
    assert abs(scale_error) < 0.15
    assert abs(np.log1p(scale_error)) < 3 * cams["scale"]["uncertainty"]  # the uncertainty is honest
    # the table frame is gravity-aligned and its z = 0 is the true table top
    up = err["sim3_rotation"] @ [0.0, 0.0, 1.0]
    tilt = np.degrees(np.arccos(np.clip(up[2], -1, 1)))
    height_error = err["sim3_translation"][2] - sample.table_top_z
    print(
        f"table plane: tilt {tilt:.2f} deg, height error {height_error * 1000:.1f} mm, "
        f"origin: {cams['table']['origin']}"
    )
    assert tilt < 2.0
    assert abs(height_error) < 0.01


def test_sample_objects_are_placed_within_3cm(sample: SampleScene, gt_run: Path) -> None:
    objects = read_json(gt_run / "reconstruction" / "objects.json")["objects"]
    cams = read_json(gt_run / "reconstruction" / "cameras.json")
    assert cams["table"]["origin"] == "camera fixation point"
    pred = {o["track_id"]: np.array(o["box"]["center"]) for o in objects}
    # the true frame with TANGRAM's origin rule (the fixation point of the same keyframes' true cameras)
    err = object_position_errors(
        pred, gt_objects_in_table(sample, [f["frame_index"] for f in cams["frames"]])
    )
    print(
        f"sample objects: median position error {err['median_m'] * 100:.1f} cm, "
        f"max {err['max_m'] * 100:.1f} cm, "
        f"{err['median_relative_m'] * 100:.1f} cm without the table-origin offset "
        f"({err['origin_offset_m'] * 100:.1f} cm); per object {err['per_object_m']}"
    )
    assert err["objects"] == len(sample.objects) and not err["missing"]
    assert err["median_m"] <= 0.03
    # The four objects seen whole are held to 3 cm each.
    assert sorted(err["per_object_m"].values())[-2] <= 0.03
    # The tray (42 cm across, at the table's far end) is cut by the image border in 14 of the 20
    # keyframe masks: its far part is never seen, so no method can centre it; what the views show of
    # it (the hull of the seen part) must lie on it: its centre inside the true footprint.
    truth = gt_objects_in_table(sample, [f["frame_index"] for f in cams["frames"]])
    tray = next(o for o in objects if o["class_name"] == "tray")
    off = np.abs(np.array(tray["box"]["center"][:2]) - truth[tray["track_id"]]["position"][:2])
    assert np.all(off <= truth[tray["track_id"]]["size"][:2] / 2), (off, truth[tray["track_id"]])
    for o in objects:
        assert o["box"]["size"][2] > 0.03 and o["support"] >= 0 and len(o["color"]) == 3


def test_sample_relations_precision_and_recall(sample: SampleScene, gt_run: Path) -> None:
    from tangram.geometry.graph import read_node_link, relation_set

    graph = read_node_link(gt_run / "scene_graph" / "scene_graph.json")
    scores = score_relations(relation_set(graph), gt_relations(sample, near_factor=1.5))
    print(
        "sample relations: "
        + "; ".join(
            f"{k}: P {v['precision']:.2f} R {v['recall']:.2f} ({v['true_positives']}/{v['predicted']} pred, "
            f"{v['truth']} true)"
            for k, v in scores.items()
        )
    )
    assert scores["all"]["precision"] >= 0.9 and scores["all"]["recall"] >= 0.9
    assert scores["support"]["precision"] >= 0.9 and scores["support"]["recall"] >= 0.9


def test_global_mapper_keeps_known_intrinsics(tmp_path: Path) -> None:
    """GLOMAP-style global mapping on real photos, with the TUM intrinsics held fixed."""
    import shutil

    from tangram.geometry.sfm import SfmOptions, run_sfm

    photos = sorted(real_file("tum_office_desk").iterdir())[:8]
    for photo in photos:
        shutil.copy(photo, tmp_path / photo.name)
    options = SfmOptions(
        matcher="exhaustive",
        mapper="global",
        intrinsics=[535.4, 539.2, 320.6, 248.1],
        max_image_size=480,
        max_num_features=2048,
    )
    result = run_sfm(tmp_path, [p.name for p in photos], options)
    assert result.num_registered >= 6
    camera = next(iter(result.reconstruction.cameras.values()))
    assert list(camera.params) == pytest.approx([535.4, 539.2, 320.6, 248.1])


def test_implausibly_large_objects_are_recognised_as_false_detections() -> None:
    import numpy as np

    from tangram.geometry.lifting import Object3D
    from tangram.geometry.scale import implausible_size

    def obj(cls: str, size: list[float]) -> Object3D:
        zero = np.zeros(3)
        return Object3D(1, cls, zero, zero, np.array(size), 0.0, 10, False, "hull", 5)

    assert implausible_size(obj("cup", [0.1, 0.08, 0.09])) is None
    assert implausible_size(obj("teddy bear", [0.5, 0.3, 0.45])) is None  # big teddies exist
    assert "implausible size: 0.88 m" in implausible_size(obj("book", [0.42, 0.88, 0.12]))
    assert implausible_size(obj("unknown thing", [5.0, 5.0, 5.0])) is None  # no prior, no verdict


# --- 3D identity, triangulation, consensus scale (issue 9) ------------------------------------------------


def _orbit_views(n: int = 12, radius: float = 0.8, height: float = 0.5) -> dict[int, View]:
    intr = Intrinsics("PINHOLE", 640, 480, (500.0, 500.0, 320.0, 240.0))
    out = {}
    for k in range(n):
        a = 2 * np.pi * k / n
        eye = np.array([radius * np.cos(a), radius * np.sin(a), height])
        out[k] = View(k, intr, look_at(eye, np.zeros(3)))
    return out


def _box_of(view: View, centre: np.ndarray, half: float = 0.04) -> np.ndarray:
    corners = centre + half * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    uv, _ = view.project(corners)
    return np.array([*uv.min(axis=0), *uv.max(axis=0)])


def test_triangulation_recovers_the_centre_and_rejects_a_wrong_view() -> None:
    from tangram.geometry.triangulation import Observation2D, triangulate

    views = _orbit_views()
    target = np.array([0.05, -0.03, 0.04])
    obs = []
    for f, v in views.items():
        centre = target if f != 5 else np.array([0.4, 0.3, 0.0])  # an id switch in one view
        box = _box_of(v, centre)
        obs.append(Observation2D(f, (box[:2] + box[2:]) / 2 + 1.5, box))  # 1.5 px off-centre
    tri = triangulate(views, obs)
    assert tri.credible and 5 not in tri.inliers and len(tri.inliers) >= 10
    assert np.linalg.norm(tri.point - target) < 0.01  # 1 cm on a 8 cm object 0.8 m away
    # two views along nearly the same line of sight fix no depth: not credible, and says why
    close = {0: views[0], 1: View(1, views[0].intrinsics, look_at(np.array([0.79, 0.02, 0.5]), np.zeros(3)))}
    pair = [Observation2D(f, (b[:2] + b[2:]) / 2, b) for f in close for b in [_box_of(close[f], target)]]
    weak = triangulate(close, pair)
    assert not weak.credible and "degrees" in weak.reason


def test_rays_meeting_behind_what_the_views_saw_are_not_a_position() -> None:
    """TUM desk: bottles in a row, a camera stepping sideways, and a track whose box stays where it
    was in the image while the bottles slide by (the tracker swapped it onto its neighbours). Its
    rays meet far behind the partition the views saw through its boxes: the triangulation looks
    credible by its own numbers, but that position is hidden, and the boxes' bottoms still stand
    on the desk. A bottle tracked right is not hidden."""
    from tangram.geometry.lifting import PointCloud, footprint_guess, hidden_behind_points
    from tangram.geometry.triangulation import Observation2D, triangulate

    intr = Intrinsics("PINHOLE", 640, 480, (530.0, 530.0, 320.0, 240.0))
    # the camera steps 10 cm sideways and turns a little: its axes meet 3 m ahead, far behind the desk
    views = {k: View(k, intr, look_at(np.array([-0.15 + 0.1 * k, -1.5, 0.6]), np.array([0.0, 1.5, 0.1])))
             for k in range(4)}
    rng = np.random.default_rng(0)
    wall = np.column_stack([rng.uniform(-0.8, 0.8, 900), np.full(900, 0.3), rng.uniform(0.0, 0.6, 900)])
    desk = np.column_stack([rng.uniform(-0.8, 0.8, 600), rng.uniform(-0.6, 0.3, 600), np.zeros(600)])
    xyz = np.vstack([wall, desk])
    seen = {}
    for k, view in views.items():
        uv, depth = view.project(xyz)
        ok = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 480)
        seen[k] = (np.flatnonzero(ok), uv[ok])
    cloud = PointCloud(xyz, np.zeros((len(xyz), 3), np.uint8), seen)

    def bottle_box(view: View, centre: np.ndarray) -> np.ndarray:  # a 6 cm x 20 cm bottle
        corners = centre + np.array([[x, y, z] for x in (-0.03, 0.03) for y in (-0.03, 0.03) for z in (-0.1, 0.1)])
        uv, _ = view.project(corners)
        return np.array([*uv.min(axis=0), *uv.max(axis=0)])

    bottle = np.array([0.0, 0.0, 0.1])
    good = {k: bottle_box(v, bottle) for k, v in views.items()}
    # the swapped track: in every view the box sits where bottle 0's box was in view 0
    stuck = {k: good[0].copy() for k in views}
    tri_good = triangulate(views, [Observation2D(k, (b[:2] + b[2:]) / 2, b) for k, b in good.items()])
    tri_stuck = triangulate(views, [Observation2D(k, (b[:2] + b[2:]) / 2, b) for k, b in stuck.items()])
    assert np.linalg.norm(tri_good.point - bottle) < 0.02
    assert tri_stuck.credible and tri_stuck.point[1] > 0.6  # "credible", and behind the partition at y = 0.3
    assert hidden_behind_points(tri_good.point, views, good, cloud, 0.06) == ""
    reason = hidden_behind_points(tri_stuck.point, views, stuck, cloud, 0.06)
    assert "behind the surfaces those views saw" in reason and "4 of 4 views" in reason
    centre, _, _ = footprint_guess(views, stuck)  # where the boxes stand: on the desk, by the row
    assert abs(centre[1]) < 0.15 and abs(centre[0]) < 0.25


def test_fragments_of_one_object_fuse_but_side_by_side_objects_do_not() -> None:
    from tangram.geometry.fusion import apply_fusion, fuse_tracks, track_evidence
    from tangram.geometry.observations import Detection, Observations, TrackInfo

    views = _orbit_views()
    cup = np.array([0.0, 0.0, 0.05])
    other = np.array([0.25, 0.0, 0.05])
    obs = Observations(processed_frames=len(views))
    for f, v in views.items():
        # the cup is track 4 ("cup") in the first half and track 9 ("bottle", class flicker) later;
        # a second cup (track 6) stands 25 cm away, seen beside it in every frame
        tid, cls = (4, "cup") if f < 6 else (9, "bottle")
        obs.by_frame[f] = [
            Detection(tid, cls, _box_of(v, cup), 0.8 if cls == "cup" else 0.5),
            Detection(6, "cup", _box_of(v, other), 0.8),
        ]
    obs.tracks = {4: TrackInfo("cup", 6), 9: TrackInfo("bottle", 6), 6: TrackInfo("cup", 12)}
    fusion = fuse_tracks(obs, track_evidence(obs, views))
    assert fusion.members == {4: [4, 9], 6: [6]}
    apply_fusion(obs, fusion)
    assert obs.tracks[4].class_name == "cup" and obs.tracks[4].num_frames == 12 and 9 not in obs.tracks


def test_consensus_scale_rejects_a_class_that_disagrees() -> None:
    from tangram.geometry.scale import furniture_votes

    # true scale 5 m/unit: cups and a chair agree; the "sandwich" is a fruit basket 4x its prior
    objs = [_obj(i, "cup", 0.019, 0.018) for i in (1, 2, 3)] + [_obj(4, "sandwich", 0.04, 0.096)]
    votes = furniture_votes([(7, "chair", 0.17, 0.1)], table_height=0.148, table_seen=True)
    est = estimate_scale(objs, 1.0, None, votes)
    assert est.method == "consensus" and est.metres_per_unit == pytest.approx(5.0, rel=0.1)
    used = {e["class_name"]: e["used"] for e in est.evidence}
    assert used["sandwich"] is False and used["cup"] and used["chair"] and used["dining table"]
    assert 0.0 < est.uncertainty < 0.3
    # the user's known size still wins
    known = estimate_scale(objs, 1.0, ("cup", 0.19), votes)
    assert known.method == "known_size" and known.metres_per_unit == pytest.approx(10.0)
    # nothing recognised but a floor: the camera-height prior, flagged by its uncertainty
    prior = estimate_scale([_obj(1, "tray", 0.02, 0.08)], 2.0, None, (), camera_height=0.3)
    assert prior.method == "camera_height_prior" and prior.uncertainty >= 0.3


def test_two_weak_classes_that_agree_do_not_outvote_the_table_height() -> None:
    from tangram.geometry.scale import furniture_votes

    # true scale 0.4 m/unit: the table top stands 0.74 m above the floor (1.85 units); two fruit
    # baskets taken for sandwiches and two large plants both read ~3x too small a scale. With three
    # classes the MAD floor kept every class (0.28 m/unit); they must be rejected, not averaged in.
    objs = [_obj(1, "sandwich", 0.35, 1.2), _obj(2, "sandwich", 0.3, 1.0),
            _obj(3, "potted plant", 2.2, 1.6), _obj(4, "potted plant", 1.8, 2.0)]
    votes = furniture_votes([], table_height=1.85, table_seen=True)
    est = estimate_scale(objs, 1.0, None, votes)
    used = {e["class_name"]: e["used"] for e in est.evidence}
    assert used == {"sandwich": False, "potted plant": False, "dining table": True}
    assert est.metres_per_unit == pytest.approx(0.4, rel=0.05)


def test_deflate_still_works_after_pycolmap_loads() -> None:
    """pycolmap's extension carries its own static zlib; a system libz first loaded as its dependency
    binds to those symbols and every later deflate aborts the process ("free(): invalid pointer").
    Importing pycolmap through tangram loads the system zlib first (tangram/__init__.py): Python's
    zlib, OpenCV's and PIL's PNG writers all work after it, in a fresh process."""
    code = (
        "import tangram.geometry.sfm, zlib, cv2, numpy as np, io\n"
        "from PIL import Image\n"
        "data = np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8)\n"
        "assert zlib.decompress(zlib.compress(data.tobytes())) == data.tobytes()\n"
        "ok, png = cv2.imencode('.png', data)\n"
        "assert ok and (cv2.imdecode(png, cv2.IMREAD_COLOR) == data).all()\n"
        "buf = io.BytesIO(); Image.fromarray(data).save(buf, format='PNG')\n"
        "print('deflate ok', len(buf.getvalue()) > 100_000)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "deflate ok True"

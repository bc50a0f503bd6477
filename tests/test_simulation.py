"""Simulation: plans executed by the pybullet Panda on the sample scene's ground truth and on
synthetic scenes, post-conditions checked in the physics, artefacts written."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from config import PlanningConfig, SimulationConfig, TangramConfig
from tangram.errors import StageFailed
from tangram.fileio import read_json, write_json
from tangram.planning.plan import make_plan
from tangram.planning.world import World, scene_graph_from_objects, world_from_scene_graph
from tangram.sim.ground_truth import scene_graph_from_ground_truth
from tangram.sim.simulate import simulate
from tangram.stages import planning as planning_stage
from tangram.stages import simulation as simulation_stage
from tangram.stages.base import StageContext

NO_VIDEO = SimulationConfig(record_video=False)


@pytest.fixture(scope="session")
def sample_scene_graph(tmp_path_factory) -> dict:
    """The sample scene's ground truth as a scene graph (3 frames rendered: only the GT is used)."""
    from tangram.sample_scene import render_sample

    root = tmp_path_factory.mktemp("sample") / "seed0"
    render_sample(root, seed=0, num_frames=3, width=160, height=120)
    return scene_graph_from_ground_truth(root)


def as_world(scene: dict) -> World:
    return world_from_scene_graph(json.loads(json.dumps(scene)))


def ids_by_class(world: World) -> dict[str, int]:
    return {o.class_name: i for i, o in world.objects.items()}


def test_ground_truth_scene_graph_is_tight_and_in_the_table_frame(sample_scene_graph: dict) -> None:
    world = as_world(sample_scene_graph)
    ids = ids_by_class(world)
    assert set(ids) == {"cup", "bowl", "teddy bear", "sports ball", "tray"}
    ball = world.objects[ids["sports ball"]]
    assert ball.size[0] == pytest.approx(ball.size[1], abs=1e-3) == pytest.approx(ball.size[2], abs=1e-3)
    assert 0.05 < ball.size[0] < 0.075  # a ball the hand can hold
    assert ball.position[2] == pytest.approx(ball.size[2] / 2, abs=3e-3)  # resting on the table top (z = 0)
    assert world.objects[ids["cup"]].grasp_width < 0.075  # mesh vertices, not pybullet's padded AABB
    assert all(world.reachable(*o.position[:2]) for o in world.objects.values())


def test_sample_cup_in_bowl_succeeds_deterministically(sample_scene_graph: dict, tmp_path: Path) -> None:
    world = as_world(sample_scene_graph)
    plan = make_plan(world, PlanningConfig(planner="offline"), "put the cup in the bowl")
    runs = [simulate(world, plan, NO_VIDEO, tmp_path / f"run{i}") for i in range(2)]
    first = runs[0]
    assert first["success"], first["failure_reason"]
    # the arm stands where the planner placed it for the cup and the bowl, not for every object
    assert plan["robot_placement"]["basis"] == "task"
    assert first["robot"]["base"] == plan["robot_base"] != [round(v, 4) for v in world.robot_base]
    assert [a["action"]["action"] for a in first["actions"]] == ["pick", "place_in", "home"]
    pick, place = first["actions"][0]["checks"], first["actions"][1]["checks"]
    assert pick["lifted_m"] > 0.05 and pick["finger_contacts"] == 2 and pick["finger_gap"] > 0.03
    assert place["inside_xy"] and place["below_rim"] and place["touching_container"]
    ids = ids_by_class(world)
    cup = np.array(first["final_poses"][str(ids["cup"])]["position"])
    bowl = np.array(first["final_poses"][str(ids["bowl"])]["position"])
    assert np.linalg.norm(cup[:2] - bowl[:2]) < 0.05
    assert first["final_poses"] == runs[1]["final_poses"]  # same seed, same physics
    assert first["video"] is None and len(first["keyframes"]) == 4
    assert (tmp_path / "run0" / "keyframes" / "00.png").is_file()


def _run_stages(tmp_path: Path, scene: dict, cfg: TangramConfig) -> tuple[dict, dict, Path]:
    sg_dir, plan_dir, sim_dir = tmp_path / "scene_graph", tmp_path / "planning", tmp_path / "simulation"
    write_json(sg_dir / "scene_graph.json", scene)
    plan_dir.mkdir()
    sim_dir.mkdir()
    planning_stage.STAGE.run(
        StageContext("planning", tmp_path / "in.mp4", plan_dir, {"scene_graph": sg_dir}, cfg)
    )
    outcome = simulation_stage.STAGE.run(
        StageContext(
            "simulation", tmp_path / "in.mp4", sim_dir, {"scene_graph": sg_dir, "planning": plan_dir}, cfg
        )
    )
    result = read_json(sim_dir / "result.json")
    assert outcome.summary["success"] == result["success"]
    return read_json(plan_dir / "plan.json"), result, sim_dir


def test_sample_clear_table_into_tray_through_the_stages(sample_scene_graph: dict, tmp_path: Path) -> None:
    cfg = TangramConfig(
        planning=PlanningConfig(task="clear the table into the tray", planner="offline"),
        simulation=SimulationConfig(video_size=(160, 120), video_fps=4),
    )
    plan, result, sim_dir = _run_stages(tmp_path, sample_scene_graph, cfg)
    assert plan["planner"] == "offline:astar"
    assert result["success"], result["failure_reason"]
    assert all(a["success"] for a in result["actions"]) and len(result["actions"]) == len(plan["actions"])
    world = as_world(sample_scene_graph)
    ids = ids_by_class(world)
    tray = result["final_poses"][str(ids["tray"])]
    for name in ("cup", "teddy bear", "sports ball"):
        pos = result["final_poses"][str(ids[name])]["position"]
        assert (
            tray["aabb_min"][0] < pos[0] < tray["aabb_max"][0]
            and tray["aabb_min"][1] < pos[1] < tray["aabb_max"][1]
        )
    assert result["goal_satisfied"] is True
    # the video and the key frames a person looks at
    cap = cv2.VideoCapture(str(sim_dir / "execution.mp4"))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (120, 160, 3) and frames == result["video"]["frames"] > 20
    keyframes = sorted((sim_dir / "keyframes").glob("*.png"))
    assert len(keyframes) == len(plan["actions"]) + 1
    assert cv2.imread(str(keyframes[-1])).shape == (120, 160, 3)


BLOCKS = [
    {"id": 1, "class_name": "block", "xy": (-0.1, 0.0), "size": (0.05, 0.05, 0.04), "color": (200, 40, 40)},
    {"id": 2, "class_name": "block", "xy": (0.1, 0.0), "size": (0.06, 0.06, 0.04), "color": (40, 70, 200)},
    {"id": 3, "class_name": "box", "xy": (0.0, -0.15), "size": (0.10, 0.10, 0.05), "color": (40, 160, 60)},
]


def test_stack_and_push_blocks(tmp_path: Path) -> None:
    world = as_world(scene_graph_from_objects(BLOCKS, (0.8, 0.6)))
    stack = simulate(
        world,
        make_plan(world, PlanningConfig(planner="offline"), "stack object 1 on object 2"),
        NO_VIDEO,
        tmp_path / "stack",
    )
    assert stack["success"], stack["failure_reason"]
    top = stack["final_poses"]["1"]
    assert top["aabb_min"][2] == pytest.approx(0.04, abs=0.01) and top["tilt_deg"] < 5
    push_plan = make_plan(world, PlanningConfig(planner="offline"), "push object 2 right by 8 cm")
    assert push_plan["actions"][0] == {"action": "push", "object": 2, "dx": 0.08, "dy": 0.0}
    push = simulate(world, push_plan, NO_VIDEO, tmp_path / "push")
    assert push["success"], push["failure_reason"]
    moved = push["actions"][0]["checks"]["moved_along_m"]
    assert 0.04 < moved < 0.14


def test_impossible_grasp_fails_with_a_reason(tmp_path: Path) -> None:
    """A plan that asks for a 10 cm mug anyway (the planner refuses it: its body is 8.8 cm along the
    handle, 10 cm across): the simulation refuses the pick with the same sentence before the hand
    moves, and the mug stays where it was."""
    big_mug = {"id": 4, "class_name": "cup", "xy": (0.0, 0.12), "size": (0.10, 0.13, 0.09)}
    world = as_world(scene_graph_from_objects([*BLOCKS[:2], big_mug], (0.8, 0.6)))
    assert not world.objects[4].graspable()[0] and "8.8 cm across" in world.objects[4].graspable()[1]
    plan = {
        "task": "pick the mug",
        "planner": "test",
        "actions": [{"action": "pick", "object": 4}, {"action": "home"}],
    }
    result = simulate(world, plan, NO_VIDEO, tmp_path)
    assert result["success"] is False and len(result["actions"]) == 1
    assert "cup 4 is 8.8 cm across at its narrowest" in result["failure_reason"]
    assert result["final_poses"]["4"]["position"][2] == pytest.approx(0.045, abs=0.005)  # untouched
    reference = as_world(scene_graph_from_objects(BLOCKS, (0.8, 0.6)))
    with pytest.raises(StageFailed, match=r"10\.0 cm across"):  # a plain box is refused by the planner
        make_plan(reference, PlanningConfig(planner="offline"), "put object 3 on object 2")


def test_simulation_stage_rejects_a_bad_plan(tmp_path: Path) -> None:
    sg_dir, plan_dir = tmp_path / "scene_graph", tmp_path / "planning"
    write_json(sg_dir / "scene_graph.json", scene_graph_from_objects(BLOCKS, (0.8, 0.6)))
    write_json(plan_dir / "plan.json", {"actions": [{"action": "teleport", "object": 1}]})
    (tmp_path / "simulation").mkdir()
    ctx = StageContext(
        "simulation",
        tmp_path / "in.mp4",
        tmp_path / "simulation",
        {"scene_graph": sg_dir, "planning": plan_dir},
        TangramConfig(),
    )
    with pytest.raises(StageFailed, match="unknown action 'teleport'"):
        simulation_stage.STAGE.run(ctx)

"""Planning: task parsing, plan validation, the offline A* planner, the LLM client's fallback path
and the planning stage's output. No LLM server needed here (see test_llm_server.py)."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import PlanningConfig, TangramConfig
from tangram.errors import StageFailed
from tangram.fileio import read_json, write_json
from tangram.planning.actions import Action, ActionParseError, parse_plan, plan_schema
from tangram.planning.llm import extract_json
from tangram.planning.plan import default_task, make_plan
from tangram.planning.search import PlanningFailed, plan_offline
from tangram.planning.symbolic import initial_state
from tangram.planning.tasks import TaskNotUnderstood, parse_task
from tangram.planning.validate import validate_plan
from tangram.planning.world import World, scene_graph_from_objects, world_from_scene_graph
from tangram.stages.base import StageContext
from tangram.stages.planning import STAGE

FAKE_KEY = "sk-test-not-secret-planning"

OBJECTS = [
    {"id": 1, "class_name": "cup", "xy": (-0.15, 0.05), "size": (0.06, 0.085, 0.09), "color": (200, 30, 30)},
    {"id": 2, "class_name": "bowl", "xy": (0.0, 0.15), "size": (0.17, 0.17, 0.07)},
    {"id": 3, "class_name": "block", "xy": (0.15, 0.0), "size": (0.05, 0.05, 0.05), "color": (30, 60, 200)},
    {"id": 4, "class_name": "sports ball", "xy": (-0.05, -0.12), "size": (0.06, 0.06, 0.06)},
    {"id": 5, "class_name": "tray", "xy": (0.27, 0.25), "size": (0.3, 0.22, 0.05)},
    {"id": 6, "class_name": "block", "xy": (-0.25, -0.1), "size": (0.06, 0.06, 0.04), "color": (200, 60, 30)},
]


def make_world(objects: list[dict] = OBJECTS, table: tuple[float, float] = (1.0, 0.8)) -> World:
    # through JSON, as the stage reads it
    return world_from_scene_graph(json.loads(json.dumps(scene_graph_from_objects(objects, table))))


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def test_world_reads_scene_graph_and_places_robot_in_reach(world: World) -> None:
    assert sorted(world.objects) == [1, 2, 3, 4, 5, 6]
    assert world.objects[2].is_container and world.objects[5].is_container
    assert not world.objects[3].is_container and world.objects[3].flat_top
    assert all(world.reachable(*o.position[:2]) for o in world.objects.values())
    assert world.objects[2].graspable()[0] is False  # 17 cm bowl: wider than the hand opens
    assert world.objects[1].graspable()[0] is True


def test_parse_task_forms(world: World) -> None:
    goal = parse_task("Put the cup in the bowl", world)
    assert goal.form == "in" and [(a.kind, a.obj, a.target) for a in goal.atoms] == [("in", 1, 2)]
    goal = parse_task("put the red block on the blue block", world)
    assert [(a.kind, a.obj, a.target) for a in goal.atoms] == [("on", 6, 3)]
    goal = parse_task("clear the table into the tray", world)
    assert goal.form == "clear_table" and {a.obj for a in goal.atoms} == {1, 3, 4, 6}
    assert all(a.target == 5 for a in goal.atoms) and any("bowl 2" in n for n in goal.notes)
    goal = parse_task("stack the blocks", world)
    assert [(a.obj, a.target) for a in goal.atoms] == [(3, 6)]  # the larger block at the bottom
    goal = parse_task("push block 3 left by 5 cm", world)
    assert goal.atoms[0].push_ok and goal.atoms[0].xy == pytest.approx((0.10, 0.0))
    assert parse_task("sort the objects by class", world).form == "sort"
    assert parse_task("go home", world).form == "home"


def test_parse_task_refuses_ambiguity_and_nonsense(world: World) -> None:
    with pytest.raises(TaskNotUnderstood, match="ambiguous"):
        parse_task("put the block in the tray", world)
    with pytest.raises(TaskNotUnderstood, match="does not understand"):
        parse_task("dance", world)
    with pytest.raises(TaskNotUnderstood, match="not in the scene"):
        parse_task("put object 9 in the bowl", world)


def test_default_task_uses_the_largest_container(world: World) -> None:
    assert default_task(world) == "clear the table into the tray"


def test_validation_catches_each_precondition(world: World) -> None:
    def errors(actions: list[dict]) -> str:
        return " | ".join(validate_plan(world, parse_plan(actions)).errors)

    assert "not in the scene" in errors([{"action": "pick", "object": 42}])
    assert "already holds" in errors([{"action": "pick", "object": 1}, {"action": "pick", "object": 3}])
    assert "wider than" in errors([{"action": "pick", "object": 2}]) or "too wide" in errors(
        [{"action": "pick", "object": 2}]
    )
    assert "holds nothing" in errors([{"action": "place_in", "container": 2}])
    assert "not a container" in errors(
        [{"action": "pick", "object": 1}, {"action": "place_in", "container": 3}]
    )
    assert "round" in errors([{"action": "pick", "object": 4}, {"action": "place_on", "target": 3}])
    assert "still in the gripper" in errors([{"action": "pick", "object": 1}])
    assert "off the table" in errors(
        [{"action": "pick", "object": 1}, {"action": "place_at", "x": 3.0, "y": 0.0}]
    )
    # a support can't be picked
    stacked = make_world(
        [
            *OBJECTS[:2],
            {"id": 7, "class_name": "block", "xy": (-0.15, 0.05), "size": (0.04, 0.04, 0.04), "on": 1},
        ]
    )
    report = validate_plan(stacked, parse_plan([{"action": "pick", "object": 1}]))
    assert not report.valid and "a support can't be picked" in report.errors[0]
    assert report.steps[0]["ok"] is False


def test_validation_checks_reach_and_goal() -> None:
    far = make_world(
        [
            {"id": 1, "class_name": "cup", "xy": (-1.4, 0.0), "size": (0.06, 0.06, 0.09)},
            {"id": 2, "class_name": "bowl", "xy": (0.0, 0.0), "size": (0.17, 0.17, 0.07)},
            {"id": 3, "class_name": "block", "xy": (0.2, 0.0), "size": (0.05, 0.05, 0.05)},
        ],
        table=(3.0, 0.8),
    )
    report = validate_plan(
        far, parse_plan([{"action": "pick", "object": 1}, {"action": "place_in", "container": 2}])
    )
    assert "out of the arm's reach" in report.errors[0]
    w = make_world()
    goal = parse_task("put the cup in the bowl", w)
    wrong = validate_plan(
        w,
        parse_plan(
            [{"action": "pick", "object": 3}, {"action": "place_in", "container": 2}, {"action": "home"}]
        ),
        goal,
    )
    assert (
        not wrong.valid
        and wrong.goal_satisfied is False
        and "goal not reached: cup 1 in bowl 2" in wrong.errors
    )


def test_offline_planner_moves_blockers_first() -> None:
    w = make_world(
        [
            *OBJECTS[:2],
            {"id": 7, "class_name": "block", "xy": (-0.15, 0.05), "size": (0.04, 0.04, 0.04), "on": 1},
        ]
    )
    goal = parse_task("put the cup in the bowl", w)
    result = plan_offline(w, goal)
    names = [str(a) for a in result.actions]
    assert names[0] == "pick(7)" and names[1].startswith("place_at(")  # unstack the block first
    assert names[2:] == ["pick(1)", "place_in(2)", "home()"]
    assert validate_plan(w, result.actions, goal).valid


def test_offline_planner_builds_stacks_bottom_up() -> None:
    w = make_world(
        [
            {"id": i, "class_name": "block", "xy": (-0.2 + 0.12 * i, 0.0), "size": (s, s, 0.04)}
            for i, s in ((1, 0.04), (2, 0.06), (3, 0.05))
        ]
    )
    goal = parse_task("stack the blocks", w)
    assert [(a.obj, a.target) for a in goal.atoms] == [(3, 2), (1, 3)]
    actions = [str(a) for a in plan_offline(w, goal).actions]
    assert actions == ["pick(3)", "place_on(2)", "pick(1)", "place_on(3)", "home()"]


def test_offline_planner_clears_the_table(world: World) -> None:
    goal = parse_task("clear the table into the tray", world)
    result = plan_offline(world, goal)
    report = validate_plan(world, result.actions, goal)
    assert report.valid and report.goal_satisfied
    assert sum(a.name == "place_in" for a in result.actions) == 4
    final = report.final_state
    assert final is not None and all(final.place(i).ref == 5 for i in (1, 3, 4, 6))


def test_offline_planner_explains_impossible_goals(world: World) -> None:
    with pytest.raises(PlanningFailed, match="round and would roll off"):
        plan_offline(world, parse_task("put the ball on block 6", world))
    small = make_world(
        [
            {"id": 1, "class_name": "tray", "xy": (0.0, 0.1), "size": (0.16, 0.12, 0.05)},
            *[
                {"id": i, "class_name": "block", "xy": (-0.25 + 0.1 * i, -0.1), "size": (0.05, 0.05, 0.04)}
                for i in range(2, 6)
            ],
        ]
    )
    with pytest.raises(PlanningFailed, match="can't hold all"):
        plan_offline(small, parse_task("clear the table into the tray", small))


def test_schema_lists_only_scene_ids_and_containers(world: World) -> None:
    schema = plan_schema(sorted(world.objects), world.containers())
    variants = {
        v["properties"]["action"]["enum"][0]: v for v in schema["properties"]["actions"]["items"]["anyOf"]
    }
    assert set(variants) == {"pick", "place_on", "place_in", "place_at", "push", "home"}
    assert variants["pick"]["properties"]["object"]["enum"] == [1, 2, 3, 4, 5, 6]
    assert variants["place_in"]["properties"]["container"]["enum"] == [2, 5]
    assert all(
        v["additionalProperties"] is False and set(v["required"]) == set(v["properties"])
        for v in variants.values()
    )
    assert "maxItems" not in schema["properties"]["actions"]  # OpenAI strict mode rejects it
    assert plan_schema([1], [], bounded=True)["properties"]["actions"]["maxItems"] > 0


def test_parse_plan_and_extract_json() -> None:
    reply = 'Sure!\n```json\n{"actions": [{"action": "pick", "object": "3"}, {"action": "home"}]}\n```'
    assert parse_plan(extract_json(reply)) == [Action("pick", object=3), Action("home")]
    with pytest.raises(ActionParseError, match="unknown action 'fly'"):
        parse_plan({"actions": [{"action": "fly"}]})
    with pytest.raises(ActionParseError, match="needs x, y"):
        parse_plan({"actions": [{"action": "place_at"}]})
    with pytest.raises(ActionParseError, match="integer"):
        parse_plan([{"action": "pick", "object": 1.5}])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_llm_falls_back_to_offline_and_hides_the_key(world: World, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = PlanningConfig(
        planner="auto",
        base_url=f"http://127.0.0.1:{_closed_port()}/v1",
        api_key=SecretStr(FAKE_KEY),
        timeout_s=5,
        max_retries=1,
    )
    plan = make_plan(world, cfg, "put the cup in the bowl")
    assert plan["planner"] == "offline:astar"
    assert plan["fallback_reason"].startswith("LLM request failed: APIConnectionError")
    assert plan["llm"]["api_key_set"] is True and plan["llm"]["base_url"].startswith("http://127.0.0.1:")
    assert [a["action"] for a in plan["actions"]] == ["pick", "place_in", "home"]
    assert FAKE_KEY not in json.dumps(plan) and FAKE_KEY not in caplog.text
    with pytest.raises(StageFailed, match="APIConnectionError"):
        make_plan(world, cfg.model_copy(update={"planner": "llm"}), "put the cup in the bowl")


def test_no_llm_configured_runs_offline(world: World, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    plan = make_plan(world, PlanningConfig(), None)
    assert plan["task_source"] == "default" and plan["task"] == "clear the table into the tray"
    assert plan["planner"] == "offline:astar" and plan["llm"] is None
    assert plan["fallback_reason"].startswith("no LLM configured")
    assert plan["validation"]["valid"] and plan["validation"]["goal_satisfied"]
    with pytest.raises(StageFailed, match="needs an API key"):
        make_plan(world, PlanningConfig(planner="llm"), None)


def run_planning_stage(tmp_path: Path, scene: dict, cfg: TangramConfig) -> tuple[dict, Path]:
    sg_dir = tmp_path / "scene_graph"
    write_json(sg_dir / "scene_graph.json", scene)
    out = tmp_path / "planning"
    out.mkdir()
    ctx = StageContext(
        stage="planning",
        input_path=tmp_path / "unused.mp4",
        out_dir=out,
        upstream={"scene_graph": sg_dir},
        config=cfg,
    )
    outcome = STAGE.run(ctx)
    assert outcome.backend == read_json(out / "plan.json")["planner"]
    return read_json(out / "plan.json"), out


def test_planning_stage_writes_plan_json(tmp_path: Path) -> None:
    cfg = TangramConfig(planning=PlanningConfig(task="stack the blocks", planner="offline"))
    plan, out = run_planning_stage(tmp_path, scene_graph_from_objects(OBJECTS, (1.0, 0.8)), cfg)
    assert plan["format"] == "tangram.plan/1" and plan["task"] == "stack the blocks"
    assert plan["goal"]["description"] == ["block 3 on block 6"]
    assert plan["offline"]["expansions"] >= 1 and "A*" in plan["offline"]["algorithm"]
    assert plan["actions"] == [
        {"action": "pick", "object": 3},
        {"action": "place_on", "target": 6},
        {"action": "home"},
    ]
    assert [p.name for p in out.iterdir()] == ["plan.json"]


def test_planning_stage_rejects_bad_scene_graph(tmp_path: Path) -> None:
    with pytest.raises(StageFailed, match="no 'table' node"):
        run_planning_stage(
            tmp_path,
            {"directed": True, "multigraph": True, "graph": {}, "nodes": [], "edges": []},
            TangramConfig(),
        )
    (tmp_path / "x").mkdir()
    with pytest.raises(StageFailed, match="not understand"):
        run_planning_stage(
            tmp_path / "x",
            scene_graph_from_objects(OBJECTS, (1.0, 0.8)),
            TangramConfig(planning=PlanningConfig(task="juggle", planner="offline")),
        )


def test_symbolic_state_matches_scene_graph_relations() -> None:
    w = make_world(
        [
            *OBJECTS[:2],
            {"id": 7, "class_name": "block", "xy": (0.0, 0.15), "size": (0.04, 0.04, 0.04), "inside": 2},
        ]
    )
    state = initial_state(w)
    assert state.place(7).kind == "in" and state.place(7).ref == 2 and state.children(2) == [7]
    assert parse_task("put the block in the bowl", w).atoms[0].satisfied(state)


def test_robot_base_is_placed_for_the_tasks_own_objects() -> None:
    # a 2.2 m table with a cup at one end and a block at the other, 1.9 m apart: no base reaches
    # both (the arm's band ends at 0.78 m), so a base placed for every object reaches neither
    wide = make_world(
        [
            {"id": 1, "class_name": "cup", "xy": (-0.95, 0.0), "size": (0.06, 0.06, 0.09)},
            {"id": 2, "class_name": "block", "xy": (0.95, 0.0), "size": (0.05, 0.05, 0.05)},
        ],
        table=(2.2, 0.8),
    )
    assert not all(wide.reachable(*o.position[:2]) for o in wide.objects.values())
    plan = make_plan(wide, PlanningConfig(planner="offline"), "move the block to the right by 10 cm")
    placement = plan["robot_placement"]
    assert placement["basis"] == "task"
    assert set(placement["task_distances_m"]) == {"block 2", "spot (1.05, 0.00)"}
    assert all(0.30 <= d <= 0.78 for d in placement["task_distances_m"].values())
    assert placement["out_of_reach"] == [] and placement["others_out_of_reach"] == ["cup 1"]
    assert "block 2" in placement["reason"] and plan["robot_base"][0] > 0.3  # at the block's end
    assert [a["action"] for a in plan["actions"]][:2] == ["pick", "place_at"]
    # the caller's world keeps its own base; the other end's task places the base there instead
    assert wide.robot_base != tuple(plan["robot_base"])
    other = make_plan(wide, PlanningConfig(planner="offline"), "move the cup to the left by 10 cm")
    assert other["robot_base"][0] < -0.3 and other["robot_placement"]["others_out_of_reach"] == ["block 2"]
    # "go home" names no object: the base is placed for every tabletop object
    assert make_plan(wide, PlanningConfig(planner="offline"), "go home")["robot_placement"]["basis"] == "all"


def test_robot_base_keeps_the_arms_rest_pose_clear_of_tall_objects() -> None:
    # hololens_office's measured desk, in short: a 69 cm tall plant beside a 30 cm tall box; a
    # base placed only clear of its footprint (14 cm) put the resting hand against the plant
    import math

    world = make_world(
        [
            {"id": 1, "class_name": "potted plant", "xy": (-0.45, 0.2), "size": (0.5, 0.5, 0.69)},
            {"id": 2, "class_name": "sandwich", "xy": (-0.1, 0.15), "size": (0.4, 0.4, 0.3)},
            {"id": 3, "class_name": "cup", "xy": (0.25, -0.1), "size": (0.07, 0.07, 0.09)},
        ],
        table=(1.6, 1.0),
    )
    bx, by, yaw = world.robot_base
    fx, fy = math.cos(yaw), math.sin(yaw)
    for obj in (world.objects[1], world.objects[2]):  # both rise above links 1-4 (14 cm)
        dx, dy = obj.position[0] - bx, obj.position[1] - by
        assert math.hypot(dx, dy) - max(obj.half_xy) >= 0.26
    plant = world.objects[1]  # above the resting hand (42 cm): clear of the forearm's strip
    dx, dy = plant.position[0] - bx, plant.position[1] - by
    along = min(max(dx * fx + dy * fy, 0.0), 0.52)
    assert math.hypot(dx - along * fx, dy - along * fy) - max(plant.half_xy) >= 0.13

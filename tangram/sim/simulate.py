"""Run a plan in pybullet and write simulation/: result.json, execution.mp4, keyframes/*.png,
trajectory.npz.

result.json: {"format": "tangram.sim/1", "engine", "mode" (direct|gui), "seed", "planner", "task",
"robot": {"model", "base": [x, y, yaw] (plan.json's robot_base, placed for the task's objects),
"mount"}, "objects": {id: {"class_name", "shape"}},
"actions": [{"index", "action", "success", "reason", "checks", "sim_seconds", "wall_seconds"}],
"success", "failure_reason", "final_poses": {id: {"position", "yaw", "tilt_deg", "aabb_min",
"aabb_max"}}, "world_check": {"below_support": [{id, label, bottom_z, rested_z}], "floor" (a floor
plane was built at the measured floor_z), "world_stood", "settling": {"tolerance_m", "moved" {id:
metres}, "fixed" [ids held static where seen until grasped], "reasons"}, "separated" {id: footprint
scale of objects measured inside each other, shrunk until they touch (tangram.sim.scene.separate_overlaps)}},
"graspability": {id: {"graspable", "reason", "narrowest_cm", "height_cm", "approaches",
"finger_gap_cm"}}, "goal_satisfied" (symbolic goal check on the physics' final state, when the task
parsed), "video": {"path", "codec", "frames", "fps", "size"} | null, "keyframes": [...], "timing",
"trajectory": {"path": "trajectory.npz", "samples", "hz", "sim_seconds"} (the motion at 30 Hz, format in
tangram.sim.trajectory)}.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from config import SimulationConfig
from tangram.errors import StageFailed
from tangram.planning.actions import ActionParseError, parse_plan
from tangram.planning.symbolic import initial_state
from tangram.planning.tasks import TaskNotUnderstood, parse_task
from tangram.planning.world import World
from tangram.sim.bullet import connect
from tangram.sim.bullet import pybullet as p
from tangram.sim.executor import Executor
from tangram.sim.robot import ARM_JOINTS, FINGER_JOINTS, PandaArm
from tangram.sim.scene import SceneBuilder, separate_overlaps
from tangram.sim.trajectory import TRAJECTORY_NAME, TrajectoryLog
from tangram.sim.video import Camera, Recorder

SIM_FORMAT = "tangram.sim/1"
TIME_STEP = 1.0 / 240.0
ProgressFn = Callable[[float, float | None, str], None]


def simulate(
    world: World,
    plan: dict[str, Any],
    cfg: SimulationConfig,
    out_dir: Path,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Execute plan["actions"] on the rebuilt scene; writes artefacts into out_dir, returns result.json."""
    try:
        actions = parse_plan(plan.get("actions"))
    except ActionParseError as exc:
        raise StageFailed(f"plan.json holds an invalid action list: {exc}") from exc
    base = plan.get("robot_base")
    if isinstance(base, list) and len(base) == 3:  # where the planner placed it, for the task's objects
        world = replace(world)
        world.robot_base = (float(base[0]), float(base[1]), float(base[2]))
    # the bodies are built from the separated sizes; the plan's world (what it was checked
    # against, and what the goal is judged by) stays as measured
    built, separated = separate_overlaps(world)
    report = progress or (lambda *a: None)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    t_start = time.perf_counter()
    client, mode = connect(cfg.gui)
    work = Path(tempfile.mkdtemp(prefix="tangram-sim-"))
    recorder: Recorder | None = None
    try:
        client.setGravity(0, 0, -9.81)
        client.setPhysicsEngineParameter(
            fixedTimeStep=TIME_STEP, numSolverIterations=80, deterministicOverlappingPairs=1
        )
        builder = SceneBuilder(client, work)
        table = builder.table(world)
        floor = builder.floor(world)
        bx, by, byaw = world.robot_base
        mount = (
            "table top" if world.table_rect.contains(world.table_rect.around(bx, by, 0, 0)) else "pedestal"
        )
        if mount == "pedestal":
            builder.pedestal(bx, by)
        sims = {oid: builder.add(obj) for oid, obj in sorted(built.objects.items())}
        steps = [0]
        hooks: list[Callable[[int], None]] = []

        def step(n: int) -> None:
            for _ in range(n):
                client.stepSimulation()
                steps[0] += 1
                for hook in hooks:
                    hook(1)
                if mode == "gui":  # real time, so a person can follow it in the window
                    time.sleep(TIME_STEP)

        arm = PandaArm(client, (bx, by), byaw, 0.0, step)
        executor = Executor(client, world, sims, arm, table, initial_state(world), steps)
        trajectory = TrajectoryLog(client, arm.id, (*ARM_JOINTS, *FINGER_JOINTS),
                                   {o: s.body for o, s in sims.items()}, steps, TIME_STEP)
        trajectory.sample()
        hooks.append(trajectory.on_steps)
        seen = {o: client.getBasePositionAndOrientation(s.body) for o, s in sims.items()}
        seen_bottom = lowest_points(client, {o: s.body for o, s in sims.items()})
        executor.settle(max_steps=480)  # the scene graph's boxes rarely rest exactly: let them settle
        executor.anchors, settling = _settling_check(client, builder, sims, seen)
        if settling["fixed"]:
            executor.settle(max_steps=240)
        executor.resync()  # and plan spots from where they came to rest
        camera = Camera(client, _workspace_centre(world), (bx, by), tuple(cfg.video_size))
        video_path = out_dir / "execution.mp4" if cfg.record_video else None
        recorder = Recorder(camera, video_path, cfg.video_fps)
        hooks.append(recorder.on_steps)
        keyframes = [_keyframe(recorder, out_dir, 0, "initial scene")]
        outcomes = []
        for i, action in enumerate(actions):
            report(i, len(actions), f"action {i + 1}/{len(actions)}: {action}")
            started = trajectory.now
            outcome = executor.run(i, action)
            outcomes.append(outcome)
            trajectory.action(i, started, trajectory.now, str(action), outcome.success)
            status = "ok" if outcome.success else "FAILED"
            keyframes.append(_keyframe(recorder, out_dir, i + 1, f"{i + 1}. {action} {status}"))
            if not outcome.success:
                break
        report(len(actions), len(actions), "done")
        moved = {a.object for a in actions if a.object is not None}
        world_check = _world_check(client, sims, seen_bottom, moved, floor)
        world_check["settling"] = settling
        world_check["separated"] = {str(o): f for o, f in sorted(separated.items())}
        result = _result(
            world,
            plan,
            cfg,
            mode,
            mount,
            sims,
            executor,
            outcomes,
            actions,
            recorder,
            keyframes,
            time.perf_counter() - t_start,
            world_check,
        )
        result["trajectory"] = trajectory.save(out_dir / TRAJECTORY_NAME)
        return result
    finally:
        if recorder is not None:
            recorder.close()
        client.disconnect()
        shutil.rmtree(work, ignore_errors=True)


SETTLE_TOLERANCE = 0.02  # an object moving more than this while settling was not resting as seen
BELOW_TOLERANCE = 0.03  # an object's bottom this far under where it rested has fallen


def _settling_check(
    client, builder: SceneBuilder, sims: dict, seen: dict
) -> tuple[dict[int, float], dict[str, Any]]:
    """Objects that moved more than 2 cm while settling are put back where they were seen and
    held there static, never dropped (given their mass back when the robot grasps them); reported with how far
    they went."""
    moved: dict[str, float] = {}
    fixed: list[int] = []
    anchors: dict[int, float] = {}
    for oid, sim in sorted(sims.items()):
        pos, _ = client.getBasePositionAndOrientation(sim.body)
        d = float(np.linalg.norm(np.subtract(pos, seen[oid][0])))
        if d > SETTLE_TOLERANCE:
            moved[str(oid)] = round(d, 4)
            anchors[oid] = builder.fix_in_place(sim, *seen[oid])
            fixed.append(oid)
    return anchors, {
        "tolerance_m": SETTLE_TOLERANCE,
        "moved": moved,
        "fixed": fixed,
        "reasons": {
            str(o): f"{sims[o].obj.label} moved {moved[str(o)] * 100:.1f} cm while settling (nothing held it "
            "where it was seen); held in place there until grasped"
            for o in fixed
        },
    }


def _world_check(client, sims: dict, seen_bottom: dict, moved: set, floor: int | None) -> dict[str, Any]:
    """After the plan: which objects ended below where they rested (their support), other than
    the ones the plan moved, which must stay above the table top (or the floor)."""
    below = []
    lowest = lowest_points(client, {o: s.body for o, s in sims.items()})
    for oid, sim in sorted(sims.items()):
        bottom = lowest[oid]
        ref = min(seen_bottom[oid], 0.0) if oid in moved else seen_bottom[oid]
        if bottom < ref - BELOW_TOLERANCE:
            below.append({"id": oid, "label": sim.obj.label, "bottom_z": round(bottom, 3), "rested_z": round(ref, 3)})
    return {"below_support": below, "floor": floor is not None, "world_stood": not below}


PROBE_Z = -1000.0  # m: a plane far under the world, to measure how low each body reaches


def lowest_points(client, bodies: dict[int, int]) -> dict[int, float]:
    """The height of each body's lowest point, from its collision geometry: the distance to a
    static plane far below (pybullet's closest points). The bounding box of a turned body is looser
    (a teddy bear's convex pieces lying on their side reached 4.5 cm under the tray holding it). The
    plane exists only for the query."""
    plane = client.createMultiBody(0, client.createCollisionShape(client.GEOM_PLANE), -1, [0.0, 0.0, PROBE_Z])
    try:
        out = {}
        for oid, body in bodies.items():
            pts = client.getClosestPoints(body, plane, 2 * abs(PROBE_Z))
            out[oid] = (
                PROBE_Z + min(c[8] for c in pts) if pts else float(client.getAABB(body)[0][2])
            )
        return out
    finally:
        client.removeBody(plane)


def _workspace_centre(world: World) -> tuple[float, float, float]:
    pts = [o.position[:2] for o in world.objects.values()] or [world.table_center]
    x, y = np.mean(pts, axis=0)
    bx, by, _ = world.robot_base
    return (float(x + bx) / 2 * 0.6 + float(x) * 0.4, float(y + by) / 2 * 0.6 + float(y) * 0.4, 0.05)


def _keyframe(recorder: Recorder, out_dir: Path, index: int, caption: str) -> str:
    rel = f"keyframes/{index:02d}.png"
    recorder.keyframe(out_dir / rel, caption)
    return rel


def _final_poses(executor: Executor) -> dict[str, Any]:
    out = {}
    for oid in sorted(executor.objects):
        pos, yaw, tilt = executor.pose(oid)
        lo, hi = executor.aabb(oid)
        out[str(oid)] = {
            "position": [round(float(v), 4) for v in pos],
            "yaw": round(yaw, 4),
            "tilt_deg": round(math.degrees(tilt), 1),
            "aabb_min": [round(float(v), 4) for v in lo],
            "aabb_max": [round(float(v), 4) for v in hi],
        }
    return out


def _goal_check(world: World, plan: dict[str, Any], executor: Executor) -> bool | None:
    try:
        goal = parse_task(plan.get("task") or "", world)
    except TaskNotUnderstood:
        return None
    return goal.satisfied(executor.state)


def _result(
    world: World,
    plan: dict[str, Any],
    cfg: SimulationConfig,
    mode: str,
    mount: str,
    sims: dict,
    executor: Executor,
    outcomes: list,
    actions: list,
    recorder: Recorder,
    keyframes: list[str],
    seconds: float,
    world_check: dict[str, Any],
) -> dict[str, Any]:
    failed = next((o for o in outcomes if not o.success), None)
    actions_done = len(outcomes) == len(actions) and failed is None
    done = actions_done and world_check["world_stood"]
    sim_seconds = sum(o.sim_seconds for o in outcomes)
    return {
        "format": SIM_FORMAT,
        "engine": f"pybullet {p.getAPIVersion()}",
        "mode": mode,
        "seed": cfg.seed,
        "planner": plan.get("planner"),
        "task": plan.get("task"),
        "robot": {
            "model": "franka_panda (pybullet_data)",
            "base": [round(v, 4) for v in world.robot_base],
            "mount": mount,
        },
        "objects": {str(k): {"class_name": s.obj.class_name, "shape": s.shape} for k, s in sims.items()},
        "actions": [o.to_json() for o in outcomes],
        "success": done,
        "failure_reason": None
        if done
        else (
            f"action {failed.index + 1} {failed.action['action']}: {failed.reason}"
            if failed
            else "not all actions ran"
            if not actions_done
            else "objects ended below their support: "
            + ", ".join(b["label"] for b in world_check["below_support"])
        ),
        "world_check": world_check,
        "graspability": {str(o): world.graspability(o) for o in sorted(world.objects)},
        "goal_satisfied": _goal_check(world, plan, executor),
        "final_poses": _final_poses(executor),
        "video": None
        if recorder.writer is None
        else {
            "path": "execution.mp4",
            "codec": recorder.codec,
            "frames": recorder.frames,
            "fps": cfg.video_fps,
            "size": list(cfg.video_size),
        },
        "keyframes": keyframes,
        "timing": {
            "wall_seconds": round(seconds, 3),
            "sim_seconds": round(sim_seconds, 3),
            "wall_per_action": round(seconds / max(len(outcomes), 1), 3),
        },
    }

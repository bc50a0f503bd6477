"""Benchmark: offline planner + pybullet execution over seeded random tabletop scenes.

Each seed draws a table with 3-6 objects (cups, balls, teddy bears, blocks, a bowl and/or a tray),
sizes and poses at random, and a task of a random supported form (put X in Y, put X on Y, clear the
table into the tray, stack, sort by class, push). The offline planner plans it; the simulator runs
it with the real gripper and checks every action's post-condition. Reported: success rate (plans
that ran with every post-condition holding), planning failures (with their reasons), time per
action (wall and simulated) and time per scene.

    .venv/bin/python bench/bench_planning_sim.py --scenes 20 [--seed0 0] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import PlanningConfig, SimulationConfig
from tangram.errors import TangramError
from tangram.planning.plan import make_plan
from tangram.planning.search import precheck
from tangram.planning.symbolic import initial_state, pre_push
from tangram.planning.tasks import parse_task
from tangram.planning.world import World, scene_graph_from_objects, world_from_scene_graph
from tangram.sim.simulate import simulate

TABLE = (1.0, 0.8)
PALETTE = [(200, 40, 40), (40, 160, 60), (40, 70, 200), (230, 210, 40), (130, 50, 160)]


def _size(cls: str, rng: np.random.Generator) -> list[float]:
    if cls == "cup":
        d = rng.uniform(0.055, 0.068)
        return [d, d * 1.4, rng.uniform(0.08, 0.10)]
    if cls == "sports ball":
        d = rng.uniform(0.05, 0.068)
        return [d, d, d]
    if cls == "teddy bear":
        return [rng.uniform(0.06, 0.07), rng.uniform(0.07, 0.085), rng.uniform(0.08, 0.10)]
    if cls == "block":
        s = rng.uniform(0.04, 0.06)
        return [s, s * rng.uniform(1.0, 1.2), rng.uniform(0.035, 0.05)]
    if cls == "bowl":
        d = rng.uniform(0.15, 0.18)
        return [d, d, rng.uniform(0.06, 0.075)]
    return [rng.uniform(0.30, 0.36), rng.uniform(0.24, 0.30), rng.uniform(0.05, 0.07)]  # tray


def random_scene(seed: int) -> tuple[dict[str, Any], str]:
    """A scene graph (node-link data) and a task, both drawn from `seed`."""
    rng = np.random.default_rng(seed)
    containers = [c for c in ("bowl", "tray") if rng.random() < 0.7] or ["tray"]
    n_small = int(rng.integers(2, 5))
    small = list(rng.choice(["cup", "sports ball", "teddy bear", "block", "block"], n_small))
    objects: list[dict[str, Any]] = []
    placed: list[tuple[float, float, float]] = []
    half_x, half_y = TABLE[0] / 2 - 0.05, TABLE[1] / 2 - 0.05
    for i, cls in enumerate(containers + small, start=1):
        size = _size(cls, rng)
        radius = math.hypot(size[0], size[1]) / 2
        for _ in range(1000):
            x, y = rng.uniform(-half_x + radius, half_x - radius), rng.uniform(-half_y + radius, 0.1)
            if all(math.hypot(x - px, y - py) > radius + pr + 0.04 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((x, y, radius))
        objects.append(
            {
                "id": i,
                "class_name": cls,
                "xy": (float(x), float(y)),
                "size": size,
                "yaw": float(rng.uniform(-math.pi, math.pi))
                if cls != "tray"
                else float(rng.uniform(-0.4, 0.4)),
                "color": list(PALETTE[i % len(PALETTE)]),
            }
        )
    scene = scene_graph_from_objects(objects, TABLE)
    world = world_from_scene_graph(json.loads(json.dumps(scene)))
    # Tasks are drawn among those geometrically feasible in the scene (objects fit their container,
    # containers hold what is asked, everything within reach): infeasible draws are redrawn, up to
    # a point; what is left is benchmarked as drawn and counts as a failure if refused.
    for _ in range(20):
        task = _task(objects, world, rng)
        if _feasible(world, task):
            return scene, task
    return scene, task


def _feasible(world: World, task: str) -> bool:
    try:
        precheck(world, parse_task(task, world), initial_state(world))
    except TangramError:
        return False
    return True


def _task(objects: list[dict[str, Any]], world: World, rng: np.random.Generator) -> str:
    ids = {o["class_name"]: o["id"] for o in objects}
    small = [o for o in objects if o["class_name"] not in ("bowl", "tray")]
    blocks = [o for o in small if o["class_name"] == "block"]
    choices = (
        ["in"] * 3
        + ["clear"] * 2
        + (["stack", "on", "push"] if len(blocks) >= 2 else ["push"] if blocks else [])
    )
    choices += ["sort"]
    kind = str(rng.choice(choices))
    pick = small[int(rng.integers(len(small)))]
    if kind == "in":
        box = "bowl" if "bowl" in ids and rng.random() < 0.5 else ("tray" if "tray" in ids else "bowl")
        return f"put object {pick['id']} in the {box}"
    if kind == "clear":
        return "clear the table into the tray" if "tray" in ids else "clear the table into the bowl"
    if kind == "stack":
        return "stack the blocks"
    if kind == "on":
        top = next(o for o in small if o["id"] != blocks[0]["id"])
        return f"put object {top['id']} on object {blocks[0]['id']}"
    if kind == "push":
        target = blocks[0] if blocks else pick
        # a push a person would ask for: the destination on the table, free and within reach
        state = initial_state(world)
        dirs = {"left": (-1, 0), "right": (1, 0), "forward": (0, 1), "back": (0, -1)}
        options = [
            (d, cm)
            for d, (dx, dy) in dirs.items()
            for cm in range(6, 13)
            if not pre_push(world, state, target["id"], dx * cm / 100, dy * cm / 100)
        ]
        if not options:
            return f"put object {pick['id']} in the {'tray' if 'tray' in ids else 'bowl'}"
        direction, cm = options[int(rng.integers(len(options)))]
        return f"push object {target['id']} {direction} by {cm} cm"
    return "sort the objects by class"


def run_scene(seed: int, video: bool = False) -> dict[str, Any]:
    scene, task = random_scene(seed)
    world = world_from_scene_graph(json.loads(json.dumps(scene)))
    t0 = time.perf_counter()
    try:
        plan = make_plan(world, PlanningConfig(planner="offline"), task)
    except TangramError as exc:
        return {
            "seed": seed,
            "task": task,
            "planned": False,
            "success": False,
            "reason": str(exc),
            "plan_seconds": round(time.perf_counter() - t0, 4),
        }
    plan_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SimulationConfig(seed=seed, record_video=video, video_size=(320, 240), video_fps=8)
        result = simulate(world, plan, cfg, Path(tmp))
    acts = result["actions"]
    return {
        "seed": seed,
        "task": task,
        "planned": True,
        "success": result["success"],
        "reason": result["failure_reason"],
        "actions": len(acts),
        "plan_seconds": round(plan_s, 4),
        "sim_wall_seconds": result["timing"]["wall_seconds"],
        "wall_per_action": [a["wall_seconds"] for a in acts],
        "sim_per_action": [a["sim_seconds"] for a in acts],
        "action_names": [a["action"]["action"] for a in acts],
    }


SAMPLE_TASKS = ("put the cup in the bowl", "clear the table into the tray")


def run_sample(seed: int, task: str, root: Path) -> dict[str, Any]:
    """One scored task on the sample scene of `seed` (its ground truth as the scene graph)."""
    from tangram.sample_scene import render_sample
    from tangram.sim.ground_truth import scene_graph_from_ground_truth

    folder = root / f"sample{seed}"
    if not (folder / "ground_truth.json").is_file():
        render_sample(folder, seed=seed, num_frames=2, width=160, height=120)
    world = world_from_scene_graph(json.loads(json.dumps(scene_graph_from_ground_truth(folder))))
    plan = make_plan(world, PlanningConfig(planner="offline"), task)
    with tempfile.TemporaryDirectory() as tmp:
        result = simulate(world, plan, SimulationConfig(seed=seed, record_video=False), Path(tmp))
    return {
        "seed": seed,
        "task": task,
        "success": result["success"],
        "reason": result["failure_reason"],
        "actions": len(result["actions"]),
        "sim_wall_seconds": result["timing"]["wall_seconds"],
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    planned = [r for r in rows if r["planned"]]
    wall = [w for r in planned for w in r["wall_per_action"]]
    sim = [s for r in planned for s in r["sim_per_action"]]
    by_action: dict[str, list[float]] = {}
    for r in planned:
        for name, w in zip(r["action_names"], r["wall_per_action"], strict=True):
            by_action.setdefault(name, []).append(w)
    return {
        "scenes": len(rows),
        "planned": len(planned),
        "success_rate": round(sum(r["success"] for r in rows) / max(len(rows), 1), 3),
        "success_rate_of_planned": round(sum(r["success"] for r in planned) / max(len(planned), 1), 3),
        "actions": len(wall),
        "wall_seconds_per_action": {
            "mean": round(float(np.mean(wall)), 3) if wall else None,
            "median": round(float(np.median(wall)), 3) if wall else None,
        },
        "sim_seconds_per_action": round(float(np.mean(sim)), 3) if sim else None,
        "wall_seconds_per_action_by_type": {
            k: round(float(np.mean(v)), 3) for k, v in sorted(by_action.items())
        },
        "failures": [
            {"seed": r["seed"], "task": r["task"], "reason": r["reason"]} for r in rows if not r["success"]
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--video", action="store_true", help="also render the videos (slower)")
    ap.add_argument("--out", type=Path, default=None, help="write per-scene rows and the summary as JSON")
    ap.add_argument(
        "--sample-seeds",
        type=int,
        default=0,
        help="also run the scored tasks on the sample scene for seeds 0..N-1",
    )
    args = ap.parse_args()
    samples = []
    with tempfile.TemporaryDirectory() as root:
        for seed in range(args.sample_seeds):
            for task in SAMPLE_TASKS:
                row = run_sample(seed, task, Path(root))
                samples.append(row)
                print(
                    f"{'ok  ' if row['success'] else 'FAIL'} sample seed {seed} {task!r:34} "
                    f"{row['actions']} actions {row['sim_wall_seconds']:.1f}s  {row['reason'] or ''}",
                    flush=True,
                )
    rows = []
    for seed in range(args.seed0, args.seed0 + args.scenes):
        row = run_scene(seed, args.video)
        rows.append(row)
        status = "ok  " if row["success"] else "FAIL"
        print(
            f"{status} seed {seed:3d} {row['task']!r:48} {row.get('actions', 0)} actions "
            f"{row.get('sim_wall_seconds', 0):.1f}s  {row['reason'] or ''}",
            flush=True,
        )
    summary = summarise(rows)
    if samples:
        summary["sample_scene"] = {
            "runs": len(samples),
            "success_rate": round(sum(r["success"] for r in samples) / len(samples), 3),
            "failures": [r for r in samples if not r["success"]],
        }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(
            json.dumps({"summary": summary, "rows": rows, "sample_rows": samples}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

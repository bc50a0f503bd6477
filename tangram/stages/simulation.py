"""Stage `simulation`: the plan executed by a Franka Panda in pybullet, each action's
post-condition checked in the physics.

Writes simulation/result.json (per-action success and checks, final object poses, overall success,
failure reason; format in tangram.sim.simulate), execution.mp4 and keyframes/NN.png (the scene
before the first action and after each one). A plan whose execution fails still produces these
files: the stage reports the failure in result.json and its summary rather than failing, so the
video shows what went wrong.
"""

from __future__ import annotations

from tangram.errors import StageFailed
from tangram.fileio import read_json, write_json
from tangram.planning.world import load_world
from tangram.sim.simulate import simulate
from tangram.stages.base import StageContext, StageOutcome, StageSpec


def run(ctx: StageContext) -> StageOutcome:
    world, _ = load_world(ctx.upstream_dir("scene_graph") / "scene_graph.json")
    plan_path = ctx.upstream_dir("planning") / "plan.json"
    if not plan_path.is_file():
        raise StageFailed(f"plan not found: {plan_path}")
    try:
        plan = read_json(plan_path)
    except ValueError as exc:
        raise StageFailed(f"plan.json is not valid JSON: {exc}") from exc
    result = simulate(world, plan, ctx.config.simulation, ctx.out_dir, ctx.progress)
    write_json(ctx.out_dir / "result.json", result)
    done = sum(1 for a in result["actions"] if a["success"])
    return StageOutcome(
        backend=f"pybullet:{result['mode']}",
        summary={
            "success": result["success"],
            "actions_ok": done,
            "actions": len(plan.get("actions", [])),
            "failure_reason": result["failure_reason"],
            "wall_per_action_s": result["timing"]["wall_per_action"],
        },
    )


STAGE = StageSpec(
    name="simulation",
    requires=("scene_graph", "planning"),
    config_sections=("simulation",),
    run=run,
    offloadable=False,
    uses_input=False,
)

"""Stage `simulation`: the plan executed by a Franka Panda in pybullet, each action's
post-condition checked in the physics.

Writes simulation/result.json (per-action success and checks, final object poses, overall success,
failure reason; format in tangram.sim.simulate), execution.mp4 and keyframes/NN.png (the scene
before the first action and after each one). A plan whose execution fails still produces these
files: the stage reports the failure in result.json and its summary rather than failing, so the
video shows what went wrong. Success needs every action's check and the world check: no object
ended below where it rested (or, for the ones the plan moved, below the table top). The robot's
base stands where plan.json's "robot_base" puts it (placed for the task's objects).
"""

from __future__ import annotations

from tangram.fileio import write_json
from tangram.planning.world import load_world
from tangram.sim.simulate import simulate
from tangram.stages.base import StageContext, StageOutcome, StageSpec, read_artefact


def run(ctx: StageContext) -> StageOutcome:
    world, _ = load_world(ctx.upstream_dir("scene_graph") / "scene_graph.json")
    plan = read_artefact(ctx.upstream_dir("planning") / "plan.json")
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
            "world_stood": result["world_check"]["world_stood"],
            "below_support": [b["label"] for b in result["world_check"]["below_support"]],
            "held_in_place": len(result["world_check"]["settling"]["fixed"]),
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

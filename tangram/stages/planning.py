"""Stage `planning`: scene graph + task in words -> planning/plan.json (validated action list).

plan.json: {"format": "tangram.plan/1", "task", "task_source" (given|default), "goal" (parsed goal
or null), "goal_error", "robot_base" [x, y, yaw] (placed for the task's own objects and spots; the
simulation stands the arm there), "robot_placement" {base, mount, basis ("task" | "all": every
tabletop object, when the goal names none), task_distances_m, distances_m, out_of_reach (of the
task's), others_out_of_reach, reason}, "graspability" {id: {graspable, reason, narrowest_cm, height_cm,
approaches, finger_gap_cm}}, "why_home" {label: reason} (default task "go home" only),
"planner" ("llm:<model>" | "offline:astar"),
"fallback_reason", "llm" {model, base_url, api_key_set, structured_output, attempts[{raw_reply,
validation, ...}], error} | null, "raw_llm_reply", "offline" {algorithm, expansions, seconds} | null,
"validation" {valid, errors, goal_satisfied, steps}, "actions": [{"action": ...}]}.
A task that asks to move an ungraspable or out-of-reach object is refused (the stage fails with one
sentence) before any simulation. The API key is never written: only whether one was set.
"""

from __future__ import annotations

from tangram.fileio import write_json
from tangram.planning.plan import make_plan
from tangram.planning.world import load_world
from tangram.stages.base import StageContext, StageOutcome, StageSpec


def run(ctx: StageContext) -> StageOutcome:
    ctx.progress(0, 2, "reading the scene graph")
    world, _ = load_world(ctx.upstream_dir("scene_graph") / "scene_graph.json")
    ctx.progress(1, 2, "planning")
    plan = make_plan(world, ctx.config.planning)
    write_json(ctx.out_dir / "plan.json", plan)
    ctx.progress(2, 2, f"{len(plan['actions'])} actions ({plan['planner']})")
    return StageOutcome(
        backend=plan["planner"],
        summary={
            "task": plan["task"],
            "actions": len(plan["actions"]),
            "planner": plan["planner"],
            "fallback_reason": plan["fallback_reason"],
        },
    )


STAGE = StageSpec(
    name="planning",
    requires=("scene_graph",),
    config_sections=("planning",),
    run=run,
    offloadable=False,
    uses_input=False,
)

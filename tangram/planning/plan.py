"""Choose and run a planner for a task on a scene; the result is planning/plan.json's content.

planner = "auto": the LLM when a key or server is configured, else (or when it gives no valid plan
within the retries) the offline A* planner. "llm": the LLM only (no fallback: a failure fails the
stage). "offline": the offline planner only.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from config import PlanningConfig
from tangram.errors import StageFailed
from tangram.planning.actions import Action
from tangram.planning.goals import Goal
from tangram.planning.llm import plan_with_llm, resolve_llm
from tangram.planning.search import PlanningFailed, plan_offline
from tangram.planning.symbolic import initial_state
from tangram.planning.tasks import TaskNotUnderstood, default_task_candidates, parse_task
from tangram.planning.validate import validate_plan
from tangram.planning.world import World, describe_placement

log = logging.getLogger("tangram.planning")

PLAN_FORMAT = "tangram.plan/1"
OFFLINE_BACKEND = "offline:astar"


def make_plan(world: World, cfg: PlanningConfig, task: str | None = None) -> dict[str, Any]:
    world = replace(world)  # the base is re-placed for the task: leave the caller's world as it was
    task_text = task or cfg.task
    source = "given" if task_text else "default"
    task_text = task_text or default_task(world)
    goal, goal_error = _parse(task_text, world)
    place_for_goal(world, goal)
    if goal is not None:
        refusal = refuse_reason(world, goal)
        if refusal:
            raise StageFailed(f"the task {task_text!r} cannot be done: {refusal}")
    out: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "task": task_text,
        "task_source": source,
        "goal": goal.to_json(world) if goal else None,
        "goal_error": goal_error,
        "robot_base": [round(v, 4) for v in world.robot_base],
        "robot_placement": describe_placement(world),
        "planner": None,
        "fallback_reason": None,
        "llm": None,
        "raw_llm_reply": None,
        "offline": None,
    }
    actions = _try_llm(world, cfg, task_text, goal, out)
    if actions is None:
        actions = _run_offline(world, goal, goal_error, out)
    validation = validate_plan(world, actions, goal)
    if not validation.valid:  # the offline planner's own output must always pass; an LLM plan did
        raise StageFailed("the final plan failed validation: " + "; ".join(validation.errors))
    log.info("robot: %s", out["robot_placement"]["reason"])
    out["validation"] = validation.to_json()
    out["actions"] = [a.to_json() for a in actions]
    out["graspability"] = {str(i): world.graspability(i) for i in sorted(world.objects)}
    if source == "default" and goal is not None and goal.form == "home":
        out["why_home"] = {
            world.objects[i].label: out["graspability"][str(i)]["reason"]
            for i in sorted(world.objects)
        }
    return out


def refuse_reason(world: World, goal: Goal) -> str | None:
    """Why the goal asks for something the robot cannot take or reach (None when it can): an
    object it must move that is ungraspable (unless pushing may do) or out of the arm's reach."""
    state = initial_state(world)
    for atom in goal.unsatisfied(state):
        if atom.obj not in world.objects:
            continue
        verdict = world.graspability(atom.obj)
        if not verdict["graspable"] and not atom.push_ok:
            return verdict["reason"]
        x, y = world.objects[atom.obj].position[:2]
        if not world.reachable(x, y):
            return (
                f"{world.objects[atom.obj].label} is {world.reach_distance(x, y):.2f} m from the robot's base, "
                f"outside its reach ({world.reach[0]:.2f}-{world.reach[1]:.2f} m)"
            )
    return None


def place_for_goal(world: World, goal: Goal | None) -> None:
    """Place the robot's base for the task's own objects: those the goal moves, the containers or
    objects it puts them on, and the spots it names; every tabletop object when the goal names none
    (no goal, "go home")."""
    if goal is None or not goal.atoms:
        world.place_for(None)
        return
    ids = {a.obj for a in goal.atoms if a.obj in world.objects}
    ids |= {a.target for a in goal.atoms if isinstance(a.target, int) and a.target in world.objects}
    points = [a.xy for a in goal.atoms if a.xy is not None]
    world.place_for(ids, points)


def default_task(world: World) -> str:
    """The first of the scene's sensible tasks that the offline planner can actually achieve, the
    robot's base placed for each candidate's own objects in turn (on a copy of the world)."""
    world = replace(world)
    for task in default_task_candidates(world):
        goal, _ = _parse(task, world)
        if goal is None:
            continue
        place_for_goal(world, goal)
        if refuse_reason(world, goal):
            continue
        try:
            plan_offline(world, goal)
        except PlanningFailed as exc:
            log.debug("default task %r is not achievable here: %s", task, exc)
            continue
        return task
    return "go home"


def _parse(task: str, world: World) -> tuple[Goal | None, str | None]:
    try:
        return parse_task(task, world), None
    except TaskNotUnderstood as exc:
        return None, str(exc)


def _try_llm(
    world: World, cfg: PlanningConfig, task: str, goal: Goal | None, out: dict[str, Any]
) -> list[Action] | None:
    if cfg.planner == "offline":
        return None
    settings = resolve_llm(cfg)
    if settings is None:
        if cfg.planner == "llm":
            raise StageFailed("planner 'llm' needs an API key (OPENAI_API_KEY) or a server (OPENAI_BASE_URL)")
        out["fallback_reason"] = "no LLM configured (no API key or base URL)"
        return None
    log.info("asking %s at %s for a plan", settings.model, settings.public()["base_url"])
    result = plan_with_llm(world, task, goal, settings)
    out["llm"] = result.to_json()
    replies = [a["raw_reply"] for a in result.attempts if "raw_reply" in a]
    out["raw_llm_reply"] = replies[-1] if replies else None
    if result.actions is not None:
        out["planner"] = f"llm:{settings.model}"
        return result.actions
    if cfg.planner == "llm":
        raise StageFailed(result.error or "the LLM gave no valid plan")
    out["fallback_reason"] = result.error
    log.warning("LLM planning failed (%s); the offline planner takes over", result.error)
    return None


def _run_offline(
    world: World, goal: Goal | None, goal_error: str | None, out: dict[str, Any]
) -> list[Action]:
    if goal is None:
        raise StageFailed(goal_error or "the task could not be understood")
    try:
        search = plan_offline(world, goal)
    except PlanningFailed as exc:
        raise StageFailed(str(exc)) from exc
    out["planner"] = OFFLINE_BACKEND
    out["offline"] = {
        "algorithm": "A* over a STRIPS-style symbolic state (pick/place_on/place_in/place_at/push), "
        "unit action costs, heuristic: picks and places still needed",
        "expansions": search.expansions,
        "seconds": round(search.seconds, 4),
        "already_satisfied": search.already_satisfied,
    }
    return search.actions

"""Validate a plan against the scene graph before anything runs.

The plan is replayed on the symbolic state: every action's preconditions must hold where it runs
(objects exist, empty gripper before a pick, a support can't be picked, targets fit and are in
reach); the plan must not end holding an object; and when the task parsed into a goal, the final
state must satisfy it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tangram.planning.actions import Action
from tangram.planning.goals import Goal
from tangram.planning.symbolic import State, apply_action, initial_state
from tangram.planning.world import World


@dataclass
class Validation:
    valid: bool
    steps: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    goal_satisfied: bool | None = None  # None: no goal to check against
    final_state: State | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": self.errors,
            "goal_satisfied": self.goal_satisfied,
            "steps": self.steps,
        }

    def feedback(self) -> str:
        """The errors, one a line, as the LLM gets them back."""
        return "\n".join(f"- {e}" for e in self.errors)


def validate_plan(world: World, actions: list[Action], goal: Goal | None = None) -> Validation:
    state = initial_state(world)
    steps: list[dict[str, Any]] = []
    errors: list[str] = []
    for i, action in enumerate(actions):
        state, step_errors = apply_action(world, state, action)
        steps.append({"index": i, "action": action.to_json(), "ok": not step_errors, "errors": step_errors})
        if step_errors:
            errors += [f"step {i + 1} {action}: {e}" for e in step_errors]
            break  # the state after a failed step is undefined; later steps can't be judged
    if not actions:
        errors.append("the plan is empty")
    lifted = goal is not None and any(a.kind == "held" and a.obj == state.holding for a in goal.atoms)
    if not errors and state.holding is not None and not lifted:  # "pick up X" ends holding X
        errors.append(f"the plan ends with {world.describe(state.holding)} still in the gripper")
    goal_ok: bool | None = None
    if goal is not None and not errors:
        goal_ok = goal.satisfied(state)
        if not goal_ok:
            errors += [f"goal not reached: {a.describe(world)}" for a in goal.unsatisfied(state)]
    return Validation(valid=not errors, steps=steps, errors=errors, goal_satisfied=goal_ok, final_state=state)

"""LLM planning through the openai client: OpenAI itself or any OpenAI-compatible server (Ollama,
vLLM, llama.cpp).

The reply is constrained to the plan's JSON schema where the server supports it. Servers differ in
how they take a schema, so the request walks down a ladder until one is accepted: OpenAI's
`json_schema` (strict), llama.cpp's `json_object` + `schema`, plain `json_object`, then free text.
Every invalid plan goes back to the model with the validator's errors, a bounded number of times.

The API key lives only in memory: it is never logged, stored in plan.json or echoed in errors.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from config import PlanningConfig
from tangram.planning.actions import ActionParseError, parse_plan, plan_schema
from tangram.planning.goals import Goal
from tangram.planning.symbolic import initial_state
from tangram.planning.validate import Validation, validate_plan
from tangram.planning.world import REACH_MAX, REACH_MIN, World

log = logging.getLogger("tangram.planning")

FORMATS = ("json_schema", "json_object+schema", "json_object", "none")
LOCAL_PLACEHOLDER_KEY = "no-key"  # local servers ignore the key, the openai client wants one
MAX_TOKENS = 600


@dataclass(frozen=True)
class LLMSettings:
    model: str
    base_url: str | None
    api_key: str = field(repr=False)
    max_retries: int = 2
    timeout_s: float = 60.0

    def public(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base_url": self.base_url or "https://api.openai.com/v1",
            "api_key_set": self.api_key != LOCAL_PLACEHOLDER_KEY,
        }


def resolve_llm(cfg: PlanningConfig) -> LLMSettings | None:
    """The LLM to ask, or None when there is neither a key nor a server (then the offline planner runs)."""
    key = cfg.api_key.get_secret_value() if cfg.api_key else os.environ.get("OPENAI_API_KEY", "")
    base = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None
    if not key and not base:
        return None
    return LLMSettings(
        model=cfg.model,
        base_url=base,
        api_key=key or LOCAL_PLACEHOLDER_KEY,
        max_retries=cfg.max_retries,
        timeout_s=cfg.timeout_s,
    )


@dataclass
class LLMResult:
    settings: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    structured_output: str | None = None
    actions: list | None = None  # the valid plan's actions, when one came back
    validation: Validation | None = None
    error: str | None = None  # why no valid plan came back

    def to_json(self) -> dict[str, Any]:
        return {
            **self.settings,
            "structured_output": self.structured_output,
            "attempts": self.attempts,
            "error": self.error,
        }


SYSTEM_PROMPT = """You plan actions for a Franka Panda robot arm with a parallel gripper at a table.
Reply with JSON only, exactly {{"actions": [...]}}, using these actions (ids are the scene's object ids):
  {{"action": "pick", "object": ID}}            grasp an object; the gripper must be empty
  {{"action": "place_on", "target": ID}}        put the held object on top of another object
  {{"action": "place_in", "container": ID}}     put the held object into a container
  {{"action": "place_at", "x": X, "y": Y}}      set the held object down on the table at (X, Y) metres
  {{"action": "push", "object": ID, "dx": DX, "dy": DY}}  slide an object on the table by (DX, DY) metres
  {{"action": "home"}}                          return the arm to its rest pose
Rules: pick one object at a time and place it before the next pick; an object with something on or
in it can't be picked; only containers take place_in; round objects can't be stacked on or pushed;
targets must be within {rmin:.2f}-{rmax:.2f} m of the arm's base at ({bx:.2f}, {by:.2f}); end with the
gripper empty and then "home".
Coordinates: metres in the table frame, x to the right, y away from the camera, table top at z=0;
the table spans x {x0:.2f}..{x1:.2f}, y {y0:.2f}..{y1:.2f}.
Example for "put the cup in the bowl" with cup 3 and bowl 5:
{{"actions": [{{"action": "pick", "object": 3}}, {{"action": "place_in", "container": 5}},
  {{"action": "home"}}]}}"""


def describe_scene(world: World) -> str:
    state = initial_state(world)
    lines = []
    for oid in sorted(world.objects):
        obj = world.objects[oid]
        place = state.place(oid)
        where = (
            "on the table"
            if place is None or place.kind == "table"
            else (f"{'inside' if place.kind == 'in' else 'on'} object {place.ref}")
        )
        ok, why = obj.graspable()
        traits = [
            "container" if obj.is_container else "",
            "graspable" if ok else f"not graspable ({why})",
            "" if obj.flat_top else "no flat top",
            "in reach" if world.reachable(*obj.position[:2]) else "OUT OF REACH",
        ]
        lines.append(
            f"- id {oid}: {obj.class_name} at ({obj.position[0]:.2f}, {obj.position[1]:.2f}), "
            f"size {obj.size[0]:.2f}x{obj.size[1]:.2f}x{obj.size[2]:.2f} m, {where}; "
            + ", ".join(t for t in traits if t)
        )
    return "\n".join(lines)


def build_messages(world: World, task: str) -> list[dict[str, str]]:
    table = world.table_rect
    system = SYSTEM_PROMPT.format(
        rmin=REACH_MIN,
        rmax=REACH_MAX,
        bx=world.robot_base[0],
        by=world.robot_base[1],
        x0=table.xmin,
        x1=table.xmax,
        y0=table.ymin,
        y1=table.ymax,
    )
    user = f"Scene objects:\n{describe_scene(world)}\n\nTask: {task}\nReply with the JSON plan."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _response_format(kind: str, schema: dict[str, Any], bounded: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "robot_plan", "schema": schema, "strict": True},
        }
    if kind == "json_object+schema":
        return {"type": "json_object", "schema": bounded}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def extract_json(text: str) -> Any:
    """The JSON in a reply, tolerating markdown fences and prose around one object."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start >= 0 and end > start:
            return json.loads(text[start : end + 1])
        raise


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret and secret != LOCAL_PLACEHOLDER_KEY else text


class _Client:
    """One openai client and the response format the server turned out to accept."""

    def __init__(self, settings: LLMSettings, schema: dict[str, Any], bounded: dict[str, Any]) -> None:
        import openai  # imported here: planning without an LLM doesn't need it

        self.openai = openai
        self.settings = settings
        self.client = openai.OpenAI(
            api_key=settings.api_key, base_url=settings.base_url, timeout=settings.timeout_s, max_retries=1
        )
        self.schema, self.bounded = schema, bounded
        self.format_index = 0

    def ask(self, messages: list[dict[str, str]]) -> tuple[Any, str]:
        """One chat completion; walks down the response-format ladder on 400/422."""
        while True:
            kind = FORMATS[self.format_index]
            fmt = _response_format(kind, self.schema, self.bounded)
            extra = {"response_format": fmt} if fmt else {}
            try:
                reply = self.client.chat.completions.create(
                    model=self.settings.model,
                    messages=messages,
                    temperature=0.0,
                    max_tokens=MAX_TOKENS,
                    **extra,
                )
                return reply, kind
            except self.openai.APIStatusError as exc:
                # 400/422 from most servers; llama-cpp-python answers an unknown response_format
                # type with a 500 whose body names the field
                refused = exc.status_code in (400, 422) or "response_format" in str(exc)
                if not refused or fmt is None:
                    raise
                log.info(
                    "LLM server refused response_format %s (%s); trying the next form",
                    kind,
                    type(exc).__name__,
                )
                self.format_index += 1


def plan_with_llm(world: World, task: str, goal: Goal | None, settings: LLMSettings) -> LLMResult:
    """Ask the LLM for a plan; feed validation errors back up to settings.max_retries times."""
    result = LLMResult(settings=settings.public())
    ids, containers = sorted(world.objects), world.containers()
    client = _Client(settings, plan_schema(ids, containers), plan_schema(ids, containers, bounded=True))
    messages = build_messages(world, task)
    for attempt in range(1 + settings.max_retries):
        t0 = time.perf_counter()
        record: dict[str, Any] = {"attempt": attempt + 1}
        try:
            reply, kind = client.ask(messages)
        except client.openai.OpenAIError as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            result.error = redact(f"LLM request failed: {type(exc).__name__}: {first}", settings.api_key)
            record["error"] = result.error
            result.attempts.append(record)
            return result
        content = reply.choices[0].message.content or ""
        result.structured_output = kind
        record.update(
            response_format=kind,
            seconds=round(time.perf_counter() - t0, 3),
            finish_reason=reply.choices[0].finish_reason,
            raw_reply=redact(content, settings.api_key),
        )
        feedback = _check_reply(world, content, goal, record, result)
        result.attempts.append(record)
        if feedback is None:
            return result
        result.error = feedback.splitlines()[0].lstrip("- ")
        messages = [
            *messages,
            {"role": "assistant", "content": content},
            {
                "role": "user",
                "content": f"That plan is invalid:\n{feedback}\nReply with a corrected JSON plan.",
            },
        ]
    result.error = f"no valid plan after {1 + settings.max_retries} attempt(s); last: {result.error}"
    return result


def _check_reply(
    world: World, content: str, goal: Goal | None, record: dict[str, Any], result: LLMResult
) -> str | None:
    """None when the reply is a valid plan (stored in result), else the feedback for the model."""
    try:
        actions = parse_plan(extract_json(content))
    except (json.JSONDecodeError, ActionParseError) as exc:
        record["parse_error"] = str(exc)
        return f"- the reply is not a valid plan: {exc}"
    validation = validate_plan(world, actions, goal)
    record["validation"] = validation.to_json()
    if not validation.valid:
        return validation.feedback()
    result.actions, result.validation = actions, validation
    return None

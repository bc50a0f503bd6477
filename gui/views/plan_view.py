"""The task plan: one row per step with its validation, plus the whole plan.json as a tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PyQt6.QtGui import QBrush, QColor
from PyQt6.QtWidgets import QLabel, QTabWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from gui.artefacts import ArtefactError, read_json_file
from gui.views.base import ResultView, fill_json_tree

_VALIDATION_KEYS = ("valid", "ok", "success", "reason", "error", "errors", "message", "validation", "index")


@dataclass
class PlanStep:
    action: str
    arguments: str
    valid: bool | None  # None: the plan says nothing about this step
    note: str


def _step_validation(step: dict[str, Any], checks: list[Any], index: int) -> tuple[bool | None, str]:
    """(valid, note) of one step: from validation.steps[index] ({"ok", "errors"} in tangram.plan/1)
    or from fields on the step itself."""
    check = step.get("validation", checks[index] if index < len(checks) else None)
    if check is None and checks:
        return None, "not checked: an earlier step is invalid"
    source = check if isinstance(check, dict) else {"valid": check} if isinstance(check, bool) else step
    valid = next((source[k] for k in ("ok", "valid", "success") if isinstance(source.get(k), bool)), None)
    errors = source.get("errors")
    if isinstance(errors, list) and errors:
        return valid, "; ".join(str(e) for e in errors)
    note = next((str(source[k]) for k in ("reason", "error", "message") if source.get(k)), "")
    return valid, note


def parse_plan(data: Any) -> tuple[list[PlanStep], dict[str, Any]]:
    """Steps and the plan-level fields (task, planner, validation) from plan.json."""
    if not isinstance(data, dict):
        raise ArtefactError("planning/plan.json is not a JSON object")
    raw_steps = next((data[k] for k in ("steps", "actions", "plan") if isinstance(data.get(k), list)), None)
    if raw_steps is None:
        raise ArtefactError("planning/plan.json has no list of steps")
    validation = data.get("validation") if isinstance(data.get("validation"), dict) else {}
    checks = validation.get("steps", []) if isinstance(validation.get("steps"), list) else []
    steps = []
    for i, raw in enumerate(raw_steps):
        step = raw if isinstance(raw, dict) else {"action": str(raw)}
        action = step.get("action")
        fields = action if isinstance(action, dict) else step
        name = str(fields.get("action", fields.get("name", "?")))
        args = {k: v for k, v in fields.items() if k not in ("action", "name", *_VALIDATION_KEYS)}
        arguments = ", ".join(f"{k}={v}" for k, v in args.items())
        valid, note = _step_validation(step, checks, i)
        steps.append(PlanStep(name, arguments, valid, note))
    keys = ("task", "task_source", "planner", "backend", "fallback_reason", "goal_error")
    header = {k: data[k] for k in keys if data.get(k)}
    if validation:
        header["validation"] = validation
    return steps, header


class PlanView(ResultView):
    title = "Plan"
    stages = ("planning",)

    def build_content(self) -> QWidget:
        self.header = QLabel()
        self.header.setWordWrap(True)
        self.steps = QTreeWidget()
        self.steps.setHeaderLabels(["#", "action", "arguments", "check", "note"])
        self.steps.setRootIsDecorated(False)
        self.raw = QTreeWidget()
        self.raw.setHeaderLabels(["field", "value"])
        tabs = QTabWidget()
        tabs.addTab(self.steps, "Steps")
        tabs.addTab(self.raw, "plan.json")
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self.header)
        layout.addWidget(tabs, 1)
        return content

    def load(self, run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
        data = read_json_file(run_dir / "planning" / "plan.json")
        steps, header = parse_plan(data)
        self.clear()
        for i, step in enumerate(steps, 1):
            mark = {True: "✔ valid", False: "✘ invalid", None: "–"}[step.valid]
            item = QTreeWidgetItem([str(i), step.action, step.arguments, mark, step.note])
            if step.valid is not None:
                item.setForeground(3, QBrush(QColor("#1a7f37" if step.valid else "#c62828")))
            self.steps.addTopLevelItem(item)
        for col in range(4):
            self.steps.resizeColumnToContents(col)
        fill_json_tree(self.raw, data)
        self.raw.expandToDepth(0)
        self.header.setText(_header_text(header, len(steps), records.get("planning", {})))

    def clear(self) -> None:
        self.steps.clear()
        self.raw.clear()

    def step_count(self) -> int:
        return self.steps.topLevelItemCount()


def _header_text(header: dict[str, Any], n_steps: int, record: dict[str, Any]) -> str:
    task = header.get("task") or "(default for the scene)"
    if header.get("task_source") == "default":
        task += " (default task)"
    parts = [f"Task: {task}"]
    planner = header.get("planner") or header.get("backend") or record.get("backend")
    if planner:
        parts.append(f"planner: {planner}")
    if header.get("fallback_reason"):
        parts.append(f"fallback because {header['fallback_reason']}")
    parts.append(f"{n_steps} steps")
    validation = header.get("validation", {})
    valid = next((validation[k] for k in ("valid", "ok") if isinstance(validation.get(k), bool)), None)
    if valid is not None:
        parts.append("plan validated ✔" if valid else "plan INVALID ✘")
    if validation.get("goal_satisfied") is not None:
        parts.append("goal reached in the check" if validation["goal_satisfied"] else "goal NOT reached")
    errors = validation.get("errors")
    if isinstance(errors, list) and errors:
        parts.append("errors: " + "; ".join(str(e) for e in errors[:3]))
    if header.get("goal_error"):
        parts.append(f"task not understood: {header['goal_error']}")
    return "; ".join(parts)

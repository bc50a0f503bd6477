"""Terminal progress: one rich progress bar per stage, and a summary table at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from tangram.logs import console


def _progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


class RichObserver:
    """RunObserver for the CLI."""

    def __init__(self) -> None:
        self._progress = _progress_bar()
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichObserver:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def stage_started(self, stage: str, where: str) -> None:
        self._tasks[stage] = self._progress.add_task(f"{stage} [{where}]", total=None)

    def stage_progress(self, stage: str, completed: float, total: float | None, description: str) -> None:
        task = self._tasks.get(stage)
        if task is not None:
            self._progress.update(task, completed=completed, total=total)

    def stage_finished(self, stage: str, record: dict[str, Any]) -> None:
        task = self._tasks.get(stage)
        if task is not None:
            total = self._progress.tasks[task].total or 1
            self._progress.update(task, completed=total, total=total,
                                  description=f"{stage} [{record.get('where', 'local')}] {record['status']}")

    @staticmethod
    def print_summary(result: Any) -> None:
        table = Table(title=f"TANGRAM run: {result.run_dir}")
        for column in ("stage", "status", "where", "backend", "seconds", "note"):
            table.add_column(column)
        for stage in result.stages:
            rec = result.record(stage)
            note = rec.get("reason") or rec.get("execution", {}).get("fallback", "")
            table.add_row(stage, rec.get("status", "-"), rec.get("where", "-"), rec.get("backend", "-"),
                          f"{rec['seconds']:.1f}" if "seconds" in rec else "-", str(note))
        console.print(table)


@contextmanager
def simple_progress(description: str) -> Iterator[Callable[..., None]]:
    """A ProgressFn drawing one bar, for commands outside the pipeline."""
    with _progress_bar() as progress:
        task = progress.add_task(description, total=None)

        def update(completed: float, total: float | None = None, text: str = "") -> None:
            progress.update(task, completed=completed, total=total)

        yield update

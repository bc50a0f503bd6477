"""The executor contract and what every executor shares (see the package docstring)."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from config import TangramConfig
from tangram.stages.base import StageContext, StageOutcome, StageSpec

log = logging.getLogger("tangram.execution")


class Executor(Protocol):
    """Runs a stage somewhere and leaves its artefacts in ctx.out_dir on this machine."""

    def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome: ...


class LocalExecutor:
    """The stage in this process: `spec.run(ctx)`."""

    where = "local"

    def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome:
        return spec.run(ctx)


class LocalWithNote:
    """Runs locally and notes in the manifest why the stage did not run elsewhere."""

    where = "local"

    def __init__(self, note: dict[str, Any]):
        self.note = note

    def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome:
        outcome = LocalExecutor().run_stage(spec, ctx)
        outcome.execution = {**outcome.execution, **self.note}
        return outcome


class FallbackExecutor:
    """`primary`, and the local executor when it raises one of `recoverable`: the run completes and
    the manifest's `execution` says what happened (`fallback`, plus `note_of(exc)`). `on_failure`
    hears every recoverable failure first (Thunder marks its host down after connection errors)."""

    def __init__(self, primary: Any, recoverable: tuple[type[BaseException], ...],
                 note: dict[str, Any] | None = None,
                 note_of: Callable[[BaseException], dict[str, Any]] | None = None,
                 on_failure: Callable[[BaseException], None] | None = None):
        self.primary, self.recoverable = primary, recoverable
        self.note = note or {}
        self.note_of = note_of or (lambda exc: {})
        self.on_failure = on_failure
        self.where = getattr(primary, "where", "remote")

    def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome:
        try:
            outcome = self.primary.run_stage(spec, ctx)
        except self.recoverable as exc:
            clear_dir(ctx.out_dir)
            reason = f"{getattr(exc, 'kind', type(exc).__name__)}: {exc}"
            log.warning("%s: %s failed (%s); running it locally", spec.name, self.where, exc)
            if self.on_failure is not None:
                self.on_failure(exc)
            outcome = LocalExecutor().run_stage(spec, ctx)
            outcome.where = "local"
            outcome.execution = {**outcome.execution, "fallback": reason, **self.note_of(exc),
                                 "host": self.where, **self.note}
            return outcome
        outcome.execution.update(self.note)
        return outcome


def clear_dir(folder: Path) -> None:
    """Empty a stage's output folder, so a retry or a fallback starts from nothing partial."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def run_stage_here(stage: str, input_path: Path, upstream: Mapping[str, Path], out_dir: Path,
                   config: TangramConfig, progress: Callable[..., None]) -> tuple[StageOutcome, float]:
    """Run one stage in this process exactly as the local runner would (any host: a Thunder
    worker, a Dask worker, a detached job); returns (outcome, seconds)."""
    from tangram.stages import get_stage

    spec = get_stage(stage)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(stage=stage, input_path=input_path, out_dir=out_dir, upstream=dict(upstream),
                       config=config, progress=progress)
    started = time.perf_counter()
    outcome = spec.run(ctx)
    return outcome, time.perf_counter() - started


def unmet_needs(requires: tuple[str, ...] | list[str], statuses: Mapping[str, str | None]) -> str | None:
    """Why a stage cannot run: "needs tracking failed, ..." for every required stage whose status
    (from the manifest, or from upstream task results) is not "done"; None when it can run. The
    one definition of "skip: needs X" (the runner, the batch driver and the Dask task use it)."""
    missing = [r for r in requires if statuses.get(r) != "done"]
    if not missing:
        return None
    return "needs " + ", ".join(f"{r} {statuses.get(r) or 'not run'}" for r in missing)


def first_line(exc: BaseException) -> str:
    """An exception as one line for a manifest record."""
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__

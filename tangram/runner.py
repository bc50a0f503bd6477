"""The pipeline runner: stage order, caching, resume, progress and the run folder.

Run folder layout (`exports/<name>/`):
- `manifest.json`: per stage `status` (done/failed/skipped), `backend`, `where`, `seconds`,
  `input_hash` (input fingerprint + stage config + the `output_id` of each upstream result),
  `output_id` (new each time the stage runs, so re-running a stage re-runs what depends on it), `reason` for failures,
  `summary` figures and remote `execution` figures.
- `config.json`: the effective configuration, secrets left out.
- `tangram.log`: the run's log.
- `recording.rrd` (Rerun) and `simulation/robot.mcap` (ROS 2), written after the stages unless
  `run.recording` is off (`--no-recording`); manifest `recordings` lists them (tangram.recording.hook).
- `<stage>/`: each stage's artefacts. A stage writes into `.tmp-<stage>-<pid>/`, renamed to
  `<stage>/` only when it finished, so a run killed at any moment leaves no half-written stage
  folder under a final name; the next run deletes the temp folders and resumes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from config import TangramConfig
from tangram import __version__
from tangram.errors import StageFailed, TangramError
from tangram.execution import Executor, LocalExecutor, unmet_needs
from tangram.fileio import file_fingerprint, path_fingerprint, read_json, replace_dir, stable_hash, write_json
from tangram.logs import attach_run_log
from tangram.media import open_media
from tangram.settings import public_dict
from tangram.stages import STAGE_ORDER, available_stages, get_stage
from tangram.stages.base import StageContext, StageOutcome, StageSpec

log = logging.getLogger("tangram.runner")

MANIFEST = "manifest.json"


class Cancelled(Exception):
    """The user cancelled the run; finished stages are kept and the next run resumes."""


class RunObserver(Protocol):
    """What the CLI's progress bars and the GUI listen to."""

    def stage_started(self, stage: str, where: str) -> None: ...
    def stage_progress(self, stage: str, completed: float, total: float | None, description: str) -> None: ...
    def stage_finished(self, stage: str, record: dict[str, Any]) -> None: ...


class OffloadPolicy(Protocol):
    """Chooses where a stage runs (tangram.execution.thunder provides the remote one)."""

    def executor_for(self, spec: StageSpec, ctx: StageContext) -> Executor: ...

    def close(self) -> None:
        """Release connections and remote scratch space once the run ends."""


def thunder_offload_policy(config: TangramConfig) -> OffloadPolicy:
    """The offload policy of `--thunder` (tangram.execution.thunder); a TangramError if Thunder is not installed."""
    try:
        from tangram.execution.thunder import offload_policy
    except ImportError as exc:
        raise TangramError(f"Thunder offloading is not available in this installation ({exc})") from None
    return offload_policy(config)


class NullObserver:
    def stage_started(self, stage: str, where: str) -> None:
        pass

    def stage_progress(self, stage: str, completed: float, total: float | None, description: str) -> None:
        pass

    def stage_finished(self, stage: str, record: dict[str, Any]) -> None:
        pass


@dataclass
class RunResult:
    run_dir: Path
    manifest: dict[str, Any]
    stages: list[str]  # the stages this run was asked for, in order

    def record(self, stage: str) -> dict[str, Any]:
        return self.manifest["stages"].get(stage, {})

    @property
    def failed(self) -> list[str]:
        return [s for s in self.stages if self.record(s).get("status") == "failed"]

    @property
    def ok(self) -> bool:
        return all(self.record(s).get("status") == "done" for s in self.stages)


@dataclass
class Pipeline:
    config: TangramConfig
    observer: RunObserver = field(default_factory=NullObserver)
    offload: OffloadPolicy | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    concurrent: bool = False  # other runs share this process (`tangram batch`): tangram.log takes this thread's

    def run(
        self,
        input_path: Path | str,
        name: str | None = None,
        until: str = STAGE_ORDER[-1],
        force: Sequence[str] = (),
    ) -> RunResult:
        """Run the stages up to `until` on the input; finished stages with the same hash are reused.

        The offload policy given to the pipeline is closed when this returns or raises, whatever
        happened (it removes the run's scratch space on the remote host)."""
        try:
            return self._run(input_path, name, until, force)
        finally:
            if self.offload is not None:
                self.offload.close()

    def _run(self, input_path: Path | str, name: str | None, until: str, force: Sequence[str]) -> RunResult:
        source = open_media(input_path)  # validates the input before anything is written
        run_dir = Path(self.config.run.exports_dir) / (name or default_run_name(source.info.path))
        stages = stages_until(until)
        forced = set(STAGE_ORDER) if "all" in force else set(force)
        unknown = forced - set(STAGE_ORDER)
        if unknown:
            raise TangramError(f"--force names unknown stage(s): {', '.join(sorted(unknown))}")
        with locked_run_dir(run_dir):
            _remove_stale_temp_dirs(run_dir)
            manifest = _read_manifest(run_dir, source.info.path)
            stale = stale_stages(self.config, stages, manifest, run_dir, forced)
            preflight(self.config, stale)  # settings errors (weights...) surface before anything is written
            with attach_run_log(run_dir / "tangram.log", self.config, this_thread_only=self.concurrent):
                write_json(run_dir / MANIFEST, manifest)
                write_json(run_dir / "config.json", public_dict(self.config))
                log.info("run %s: input %s (%s), stages %s", run_dir, source.info.path, source.info.kind,
                         ", ".join(stages))
                for stage in stages:
                    self._check_cancel()
                    self._run_stage(stage, run_dir, manifest, stage in stale)
                write_run_recordings(run_dir, manifest, self.config.run.recording)
                _write_report(run_dir)
        return RunResult(run_dir, manifest, stages)

    # -- one stage --------------------------------------------------------------------------

    def _run_stage(self, stage: str, run_dir: Path, manifest: dict[str, Any], stale: bool) -> None:
        spec = get_stage(stage)
        skipped = skip_unmet(run_dir, manifest, spec)
        if skipped is not None:
            self.observer.stage_finished(stage, skipped)
            return
        if not stale:
            previous = manifest["stages"][stage]
            log.info("%s: up to date (%s), reusing %s", stage, previous.get("backend"), run_dir / stage)
            self.observer.stage_finished(stage, previous)
            return
        self._execute(spec, run_dir, manifest, stage_hash(self.config, spec, manifest))  # upstream may be new

    def _execute(self, spec: StageSpec, run_dir: Path, manifest: dict[str, Any], input_hash: str) -> None:
        stage = spec.name
        tmp_dir = run_dir / f".tmp-{stage}-{os.getpid()}"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
        ctx = StageContext(
            stage=stage,
            input_path=Path(manifest["input"]["path"]),
            out_dir=tmp_dir,
            upstream={r: run_dir / r for r in spec.requires},
            config=self.config,
            progress=self._progress_fn(stage),
        )
        executor = self.offload.executor_for(spec, ctx) if self.offload else LocalExecutor()
        where = getattr(executor, "where", "local")
        log.info("%s: starting (%s)", stage, where)
        self.observer.stage_started(stage, where)
        started = time.perf_counter()
        try:
            outcome = executor.run_stage(spec, ctx)
        except StageFailed as exc:
            self._fail(run_dir, manifest, stage, input_hash, str(exc), started)
            _keep_failure(tmp_dir, run_dir / stage)
        except TangramError as exc:  # bad settings (weights, keys...): no later stage can do better
            self._fail(run_dir, manifest, stage, input_hash, str(exc), started)
            raise
        except (Cancelled, KeyboardInterrupt):
            log.warning("%s: cancelled; finished stages are kept, re-run to resume", stage)
            raise
        except Exception as exc:  # a bug or library failure: keep going with what still can run
            log.exception("%s: unexpected error", stage)
            self._fail(run_dir, manifest, stage, input_hash, unexpected_error(exc, manifest["input"]), started)
        else:
            replace_dir(tmp_dir, run_dir / stage)
            self._record(run_dir, manifest, stage, _done_record(outcome, input_hash, started))
            log.info("%s: done in %.1f s (%s, %s)", stage, time.perf_counter() - started,
                     outcome.backend, outcome.where)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    def _fail(self, run_dir: Path, manifest: dict[str, Any], stage: str, input_hash: str,
              reason: str, started: float) -> None:
        log.error("%s: failed: %s", stage, reason)
        self._record(run_dir, manifest, stage, {
            "status": "failed", "reason": reason.splitlines()[0] if reason else "failed",
            "input_hash": input_hash, "seconds": round(time.perf_counter() - started, 3),
        })

    def _record(self, run_dir: Path, manifest: dict[str, Any], stage: str, record: dict[str, Any]) -> None:
        record_stage(run_dir, manifest, stage, record)
        self.observer.stage_finished(stage, record)

    def _progress_fn(self, stage: str) -> Callable[..., None]:
        def progress(completed: float, total: float | None = None, description: str = "") -> None:
            self._check_cancel()
            self.observer.stage_progress(stage, completed, total, description)

        return progress

    def _check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("run cancelled")



def unexpected_error(exc: BaseException, input_record: dict[str, Any]) -> str:
    """One sentence for a library error no stage turned into its own: which library, its message
    without source paths, the input it happened on, and where the traceback is."""
    module = type(exc).__module__.split(".")[0]
    library = {"cv2": "OpenCV", "pycolmap": "COLMAP", "torch": "PyTorch", "builtins": "Python"}.get(module, module)
    text = " ".join(str(exc).split())
    text = re.sub(r"^OpenCV\([^)]*\) \S+: error: ", "", text)  # "OpenCV(5.0) /io/.../x.cpp:12: error: "
    path = Path(str(input_record.get("path", "")))
    return (f"{library} failed on this input ({path.name or 'the input'}): {type(exc).__name__}: {text[:300]}; "
            "the traceback is in tangram.log")


def write_run_recordings(run_dir: Path, manifest: dict[str, Any], enabled: bool = True) -> None:
    """recording.rrd and simulation/robot.mcap (tangram.recording.hook), listed in the manifest;
    a recording that cannot be written never fails the run."""
    try:
        from tangram.recording.hook import write_recordings

        write_recordings(run_dir, manifest, enabled)
        write_json(run_dir / MANIFEST, manifest)
    except Exception as exc:
        log.warning("recordings not written: %s: %s", type(exc).__name__, exc)


def _write_report(run_dir: Path) -> None:
    """exports/<run>/report.html (tangram.report); a report that cannot be written never fails the run."""
    try:
        from tangram.report import write_run_report

        write_run_report(run_dir)
    except Exception as exc:
        log.warning("report.html not written: %s: %s", type(exc).__name__, exc)


def _read_manifest(run_dir: Path, input_path: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    manifest = read_json(path) if path.is_file() else {}
    manifest.setdefault("stages", {})
    manifest["tangram_version"] = __version__
    manifest["run"] = run_dir.name
    manifest["input"] = _input_record(input_path, manifest.get("input"))
    return manifest


def _is_current(stage: str, input_hash: str, manifest: dict[str, Any], run_dir: Path) -> bool:
    record = manifest["stages"].get(stage, {})
    return record.get("status") == "done" and record.get("input_hash") == input_hash and (run_dir / stage).is_dir()


def _done_record(outcome: StageOutcome, input_hash: str, started: float) -> dict[str, Any]:
    return {
        "status": "done",
        "backend": outcome.backend,
        "where": outcome.where,
        "seconds": round(time.perf_counter() - started, 3),
        "input_hash": input_hash,
        "output_id": uuid.uuid4().hex[:16],
        "summary": outcome.summary,
        "execution": outcome.execution,
    }


def _input_record(path: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Fingerprint the input, reusing the last fingerprint while path, size and mtime match."""
    path = path.resolve()
    stat_key = _stat_key(path)
    if previous and previous.get("path") == str(path) and previous.get("stat") == stat_key:
        return previous
    fingerprint = path_fingerprint(path) if path.is_dir() else file_fingerprint(path)
    return {"path": str(path), "stat": stat_key, "fingerprint": fingerprint}


def _stat_key(path: Path) -> list[int]:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return [sum(f.stat().st_size for f in files), max(f.stat().st_mtime_ns for f in files), len(files)]


def _keep_failure(tmp_dir: Path, stage_dir: Path) -> None:
    """A failed stage's `failed/` folder (what explains the failure, see `stages.base`) becomes
    `<stage>/failed/`, replacing the stage's older output (stale now: the manifest says failed)."""
    failed = tmp_dir / "failed"
    if not failed.is_dir():
        return
    keep = tmp_dir.with_name(f"{tmp_dir.name}-failed")
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir()
    failed.rename(keep / "failed")
    replace_dir(keep, stage_dir)


def _remove_stale_temp_dirs(run_dir: Path) -> None:
    for stale in list(run_dir.glob(".tmp-*")) + list(run_dir.glob(".old-*")):
        stage = stale.name.split("-")[1]
        if stale.name.startswith(".old-") and not (run_dir / stage).exists():
            stale.rename(run_dir / stage)  # killed between the two renames: the old output is good
            continue
        log.info("removing unfinished output %s from an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def locked_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock (created if needed); a second holder gets a TangramError at once."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TangramError(f"another TANGRAM run is using {run_dir}") from None
        yield


def stages_until(until: str) -> list[str]:
    if until not in STAGE_ORDER:
        raise TangramError(f"unknown stage {until!r}; stages: {', '.join(STAGE_ORDER)}")
    wanted = STAGE_ORDER[: STAGE_ORDER.index(until) + 1]
    present = set(available_stages())
    return [s for s in wanted if s in present]


def default_run_name(input_path: Path) -> str:
    stem = input_path.stem if input_path.is_file() else input_path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "run"


def load_manifest(run_dir: Path | str) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise TangramError(f"not a TANGRAM run folder (no {MANIFEST}): {run_dir}")
    return read_json(path)


def list_runs(exports_dir: Path | str) -> list[Path]:
    """Run folders under exports/, newest first."""
    root = Path(exports_dir)
    runs = [p.parent for p in root.glob(f"*/{MANIFEST}")]
    return sorted(runs, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)


def default_input(seed: int = 0) -> Path:
    """The built-in sample scene's video, rendered on first use and cached."""
    from tangram.sample_scene import ensure_sample

    return ensure_sample(seed)


# -- hashes, staleness, records and the skip rule --


def stage_hash(config: TangramConfig, spec: StageSpec, manifest: dict[str, Any]) -> str:
    """The `input_hash` of a stage: input fingerprint, its config sections, its upstream output ids."""
    records = manifest["stages"]
    return stable_hash({
        "stage": spec.name,
        "tangram": __version__,  # a new release may compute differently: don't reuse old outputs
        "input": manifest["input"]["fingerprint"] if spec.uses_input else None,
        "config": {s: public_dict(config)[s] for s in spec.config_sections},
        "upstream": {r: records.get(r, {}).get("output_id") for r in spec.requires},
    })


def stale_stages(config: TangramConfig, stages: Sequence[str], manifest: dict[str, Any], run_dir: Path,
                 forced: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Stages to (re)run: forced, changed inputs or settings, or downstream of a stage that reruns."""
    stale: list[str] = []
    for stage in stages:
        spec = get_stage(stage)
        if (stage in forced or any(r in stale for r in spec.requires)
                or not _is_current(stage, stage_hash(config, spec, manifest), manifest, run_dir)):
            stale.append(stage)
    return stale


def record_stage(run_dir: Path, manifest: dict[str, Any], stage: str, record: dict[str, Any]) -> None:
    """Put a stage's record into the manifest and write it (atomically)."""
    record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if record["status"] == "skipped":
        log.warning("%s: skipped: %s", stage, record["reason"])
    manifest["stages"][stage] = record
    write_json(run_dir / MANIFEST, manifest)


def skip_unmet(run_dir: Path, manifest: dict[str, Any], spec: StageSpec) -> dict[str, Any] | None:
    """Record `spec` as skipped when a stage it requires is not done ("needs tracking failed"),
    and return that record; None when it can run (the one place a skip is recorded)."""
    records = manifest["stages"]
    reason = unmet_needs(spec.requires, {r: records.get(r, {}).get("status") for r in spec.requires})
    if reason is None:
        return None
    record: dict[str, Any] = {"status": "skipped", "reason": reason}
    record_stage(run_dir, manifest, spec.name, record)
    return record


def preflight(config: TangramConfig, stages: Sequence[str]) -> None:
    """Each stage's settings check (weights, keys...): a TangramError before anything runs."""
    for stage in stages:
        check = get_stage(stage).preflight
        if check is not None:
            check(config)


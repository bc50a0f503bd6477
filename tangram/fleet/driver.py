"""The batch driver on the client: the runner over many inputs, with a Dask executor.

Each input is one ordinary `tangram.runner.Pipeline` run into `exports/<BATCH>/<input>/`, so the
runner alone decides stage order, hash-based reuse, resume, "skip: needs X" and the records
(`python main.py --input X --name <BATCH>/<input>` finds the folder up to date). Its stages run
through a `tangram.execution.dask.DaskExecutor`: one Dask task per stage (`retries=`, `priority=`
from the scorer's cost model, `resources={"GPU": 1}` for a heavy stage when the cluster has GPU
workers and the scorer says the GPU pays for the transfer), with the upstream tasks' futures as
arguments. Dask schedules, steals work, moves data and reruns tasks of dead workers; the runner
renames each finished stage into the run folder atomically, so a killed batch resumes from what
already landed.

What is batch-specific stays here: the inputs and their run folder names, the cluster, the
Prometheus metrics, batch.json and the worker scratch pruning. A bounded window of inputs runs at
once (fleet.window, default 2 x the workers' threads; one client thread per input), so a
500-video batch never holds every video in memory.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import FleetHost, TangramConfig
from tangram.errors import TangramError
from tangram.execution.cost import ModelLoads, load_coefficients
from tangram.execution.dask import DaskExecutor, InputRef, prune_input_scratch, run_stage_task
from tangram.fileio import read_json, write_json, write_text
from tangram.fleet.cluster import FleetCluster, open_cluster
from tangram.fleet.inputs import BatchInput, expand_inputs, safe_batch_name
from tangram.fleet.metrics import BatchMetrics
from tangram.stages import MODES
from tangram.stages.base import StageContext, StageOutcome, StageSpec

if TYPE_CHECKING:
    from tangram.runner import Pipeline

log = logging.getLogger("tangram.fleet")

BATCH_FILE = "batch.json"
BATCH_FORMAT = "tangram.batch/1"
WRITE_EVERY_S = 0.5


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class BatchOptions:
    inputs: list[str] = field(default_factory=list)
    name: str | None = None
    mode: str | None = None  # default: batch.json's mode on resume, else "graph"
    workers: int | None = None
    hosts: list[FleetHost] | None = None
    scheduler: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"  # the Prometheus endpoint's interface (loopback unless opened)
    insecure: bool = False  # allow a plain tcp:// --scheduler that is not loopback
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    resume: bool = False
    force: list[str] = field(default_factory=list)


class BatchObserver:
    """What the terminal progress listens to (all no-ops here)."""

    def batch_started(self, driver: BatchDriver) -> None: ...
    def changed(self, driver: BatchDriver) -> None: ...
    def batch_finished(self, driver: BatchDriver) -> None: ...


@dataclass
class InputState:
    inp: BatchInput
    entry: dict[str, Any]  # this input's record in batch.json
    stages: list[str]
    run_dir: Path
    executor: DaskExecutor | None = None  # made at the input's first stage that runs
    ran: set[str] = field(default_factory=set)  # stages this session ran (the others were reused or skipped)
    info: Any = None  # the input's media info, for the planner
    cancel: threading.Event = field(default_factory=threading.Event)
    current: tuple[str, str] | None = None  # (stage, host) running now, from the scheduler

    @property
    def futures(self) -> dict[str, Any]:
        return self.executor.futures if self.executor is not None else {}

    @property
    def digests(self) -> set[str]:  # SHA-256 of the stage archives workers extracted
        return self.executor.digests if self.executor is not None else set()


class InputRun:
    """One input's run as the runner sees it: its observer (the input's batch.json entry) and its
    offload policy (every stage through the input's `DaskExecutor`)."""

    where = "dask"

    def __init__(self, driver: BatchDriver, state: InputState):
        self.driver, self.state = driver, state

    # -- RunObserver --
    def stage_started(self, stage: str, where: str) -> None:
        self.state.ran.add(stage)

    def stage_progress(self, stage: str, completed: float, total: float | None, description: str) -> None:
        pass

    def stage_finished(self, stage: str, record: dict[str, Any]) -> None:
        self.driver._stage_finished(self.state, stage, record)

    # -- OffloadPolicy and Executor --
    def executor_for(self, spec: StageSpec, ctx: StageContext) -> InputRun:
        return self

    def close(self) -> None:
        pass

    def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome:
        """The stage on the cluster; `where` the host that ran it, `execution` the batch's figures."""
        driver, state = self.driver, self.state
        if state.executor is None:
            from tangram.runner import load_manifest

            assert driver.cluster is not None
            fingerprint = load_manifest(ctx.out_dir.parent)["input"]["fingerprint"]  # the runner's, just written
            state.executor = DaskExecutor(
                driver.cluster.client, InputRef.of(state.inp.name, ctx.input_path, fingerprint),
                ship_input=driver.cluster.ships_input, retries=driver.config.fleet.retries,
                gpu_memory_fraction=driver.config.fleet.gpu_memory_fraction, token=driver._token,
                placement=lambda stage: driver._placement(state, stage),
                on_submit=lambda stage, key, future: driver._submitted(state, stage, key), task=run_stage_task)
        state.executor.cancelled = state.cancel.is_set()
        outcome = state.executor.run_stage(spec, ctx)
        host, cost = driver.host_and_cost(state.executor.results[spec.name])
        outcome.where = host
        outcome.execution.update(fleet=driver.batch["name"], host=host, cost_usd=cost)
        return outcome


class BatchDriver:
    def __init__(self, config: TangramConfig, options: BatchOptions, observer: BatchObserver | None = None):
        self.config = config
        self.options = options
        self.observer = observer or BatchObserver()
        self.exports = Path(config.run.exports_dir)
        self.cluster: FleetCluster | None = None
        self.metrics: BatchMetrics | None = None
        self.states: list[InputState] = []
        self.batch: dict[str, Any] = {}
        self.started = time.perf_counter()
        self._last_write = 0.0
        self._token = uuid.uuid4().hex[:8]
        self._stop = threading.Event()
        self._lock = threading.RLock()  # batch.json and the entries: one client thread per input writes them
        self._key_index: dict[str, tuple[InputState, str]] = {}
        self._started_work = False  # False: refused before anything started (no batch.json, no report)
        self._created_dir = False

    # -- setup: everything that can be refused is refused before anything starts -------------

    def prepare(self) -> None:
        opts = self.options
        if opts.resume and not opts.name:
            raise TangramError("--resume needs --name BATCH (the batch to resume)")
        name = opts.name or f"batch-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        safe_batch_name(name)
        self.batch_dir = self.exports / name
        previous = self._previous_batch()
        if opts.resume and previous is None:
            raise TangramError(f"no batch to resume at {self.batch_dir / BATCH_FILE}")
        inputs = list(opts.inputs) or ([e["input"] for e in previous["inputs"]] if previous else [])
        mode = opts.mode or (previous or {}).get("mode") or "graph"
        if mode not in MODES:
            raise TangramError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        self.mode = mode
        unknown = set(opts.force) - {"all", *MODES.values()}
        if unknown:
            raise TangramError(f"--force names unknown stage(s): {', '.join(sorted(unknown))}")
        missing: list[str] = []
        if previous and not opts.inputs:  # a resume of the batch's own list: a deleted input fails alone
            missing = [i for i in inputs if not Path(i).expanduser().exists()]
            inputs = [i for i in inputs if i not in missing]
        found = expand_inputs(inputs) if inputs else []
        found = _keep_previous_names(found, previous)
        if not found and not missing:
            raise TangramError("no inputs: give videos, image folders, folders of videos or a list file")
        from tangram.runner import preflight, stages_until

        self.stage_names = stages_until(MODES[mode])
        preflight(self.config, self.stage_names)  # bad settings (weights...) are one line, before any work
        self._created_dir = not self.batch_dir.exists()
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        self._batch_lock = ExitStack()
        from tangram.runner import locked_run_dir

        try:
            self._batch_lock.enter_context(locked_run_dir(self.batch_dir))
        except TangramError:
            raise TangramError(f"another batch is running in {self.batch_dir}") from None
        self.states = [self._new_state(inp) for inp in found]
        kept: list[dict[str, Any]] = []
        if previous:  # entries of inputs not in this session's list stay in batch.json, as they were
            now = {str(inp.path) for inp in found}
            before = {e.get("input") for e in previous.get("inputs") or [] if isinstance(e, dict)}
            for entry in previous.get("inputs") or []:
                if not isinstance(entry, dict) or entry.get("input") in now:
                    continue
                if entry.get("input") in missing:
                    entry = {**entry, "status": "failed", "reason": f"input not found: {entry.get('input')}"}
                kept.append(entry)
            added = sorted(now - before)
            absent = sorted(str(e.get("input")) for e in kept)
            if added:
                log.info("fleet: resume adds %d input(s): %s", len(added), ", ".join(added))
            if absent:
                log.info("fleet: %d earlier input(s) not in this list or missing, kept as they were: %s",
                         len(absent), ", ".join(absent))
        self.batch = {
            "format": BATCH_FORMAT, "name": name, "mode": mode, "started_at": now_iso(), "finished_at": None,
            "first_started_at": (previous or {}).get("first_started_at") or (previous or {}).get("started_at")
            or now_iso(),
            "sessions": int((previous or {}).get("sessions", 0)) + 1,
            "status": "running", "stages": self.stage_names,
            "cluster": {"kind": None, "address": "", "workers": [], "dashboard": None},
            "inputs": [s.entry for s in self.states] + kept, "totals": {}, "metrics": {},
        }

    def _previous_batch(self) -> dict[str, Any] | None:
        path = self.batch_dir / BATCH_FILE
        if not path.is_file():
            return None
        try:
            data = read_json(path)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == BATCH_FORMAT else None

    def _new_state(self, inp: BatchInput) -> InputState:
        entry = {"input": str(inp.path), "name": inp.name, "run_dir": inp.name, "status": "pending",
                 "reason": None, "seconds": 0.0, "cost_usd": 0.0, "stages": {}}
        return InputState(inp, entry, list(self.stage_names), self.batch_dir / inp.name)

    def start_cluster(self) -> None:
        opts = self.options
        port = opts.metrics_port if opts.metrics_port is not None else self.config.fleet.metrics_port
        self.cluster = open_cluster(self.config, workers=opts.workers, hosts=opts.hosts, scheduler=opts.scheduler,
                                    insecure=opts.insecure, tls=(opts.tls_ca, opts.tls_cert, opts.tls_key))
        cluster = self.cluster
        self.metrics = BatchMetrics(self.batch["name"], cluster.kind, cluster.dask_metrics_url)
        if port is not None:
            self.metrics.serve(port, opts.metrics_host)
        self.batch["cluster"] = {"kind": cluster.kind, "address": cluster.address, "workers": cluster.workers(),
                                 "dashboard": cluster.dashboard, "dask_metrics": cluster.dask_metrics_url,
                                 "metrics_port": self.metrics.port}
        self.gpu_cluster = cluster.has_gpu()
        self.model_loads = ModelLoads(load_coefficients(), workers=len(self.batch["cluster"]["workers"]))
        if cluster.dashboard:
            log.info("fleet: Dask dashboard %s (Prometheus: %s)", cluster.dashboard, cluster.dask_metrics_url)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        """Prepare, start the cluster, run every input; the exit code (0 all done, 1 some failed)."""
        self.prepare()
        try:
            self.start_cluster()
            self._started_work = True
            self.observer.batch_started(self)
            self._write(force=True)
            self._loop()
            self.batch["status"] = "done" if all(s.entry["status"] == "done" for s in self.states) else "failed"
        except KeyboardInterrupt:
            self.batch["status"] = "cancelled"
            self._cancel_all()
            log.warning("fleet: batch cancelled; finished stages are kept, run the same command to resume")
            raise
        except BaseException:
            self.batch["status"] = "failed"
            self._cancel_all()
            raise
        finally:
            self._finish()
        return 0 if self.batch["status"] == "done" else 1

    def _window(self) -> int:
        if self.config.fleet.window:
            return self.config.fleet.window
        assert self.cluster is not None
        threads = sum(w["nthreads"] for w in self.batch["cluster"]["workers"]) or 1
        return max(2, 2 * threads)

    def _loop(self) -> None:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        poller = threading.Thread(target=self._poll_processing, daemon=True)
        poller.start()
        pool = ThreadPoolExecutor(max_workers=self._window(), thread_name_prefix="tangram-input")
        try:
            running = {pool.submit(self._run_input, state) for state in self.states}
            while running:
                done, running = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
        except BaseException:
            self._cancel_all()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- one input: the runner, with this input's Dask executor --------------------------------

    def pipeline(self, state: InputState) -> Pipeline:
        """The runner for one input: the batch entry hears its records, its stages go to the cluster."""
        from tangram.runner import Pipeline

        run = InputRun(self, state)
        return Pipeline(self.config, observer=run, offload=run, cancel_event=state.cancel, concurrent=True)

    def _run_input(self, state: InputState) -> None:
        from tangram.runner import Cancelled

        with self._lock:
            if state.cancel.is_set():
                return
            state.entry.update(status="running", reason=None)
        self._changed()
        try:
            result = self.pipeline(state).run(state.inp.path, name=f"{self.batch['name']}/{state.inp.name}",
                                  until=MODES[self.mode], force=self.options.force)
        except Cancelled:
            return
        except TangramError as exc:  # a bad input (or its run folder in use) fails alone, in one line
            self._input_failed(state, str(exc).splitlines()[0])
            return
        except Exception as exc:
            log.exception("fleet: %s", state.inp.name)
            self._input_failed(state, f"{type(exc).__name__}: {exc}".splitlines()[0])
            return
        self._finish_input(state, result.run_dir, result.manifest)

    def _placement(self, state: InputState, stage: str) -> tuple[int, bool]:
        """The planner's priority and GPU request for `stage` (its chain: the stages from it on)."""
        from tangram.fleet.planner import plan_stages
        from tangram.media import open_media

        if state.info is None:
            state.info = open_media(state.inp.path).info
        with self._lock:  # the model load is booked on the first tasks of a model, one per worker
            plan = plan_stages(self.config, state.stages[state.stages.index(stage):], state.info, self.gpu_cluster,
                               loads=self.model_loads)[stage]
            state.entry["stages"][stage] = {"status": "pending", "where": None, "seconds": 0.0, "bytes_up": 0,
                                            "bytes_down": 0, "gpu_requested": plan.gpu,
                                            "estimate_s": round(plan.estimate_s, 2),
                                            "cpu_estimate_s": round(plan.cpu_s, 2),
                                            "model_load_s": self.model_loads.book(stage, self.config)}
        return plan.priority, plan.gpu

    def _submitted(self, state: InputState, stage: str, key: str) -> None:
        self._key_index[key] = (state, stage)
        if self.metrics:
            self.metrics.queue.inc()
        self._changed()

    def host_and_cost(self, result: Any) -> tuple[str, float]:
        """The host a task's worker is on, and what the task cost there (USD)."""
        if not result.worker or self.cluster is None:
            return "-", 0.0
        host = self.cluster.host_of(result.worker, result.worker_address)
        return host, round(result.task_seconds * self.cluster.price_of(host) / 3600.0, 6)

    def _stage_finished(self, state: InputState, stage: str, record: dict[str, Any]) -> None:
        """The runner recorded `stage` (done, failed, skipped or reused): its batch.json entry."""
        ran = stage in state.ran
        result = state.executor.results.get(stage) if ran and state.executor else None
        with self._lock:
            before = state.entry["stages"].get(stage, {})
            rec: dict[str, Any] = {"status": record["status"], "where": None,
                                   "seconds": float(record.get("seconds") or 0.0), "bytes_up": 0, "bytes_down": 0}
            if not ran and record["status"] == "done":  # reused from the run folder
                rec.update(where=record.get("where", "local"), reused=True)
            if ran:
                rec.update(worker=None, gpu_requested=before.get("gpu_requested", False),
                           **{k: before.get(k) for k in ("estimate_s", "cpu_estimate_s", "model_load_s")})
                if self.metrics and before.get("status") == "pending":
                    self.metrics.queue.dec()
            if result is not None and result.worker:
                host, cost = self.host_and_cost(result)
                rec.update(where=host, seconds=round(result.seconds, 3), bytes_up=result.bytes_up,
                           bytes_down=result.bytes_down, worker=result.worker,
                           task_seconds=round(result.task_seconds, 3), cost_usd=cost)
                if self.metrics:
                    self.metrics.stage_done(stage, host, result.seconds, result.bytes_up, result.bytes_down,
                                            result.task_seconds)
            if record.get("reason"):
                rec["reason"] = record["reason"]
            state.entry["stages"][stage] = rec
        self._changed()

    def _input_failed(self, state: InputState, reason: str) -> None:
        with self._lock:
            state.entry.update(status="failed", reason=reason)
        log.error("fleet: %s failed: %s", state.inp.name, reason)
        if self.metrics:
            self.metrics.inputs.labels(status="failed").inc()
        self._after_input(state)

    def _finish_input(self, state: InputState, run_dir: Path, manifest: dict[str, Any]) -> None:
        """The runner finished this input (recordings and report written): its batch.json entry."""
        entry = state.entry
        with self._lock:
            stages = entry["stages"]
            failed = [(s, stages.get(s, {})) for s in state.stages if stages.get(s, {}).get("status") != "done"]
            entry["seconds"] = round(sum(r.get("seconds", 0.0) for r in stages.values() if not r.get("reused")), 3)
            entry["cost_usd"] = round(sum(r.get("cost_usd", 0.0) for r in stages.values()), 6)
        stage, rec = failed[0] if failed else ("", {})
        reason = f"{stage}: {rec.get('reason') or rec.get('status', 'not run')}" if failed else None
        manifest["fleet"] = {"batch": self.batch["name"], "seconds": entry["seconds"], "cost_usd": entry["cost_usd"]}
        write_json(run_dir / "manifest.json", manifest)
        self._prune_scratch(state)
        if state.executor is not None:
            state.executor.futures.clear()
        with self._lock:
            entry.update(status="failed" if failed else "done", reason=reason)
        log.info("fleet: %s %s%s", state.inp.name, entry["status"],
                 f" ({entry['reason']})" if entry["reason"] else "")
        if self.metrics:
            self.metrics.inputs.labels(status=entry["status"]).inc()
        self._after_input(state)

    def _prune_scratch(self, state: InputState) -> None:
        """Every stage of this input is imported: its input copy and extracted upstream archives go
        from the workers' scratch (unless another unfinished input has the same content)."""
        if self.cluster is None or state.executor is None:
            return
        ref = state.executor.ref
        with self._lock:
            others = [s.executor for s in self.states if s is not state and s.executor is not None
                      and s.entry["status"] in ("pending", "running")]
        if any(e.ref.fingerprint == ref.fingerprint for e in others):
            return
        shared = set().union(*(e.digests for e in others)) if others else set()
        digests = sorted(state.executor.digests - shared)
        try:
            freed = self.cluster.client.run(prune_input_scratch, ref.fingerprint, digests, on_error="return")
        except Exception as exc:  # a worker gone: its scratch went with it
            log.debug("fleet: pruning the scratch of %s: %s", state.inp.name, exc)
            return
        total = sum(v for v in freed.values() if isinstance(v, int))
        if total:
            log.info("fleet: %s: %d B of worker scratch freed", state.inp.name, total)

    def _after_input(self, state: InputState) -> None:
        if self.metrics:
            remaining = sum(1 for s in self.states if s.entry["status"] in ("pending", "running"))
            self.metrics.remaining.set(remaining)
        self._write(force=True)
        self.observer.changed(self)

    # -- progress, batch.json, the end ------------------------------------------------------

    def _poll_processing(self) -> None:
        """Which stage of which input runs on which host now, for the live progress."""
        while not self._stop.wait(1.0):
            cluster = self.cluster
            if cluster is None:
                continue
            try:
                processing = cluster.client.processing()
                names = {w["address"]: w for w in cluster.workers()}
            except Exception:
                continue
            running: dict[str, tuple[str, str]] = {}
            for address, keys in processing.items():
                worker = names.get(address, {})
                host = cluster.host_of(str(worker.get("name", "")), address)
                for key in keys:
                    hit = self._key_index.get(str(key))
                    if hit:
                        running[hit[0].inp.name] = (hit[1], host)
            for state in self.states:
                state.current = running.get(state.inp.name)
            self.observer.changed(self)

    def _changed(self) -> None:
        self._write()
        self.observer.changed(self)

    def totals(self) -> dict[str, Any]:
        host_seconds: dict[str, float] = {}
        bytes_up = bytes_down = 0
        cost = local_estimate = 0.0
        for state in self.states:
            for rec in state.entry["stages"].values():
                if rec.get("reused"):
                    continue
                if rec.get("where") and "task_seconds" in rec:
                    host_seconds[rec["where"]] = host_seconds.get(rec["where"], 0.0) + rec["task_seconds"]
                bytes_up += int(rec.get("bytes_up") or 0)
                bytes_down += int(rec.get("bytes_down") or 0)
                cost += float(rec.get("cost_usd") or 0.0)
                local_estimate += _local_estimate(rec)
        entries = [s.entry for s in self.states]
        return {"inputs": len(entries), "done": sum(e["status"] == "done" for e in entries),
                "failed": sum(e["status"] == "failed" for e in entries),
                "remaining": sum(e["status"] in ("pending", "running") for e in entries),
                "wall_s": round(time.perf_counter() - self.started, 3),
                "host_seconds": {h: round(s, 3) for h, s in sorted(host_seconds.items())},
                "bytes_up": bytes_up, "bytes_down": bytes_down, "cost_usd": round(cost, 6),
                "local_estimate_s": round(local_estimate, 3)}

    def _write(self, force: bool = False) -> None:
        with self._lock:
            if not self.batch or (not force and time.perf_counter() - self._last_write < WRITE_EVERY_S):
                return
            self._last_write = time.perf_counter()
            self.batch["totals"] = self.totals()
            if self.metrics:
                self.metrics.cost.set(self.batch["totals"]["cost_usd"])
                self.batch["metrics"] = self.metrics.snapshot()
            write_json(self.batch_dir / BATCH_FILE, self.batch)

    def _cancel_all(self) -> None:
        with self._lock:
            for state in self.states:
                state.cancel.set()  # the runner stops before its next stage
                if state.executor is not None:
                    state.executor.cancelled = True
                if state.entry["status"] == "running":
                    state.entry["status"] = "pending"
                    state.entry["reason"] = "cancelled"
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.client.cancel([f for s in self.states for f in s.futures.values()])

    def _finish(self) -> None:
        self._stop.set()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.batch["cluster"]["workers"] = self.cluster.workers() or self.batch["cluster"]["workers"]
            if self.batch:
                self.batch["cluster"]["model_loads"] = self._model_loads()
        if self.batch and self._started_work:
            self.batch["finished_at"] = now_iso()
            self._write(force=True)
            if self.metrics:
                write_text(self.batch_dir / "metrics.prom", self.metrics.text())
        if self.cluster is not None:
            self.cluster.close()
        if self.batch and self._started_work:
            _call_report("write_batch_report", self.batch_dir)
        if self.metrics:  # the final values stay scrapable until the cluster is down and the report written
            self.metrics.stop()
        self.observer.batch_finished(self)
        if hasattr(self, "_batch_lock"):
            self._batch_lock.close()
            if not self._started_work and self._created_dir:  # refused: leave no empty batch folder
                with contextlib.suppress(OSError):
                    (self.batch_dir / ".lock").unlink()
                    self.batch_dir.rmdir()

    def _model_loads(self) -> dict[str, dict[str, int]]:
        """Models each live worker process loaded in this batch, {worker name: {kind: loads}}
        (`tangram.execution.warm`: one per model per worker when workers stay warm)."""
        from tangram.execution.warm import loads

        assert self.cluster is not None
        try:
            counts = self.cluster.client.run(loads, on_error="return")
            names = {w["address"]: w["name"] for w in self.cluster.workers()}
        except Exception as exc:  # workers gone: nothing to read
            log.debug("fleet: reading model loads: %s", exc)
            return {}
        return {names.get(a, a): c for a, c in sorted(counts.items()) if isinstance(c, dict)}


# -- helpers -----------------------------------------------------------------------------------


def _keep_previous_names(found: list[BatchInput], previous: dict[str, Any] | None) -> list[BatchInput]:
    """On a resume an input keeps the run folder it had; a new input whose name an earlier input
    holds gets a hashed one (so a changed list never moves or shares a folder)."""
    if not previous:
        return found
    import hashlib

    old = {e.get("input"): e.get("name") for e in previous.get("inputs") or [] if isinstance(e, dict)}
    taken = {str(n).casefold() for n in old.values() if n}
    out = []
    for inp in found:
        name = old.get(str(inp.path))  # an earlier input keeps its folder
        try:  # batch.json is a file from outside: a plain folder name only
            name = safe_batch_name(name) if isinstance(name, str) else None
        except TangramError:
            name = None
        if not name:
            name = inp.name
            if name.casefold() in taken:
                name = f"{name}-{hashlib.sha256(str(inp.path).encode('utf-8', 'surrogateescape')).hexdigest()[:12]}"
        taken.add(name.casefold())
        out.append(BatchInput(inp.path, name))
    return out


def _local_estimate(rec: dict[str, Any]) -> float:
    """What this stage would have taken on this machine alone: its measured time when it ran on
    a CPU worker, the scorer's CPU estimate when it ran on a GPU."""
    if rec.get("gpu_requested") and rec.get("cpu_estimate_s") is not None:
        return float(rec["cpu_estimate_s"])
    return float(rec.get("seconds") or 0.0)


def _call_report(name: str, path: Path) -> None:
    """The HTML report helper's functions, when installed; a report never fails a batch."""
    try:
        import tangram.report as report
    except ImportError:
        return
    fn: Callable[[Path], Path] | None = getattr(report, name, None)
    if fn is None:
        return
    try:
        fn(path)
    except Exception as exc:
        log.warning("fleet: %s(%s) failed: %s", name, path, exc)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the batch like Ctrl-C (cleanly; the next run resumes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

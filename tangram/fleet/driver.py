"""The batch driver on the client: inputs -> (input, stage) tasks on Dask -> run folders + batch.json.

For each input the driver does what `Pipeline.run` does before running anything (lock the run
folder, clear temp folders of an interrupted run, fingerprint the input, find the stale stages
with the same hashes) and then, instead of running the stale stages itself, submits one Dask task
per stale stage with its upstream tasks' futures as arguments (`client.submit`, `retries=`,
`priority=` from the scorer's cost model, `resources={"GPU": 1}` for a heavy stage when the cluster
has GPU workers and the scorer says the GPU pays for the transfer). Dask schedules, steals work,
moves data and reruns tasks of dead workers. The client takes results as they complete
(`as_completed`), in stage order per input, and imports each finished stage into
`exports/<BATCH>/<input>/` with the runner's own record and atomic rename, so a killed batch
resumes from what already landed and the run folder is an ordinary one
(`python main.py --input X --name <BATCH>/<input>` finds it up to date).

Only a bounded window of inputs is in flight (fleet.window, default 2 x the workers' threads), so
a 500-video batch never holds every video in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config import FleetHost, TangramConfig
from tangram.errors import TangramError
from tangram.execution.dask import (
    InputBlob,
    InputRef,
    StageResult,
    existing_stage_result,
    prune_input_scratch,
    run_stage_task,
)
from tangram.fileio import read_json, write_json, write_text
from tangram.fleet.cluster import FleetCluster, open_cluster
from tangram.fleet.inputs import BatchInput, expand_inputs, safe_batch_name
from tangram.fleet.metrics import BatchMetrics
from tangram.settings import public_dict
from tangram.stages import MODES, get_stage
from tangram.stages.base import StageOutcome

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
    manifest: dict[str, Any] | None = None
    stale: list[str] = field(default_factory=list)
    futures: dict[str, Any] = field(default_factory=dict)  # stage -> Future (stale stages)
    ready: dict[str, Any] = field(default_factory=dict)  # stage -> finished Future, not imported yet
    imported: set[str] = field(default_factory=set)
    lock: ExitStack | None = None
    ref: InputRef | None = None
    started: float = 0.0
    current: tuple[str, str] | None = None  # (stage, host) running now, from the scheduler
    digests: set[str] = field(default_factory=set)  # SHA-256 of the stage archives workers extracted


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
        from tangram.runner import stages_until

        self.stage_names = stages_until(MODES[mode])
        for stage in self.stage_names:  # bad settings (weights...) are one line, before any work
            preflight = get_stage(stage).preflight
            if preflight is not None:
                preflight(self.config)
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
        from distributed import as_completed

        assert self.cluster is not None
        todo = list(self.states)
        active: list[InputState] = []
        ac = as_completed([], with_results=False)
        poller = threading.Thread(target=self._poll_processing, daemon=True)
        poller.start()
        while todo or active:
            while todo and len(active) < self._window():
                state = todo.pop(0)
                if self._start_input(state, ac):
                    active.append(state)
                self._changed()
            if not active:
                continue
            future = next(ac)
            state, stage = self._key_index[future.key]
            state.ready[stage] = future
            self._import_ready(state)
            if self._input_finished(state):
                self._finish_input(state)
                active.remove(state)
            self._changed()

    # -- one input -------------------------------------------------------------------------

    def _start_input(self, state: InputState, ac: Any) -> bool:
        """Lock, fingerprint and plan one input; submit its stale stages. False: nothing to run."""
        from tangram.media import open_media
        from tangram.runner import locked_run_dir, open_run_manifest, stale_stages

        assert self.cluster is not None
        state.started = time.perf_counter()
        entry = state.entry
        entry.update(status="running", reason=None)
        try:
            source = open_media(state.inp.path)
        except TangramError as exc:  # a bad input fails alone, with its one-line reason
            return self._input_failed(state, str(exc).splitlines()[0])
        state.lock = ExitStack()
        try:
            state.lock.enter_context(locked_run_dir(state.run_dir))
        except TangramError as exc:
            state.lock = None
            return self._input_failed(state, str(exc))
        manifest = open_run_manifest(state.run_dir, source.info.path)
        state.manifest = manifest
        forced = set(self.options.force)
        if "all" in forced:
            forced = set(state.stages)
        state.stale = stale_stages(self.config, state.stages, manifest, state.run_dir, forced)
        write_json(state.run_dir / "manifest.json", manifest)
        write_json(state.run_dir / "config.json", public_dict(self.config))
        self._run_log(state, f"batch {self.batch['name']}: input {source.info.path} ({source.info.kind}), "
                             f"stages {', '.join(state.stages)}; to run: {', '.join(state.stale) or 'none'}")
        for stage in state.stages:
            if stage not in state.stale:
                rec = manifest["stages"][stage]
                state.imported.add(stage)
                entry["stages"][stage] = {"status": "done", "where": rec.get("where", "local"),
                                          "seconds": float(rec.get("seconds") or 0.0), "bytes_up": 0,
                                          "bytes_down": 0, "reused": True}
        if not state.stale:
            self._finish_input(state)
            return False
        fingerprint = manifest["input"]["fingerprint"]
        path = Path(manifest["input"]["path"])
        state.ref = InputRef(state.inp.name, str(path), fingerprint, path.is_dir(), _nbytes(path))
        self._submit(state, source.info, ac)
        return True

    def _submit(self, state: InputState, info: Any, ac: Any) -> None:
        from tangram.fleet.planner import plan_stages

        assert self.cluster is not None and state.manifest is not None and state.ref is not None
        client = self.cluster.client
        needs_input = any(get_stage(s).uses_input for s in state.stale)
        blob = None
        if needs_input and self.cluster.ships_input:
            blob = client.scatter(InputBlob.of(state.ref), hash=False)
        plans = plan_stages(self.config, state.stale, info, self.gpu_cluster)
        config_data = public_dict(self.config)
        results: dict[str, Any] = {}
        for stage in state.stages:
            spec = get_stage(stage)
            if stage not in state.stale:
                if any(stage in get_stage(s).requires for s in state.stale):
                    record = state.manifest["stages"][stage]
                    packed = existing_stage_result(state.inp.name, stage, state.run_dir / stage, record)
                    state.digests.add(packed.sha256)
                    results[stage] = client.scatter(packed, hash=False)
                continue
            plan = plans[stage]
            upstream = {r: results[r] for r in spec.requires if r in results}
            key = f"{stage}-{state.inp.name}-{self._token}"
            future = client.submit(
                run_stage_task, stage, state.ref, blob if spec.uses_input else None, config_data, upstream,
                self.config.fleet.gpu_memory_fraction, key=key, pure=False, retries=self.config.fleet.retries,
                priority=plan.priority, resources={"GPU": 1} if plan.gpu else None)
            results[stage] = future
            state.futures[stage] = future
            state.entry["stages"][stage] = {"status": "pending", "where": None, "seconds": 0.0, "bytes_up": 0,
                                            "bytes_down": 0, "gpu_requested": plan.gpu,
                                            "estimate_s": round(plan.estimate_s, 2),
                                            "cpu_estimate_s": round(plan.cpu_s, 2)}
            self._key_index[key] = (state, stage)
            ac.add(future)
        if self.metrics:
            self.metrics.queue.inc(len(state.futures))

    def _import_ready(self, state: InputState) -> None:
        """Import finished stages in pipeline order (a downstream result waits for its upstream's)."""
        for stage in state.stale:
            if stage in state.imported:
                continue
            future = state.ready.get(stage)
            if future is None:
                return
            self._import_one(state, stage, future)
            state.imported.add(stage)
            if self.metrics:
                self.metrics.queue.dec()

    def _import_one(self, state: InputState, stage: str, future: Any) -> None:
        from tangram.runner import done_record, import_stage_dir, record_stage, skip_unmet, stage_hash

        assert state.manifest is not None
        manifest, entry = state.manifest, state.entry
        spec = get_stage(stage)
        input_hash = stage_hash(self.config, spec, manifest)
        skipped = skip_unmet(state.run_dir, manifest, spec)  # the runner's rule, recorded as the runner does
        if skipped is not None:
            result = StageResult(state.inp.name, stage, "skipped", reason=skipped["reason"])
        else:
            try:
                result = future.result()
            except Exception as exc:  # raised after every retry, or its worker died too often
                result = StageResult(state.inp.name, stage, "failed", reason=_reason(exc), produced=True)
        tmp_dir = state.run_dir / f".tmp-{stage}-{os.getpid()}"
        if result.status == "done":  # a refused or corrupt archive fails this input's stage alone
            try:
                _extract_result(result, tmp_dir)
            except (TangramError, ValueError, OSError, tarfile.TarError) as exc:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                result = dataclasses.replace(result, status="failed",
                                             reason=f"its archive was refused: {_reason(exc)}")
        if result.sha256:
            state.digests.add(result.sha256)
        host = self.cluster.host_of(result.worker, result.worker_address) if result.worker and self.cluster else "-"
        stage_entry = {"status": result.status, "where": host if result.worker else None,
                       "seconds": round(result.seconds, 3), "bytes_up": result.bytes_up,
                       "bytes_down": result.bytes_down, "worker": result.worker or None,
                       "gpu_requested": entry["stages"].get(stage, {}).get("gpu_requested", False),
                       "estimate_s": entry["stages"].get(stage, {}).get("estimate_s"),
                       "cpu_estimate_s": entry["stages"].get(stage, {}).get("cpu_estimate_s")}
        if result.reason:
            stage_entry["reason"] = result.reason
        if result.worker and self.cluster is not None:
            price = self.cluster.price_of(host)
            stage_entry["task_seconds"] = round(result.task_seconds, 3)
            stage_entry["cost_usd"] = round(result.task_seconds * price / 3600.0, 6)
            if self.metrics:
                self.metrics.stage_done(stage, host, result.seconds, result.bytes_up, result.bytes_down,
                                        result.task_seconds)
        entry["stages"][stage] = stage_entry
        execution = {"fleet": self.batch["name"], "worker": result.worker, "host": host,
                     "bytes_up": result.bytes_up, "bytes_down": result.bytes_down,
                     "task_s": round(result.task_seconds, 3), "device": result.device,
                     "cost_usd": stage_entry.get("cost_usd", 0.0)}
        if result.status == "done":
            outcome = StageOutcome(result.backend, result.summary, where=host, execution=execution)
            import_stage_dir(state.run_dir, manifest, stage, tmp_dir, done_record(outcome, input_hash,
                                                                                   result.seconds))
            self._run_log(state, f"{stage}: done in {result.seconds:.1f} s on {host} ({result.worker}, "
                                 f"{result.backend}); {result.bytes_up} B up, {result.bytes_down} B down")
        elif result.status == "failed":
            record_stage(state.run_dir, manifest, stage, {
                "status": "failed", "reason": result.reason or "failed", "input_hash": input_hash,
                "seconds": round(result.seconds, 3), "where": host, "execution": execution})
            self._run_log(state, f"{stage}: failed on {host}: {result.reason}", logging.ERROR)
        else:
            if skipped is None:  # the worker skipped it (cannot happen while imports go in stage order)
                record_stage(state.run_dir, manifest, stage, {"status": "skipped", "reason": result.reason})
            self._run_log(state, f"{stage}: skipped: {result.reason}", logging.WARNING)

    def _input_finished(self, state: InputState) -> bool:
        return all(stage in state.imported for stage in state.stages)

    def _input_failed(self, state: InputState, reason: str) -> bool:
        state.entry.update(status="failed", reason=reason)
        log.error("fleet: %s failed: %s", state.inp.name, reason)
        if self.metrics:
            self.metrics.inputs.labels(status="failed").inc()
        self._after_input(state)
        return False

    def _finish_input(self, state: InputState) -> None:
        entry = state.entry
        failed = [(s, r) for s, r in entry["stages"].items() if r["status"] != "done"]
        entry["seconds"] = round(sum(r.get("seconds", 0.0) for r in entry["stages"].values()
                                     if not r.get("reused")), 3)
        entry["cost_usd"] = round(sum(r.get("cost_usd", 0.0) for r in entry["stages"].values()), 6)
        if failed:
            stage, rec = failed[0]
            entry.update(status="failed", reason=f"{stage}: {rec.get('reason') or rec['status']}")
        else:
            entry.update(status="done", reason=None)
        if state.manifest is not None:
            from tangram.runner import write_run_recordings

            write_run_recordings(state.run_dir, state.manifest, self.config.run.recording)  # one per input
            state.manifest["fleet"] = {"batch": self.batch["name"], "seconds": entry["seconds"],
                                       "cost_usd": entry["cost_usd"]}
            write_json(state.run_dir / "manifest.json", state.manifest)
        state.futures.clear()
        state.ready.clear()
        self._prune_scratch(state)
        if state.lock is not None:
            state.lock.close()
            state.lock = None
        log.info("fleet: %s %s%s", state.inp.name, entry["status"],
                 f" ({entry['reason']})" if entry["reason"] else "")
        if self.metrics:
            self.metrics.inputs.labels(status=entry["status"]).inc()
        _call_report("write_run_report", state.run_dir)
        self._after_input(state)

    def _prune_scratch(self, state: InputState) -> None:
        """Every stage of this input is imported: its input copy and extracted upstream archives go
        from the workers' scratch (unless another unfinished input has the same content)."""
        if self.cluster is None or state.ref is None:
            return
        others = [s for s in self.states if s is not state and s.entry["status"] in ("pending", "running")]
        if any(s.ref is not None and s.ref.fingerprint == state.ref.fingerprint for s in others):
            return
        shared = set().union(*(s.digests for s in others)) if others else set()
        digests = sorted(state.digests - shared)
        try:
            freed = self.cluster.client.run(prune_input_scratch, state.ref.fingerprint, digests, on_error="return")
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
        if not self.batch or (not force and time.perf_counter() - self._last_write < WRITE_EVERY_S):
            return
        self._last_write = time.perf_counter()
        self.batch["totals"] = self.totals()
        if self.metrics:
            self.metrics.cost.set(self.batch["totals"]["cost_usd"])
            self.batch["metrics"] = self.metrics.snapshot()
        write_json(self.batch_dir / BATCH_FILE, self.batch)

    def _cancel_all(self) -> None:
        if self.cluster is None:
            return
        futures = [f for s in self.states for f in s.futures.values()]
        with contextlib.suppress(Exception):
            self.cluster.client.cancel(futures)
        for state in self.states:
            if state.entry["status"] == "running":
                state.entry["status"] = "pending"
                state.entry["reason"] = "cancelled"

    def _finish(self) -> None:
        self._stop.set()
        for state in self.states:
            if state.lock is not None:
                state.lock.close()
                state.lock = None
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
        if self.metrics:
            self.metrics.stop()
        if self.cluster is not None:
            self.cluster.close()
        if self.batch and self._started_work:
            _call_report("write_batch_report", self.batch_dir)
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

    def _run_log(self, state: InputState, message: str, level: int = logging.INFO) -> None:
        """One line in the run's own tangram.log (and the console log)."""
        log.log(level, "%s: %s", state.inp.name, message)
        line = f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} {logging.getLevelName(level):<7} " \
               f"tangram.fleet: {message}\n"
        with contextlib.suppress(OSError), open(state.run_dir / "tangram.log", "a", encoding="utf-8") as fh:
            fh.write(line)


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


def _nbytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    line = text.splitlines()[0][:300] if text else ""
    if name == "KilledWorker":
        return f"its worker died too often running it ({line})"
    return f"{name}: {line}" if line else name


def _extract_result(result: StageResult, dest: Path) -> None:
    """The worker's archive, checked and extracted into `dest` (a temp folder in the run folder)."""
    import hashlib

    from tangram.execution.archive import safe_extract

    assert result.archive is not None
    digest = hashlib.sha256(result.archive).hexdigest()
    if digest != result.sha256:
        raise TangramError(f"archive of {result.stage} for {result.input_name} arrived corrupt")
    shutil.rmtree(dest, ignore_errors=True)
    with tempfile.NamedTemporaryFile(prefix="tangram-fleet-", suffix=".tar") as fh:
        fh.write(result.archive)
        fh.flush()
        try:
            names = safe_extract(Path(fh.name), dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    if len(names) != result.files:
        shutil.rmtree(dest, ignore_errors=True)
        raise TangramError(f"archive of {result.stage} for {result.input_name} has {len(names)} files, "
                           f"expected {result.files}")


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

"""The Thunder executor: stages on a remote GPU host over SSH, and the policy that sends them there.

The runner asks `policy.executor_for(spec, ctx)` for each stage (see tangram.runner.OffloadPolicy):

- the scorer (thunder.scorer, on the cost model of tangram.execution.cost) decides local or
  remote, and the decision is logged with its reason;
- a remote stage runs through `ThunderExecutor`: upload what the stage reads (the compressed input
  once per run, the upstream folders as one tar stream unless the host already has them), run
  `<venv python> -m thunder.worker run-stage ...` with every argument shell-quoted, forward its
  progress lines to ctx.progress while they arrive, download the output tar, check its SHA-256,
  and only then move it into ctx.out_dir. Transient failures are retried with backoff;
- `tangram.execution.FallbackExecutor` runs the stage locally when the host fails for any reason,
  so the run completes; the manifest's `execution.fallback` says what happened. A connection-level failure
  (refused, auth, host key, setup) sends the rest of the run's stages straight to local.

The host's scratch folder for a run (<remote_data_dir>/<run>-<random>/) is removed by
`policy.close()` (the runner's `finally`), and at interpreter exit as a safety net.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import TangramConfig
from tangram.errors import StageFailed
from tangram.execution.archive import extract_into, folder_files, write_tar
from tangram.execution.base import Executor, FallbackExecutor, LocalExecutor, LocalWithNote, clear_dir
from tangram.fileio import path_fingerprint
from tangram.settings import public_dict
from tangram.stages.base import StageContext, StageOutcome, StageSpec
from thunder.bootstrap import WorkerEnv, ensure_model, ensure_worker
from thunder.errors import (
    ThunderAuthError,
    ThunderConnectError,
    ThunderDiskFull,
    ThunderError,
    ThunderHostKeyError,
    ThunderRemoteError,
    ThunderSetupError,
    ThunderTransferError,
    ThunderUnavailable,
)
from thunder.scorer import Scorer, update_host_throughput
from thunder.thunder_client import ThunderClient, check_configured, host_label
from thunder.worker import SCRATCH_MARKER

log = logging.getLogger("thunder")

# Upstream files only people look at: not uploaded for the next stage.
FOR_PEOPLE_ONLY: dict[str, tuple[str, ...]] = {
    "tracking": ("preview.mp4",),
    "segmentation": ("overlays/*",),
}
# After these, the host is not tried again in this run.
HOST_DOWN_ERRORS = (ThunderConnectError, ThunderAuthError, ThunderHostKeyError, ThunderSetupError,
                    ThunderUnavailable, ThunderDiskFull)


# -- one run's connection and scratch space on the host ----------------------------------------


@dataclass
class _RemoteOutput:
    fingerprint: str  # of the local copy
    path: str  # the same folder on the host


class ThunderSession:
    """The connection, worker install and scratch folder shared by the stages of one run."""

    def __init__(self, config: TangramConfig):
        check_configured(config.thunder)
        self.config = config
        self.cfg = config.thunder
        self.label = host_label(self.cfg)
        self._client: ThunderClient | None = None
        self._env: WorkerEnv | None = None
        self.root: str | None = None
        self.inputs: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> host path
        self.outputs: dict[str, _RemoteOutput] = {}  # stage -> its output folder on the host
        self.gc_pending = False
        self.setup_s = 0.0
        atexit.register(self.close)

    def client(self) -> ThunderClient:
        if self._client is None:
            client = ThunderClient(self.cfg)
            client.connect()
            self._client = client
        return self._client

    def env(self) -> WorkerEnv:
        if self._env is None:
            started = time.perf_counter()
            self._env = ensure_worker(self.client())
            self.setup_s = time.perf_counter() - started
        return self._env

    def run_root(self, run_name: str) -> str:
        if self.root is None:
            client = self.client()
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name).strip("._")[:40] or "run"
            token = secrets.token_hex(8)
            root = f"{client.expand(self.cfg.remote_data_dir).rstrip('/')}/{safe}-{token}"
            client.makedirs(root)
            with client.sftp.open(f"{root}/{SCRATCH_MARKER}", "w") as fh:  # only marked folders are swept
                fh.write(f"tangram scratch {token}\n")
            self.root = root
            self.gc_pending = True  # the first worker of the run also sweeps stale scratch folders
        return self.root

    def reset(self) -> None:
        """Drop the connection after a failure; the next attempt reconnects."""
        if self._client is not None:
            self._client.close()
        self._client = None

    def close(self) -> None:
        """Remove the run's scratch folder on the host and disconnect (best effort)."""
        root, self.root = self.root, None
        if root:
            try:
                self.client().remove_tree(root)
                log.debug("removed %s on %s", root, self.label)
            except Exception as exc:  # the host may be gone: nothing else to do
                log.warning("could not remove %s on %s: %s", root, self.label, exc)
        self.inputs.clear()
        self.outputs.clear()
        self.reset()
        atexit.unregister(self.close)


# -- one stage on the host ---------------------------------------------------------------------


@dataclass
class _Attempt:
    """What one attempt sent, received and measured."""

    bytes_up: int = 0
    bytes_down: int = 0
    transfer_s: float = 0.0
    remote_wall_s: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    cleanup: list[str] = field(default_factory=list)
    new_input: tuple[tuple[str, int, int], str] | None = None


class ThunderExecutor:
    """Executor that runs a stage on the Thunder host; raises ThunderError when it cannot."""

    def __init__(self, session: ThunderSession):
        self.session = session
        self.where = session.label
        self.attempts = 0
        self.errors: list[str] = []  # one line per failed attempt, for the log and the manifest

    def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome:
        cfg = self.session.cfg
        for attempt in range(1, cfg.retries + 2):
            self.attempts = attempt
            try:
                return self._attempt(spec, ctx, attempt)
            except ThunderError as exc:
                clear_dir(ctx.out_dir)
                self.session.reset()
                self.errors.append(f"attempt {attempt}: {exc.kind}: {exc}")
                if not exc.transient or attempt > cfg.retries:
                    raise
                delay = cfg.retry_backoff_s * 2 ** (attempt - 1)
                log.warning("%s on %s: %s; retrying in %.1f s (attempt %d of %d)", spec.name, self.where, exc,
                            delay, attempt + 1, cfg.retries + 1)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _attempt(self, spec: StageSpec, ctx: StageContext, attempt: int) -> StageOutcome:
        session = self.session
        client = session.client()
        env = session.env()
        root = session.run_root(ctx.out_dir.parent.name)
        work = f"{root}/{spec.name}-{attempt}-{secrets.token_hex(3)}"
        client.makedirs(work)
        rec = _Attempt(cleanup=[f"{work}/upstream", f"{work}/out.tar", f"{work}/config.json"])
        try:
            argv = self._prepare(spec, ctx, env, work, rec)
            self._run_worker(argv, ctx, rec)
            outcome = self._collect(spec, ctx, work, rec)
        except BaseException:
            with contextlib.suppress(Exception):
                if client.alive():
                    client.remove_tree(work)
            raise
        with contextlib.suppress(ThunderError):
            client.run(["rm", "-rf", "--", *rec.cleanup])
        outcome.where = self.where
        outcome.execution = self._execution(rec, attempt)
        return outcome

    # uploads ---------------------------------------------------------------------------------

    def _prepare(self, spec: StageSpec, ctx: StageContext, env: WorkerEnv, work: str,
                 rec: _Attempt) -> list[str]:
        session, client = self.session, self.session.client()
        argv = [env.python, "-P", "-m", "thunder.worker", "run-stage", "--stage", spec.name,
                "--out", f"{work}/out", "--out-tar", f"{work}/out.tar", "--config", f"{work}/config.json",
                "--gpu-memory-fraction", str(session.cfg.gpu_memory_fraction)]
        argv += ["--input", self._upload_input(ctx, rec, argv) if spec.uses_input else f"{work}/no-input"]
        if session.gc_pending:  # scratch folders of runs that died without cleaning up, > 1 day old
            argv += ["--gc", client.expand(session.cfg.remote_data_dir), "--keep", session.root or ""]
            session.gc_pending = False
        upstream, to_send = {}, []
        for name in spec.requires:
            local = ctx.upstream[name]
            known = session.outputs.get(name)
            if known and known.fingerprint == path_fingerprint(local):
                upstream[name] = known.path  # the host made it in this run: no upload
            else:
                upstream[name] = f"{work}/upstream/{name}"
                to_send += [(p, f"{name}/{p.relative_to(local).as_posix()}")
                            for p in folder_files(local, FOR_PEOPLE_ONLY.get(name, ()))]
        if to_send:
            sent = client.put_stream(lambda fh: write_tar(fh, to_send), f"{work}/upstream.tar")
            self._count_up(rec, sent)
            argv += ["--unpack", f"{work}/upstream.tar", sent.sha256, f"{work}/upstream"]
        for name, path in upstream.items():
            argv += ["--upstream", f"{name}={path}"]
        config = self._remote_config(spec, ctx.config, env)
        sent = client.put_stream(lambda fh: fh.write(json.dumps(config).encode()), f"{work}/config.json")
        self._count_up(rec, sent)
        return argv

    def _upload_input(self, ctx: StageContext, rec: _Attempt, argv: list[str]) -> str:
        """The run's input on the host: uploaded once per run, as is (a video stays compressed)."""
        session, client = self.session, self.session.client()
        path = Path(ctx.input_path)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in session.inputs:
            return session.inputs[key]
        folder = f"{session.root}/input-{secrets.token_hex(3)}"
        client.makedirs(folder)
        if path.is_dir():  # an image folder: one tar stream, unpacked by the worker
            files = [(p, f"{path.name}/{p.name}") for p in sorted(path.iterdir()) if p.is_file()]
            sent = client.put_stream(lambda fh: write_tar(fh, files), f"{folder}/input.tar")
            argv += ["--unpack", f"{folder}/input.tar", sent.sha256, folder]
        else:
            sent = client.put_file(path, f"{folder}/{path.name}", callback=_upload_progress(ctx))
            argv += ["--verify", f"{folder}/{path.name}", sent.sha256]
        self._count_up(rec, sent)
        update_host_throughput(session.cfg, "upload", sent.bytes, sent.seconds)
        log.info("uploaded %s (%.1f MB) to %s in %.2f s", path.name, sent.bytes / 1e6, self.where,
                 sent.seconds)
        remote = f"{folder}/{path.name}"
        rec.new_input = (key, remote)  # reused by later stages once a worker has used it
        return remote

    def _remote_config(self, spec: StageSpec, config: TangramConfig, env: WorkerEnv) -> dict[str, Any]:
        """Worker config; weights this stage uses are cached on the host and pointed to there."""
        from tangram.models import SAM_CHECKPOINTS, find_local

        data = public_dict(config)
        client = self.session.client()
        if "tracking" in spec.config_sections:
            local = find_local(config.tracking.weights)
            if local:
                data["tracking"]["weights"] = ensure_model(client, env, local)
        seg = config.segmentation
        if "segmentation" in spec.config_sections and seg.backend != "grabcut":
            local = find_local(seg.sam_checkpoint or SAM_CHECKPOINTS[seg.sam_model].rsplit("/", 1)[1])
            if local:  # same checkpoint both sides, so the same backend runs
                data["segmentation"]["sam_checkpoint"] = ensure_model(client, env, local)
        return data

    def _count_up(self, rec: _Attempt, sent: Any) -> None:
        rec.bytes_up += sent.bytes
        rec.transfer_s += sent.seconds

    # the worker ------------------------------------------------------------------------------

    def _run_worker(self, argv: list[str], ctx: StageContext, rec: _Attempt) -> None:
        def on_line(line: str) -> None:
            try:
                event = json.loads(line)
            except ValueError:
                log.debug("worker: %s", line[:300])
                return
            kind = event.get("event")
            if kind == "progress":
                ctx.progress(event["completed"], event.get("total"), event.get("description", ""))
            elif kind == "device":
                rec.device = {k: v for k, v in event.items() if k != "event"}
                log.info("%s on %s: device %s", ctx.stage, self.where,
                         rec.device.get("gpu") or rec.device["device"])
            elif kind == "result":
                rec.result = event
            elif kind == "failed":
                rec.failed = event

        started = time.perf_counter()
        result = self.session.client().run(argv, on_line=on_line, timeout=self.session.cfg.command_timeout_s)
        rec.remote_wall_s = time.perf_counter() - started
        if result.exit_status == 0 and rec.result:
            return
        kind, message = rec.failed.get("kind"), rec.failed.get("message") or result.reason()
        if kind == "stage_failed":
            raise StageFailed(message)  # the stage itself says why: running it here would say the same
        if kind == "disk_full":
            raise ThunderDiskFull(f"no space left on {self.where}: {message}")
        if result.exit_status == 127:
            raise ThunderSetupError(f"the worker's python is missing on {self.where} "
                                    "(run tangram thunder setup)")
        raise ThunderRemoteError(
            f"remote worker failed on {self.where} (exit {result.exit_status}): {message}")

    # downloads -------------------------------------------------------------------------------

    def _collect(self, spec: StageSpec, ctx: StageContext, work: str, rec: _Attempt) -> StageOutcome:
        client, result = self.session.client(), rec.result
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}-", suffix=".tar", dir=ctx.out_dir.parent)
        tmp = Path(tmp_name)
        os.close(fd)
        try:
            got = client.get_file(result["out_tar"], tmp)
            rec.bytes_down += got.bytes
            rec.transfer_s += got.seconds
            update_host_throughput(self.session.cfg, "download", got.bytes, got.seconds)
            if got.sha256 != result["sha256"] or got.bytes != result["bytes"]:
                raise ThunderTransferError(f"output of {spec.name} from {self.where} failed its checksum")
            extract_into(tmp, ctx.out_dir)
        finally:
            tmp.unlink(missing_ok=True)
        self.session.outputs[spec.name] = _RemoteOutput(path_fingerprint(ctx.out_dir), f"{work}/out")
        if rec.new_input is not None:
            key, remote = rec.new_input
            self.session.inputs[key] = remote
        return StageOutcome(result["backend"], result.get("summary", {}))

    def _execution(self, rec: _Attempt, attempt: int) -> dict[str, Any]:
        compute = float(rec.result.get("compute_s", 0.0))
        held = rec.transfer_s + rec.remote_wall_s
        execution = {
            "host": self.where,
            "bytes_up": rec.bytes_up,
            "bytes_down": rec.bytes_down,
            "transfer_s": round(rec.transfer_s, 3),
            "remote_compute_s": round(compute, 3),
            "remote_overhead_s": round(max(0.0, rec.remote_wall_s - compute), 3),
            "cost_usd": round(self.session.cfg.price_per_hour * held / 3600, 6),
            "attempts": attempt,
            "device": rec.device.get("gpu") or rec.device.get("device", "cpu"),
        }
        if self.session.setup_s > 1.0:
            execution["setup_s"] = round(self.session.setup_s, 1)
            self.session.setup_s = 0.0
        return execution


def _upload_progress(ctx: StageContext) -> Callable[[int, int], None]:
    last = [0.0]

    def callback(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.25 or done == total:
            last[0] = now
            ctx.progress(round(done / 1e6, 1), round(total / 1e6, 1), "MB uploaded")

    return callback


# -- the policy (the fallback is tangram.execution.FallbackExecutor) ----------------------------


class ThunderOffloadPolicy:
    """What `tangram.runner.Pipeline(offload=...)` uses when the run asked for --thunder."""

    def __init__(self, config: TangramConfig):
        self.config = config
        self.scorer = Scorer(config)
        self.down: str | None = None
        self.session: ThunderSession | None = None
        try:
            self.session = ThunderSession(config)
        except ThunderUnavailable as exc:
            self.down = f"unavailable: {exc}"
            log.warning("--thunder: %s; running every stage locally", exc)

    def mark_down(self, reason: str) -> None:
        if self.down is None:
            log.warning("Thunder host not used for the rest of this run (%s)", reason)
        self.down = reason

    def executor_for(self, spec: StageSpec, ctx: StageContext) -> Executor:
        if not spec.offloadable:
            log.info("%s -> local (not worth offloading)", spec.name)
            return LocalExecutor()
        if self.down is not None or self.session is None:
            return LocalWithNote({"offload": f"thunder not used: {self.down}"})
        decision = self.scorer.decide(spec, ctx)
        log.info("%s", decision.message())
        if not decision.remote:
            return LocalWithNote({"decision": decision.to_json()})
        remote = ThunderExecutor(self.session)

        def host_failed(exc: BaseException) -> None:
            log.warning("%s: Thunder host %s failed after %d attempt(s)", spec.name, remote.where, remote.attempts)
            if isinstance(exc, HOST_DOWN_ERRORS):
                self.mark_down(f"{getattr(exc, 'kind', type(exc).__name__)}: {exc}")

        return FallbackExecutor(remote, (ThunderError,), note={"decision": decision.to_json()},
                                note_of=lambda exc: {"attempts": remote.attempts, "errors": remote.errors},
                                on_failure=host_failed)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def __enter__(self) -> ThunderOffloadPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def offload_policy(config: TangramConfig) -> ThunderOffloadPolicy:
    """The runner's offload policy for a --thunder run (`tangram.cli` calls this)."""
    return ThunderOffloadPolicy(config)

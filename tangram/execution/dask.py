"""The Dask executor: each stage of one input as one (input, stage) task on a Dask worker.

`DaskExecutor` is an `Executor` the runner drives like any other (order, hashes, reuse, resume,
"skip: needs X" and records are the runner's); `tangram batch` runs one pipeline per input, each with
its own `DaskExecutor`. `run_stage` submits `run_stage_task` (`retries=`, `priority=`, `resources=`)
with the futures of the upstream tasks as arguments, so Dask knows the real dependencies and moves
each upstream archive to the worker that needs it (extracted once per worker into its scratch space,
keyed by SHA-256); an upstream reused from the run folder is packed and scattered. The input reaches
a worker as a path (a LocalCluster shares this disk) or as a scattered `InputBlob`, written to the
worker's scratch once. The stage's folder comes back as a checked tar (`archive.write_tar`, SHA-256)
in the `StageResult`, extracted into `ctx.out_dir` (plain files with relative names only). Workers
are warm (`tangram.execution.warm`): each model is loaded once per worker; `warm.loads` counts.

Failures: a `StageFailed` or `TangramError` on the worker (a bad input, a bad setting) is a result
with status "failed" and its one-line reason (retrying cannot help), raised as `StageFailed`.
Anything else raises on the worker and Dask's `retries=` reruns the task (on another worker if this
one died); when every retry failed, the stage fails with one line. Cancelled: the runner's `Cancelled`.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tangram.errors import StageFailed, TangramError
from tangram.execution import warm
from tangram.execution.archive import folder_files, safe_extract, write_tar
from tangram.execution.base import first_line, run_stage_here
from tangram.stages.base import StageContext, StageOutcome, StageSpec

GPU_SHARE_ENV = "TANGRAM_FLEET_GPU_SHARE"  # workers sharing this worker's GPU (set by the cluster)


@dataclass(frozen=True)
class InputRef:
    """One batch input as the client sees it."""

    name: str  # run folder name inside the batch
    path: str  # on the client
    fingerprint: str  # SHA-256 of the file (or of the folder's files)
    is_dir: bool
    nbytes: int

    @property
    def filename(self) -> str:
        return Path(self.path).name

    @classmethod
    def of(cls, name: str, path: Path, fingerprint: str) -> InputRef:
        nbytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else \
            path.stat().st_size
        return cls(name, str(path), fingerprint, path.is_dir(), nbytes)


@dataclass(frozen=True)
class InputBlob:
    """The input's bytes for workers that do not share the client's disk (a folder travels as a tar)."""

    fingerprint: str
    filename: str
    is_dir: bool
    data: bytes

    @classmethod
    def of(cls, ref: InputRef) -> InputBlob:
        path = Path(ref.path)
        return cls(ref.fingerprint, ref.filename, ref.is_dir, pack_folder(path)[0] if ref.is_dir else path.read_bytes())


@dataclass
class StageResult:
    """What comes back from a worker: the stage's record and its output folder as a checked tar."""

    input_name: str
    stage: str
    status: str  # "done" | "failed"
    reason: str | None = None
    backend: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    archive: bytes | None = None
    sha256: str = ""
    files: int = 0
    seconds: float = 0.0  # the stage itself
    task_seconds: float = 0.0  # the whole task on the worker (materialise, run, pack)
    worker: str = ""  # Dask worker name
    worker_address: str = ""
    hostname: str = ""
    bytes_up: int = 0  # input and upstream archives this worker had to receive for the task
    device: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes_down(self) -> int:
        return len(self.archive) if self.archive else 0

    @property
    def ok(self) -> bool:
        return self.status == "done"


def pack_folder(folder: Path) -> tuple[bytes, str, int]:
    """A folder as (tar bytes, SHA-256, file count)."""
    buf = io.BytesIO()
    count = write_tar(buf, ((p, p.relative_to(folder).as_posix()) for p in folder_files(folder)))
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest(), count


def unpack_checked(data: bytes, sha256: str, dest: Path, files: int | None = None) -> None:
    """Extract a tar after checking its SHA-256 (and its file count); `dest`, absent or an empty
    folder, appears complete or not at all (a staging `.tmp-unpack-*` folder beside it meanwhile)."""
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise TangramError(f"archive for {dest.name} is corrupt (sha256 {got[:12]} != {sha256[:12]})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-unpack-", dir=dest.parent))
    try:
        tar = staging / "archive.tar"
        tar.write_bytes(data)
        names = safe_extract(tar, staging / "out")
        if files is not None and len(names) != files:
            raise TangramError(f"archive for {dest.name} has {len(names)} files, expected {files}")
        try:
            os.replace(staging / "out", dest)
        except OSError:  # another task on this worker extracted the same archive meanwhile
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def task_failure(exc: BaseException) -> str:
    """One line for a task that raised after every retry (or whose workers kept dying)."""
    text = str(exc).strip()
    line = text.splitlines()[0][:300] if text else ""
    if type(exc).__name__ == "KilledWorker":
        return f"its worker died too often running it ({line})"
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class DaskExecutor:
    """The stages of one input, each as a `run_stage_task` on a Dask cluster (module docstring).

    `placement(stage)` gives (priority, wants a GPU); `on_submit(stage, key, future)` hears each
    task as it is submitted. `results` keeps each stage's `StageResult` (worker, bytes, seconds),
    `digests` the archives the workers extracted (for `prune_input_scratch`)."""

    where = "dask"

    def __init__(self, client: Any, ref: InputRef, *, ship_input: bool = False, retries: int = 0,
                 gpu_memory_fraction: float = 0.9, token: str = "",
                 placement: Callable[[str], tuple[int, bool]] | None = None,
                 on_submit: Callable[[str, str, Any], None] | None = None,
                 task: Callable[..., StageResult] | None = None):
        self.client, self.ref, self.ship_input = client, ref, ship_input
        self.retries, self.gpu_memory_fraction, self.token = retries, gpu_memory_fraction, token
        self.placement = placement or (lambda stage: (0, False))
        self.on_submit = on_submit
        self.task = task or run_stage_task
        self.futures: dict[str, Any] = {}
        self.results: dict[str, StageResult] = {}
        self.digests: set[str] = set()
        self.cancelled = False
        self._blob: Any = None

    def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome:
        from tangram.settings import public_dict

        stage = spec.name
        upstream = {r: self.futures[r] if r in self.futures else self._scatter_existing(r, ctx.upstream[r])
                    for r in spec.requires}
        priority, gpu = self.placement(stage)
        key = f"{stage}-{self.ref.name}-{self.token}"
        future = self.client.submit(
            self.task, stage, self.ref, self._blob_for(spec), public_dict(ctx.config), upstream,
            self.gpu_memory_fraction, key=key, pure=False, retries=self.retries, priority=priority,
            resources={"GPU": 1} if gpu else None)
        self.futures[stage] = future  # before the flag is read: a cancel sees the future or we see the flag
        if self.on_submit is not None:
            self.on_submit(stage, key, future)
        try:
            if self.cancelled:
                future.cancel()
            result = future.result()
        except Exception as exc:  # raised after every retry, its workers died too often, or cancelled
            if self.cancelled or isinstance(exc, CancelledError):
                from tangram.runner import Cancelled

                raise Cancelled(f"{stage} cancelled") from None
            result = StageResult(self.ref.name, stage, "failed", reason=task_failure(exc))
        self.results[stage] = result
        if result.sha256:
            self.digests.add(result.sha256)
        if result.status == "done":  # a refused or corrupt archive fails this input's stage alone
            try:
                unpack_checked(result.archive or b"", result.sha256, ctx.out_dir, result.files)
            except (TangramError, ValueError, OSError, tarfile.TarError) as exc:
                result.status, result.reason = "failed", f"its archive was refused: {task_failure(exc)}"
        if result.status != "done":
            raise StageFailed(result.reason or result.status)
        return StageOutcome(result.backend, result.summary, where=result.hostname or self.where, execution={
            "worker": result.worker, "bytes_up": result.bytes_up, "bytes_down": result.bytes_down,
            "stage_s": round(result.seconds, 3), "task_s": round(result.task_seconds, 3),
            "device": result.device})

    def _scatter_existing(self, stage: str, folder: Path) -> Any:
        """A stage reused from the run folder, packed for the downstream task."""
        data, digest, count = pack_folder(folder)
        self.digests.add(digest)
        return self.client.scatter(StageResult(self.ref.name, stage, "done", archive=data, sha256=digest, files=count,
                                               worker="client"), hash=False)

    def _blob_for(self, spec: StageSpec) -> Any:
        if not (spec.uses_input and self.ship_input):
            return None
        if self._blob is None:
            self._blob = self.client.scatter(InputBlob.of(self.ref), hash=False)
        return self._blob


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _scratch(worker: Any) -> Path:
    base = Path(worker.local_directory) if worker is not None else Path(tempfile.gettempdir())
    root = base / "tangram-fleet"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _materialise_input(ref: InputRef, blob: InputBlob | None, scratch: Path) -> tuple[Path, int]:
    """The input as a path on this worker, and how many bytes had to be written for it here."""
    if blob is None:
        path = Path(ref.path)
        if not path.exists():
            raise TangramError(f"input {ref.path} is not on worker {socket.gethostname()}: "
                               "this cluster does not share the client's disk")
        return path, 0
    folder = scratch / "inputs" / blob.fingerprint[:24]
    target = folder / blob.filename
    if target.exists():
        return target, 0
    folder.mkdir(parents=True, exist_ok=True)
    if blob.is_dir:
        unpack_checked(blob.data, hashlib.sha256(blob.data).hexdigest(), target)
    else:
        tmp = folder / f".{blob.filename}.{os.getpid()}.part"
        tmp.write_bytes(blob.data)
        os.replace(tmp, target)
    return target, len(blob.data)


def _materialise_upstream(result: StageResult, scratch: Path, me: str) -> tuple[Path, int]:
    dest = scratch / "upstream" / result.sha256[:24] / result.stage
    if dest.is_dir():
        return dest, 0
    assert result.archive is not None
    unpack_checked(result.archive, result.sha256, dest)
    return dest, 0 if result.worker == me else len(result.archive)


def _gpu_config(config: Any, worker: Any, fraction: float) -> tuple[Any, dict[str, Any]]:
    """On a worker that advertises a GPU: the CUDA device for the torch stages, with this worker's
    share of the GPU's memory (fraction / workers sharing it). Never needed on a CPU host."""
    resources = getattr(getattr(worker, "state", None), "total_resources", None) or {}
    if not resources.get("GPU"):
        return config, {"device": "cpu"}
    from tangram.execution.device import select_device

    share = max(1, int(os.environ.get(GPU_SHARE_ENV, "1") or 1))
    return select_device(config, fraction / share)


def run_stage_task(stage: str, ref: InputRef, blob: InputBlob | None, config_data: dict[str, Any],
                   upstream: dict[str, StageResult], gpu_memory_fraction: float = 0.9) -> StageResult:
    """Run `stage` of input `ref` on this worker (its upstream results are done: the runner
    skipped it otherwise); see the module docstring."""
    from config import TangramConfig

    started = time.perf_counter()
    worker = _worker()
    me = str(worker.name) if worker is not None else "in-process"
    base = StageResult(ref.name, stage, "failed", worker=me,
                       worker_address=str(getattr(worker, "address", "")), hostname=socket.gethostname())
    if worker is not None:
        warm.enable()  # a worker process runs many inputs: keep its models
    scratch = _scratch(worker)
    out = Path(tempfile.mkdtemp(prefix=f"{stage}-", dir=scratch))
    try:
        config = TangramConfig.model_validate(config_data)
        config, base.device = _gpu_config(config, worker, gpu_memory_fraction)
        input_path, received = _materialise_input(ref, blob, scratch)
        folders = {}
        for name, res in upstream.items():
            folders[name], nbytes = _materialise_upstream(res, scratch, me)
            received += nbytes
        base.bytes_up = received
        try:
            outcome, seconds = run_stage_here(stage, input_path, folders, out / "out", config, _no_progress)
        except (StageFailed, TangramError) as exc:
            base.reason = first_line(exc)
            base.seconds = time.perf_counter() - started
            return base
        base.archive, base.sha256, base.files = pack_folder(out / "out")
        base.status, base.backend, base.summary, base.seconds = "done", outcome.backend, outcome.summary, seconds
        return base
    finally:
        shutil.rmtree(out, ignore_errors=True)
        base.task_seconds = time.perf_counter() - started


def prune_input_scratch(fingerprint: str, digests: list[str], dask_worker: Any = None) -> int:
    """Remove one input's files from this worker's scratch once the client has imported all its
    stages (the copy of the input, the upstream archives extracted for it), so a long batch does
    not fill the worker's disk. Returns the bytes freed. Names are checked hex digests only."""
    import re

    root = _scratch(dask_worker)
    targets = [root / "inputs" / fingerprint[:24], *(root / "upstream" / d[:24] for d in digests)]
    freed = 0
    for target in targets:
        if not re.fullmatch(r"[0-9a-f]{24}", target.name) or not target.is_dir() or target.is_symlink():
            continue
        freed += sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(target, ignore_errors=True)
    return freed


def _no_progress(completed: float, total: float | None = None, description: str = "") -> None:
    """Progress inside a worker stays there: the driver reports per stage, not per frame."""

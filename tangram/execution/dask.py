"""The Dask executor: what a batch worker runs, one (input, stage) task, through `run_stage_here`.

`run_stage_task` is submitted by the driver with its upstream tasks' futures as arguments, so Dask
knows the real dependencies and moves each upstream archive to the worker that needs it (once per
worker: the extracted folder is cached in the worker's scratch space, keyed by its SHA-256). The
input itself reaches a worker either as a path (a LocalCluster shares this machine's disk) or as a
scattered `InputBlob` that Dask moves to each worker needing it; the worker writes it to its scratch
space once and reuses it for the input's later stages.

The stage writes into a fresh temp folder; the folder comes back as a checked archive (a tar made by
`tangram.execution.archive.write_tar`, with its SHA-256) inside the `StageResult`, and the client
imports it. The worker process is warm (`tangram.execution.warm`): torch and each model are loaded
once per worker and reused by its later tasks; `warm.loads` counts the loads.

Failures: a `StageFailed` or `TangramError` (a bad input, a bad setting) is a result with
status "failed" and its one-line reason: retrying cannot help. Anything else raises, and Dask's
`retries=` reruns the task (on another worker if this one died). A stage whose upstream failed
returns "skipped" without running, with the runner's own reason (`unmet_needs`).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tangram.errors import StageFailed, TangramError
from tangram.execution import warm
from tangram.execution.archive import extract_into, folder_files, write_tar
from tangram.execution.base import first_line, run_stage_here, unmet_needs

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
        if ref.is_dir:
            buf = io.BytesIO()
            write_tar(buf, ((p, p.relative_to(path).as_posix()) for p in folder_files(path)))
            data = buf.getvalue()
        else:
            data = path.read_bytes()
        return cls(ref.fingerprint, ref.filename, ref.is_dir, data)


@dataclass
class StageResult:
    """What comes back from a worker: the stage's record and its output folder as a checked tar."""

    input_name: str
    stage: str
    status: str  # "done" | "failed" | "skipped"
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
    produced: bool = False  # False: an existing run-folder stage packed by the client (not run)

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


def unpack_checked(data: bytes, sha256: str, dest: Path) -> None:
    """Extract a tar after checking its SHA-256; `dest` appears complete or not at all."""
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise TangramError(f"archive for {dest.name} is corrupt (sha256 {got[:12]} != {sha256[:12]})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        tar = staging / "archive.tar"
        tar.write_bytes(data)
        out = staging / "out"
        out.mkdir()
        extract_into(tar, out)
        try:
            os.replace(out, dest)
        except OSError:  # another task on this worker extracted the same archive meanwhile
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def existing_stage_result(input_name: str, stage: str, folder: Path, record: dict[str, Any]) -> StageResult:
    """A stage already in the run folder (resume), packed so that a downstream task can use it."""
    data, digest, count = pack_folder(folder)
    return StageResult(input_name, stage, "done", backend=str(record.get("backend", "")),
                       summary=dict(record.get("summary") or {}), archive=data, sha256=digest, files=count,
                       seconds=float(record.get("seconds") or 0.0), worker="client", produced=False)


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
    """Run `stage` of input `ref` on this worker; see the module docstring."""
    from config import TangramConfig

    started = time.perf_counter()
    worker = _worker()
    me = str(worker.name) if worker is not None else "in-process"
    base = StageResult(ref.name, stage, "failed", worker=me,
                       worker_address=str(getattr(worker, "address", "")), hostname=socket.gethostname(),
                       produced=True)
    reason = unmet_needs(tuple(upstream), {name: res.status for name, res in upstream.items()})
    if reason:
        base.status, base.reason = "skipped", reason
        return base
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

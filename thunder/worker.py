"""The remote side: `python -m thunder.worker COMMAND ...` on the Thunder host.

    run-stage --stage NAME --input PATH --upstream NAME=DIR ... --out DIR --config FILE --out-tar FILE
              [--unpack TAR SHA256 DIR] [--verify PATH SHA256] [--gc DATA_DIR --keep RUN_DIR]
        Runs one stage with the same code as a local run (tangram.execution.run_stage_here) on a
        StageContext with host paths, then packs the output folder into --out-tar.
    run-job --job-dir DIR
        One-shot detached worker: runs a submitted job's stages in order and exits (thunder.jobs);
        a failed stage fails alone and the stages that need it are skipped, as in the runner.
    jobs-status --jobs-dir DIR
        Prints every job's status.json as one JSON list.

stdout carries JSON lines only ({"event": "start" | "progress" | "result" | "failed", ...}); the
stages' own output and logging go to stderr. Exit codes: 0 done, 3 the stage failed for a reason a
person understands (StageFailed), 4 bad settings (TangramError), 5 disk full, other: crash.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from tangram.execution.archive import safe_extract, tar_folder
from tangram.execution.base import first_line, run_stage_here, unmet_needs
from tangram.execution.device import select_device
from tangram.fileio import file_fingerprint

EXIT_STAGE_FAILED, EXIT_SETTINGS, EXIT_DISK_FULL = 3, 4, 5

log = logging.getLogger("thunder.worker")


class Emitter:
    """JSON lines on the real stdout; anything else printing to stdout is sent to stderr."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._out: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._last_progress = 0.0

    def emit(self, event: str, **fields: Any) -> None:
        self._out.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        self._out.flush()

    def progress(self, completed: float, total: float | None = None, description: str = "") -> None:
        now = time.monotonic()
        unfinished = total is None or completed < total
        if unfinished and now - self._last_progress < 0.2:  # at most 5 lines a second
            return
        self._last_progress = now
        self.emit("progress", completed=completed, total=total, description=description)


def load_config(path: Path) -> Any:
    from config import TangramConfig

    return TangramConfig.model_validate(json.loads(path.read_text()))


def classify(exc: BaseException) -> tuple[str, int]:
    from tangram.errors import StageFailed, TangramError

    if isinstance(exc, JobStopped):
        return "stopped", 143
    if isinstance(exc, StageFailed):
        return "stage_failed", EXIT_STAGE_FAILED
    if isinstance(exc, TangramError):
        return "settings", EXIT_SETTINGS
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full", EXIT_DISK_FULL
    return "crash", 1


# -- run-stage ---------------------------------------------------------------------------------


def cmd_run_stage(args: argparse.Namespace) -> int:
    emitter = Emitter()
    emitter.emit("start", pid=os.getpid(), host=socket.gethostname(), python=sys.version.split()[0])
    try:
        if args.gc:
            try:
                for path in collect_garbage(Path(args.gc), args.keep):
                    log.info("removed stale scratch folder %s", path)
            except ValueError as exc:  # a bad remote_data_dir: no sweep, the stage itself still runs
                log.warning("%s", exc)
        for path, digest in args.verify:
            if file_fingerprint(path) != digest:
                raise ValueError(f"upload of {path} arrived corrupted (checksum mismatch)")
        for tar, digest, dest in args.unpack:
            if file_fingerprint(tar) != digest:
                raise ValueError(f"upload of {tar} arrived corrupted (checksum mismatch)")
            safe_extract(Path(tar), Path(dest))
            os.remove(tar)
        config, device = select_device(load_config(Path(args.config)), args.gpu_memory_fraction)
        emitter.emit("device", **device)
        upstream = dict(item.split("=", 1) for item in args.upstream)
        for folder in upstream.values():  # an upstream stage may have had nothing worth sending
            Path(folder).mkdir(parents=True, exist_ok=True)
        folders = {name: Path(folder) for name, folder in upstream.items()}
        outcome, seconds = run_stage_here(args.stage, Path(args.input), folders, Path(args.out), config,
                                          emitter.progress)
        out_tar = Path(args.out_tar)
        files = tar_folder(Path(args.out), out_tar)
        emitter.emit("result", backend=outcome.backend, summary=outcome.summary, compute_s=round(seconds, 3),
                     out_tar=str(out_tar), sha256=file_fingerprint(out_tar), bytes=out_tar.stat().st_size,
                     files=files, device=device)
        return 0
    except Exception as exc:
        kind, code = classify(exc)
        if kind == "crash":
            traceback.print_exc()
        emitter.emit("failed", kind=kind, message=first_line(exc))
        return code


# -- detached jobs (see thunder.jobs for the local side) ---------------------------------------


def write_status(job_dir: Path, status: dict[str, Any]) -> None:
    tmp = job_dir / f".status.json.{os.getpid()}"
    tmp.write_text(json.dumps(status, indent=1, default=str))
    os.replace(tmp, job_dir / "status.json")


class JobStopped(Exception):
    """SIGTERM (kill, shutdown) while a job ran."""


def _stopped(signum: int, frame: Any) -> None:
    raise JobStopped("the job was stopped (SIGTERM)")


def detach(job_dir: Path) -> bool:
    """Double fork into a new session, output to worker.log: the job outlives the SSH connection.
    Returns True in the detached worker, False in the process that answered the caller."""
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        status = job_dir / "status.json"
        deadline = time.monotonic() + 10
        while not status.exists() and time.monotonic() < deadline:  # started: status.json exists
            time.sleep(0.05)
        print(json.dumps({"event": "submitted", "status": status.exists()}), flush=True)
        return False
    os.setsid()
    if os.fork():
        os._exit(0)
    log_fd = os.open(job_dir / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    return True


def cmd_run_job(args: argparse.Namespace) -> int:
    """Run a job's stages as the runner would: a failed stage fails alone, a stage that needs it is
    skipped (`unmet_needs`: "needs tracking failed"), the others still run. Bad settings, a full
    disk or SIGTERM stop the job. status.json says where it is, so status survives any disconnect."""
    job_dir = Path(args.job_dir)
    if args.detach and not detach(job_dir):
        return 0
    signal.signal(signal.SIGTERM, _stopped)
    job = json.loads((job_dir / "job.json").read_text())
    status: dict[str, Any] = {"job_id": job["job_id"], "status": "running", "pid": os.getpid(),
                              "started_at": time.time(), "stages": {}, "progress": None}
    write_status(job_dir, status)
    last_write = [0.0]

    def progress_for(stage: str) -> Callable[..., None]:
        def progress(completed: float, total: float | None = None, description: str = "") -> None:
            status["progress"] = {"stage": stage, "completed": completed, "total": total,
                                  "description": description}
            if time.monotonic() - last_write[0] > 0.5 or (total is not None and completed >= total):
                last_write[0] = time.monotonic()
                write_status(job_dir, status)

        return progress

    try:
        config, device = select_device(load_config(job_dir / "config.json"), job["gpu_memory_fraction"])
        status["device"] = device
        records = status["stages"]
        for stage in job["stages"]:
            status["stage"] = stage
            write_status(job_dir, status)
            requires = job["requires"][stage]
            reason = unmet_needs(requires, {r: "done" if r in job["upstream"] else records.get(r, {}).get("status")
                                            for r in requires})
            if reason is not None:
                records[stage] = {"status": "skipped", "reason": reason}
                continue
            upstream = {r: job_dir / "stages" / r if r in records else job_dir / job["upstream"][r] for r in requires}
            try:
                records[stage] = _run_job_stage(job_dir, stage, upstream, config, progress_for(stage),
                                                job_dir / job["input"])
            except Exception as exc:  # the stage's own failure or a bug: it fails alone, as in the runner
                kind, _ = classify(exc)
                if kind not in ("stage_failed", "crash"):
                    raise
                if kind == "crash":
                    traceback.print_exc()
                records[stage] = {"status": "failed", "reason": first_line(exc)}
        failed = [(s, r) for s, r in records.items() if r["status"] != "done"]
        status.update(status="failed" if failed else "done", stage=None, finished_at=time.time())
        if failed:
            status["error"] = f"{failed[0][0]}: {failed[0][1]['reason']}"
        write_status(job_dir, status)
        return EXIT_STAGE_FAILED if failed else 0
    except Exception as exc:  # JobStopped included: a stopped job still gets a final status
        kind, code = classify(exc)
        if kind == "crash":
            traceback.print_exc()
        stage = status.get("stage")
        if stage:
            status["stages"][stage] = {"status": "failed", "reason": first_line(exc)}
        status.update(status="failed", error=f"{kind}: {first_line(exc)}", finished_at=time.time())
        write_status(job_dir, status)
        return code


def _run_job_stage(job_dir: Path, stage: str, upstream: dict[str, Path], config: Any,
                   progress: Callable[..., None], input_path: Path) -> dict[str, Any]:
    """One stage of a job into stages/<stage>/ and <stage>.tar; its status.json record."""
    import shutil

    out, tmp = job_dir / "stages" / stage, job_dir / "stages" / f".tmp-{stage}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        outcome, seconds = run_stage_here(stage, input_path, upstream, tmp, config, progress)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tar = job_dir / f"{stage}.tar"
    tar_folder(out, tar)
    return {"status": "done", "backend": outcome.backend, "summary": outcome.summary, "compute_s": round(seconds, 3),
            "tar": tar.name, "sha256": file_fingerprint(tar), "bytes": tar.stat().st_size}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_jobs_status(args: argparse.Namespace) -> int:
    jobs_dir = Path(args.jobs_dir)
    out = []
    for job_dir in sorted(jobs_dir.iterdir()) if jobs_dir.is_dir() else []:
        job_file, status_file = job_dir / "job.json", job_dir / "status.json"
        if not job_file.is_file():
            continue
        job = json.loads(job_file.read_text())
        status = json.loads(status_file.read_text()) if status_file.is_file() else {"status": "queued"}
        if status.get("status") == "running" and not _pid_alive(int(status.get("pid", 0))):
            status["status"] = "lost"  # the worker died without writing a final status
            status["error"] = "worker process ended unexpectedly (killed, or the host rebooted)"
        out.append({"job_id": job["job_id"], "job": job, "status": status})
    print(json.dumps(out))
    return 0


SCRATCH_MARKER = ".tangram-scratch"  # written by the client into every run scratch folder it creates
_SCRATCH_NAME = re.compile(r"^[A-Za-z0-9_.-]+-(?P<token>[0-9a-f]{8,64})$")


def scratch_token(folder: Path) -> str | None:
    """The token of a run scratch folder TANGRAM made (`<run>-<token>/` holding a marker file whose
    content is the same token), else None: nothing else is ever ours to delete."""
    match = _SCRATCH_NAME.match(folder.name)
    marker = folder / SCRATCH_MARKER
    if match is None or folder.is_symlink() or marker.is_symlink() or not marker.is_file():
        return None
    try:
        content = marker.read_text(errors="replace").strip()
    except OSError:
        return None
    return match["token"] if content == f"tangram scratch {match['token']}" else None


def collect_garbage(data_dir: Path, keep: str = "", older_than: float = 86400.0) -> list[str]:
    """Remove run scratch folders a dead client left under data_dir: only folders TANGRAM created
    and marked (see scratch_token), older than `older_than`, never `keep`, never jobs/. A data_dir
    that is `/`, the home folder itself or above it is refused with ValueError (a bad
    remote_data_dir setting must not sweep the user's folders)."""
    import shutil

    resolved = data_dir.expanduser().resolve()
    home = Path.home().resolve()
    if str(data_dir).strip() in ("", "~", "/") or resolved == Path("/") or resolved == home or resolved in home.parents:
        raise ValueError(f"refusing to clean up {data_dir}: remote_data_dir must be a folder of its own "
                         "(e.g. ~/tangram_data), not / or the home folder")
    cutoff, removed = time.time() - older_than, []
    kept = {keep, str(Path(keep).resolve())} if keep else set()
    for entry in sorted(resolved.iterdir()) if resolved.is_dir() else []:
        if entry.name == "jobs" or str(entry) in kept or entry.is_symlink() or not entry.is_dir():
            continue
        if scratch_token(entry) is None or entry.stat().st_mtime >= cutoff:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(str(entry))
    return removed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m thunder.worker")
    sub = p.add_subparsers(dest="command", required=True)
    stage = sub.add_parser("run-stage")
    stage.add_argument("--stage", required=True)
    stage.add_argument("--input", required=True)
    stage.add_argument("--upstream", action="append", default=[], help="NAME=DIR")
    stage.add_argument("--out", required=True)
    stage.add_argument("--out-tar", required=True)
    stage.add_argument("--config", required=True)
    stage.add_argument("--unpack", nargs=3, action="append", default=[], metavar=("TAR", "SHA256", "DIR"))
    stage.add_argument("--verify", nargs=2, action="append", default=[], metavar=("PATH", "SHA256"))
    stage.add_argument("--gpu-memory-fraction", type=float, default=0.9)
    stage.add_argument("--gc", help="also remove stale (> 1 day) run scratch folders under this folder")
    stage.add_argument("--keep", default="", help="... except this one")
    job = sub.add_parser("run-job")
    job.add_argument("--job-dir", required=True)
    job.add_argument("--detach", action="store_true", help="start in the background and return at once")
    status = sub.add_parser("jobs-status")
    status.add_argument("--jobs-dir", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    if args.command == "run-stage":
        return cmd_run_stage(args)
    if args.command == "run-job":
        return cmd_run_job(args)
    return cmd_jobs_status(args)


if __name__ == "__main__":
    sys.exit(main())

"""Detached jobs: long videos processed on the Thunder host in the background.

    tangram jobs submit --input VIDEO [--stages tracking,segmentation] [--name RUN]
    tangram jobs status
    tangram jobs fetch JOB_ID | --all [--keep]

`submit` uploads the video, the settings and (if a stage needs it) finished upstream folders of the
local run to <remote_data_dir>/jobs/<job_id>/ and starts `python -m thunder.worker run-job
--detach` there: a one-shot worker in its own session that runs the stages, writes status.json as
it goes and exits; it survives the SSH connection closing. `status` reads every job's status.json
in one command. `fetch` imports the finished stages into the local run folder through the normal
pipeline (same hashes, manifest records and atomic renames as a local run, outputs checksum-
verified), so `tangram --input VIDEO --name RUN` then continues from them. Local records of
submitted jobs live in <exports_dir>/.thunder-jobs/.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import TangramConfig
from tangram.errors import StageFailed, TangramError
from tangram.execution.archive import extract_into, folder_files, write_tar
from tangram.execution.thunder import FOR_PEOPLE_ONLY
from tangram.fileio import read_json, write_json
from tangram.settings import public_dict
from tangram.stages import STAGE_ORDER, available_stages, get_stage
from tangram.stages.base import StageContext, StageOutcome, StageSpec
from thunder.bootstrap import ensure_model, ensure_worker
from thunder.errors import ThunderError
from thunder.thunder_client import ThunderClient

log = logging.getLogger("thunder")


def jobs_dir_local(config: TangramConfig) -> Path:
    return Path(config.run.exports_dir) / ".thunder-jobs"


def jobs_dir_remote(client: ThunderClient) -> str:
    return f"{client.expand(client.cfg.remote_data_dir).rstrip('/')}/jobs"


def default_stages() -> list[str]:
    """Every stage up to the last offloadable one: the heavy part of the pipeline."""
    present = [s for s in STAGE_ORDER if s in available_stages()]
    offloadable = [s for s in present if get_stage(s).offloadable]
    return present[: present.index(offloadable[-1]) + 1] if offloadable else present[:1]


# -- submit ------------------------------------------------------------------------------------


def submit(config: TangramConfig, input_path: Path, stages: Sequence[str] | None = None,
           name: str | None = None) -> dict[str, Any]:
    """Start a job on the host; returns the local job record."""
    from tangram.media import open_media
    from tangram.runner import default_run_name

    source = open_media(input_path)  # a bad input is a one-line error before anything is sent
    input_path = source.info.path.resolve()
    run_name = name or default_run_name(input_path)
    run_dir = Path(config.run.exports_dir) / run_name
    stages = list(stages or default_stages())
    requires, from_local = _plan(stages, run_dir)
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    with ThunderClient(config.thunder) as client:
        env = ensure_worker(client)
        job_dir = f"{jobs_dir_remote(client)}/{job_id}"
        sent = _upload_input(client, input_path, job_dir)
        upstream = _upload_upstream(client, run_dir, from_local, job_dir)
        remote_input = f"input/{input_path.name}" if input_path.is_file() else "input"
        job = {"job_id": job_id, "input": remote_input, "input_name": input_path.name,
               "stages": stages, "requires": requires, "upstream": upstream,
               "gpu_memory_fraction": config.thunder.gpu_memory_fraction, "submitted_at": time.time()}
        remote_config = public_dict(config)
        _ship_models(client, env, config, stages, remote_config)
        client.put_stream(lambda fh: fh.write(json.dumps(remote_config).encode()), f"{job_dir}/config.json")
        client.put_stream(lambda fh: fh.write(json.dumps(job).encode()), f"{job_dir}/job.json")
        if not input_path.is_file() or upstream:
            client.run([env.python, "-P", "-c", UNPACK_SCRIPT, job_dir], check=True, timeout=600)
        start = [env.python, "-P", "-m", "thunder.worker", "run-job", "--job-dir", job_dir, "--detach"]
        result = client.run(start, timeout=60)
        if result.exit_status != 0:
            raise ThunderError(f"could not start job {job_id} on {client.label}: {result.reason()}")
        record = {"job_id": job_id, "host": client.label, "job_dir": job_dir, "input": str(input_path),
                  "run_name": run_name, "stages": stages, "submitted_at": job["submitted_at"],
                  "config": public_dict(config), "fetched": False, "bytes_up": sent.bytes}
    write_json(jobs_dir_local(config) / f"{job_id}.json", record)
    log.info("job %s submitted to %s: %s on %s", job_id, record["host"], ", ".join(stages), input_path.name)
    return record


def _upload_input(client: ThunderClient, input_path: Path, job_dir: str) -> Any:
    client.makedirs(f"{job_dir}/input")
    if input_path.is_file():  # a video travels compressed, as it is
        return client.put_file(input_path, f"{job_dir}/input/{input_path.name}")
    images = [(p, p.name) for p in sorted(input_path.iterdir()) if p.is_file()]
    return client.put_stream(lambda fh: write_tar(fh, images), f"{job_dir}/input.tar")


def _upload_upstream(client: ThunderClient, run_dir: Path, stages: list[str], job_dir: str) -> dict[str, str]:
    """Finished local stages a job stage needs, one tar each (unpacked by UNPACK_SCRIPT)."""
    upstream = {}
    for stage in stages:
        folder = run_dir / stage
        wanted = folder_files(folder, FOR_PEOPLE_ONLY.get(stage, ()))
        files = [(p, p.relative_to(folder).as_posix()) for p in wanted]
        client.makedirs(f"{job_dir}/upstream")
        client.put_stream(lambda fh, files=files: write_tar(fh, files), f"{job_dir}/upstream/{stage}.tar")
        upstream[stage] = f"upstream/{stage}"
    return upstream


def _plan(stages: list[str], run_dir: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Each job stage's upstream; upstream stages not in the job must be finished locally."""
    from tangram.runner import load_manifest

    unknown = [s for s in stages if s not in STAGE_ORDER]
    if unknown:
        raise TangramError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGE_ORDER)}")
    stages.sort(key=STAGE_ORDER.index)
    requires = {s: list(get_stage(s).requires) for s in stages}
    needed = sorted({r for reqs in requires.values() for r in reqs if r not in stages}, key=STAGE_ORDER.index)
    if needed:
        manifest = load_manifest(run_dir) if (run_dir / "manifest.json").is_file() else {"stages": {}}
        missing = [r for r in needed if manifest["stages"].get(r, {}).get("status") != "done"]
        if missing:
            raise TangramError(f"job stages need {', '.join(missing)}: add them to --stages or run them "
                               f"locally first (run folder {run_dir})")
    return requires, needed


def _ship_models(client: ThunderClient, env: Any, config: TangramConfig, stages: list[str],
                 data: dict[str, Any]) -> None:
    from tangram.models import SAM_CHECKPOINTS, find_local

    if "tracking" in stages and (local := find_local(config.tracking.weights)):
        data["tracking"]["weights"] = ensure_model(client, env, local)
    seg = config.segmentation
    if "segmentation" in stages and seg.backend != "grabcut":
        local = find_local(seg.sam_checkpoint or SAM_CHECKPOINTS[seg.sam_model].rsplit("/", 1)[1])
        if local:
            data["segmentation"]["sam_checkpoint"] = ensure_model(client, env, local)


UNPACK_SCRIPT = r"""
import sys, os
from pathlib import Path
from tangram.execution.archive import safe_extract
job = Path(sys.argv[1])
for tar in [job / "input.tar", *sorted((job / "upstream").glob("*.tar"))]:
    if tar.is_file():
        dest = job / "input" if tar.name == "input.tar" else tar.with_suffix("")
        safe_extract(tar, dest)
        os.remove(tar)
"""



# -- status ------------------------------------------------------------------------------------


@dataclass
class JobView:
    job_id: str
    input: str
    status: str
    progress: str
    host: str
    detail: dict[str, Any]


def local_records(config: TangramConfig) -> dict[str, dict[str, Any]]:
    folder = jobs_dir_local(config)
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = read_json(path)
            records[data["job_id"]] = data
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable job record %s", path)
    return records


def remote_status(client: ThunderClient) -> list[dict[str, Any]]:
    env = ensure_worker(client)
    argv = [env.python, "-P", "-m", "thunder.worker", "jobs-status", "--jobs-dir",
            jobs_dir_remote(client)]
    result = client.run(argv, timeout=120)
    if result.exit_status != 0:
        raise ThunderError(f"could not read job status on {client.label}: {result.reason()}")
    return json.loads(result.stdout_tail[-1]) if result.stdout_tail else []


def _progress_text(status: dict[str, Any], job: dict[str, Any]) -> str:
    if status.get("status") == "done":
        return f"{len(status.get('stages', {}))}/{len(job['stages'])} stages"
    progress = status.get("progress") or {}
    if not progress:
        return "-"
    total = progress.get("total")
    count = f"{progress['completed']:g}/{total:g}" if total else f"{progress['completed']:g}"
    return f"{progress.get('stage', '')} {count} {progress.get('description', '')}".strip()


def job_views(config: TangramConfig) -> list[JobView]:
    records = local_records(config)
    with ThunderClient(config.thunder) as client:
        remote = remote_status(client)
        label = client.label
    views = []
    seen = set()
    for entry in remote:
        job, status = entry["job"], entry["status"]
        record = records.get(entry["job_id"], {})
        state = "fetched" if record.get("fetched") else status.get("status", "queued")
        views.append(JobView(entry["job_id"], record.get("input") or job["input_name"], state,
                             _progress_text(status, job), label, entry))
        seen.add(entry["job_id"])
    for job_id, record in records.items():  # fetched and cleaned up on the host, or another host
        if job_id not in seen:
            state = "fetched" if record.get("fetched") else "missing on host"
            views.append(JobView(job_id, record["input"], state, "-", record["host"], {"record": record}))
    return sorted(views, key=lambda v: v.job_id)


# -- fetch -------------------------------------------------------------------------------------


class _JobImport:
    """Executor that 'runs' a stage by importing the job's finished output from the host."""

    def __init__(self, client: ThunderClient, record: dict[str, Any], status: dict[str, Any]):
        self.client, self.record, self.status = client, record, status
        self.where = client.label

    def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome:
        stage = self.status["stages"].get(spec.name)
        if stage is None or stage.get("status") != "done":
            reason = ((stage or {}).get("reason") or self.status.get("error")
                      or "the job did not run this stage")
            raise StageFailed(f"job {self.record['job_id']}: {reason}")
        with tempfile.TemporaryDirectory(dir=ctx.out_dir.parent, prefix=".fetch-") as tmp:
            local = Path(tmp) / "out.tar"
            got = self.client.get_file(f"{self.record['job_dir']}/{stage['tar']}", local)
            if got.sha256 != stage["sha256"]:
                raise ThunderError(f"{spec.name} of job {self.record['job_id']} failed its checksum")
            extract_into(local, ctx.out_dir)
        return StageOutcome(stage["backend"], stage.get("summary", {}), where=self.where, execution={
            "job_id": self.record["job_id"], "bytes_down": got.bytes, "transfer_s": round(got.seconds, 3),
            "remote_compute_s": stage.get("compute_s"),
            "cost_usd": round(self.client.cfg.price_per_hour * float(stage.get("compute_s") or 0) / 3600, 6)})


class _ImportPolicy:
    def __init__(self, executor: _JobImport, stages: list[str]):
        self.executor, self.stages = executor, stages

    def executor_for(self, spec: StageSpec, ctx: StageContext) -> Any:
        if spec.name not in self.stages:
            raise TangramError(f"{spec.name} is not part of job {self.executor.record['job_id']}")
        return self.executor

    def close(self) -> None:
        """The connection belongs to fetch(), which closes it."""


def fetch(config: TangramConfig, job_id: str, keep: bool = False) -> Any:
    """Import a finished job's stages into its local run folder; returns the runner's RunResult."""
    from tangram.runner import Pipeline

    records = local_records(config)
    if job_id not in records:
        raise TangramError(f"unknown job {job_id} (tangram jobs status lists them)")
    record = records[job_id]
    job_config = TangramConfig.model_validate({**record["config"], "run": config.run.model_dump()})
    with ThunderClient(config.thunder) as client:
        entries = {e["job_id"]: e for e in remote_status(client)}
        if job_id not in entries:
            raise TangramError(f"job {job_id} is not on {client.label} any more")
        status = entries[job_id]["status"]
        if status.get("status") in ("running", "queued"):
            raise TangramError(f"job {job_id} is still {status['status']} ({_progress_text(status, record)})")
        policy = _ImportPolicy(_JobImport(client, record, status), record["stages"])
        result = Pipeline(job_config, offload=policy).run(record["input"], name=record["run_name"],
                                                           until=record["stages"][-1])
        if not keep and result.ok:
            client.remove_tree(record["job_dir"])
    record.update(fetched=result.ok, fetched_at=time.time(), run_dir=str(result.run_dir))
    write_json(jobs_dir_local(config) / f"{job_id}.json", record)
    return result


# -- command line ------------------------------------------------------------------------------


def main_jobs(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="tangram jobs", description="Detached jobs on the Thunder host.")
    p.add_argument("--config", type=Path, help="TOML file overriding config.py, or a run's config.json")
    p.add_argument("--exports-dir", type=Path, help="where run folders go (default: exports/)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="start a job on the host and return")
    s.add_argument("--input", "-i", type=Path, required=True)
    s.add_argument("--stages", help=f"comma-separated, default: {','.join(default_stages())}")
    s.add_argument("--name", help="local run folder name (default: the input's name)")
    sub.add_parser("status", help="list jobs: JOB_ID INPUT STATUS PROGRESS")
    f = sub.add_parser("fetch", help="import finished results into the local run folder")
    f.add_argument("job_id", nargs="?")
    f.add_argument("--all", action="store_true", help="every finished job not fetched yet")
    f.add_argument("--keep", action="store_true", help="keep the job's files on the host")
    args = p.parse_args(list(argv))
    try:
        config = _config(args)
        if args.command == "submit":
            stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
            record = submit(config, args.input, stages, args.name)
            print(record["job_id"])
            return 0
        if args.command == "status":
            return _print_status(config)
        return _fetch_cli(config, args)
    except TangramError as exc:
        print(f"tangram jobs: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, ThunderError) else 2


def _config(args: argparse.Namespace) -> TangramConfig:
    from tangram.logs import setup_logging
    from tangram.settings import load_config, secret_values

    overrides = {"run": {"exports_dir": str(args.exports_dir) if args.exports_dir else None},
                 "thunder": {"enabled": True}}  # a jobs command means using the host
    config = load_config(args.config, overrides=overrides)
    setup_logging(config.run.log_level, secret_values(config))
    return config


def _print_status(config: TangramConfig) -> int:
    views = job_views(config)
    rows = [("JOB_ID", "INPUT", "STATUS", "PROGRESS")]
    rows += [(v.job_id, Path(v.input).name, v.status, v.progress) for v in views]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _fetch_cli(config: TangramConfig, args: argparse.Namespace) -> int:
    if args.all:
        ids = [v.job_id for v in job_views(config) if v.status in ("done", "failed", "lost")]
    elif args.job_id:
        ids = [args.job_id]
    else:
        raise TangramError("name a JOB_ID or use --all")
    if not ids:
        print("no finished jobs to fetch")
        return 0
    code = 0
    for job_id in ids:
        result = fetch(config, job_id, keep=args.keep)
        state = "ok" if result.ok else f"incomplete ({', '.join(result.failed) or 'see manifest'})"
        print(f"{job_id}: {state} -> {result.run_dir}")
        code = code or (0 if result.ok else 1)
    return code

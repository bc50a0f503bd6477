"""What writing the recordings costs: the sample run with recordings off, then recording.rrd and
simulation/robot.mcap written for it by the runner's own hook, as a share of the run's time.

    .venv/bin/python bench/bench_recording.py [--run exports/sample] [--repeat 3]

Without --run, the whole pipeline runs once on the built-in sample scene (offline detector, GrabCut,
recordings off) into a temporary folder, and its wall time is the run's time. With --run, an
existing run folder is used and the run's time is the sum of its manifest's stage seconds. The
recordings are then written --repeat times from scratch (first time in a process that has not
imported rerun or mcap yet, so their import is counted); the figure is the first time, with the
median of the repeats beside it. The issue's target: under 5 % of the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _offline import setup

ROOT = setup()


def sample_run(exports: Path) -> tuple[Path, float]:
    from tangram.models import find_local
    from tangram.runner import Pipeline, default_input
    from tangram.settings import load_config

    weights = find_local("yolov8n_int8.tflite")
    config = load_config(env={}, overrides={
        "run": {"exports_dir": str(exports), "recording": False},
        "tracking": {"weights": str(weights) if weights else "yolov8n.pt"},
        "segmentation": {"backend": "grabcut"}})
    source = default_input()  # rendered and cached before the clock starts
    started = time.perf_counter()
    result = Pipeline(config).run(source, name="sample")
    return result.run_dir, time.perf_counter() - started


def write_once(run_dir: Path) -> tuple[float, dict]:
    from tangram.recording.hook import write_recordings

    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.pop("recordings", None)  # from scratch: nothing to reuse
    started = time.perf_counter()
    records = write_recordings(run_dir, manifest)
    return time.perf_counter() - started, records


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="an existing run folder (default: run the sample now)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    if args.run:
        run_dir = args.run
        manifest = json.loads((run_dir / "manifest.json").read_text())
        run_seconds = sum(float(r.get("seconds") or 0.0) for r in manifest["stages"].values())
        how = "sum of the manifest's stage seconds"
    else:
        run_dir, run_seconds = sample_run(Path(tempfile.mkdtemp(prefix="tangram-bench-rec-")))
        how = "wall time of Pipeline.run, recordings off"
    times, records = [], {}
    for _ in range(max(1, args.repeat)):
        seconds, records = write_once(run_dir)
        times.append(seconds)
    for kind, record in records.items():
        print(f"{kind}: {record['path']} {record['status']}, {record.get('bytes', 0) / 1e6:.2f} MB, "
              f"{record['seconds']:.2f} s (last repeat)")
    first, median = times[0], statistics.median(times)
    print(f"run: {run_seconds:.1f} s ({how}) in {run_dir}")
    print(f"recordings: {first:.2f} s first (imports included), median of {len(times)}: {median:.2f} s")
    print(f"ratio: {100 * first / run_seconds:.2f} % of the run (median {100 * median / run_seconds:.2f} %; "
          "target < 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

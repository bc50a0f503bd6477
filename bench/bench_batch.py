"""Batch throughput: N sample-scene variants serially vs `tangram batch` on 1 and 2 LocalCluster
workers, the engine's overhead per task, and a projection of a 500-video batch on 3 GPU hosts.

    .venv/bin/python bench/bench_batch.py [--n 4] [--frames 20] [--mode segment]

Serial = one process running `Pipeline.run` over the inputs one after another, its models kept
warm (`tangram.execution.warm`, as in a worker: each model loads once), timed twice: inside this
process, and in a fresh Python process timed from its start (interpreter, imports, model loads), the
like-for-like baseline for the fleet walls, which include their workers' start. The fleet runs go
through the real driver (LocalCluster, archives, imports).
Overhead per task: a no-op Dask task's round trip, and the fleet's own work per stage task
(materialise inputs, pack the output archive on the worker; check, extract and record on the
client) = wall of a 1-worker batch minus the serial wall, per task. Model loads are counted in each
worker process (batch.json `cluster.model_loads`): one per model per worker when workers stay warm.

The projection uses the scorer's cost model (tangram.execution.cost) for a 1296x720, 50-frame clip with SAM
vit_b on a GPU host vs this 2-core machine, plus each video's transfer at --link-mb-s, and prints
how Dask's greedy assignment (longest first) would split 500 such videos across 3 GPU hosts and
what it would cost at --price-per-hour per host.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _offline import setup

ROOT = setup()


def render_variants(n: int, frames: int, root: Path) -> list[Path]:
    from tangram.sample_scene import render_sample

    return [render_sample(root / f"seed{seed}", seed=seed, num_frames=frames).video_path for seed in range(n)]


def make_config(exports: Path, **fleet: object):  # type: ignore[no-untyped-def]
    from tangram.models import find_local
    from tangram.settings import load_config

    weights = find_local("yolov8n_int8.tflite") or "yolov8n.pt"
    return load_config(env={}, overrides={"run": {"exports_dir": str(exports), "log_level": "WARNING"},
                                          "tracking": {"weights": str(weights)},
                                          "segmentation": {"backend": "grabcut"},
                                          "fleet": {"dashboard_port": None, **fleet}})


def serial(inputs: list[Path], config, until: str, prefix: str = "serial") -> tuple[float, dict[str, int]]:  # type: ignore[no-untyped-def]
    from tangram.execution import warm
    from tangram.runner import Pipeline

    warm.enable()
    before = warm.loads()
    started = time.perf_counter()
    for i, path in enumerate(inputs):
        assert Pipeline(config).run(path, name=f"{prefix}-{i}", until=until).ok
    wall = time.perf_counter() - started
    warm.enable(False)
    return wall, {k: v - before.get(k, 0) for k, v in warm.loads().items()}


def serial_cold(inputs: list[Path], exports: Path, until: str) -> float:
    """The serial loop in a fresh Python process, timed from its start: it pays the interpreter's
    start, the imports (torch, Ultralytics, pycolmap) and the model loads, as a fleet's worker process
    does. The like-for-like baseline for the fleet's walls, which include their workers' start."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--serial-child", str(exports), until, *map(str, inputs)], check=True)
    return time.perf_counter() - started


def _serial_child(argv: list[str]) -> int:
    exports, until, *paths = argv
    serial([Path(p) for p in paths], make_config(Path(exports)), until, prefix="cold")
    return 0


def loads_line(batch: dict) -> str:
    loads = batch["cluster"].get("model_loads") or {}
    return "; ".join(f"worker {w}: " + (", ".join(f"{k} x{n}" for k, n in sorted(c.items())) or "none")
                     for w, c in sorted(loads.items())) or "not recorded"


def fleet(inputs: list[Path], config, mode: str, workers: int, name: str) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    from tangram.fileio import read_json
    from tangram.fleet.driver import BatchDriver, BatchOptions

    started = time.perf_counter()
    code = BatchDriver(config, BatchOptions(inputs=[str(p) for p in inputs], name=name, mode=mode,
                                            workers=workers)).run()
    wall = time.perf_counter() - started
    assert code == 0
    return wall, read_json(Path(config.run.exports_dir) / name / "batch.json")


def noop_overhead(tasks: int = 200) -> float:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.submit(int, 0).result()
        started = time.perf_counter()
        for i in range(tasks):
            client.submit(int, i, pure=False).result()
        return (time.perf_counter() - started) / tasks


def projection(videos: int, hosts: int, link_mb_s: float, price: float) -> None:
    from types import SimpleNamespace

    from tangram.execution.cost import ModelLoads, load_coefficients
    from tangram.fleet.planner import stage_seconds
    from tangram.settings import load_config

    config = load_config(env={}, overrides={"segmentation": {"backend": "sam"}})
    info = SimpleNamespace(num_frames=50, width=1296, height=720, bytes=1_220_000)  # apple_orbit.mp4
    coef = load_coefficients()
    stages = ["tracking", "segmentation", "reconstruction", "scene_graph"]
    cpu = {s: stage_seconds(s, info, config, False, 2, coef) for s in stages}
    gpu = {s: stage_seconds(s, info, config, True, 8, coef) for s in stages}
    transfer = info.bytes / (link_mb_s * 1e6) + 3e6 / (link_mb_s * 1e6)  # video up, ~3 MB of archives back
    per_video = sum(gpu.values()) + transfer
    warm = ModelLoads(coef, workers=hosts)  # a warm worker loads each model once, not once per video
    busy = [0.0] * hosts
    for _ in range(videos):  # identical videos: greedy = round robin; Dask steals the remainder
        busy[busy.index(min(busy))] += per_video + sum(warm.book(s, config) for s in stages)
    makespan = max(busy)
    print(f"\nprojection: {videos} videos like apple_orbit.mp4 (1296x720, 50 frames, SAM vit_b) on {hosts} GPU hosts")
    print("  stage            this machine (2 cores)   GPU host (8 cores)")
    for s in stages:
        print(f"  {s:<16} {cpu[s]:>10.1f} s              {gpu[s]:>8.1f} s")
    print(f"  transfer per video at {link_mb_s:.0f} MB/s: {transfer:.2f} s")
    print(f"  model loads: {', '.join(warm.loaded)} once per host ({coef['model_load_s']:.1f} s each), not per video")
    print(f"  per host: {videos // hosts}-{-(-videos // hosts)} videos, {makespan / 3600:.2f} h; "
          f"this machine alone: {videos * sum(cpu.values()) / 3600:.1f} h "
          f"(x{videos * sum(cpu.values()) / makespan:.0f})")
    print(f"  cost: {hosts} x {makespan / 3600:.2f} h x ${price:.2f}/h = ${hosts * makespan / 3600 * price:.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4, help="sample variants (seeds 0..n-1)")
    p.add_argument("--frames", type=int, default=20, help="frames per variant")
    p.add_argument("--mode", default="segment", help="tangram batch --mode (default segment)")
    p.add_argument("--link-mb-s", type=float, default=50.0, help="projection: link speed to each host")
    p.add_argument("--price-per-hour", type=float, default=2.5, help="projection: USD per GPU host hour")
    args = p.parse_args()
    from tangram.logs import setup_logging
    from tangram.stages import MODES

    setup_logging("WARNING")
    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    print(f"rendering {args.n} sample variants of {args.frames} frames...", flush=True)
    inputs = render_variants(args.n, args.frames, root / "inputs")
    config = make_config(root / "exports")
    t_serial, serial_loads = serial(inputs, config, MODES[args.mode])
    t_cold = serial_cold(inputs, root / "exports", MODES[args.mode])
    t1, b1 = fleet(inputs, config, args.mode, 1, "w1")
    t2, b2 = fleet(inputs, config, args.mode, 2, "w2")
    tasks = sum(len(e["stages"]) for e in b1["inputs"])
    pack = sum(r.get("task_seconds", 0) - r["seconds"] for e in b1["inputs"] for r in e["stages"].values())
    noop = noop_overhead()
    print(f"\n{args.n} inputs x {args.mode} ({tasks} stage tasks), {os.cpu_count()} cores")
    print(f"  serial, in this warm process     {t_serial:7.1f} s   x1.00")
    print(f"  serial, a fresh process          {t_cold:7.1f} s   x{t_serial / t_cold:.2f}   "
          f"(start, imports, loads: {t_cold - t_serial:+.1f} s)")
    print(f"  fleet, 1 worker                  {t1:7.1f} s   x{t_serial / t1:.2f}   vs fresh x{t_cold / t1:.2f}")
    print(f"  fleet, 2 workers                 {t2:7.1f} s   x{t_serial / t2:.2f}   vs fresh x{t_cold / t2:.2f}   "
          f"(2 vs 1 worker: x{t1 / t2:.2f})")
    print(f"  no-op Dask task round trip: {noop * 1000:.1f} ms")
    print(f"  fleet work per stage task on the worker (materialise + pack): {pack / tasks * 1000:.0f} ms")
    print(f"  fleet overhead per task incl. cluster start ((1-worker - serial) / tasks): "
          f"{(t1 - t_serial) / tasks:.2f} s")
    print(f"  per-task overhead (no-op round trip + fleet work on the worker): "
          f"{(noop + pack / tasks) * 1000:.0f} ms")
    print(f"  model loads: serial process: {', '.join(f'{k} x{n}' for k, n in sorted(serial_loads.items()))}")
    print(f"  model loads, 1 worker:  {loads_line(b1)}")
    print(f"  model loads, 2 workers: {loads_line(b2)}")
    print(f"  moved: {b2['totals']['bytes_down'] / 1e6:.1f} MB archives back, "
          f"{b2['totals']['bytes_up'] / 1e6:.1f} MB to workers")
    projection(500, 3, args.link_mb_s, args.price_per_hour)
    return 0


if __name__ == "__main__":
    sys.exit(_serial_child(sys.argv[2:]) if sys.argv[1:2] == ["--serial-child"] else main())

"""Thunder benchmark on a loopback OpenSSH server (started here, stopped by PID at the end).

    python bench/bench_thunder.py [--mb 200] [--repeat 3] [--out FILE] [--calibrate]

1. Transfer throughput of TANGRAM's client (paramiko SFTP, pipelined writes, prefetched reads,
   SHA-256 on the fly) against the OpenSSH `scp` binary, and the `scp` module over paramiko for
   reference; best of --repeat runs each; ratio = ours / OpenSSH scp (target >= 0.8).
2. Remote-vs-local overhead of the segmentation stage on the sample scene (tracked locally first):
   seconds local, seconds on the loopback host with the breakdown (transfer, remote compute,
   worker start and round trips) and the ratio.
--calibrate writes the measured GrabCut and worker-start coefficients into the scorer's
calibration file (tangram.execution.cost.save_coefficients).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sshd import SshServer  # noqa: E402


def best(seconds: list[float]) -> float:
    return min(seconds)


def scp_binary(server: SshServer, src: str, dst: str) -> float:
    started = time.perf_counter()
    subprocess.run(["scp", "-q", "-P", str(server.port), "-i", str(server.client_key), "-o", "BatchMode=yes",
                    "-o", f"UserKnownHostsFile={server.known_hosts}", src, dst], check=True)
    return time.perf_counter() - started


def bench_transfers(server: SshServer, config: Any, size_mb: int, repeat: int, work: Path) -> dict[str, Any]:
    from scp import SCPClient

    from thunder.thunder_client import ThunderClient

    src = work / "payload.bin"
    with open(src, "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(1 << 20))
    size = src.stat().st_size
    remote, back = work / "remote.bin", work / "back.bin"
    target = f"{server.user}@127.0.0.1"
    times: dict[str, list[float]] = {k: [] for k in ("scp_up", "scp_down", "ours_up", "ours_down",
                                                     "scpmod_up", "scpmod_down")}
    with ThunderClient(config.thunder) as client:
        for _ in range(repeat):
            times["scp_up"].append(scp_binary(server, str(src), f"{target}:{remote}"))
            times["scp_down"].append(scp_binary(server, f"{target}:{remote}", str(back)))
            remote.unlink()
            sent = client.put_file(src, str(remote))
            got = client.get_file(str(remote), back)
            assert sent.sha256 == got.sha256
            times["ours_up"].append(sent.seconds)
            times["ours_down"].append(got.seconds)
            remote.unlink()
            with SCPClient(client.transport) as scp:
                started = time.perf_counter()
                scp.put(str(src), str(remote))
                times["scpmod_up"].append(time.perf_counter() - started)
                started = time.perf_counter()
                scp.get(str(remote), str(back))
                times["scpmod_down"].append(time.perf_counter() - started)
            remote.unlink()
    mb_s = {k: round(size / 1e6 / best(v), 1) for k, v in times.items()}
    return {
        "bytes": size, "repeat": repeat, "mb_per_s": mb_s,
        "ratio_up": round(mb_s["ours_up"] / mb_s["scp_up"], 2),
        "ratio_down": round(mb_s["ours_down"] / mb_s["scp_down"], 2),
    }


def bench_segmentation(config: Any, work: Path) -> dict[str, Any]:
    from tangram.execution.thunder import offload_policy
    from tangram.runner import Pipeline, default_input

    video = default_input()
    run_section = config.run.model_copy(update={"exports_dir": str(work / "ex")})
    local_cfg = config.model_copy(update={"run": run_section})
    local = Pipeline(local_cfg).run(video, name="local", until="segmentation")
    import shutil

    from tangram.fileio import read_json, write_json

    remote_dir = work / "ex" / "remote"
    remote_dir.mkdir(parents=True)
    shutil.copytree(local.run_dir / "tracking", remote_dir / "tracking")
    manifest = read_json(local.run_dir / "manifest.json")
    manifest["stages"] = {"tracking": manifest["stages"]["tracking"]}
    write_json(remote_dir / "manifest.json", manifest)
    always = local_cfg.thunder.model_copy(update={"offload": "always"})
    policy = offload_policy(local_cfg.model_copy(update={"thunder": always}))
    started = time.perf_counter()
    remote = Pipeline(local_cfg.model_copy(update={"thunder": always}), offload=policy).run(
        video, name="remote", until="segmentation")
    remote_total = time.perf_counter() - started
    rec_local, rec_remote = local.record("segmentation"), remote.record("segmentation")
    ex = rec_remote["execution"]
    assert rec_remote["where"] != "local", rec_remote
    tracks = read_json(local.run_dir / "tracking" / "tracks.json")
    return {
        "input": str(video), "frames": tracks["video"]["num_frames"],
        "keyframes": rec_local["summary"]["keyframes"], "masks": rec_local["summary"]["masks"],
        "local_s": rec_local["seconds"], "remote_s": rec_remote["seconds"],
        "remote_run_total_s": round(remote_total, 2),
        "ratio_remote_over_local": round(rec_remote["seconds"] / rec_local["seconds"], 2),
        "remote_breakdown": {k: ex[k] for k in ("transfer_s", "remote_compute_s", "remote_overhead_s",
                                                 "bytes_up", "bytes_down")},
        "mean_box_px": _mean_box(tracks),
    }


def _mean_box(tracks: dict[str, Any]) -> float:
    areas = [(d["box_xyxy"][2] - d["box_xyxy"][0]) * (d["box_xyxy"][3] - d["box_xyxy"][1])
             for f in tracks["frames"] for d in f["detections"]]
    return sum(areas) / len(areas) if areas else 0.0


def calibrate(seg: dict[str, Any]) -> dict[str, float]:
    from tangram.execution.cost import save_coefficients

    masks = max(seg["masks"], 1)
    crop_mpx = max(seg["mean_box_px"] * 1.7 / 1e6, 0.01)
    values = {
        "grabcut_s_per_mpx_box": round(seg["remote_breakdown"]["remote_compute_s"] / masks / crop_mpx, 4),
        "worker_start_s": round(seg["remote_breakdown"]["remote_overhead_s"], 3),
    }
    print(f"calibration written to {save_coefficients(values)}: {values}")
    return values


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=int, default=200, help="transfer payload size in MB (random bytes)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--skip-segmentation", action="store_true")
    p.add_argument("--calibrate", action="store_true", help="store the measured scorer coefficients")
    args = p.parse_args()
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="tangram-yolo-"))
    models = ROOT.parent / "shared" / "models"
    if "TANGRAM_MODEL_DIR" not in os.environ and models.is_dir():
        os.environ["TANGRAM_MODEL_DIR"] = str(models)
    from tangram.logs import setup_logging
    from tangram.settings import load_config

    setup_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="tangram-bench-thunder-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        server = SshServer(work / "sshd")
        server.start()
        try:
            thunder = {"enabled": True, "ssh_host": "127.0.0.1", "ssh_port": server.port,
                       "ssh_user": server.user, "ssh_key_path": str(server.client_key),
                       "known_hosts_path": str(server.known_hosts),
                       "remote_data_dir": str(work / "remote data"), "remote_home": str(work / "remote home"),
                       "remote_python": sys.executable}
            config = load_config(overrides={"thunder": thunder, "segmentation": {"backend": "grabcut"},
                                            "tracking": {"weights": os.environ.get("TANGRAM_YOLO_WEIGHTS",
                                                                                   "yolov8n_int8.tflite")}})
            results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
            results["transfer"] = bench_transfers(server, config, args.mb, args.repeat, work)
            print(json.dumps(results["transfer"], indent=2))
            if not args.skip_segmentation:
                from thunder.bootstrap import ensure_worker
                from thunder.thunder_client import ThunderClient

                with ThunderClient(config.thunder) as client:  # setup once, outside the timing
                    started = time.perf_counter()
                    ensure_worker(client)
                    results["setup_s"] = round(time.perf_counter() - started, 1)
                results["segmentation"] = bench_segmentation(config, work)
                print(json.dumps(results["segmentation"], indent=2))
                if args.calibrate:
                    results["calibration"] = calibrate(results["segmentation"])
        finally:
            server.stop()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

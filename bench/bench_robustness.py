"""The same real scene in every form a user hands in: one table, BEFORE (a git revision) and AFTER
(this tree), in one run.

Clips: every real clip in ../shared/data/real with poses or a table (hololens_office, tum_office_desk,
apple_orbit). Variants of each, made once with the ffmpeg that imageio-ffmpeg ships (cached under
--work):

- `png`: the PNG frames (the clip's own folder; apple_orbit's frames are extracted losslessly)
- `mp4`: the clip's own mp4 as it is
- `crf18`, `crf28`, `crf35`: the mp4 re-encoded with libx264 at that CRF (near-lossless, a phone,
  a messaging app)
- `half-fps`: every second frame (CRF 23); frame k is source frame 2k, so truth poses still line up
- `half-res`: half the width and height (CRF 23)
- `+K`: with `--intrinsics` (scaled for half-res) where the clip's intrinsics are known; the others
  run without, as a user would.

Each variant runs `main.py --mode graph --segmenter grabcut` with the offline int8 detector in its own
process. Columns: registered/selected keyframes, camera RMS after Sim(3) and our scale over the true
one (hololens_office), the focal length found (without --intrinsics), table found, objects on the
table, furniture on it, objects "on" it outside its extent (by more than 10 cm plus half their size),
reconstruction seconds (from the manifest). Then per clip and side the spread (max/min) of the scale
ratio and of the on-table count over the variants, and the targets of issue 15.

    python bench/bench_robustness.py [--before REV] [--no-before] [--clips hololens_office ...]
        [--variants mp4 png ...] [--work DIR] [--json out.json]

With --work, run folders are kept and a re-run reuses every finished stage (the BEFORE side then costs
nothing the second time; its seconds come from its manifests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_realdata import FURNITURE, wrong_relations  # noqa: E402

from tangram.geometry.evaluation import camera_centre_errors  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
MODELS = ROOT.parent / "shared" / "models"

CLIPS: dict[str, dict[str, Any]] = {
    "hololens_office": {"mp4": REAL / "hololens_office.mp4", "png": REAL / "hololens_office" / "images",
                        "K": (495.57, 495.48, 269.50, 169.19), "poses": REAL / "hololens_office" / "poses.txt"},
    "tum_office_desk": {"mp4": REAL / "tum_office_desk.mp4", "png": REAL / "tum_office_desk",
                        "K": (535.4, 539.2, 320.1, 247.6)},
    "apple_orbit": {"mp4": REAL / "apple_orbit.mp4", "png": None, "K": None},
}
VARIANTS = ["png", "png+K", "mp4", "mp4+K", "crf18", "crf28", "crf35", "half-fps", "half-res"]
TABLE_SCALE_BOUND = 0.2  # issue 15: scale within 20 % of truth
SPREAD_BOUND = 1.15


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_variant(clip: str, variant: str, cache: Path) -> tuple[Path, int, float] | None:
    """(input path, source-frame step, resolution factor) of a variant, made once; None if n/a."""
    spec = CLIPS[clip]
    base = variant.removesuffix("+K")
    if variant.endswith("+K") and spec["K"] is None:
        return None
    if base == "mp4":
        return spec["mp4"], 1, 1.0
    if base == "png":
        if spec["png"] is not None:
            return spec["png"], 1, 1.0
        out = cache / clip / "png"
        if not out.is_dir():
            tmp = out.with_name("png.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            _run([ffmpeg(), "-v", "error", "-i", str(spec["mp4"]), str(tmp / "%05d.png")])
            tmp.rename(out)
        return out, 1, 1.0
    out = cache / clip / f"{base}.mp4"
    args = {
        "crf18": ["-crf", "18"], "crf28": ["-crf", "28"], "crf35": ["-crf", "35"],
        "half-fps": ["-vf", "select='not(mod(n\\,2))',setpts=N/FRAME_RATE/TB", "-crf", "23"],
        "half-res": ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-crf", "23"],
    }[base]
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.mp4")
        _run([ffmpeg(), "-v", "error", "-y", "-i", str(spec["mp4"]), *args, "-c:v", "libx264",
              "-pix_fmt", "yuv420p", str(tmp)])
        tmp.rename(out)
    return out, 2 if base == "half-fps" else 1, 0.5 if base == "half-res" else 1.0


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def run_variant(tree: Path, clip: str, variant: str, path: Path, res: float, exports: Path,
                force: Sequence[str] = ()) -> Path:
    name = f"{clip}-{variant.replace('+', '_')}"
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "TANGRAM_YOLO_WEIGHTS": str(MODELS / "yolov8n_int8.tflite"),
        "TANGRAM_MODEL_DIR": str(MODELS),
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "false",
        "YOLO_CONFIG_DIR": str(exports / ".yolo"),
    }
    cmd = [sys.executable, str(tree / "main.py"), "--input", str(path), "--mode", "graph", "--segmenter", "grabcut",
           "--exports-dir", str(exports), "--name", name]
    for stage in force:
        cmd += ["--force", stage]
    k = CLIPS[clip]["K"]
    if variant.endswith("+K"):
        fx, fy, cx, cy = k
        cmd += ["--intrinsics", f"{fx * res},{fy * res},{(cx + 0.5) * res - 0.5},{(cy + 0.5) * res - 0.5}"]
    subprocess.run(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return exports / name


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def measure(run: Path, clip: str, step: int) -> dict[str, Any]:
    m: dict[str, Any] = {}
    manifest = _read(run / "manifest.json") or {}
    rec = manifest.get("stages", {}).get("reconstruction", {})
    m["status"] = rec.get("status", "not run")
    m["seconds"] = rec.get("seconds")
    if rec.get("status") == "failed":
        m["reason"] = rec.get("reason", "")
    stats = _read(run / "reconstruction" / "stats.json")
    cams = _read(run / "reconstruction" / "cameras.json")
    graph = _read(run / "scene_graph" / "scene_graph.json")
    if stats:
        m["registered"] = f"{stats['frames_registered']}/{stats['frames_selected']}"
    if cams:
        m["focal"] = cams["intrinsics"].get("fx")
        m["table"] = bool(cams.get("table"))
        poses = CLIPS[clip].get("poses")
        if poses:
            truth = np.loadtxt(poses).reshape(-1, 4, 4)
            pred = {f["frame_index"]: np.array(f["world_from_camera"]) for f in cams["frames"]}
            pairs = {f: truth[f * step] for f in pred if f * step < len(truth)}
            err = camera_centre_errors({f: pred[f] for f in pairs}, pairs)
            if "rmse_m" in err:
                m["cam_rms_cm"] = err["rmse_m"] * 100
                m["scale_ratio"] = 1 / err["sim3_scale"]
    if graph and cams:
        nodes = {n["id"]: n for n in graph["nodes"]}
        on = [e["source"] for e in graph["edges"] if e.get("relation") == "on" and e["target"] == "table"]
        m["on_table"] = sum(nodes[u].get("class_name") not in FURNITURE for u in on)
        m["on_classes"] = sorted(nodes[u].get("class_name", "?") for u in on)
        wrong = wrong_relations(graph, cams.get("table", {}))
        m["furniture_on"] = wrong["furniture_on_table"]
        m["outside"] = wrong["outside_support"]
    return m


def verdict(m: dict[str, Any], clip: str) -> list[str]:
    """Which issue-15 targets this variant misses."""
    bad = []
    if not m.get("table"):
        bad.append("no table")
    if m.get("furniture_on"):
        bad.append("furniture on table")
    if m.get("outside"):
        bad.append("outside extent")
    if clip == "hololens_office" and abs(m.get("scale_ratio", 0.0) - 1) > TABLE_SCALE_BOUND:
        bad.append("scale")
    if clip == "tum_office_desk" and m.get("on_table", 0) < 2:
        bad.append("< 2 on desk")
    return bad


HEADER = ["clip", "variant", "side", "registered", "cam RMS cm", "scale ours/true", "focal px", "table",
          "on table", "furniture on", "outside", "rec s", "misses"]


def row(clip: str, variant: str, side: str, m: dict[str, Any]) -> list[str]:
    def f(key: str, fmt: str) -> str:
        return format(m[key], fmt) if m.get(key) is not None else "-"

    return [
        clip, variant, side,
        m.get("registered", m.get("reason", m["status"]))[:48],
        f("cam_rms_cm", ".1f"), f("scale_ratio", ".2f"), f("focal", ".0f"),
        "yes" if m.get("table") else "no",
        f"{m['on_table']} ({', '.join(m['on_classes'])})"[:40] if "on_table" in m else "-",
        f("furniture_on", "d"), f("outside", "d"), f("seconds", ".0f"),
        ", ".join(verdict(m, clip)) or "ok",
    ]


def spread(results: dict[str, dict[str, Any]], clip: str, side: str) -> dict[str, Any]:
    ms = [m for k, m in results.items() if k.startswith(f"{clip}|") and k.endswith(f"|{side}")]
    scales = [m["scale_ratio"] for m in ms if "scale_ratio" in m]
    counts = [m.get("on_table", 0) for m in ms]
    out: dict[str, Any] = {"variants": len(ms), "ok": sum(not verdict(m, clip) for m in ms)}
    if scales:
        out["scale_spread"] = max(scales) / min(scales)
        out["scale_range"] = (min(scales), max(scales))
    if counts:
        out["on_table_range"] = (min(counts), max(counts))
    return out


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r)
    Console(width=240).print(table)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="HEAD", help="git revision for BEFORE (default HEAD: the last commit)")
    p.add_argument("--no-before", action="store_true", help="only this tree")
    p.add_argument("--only-before", action="store_true", help="only the BEFORE side (fill --work's cache)")
    p.add_argument("--clips", nargs="*", default=list(CLIPS), choices=list(CLIPS))
    p.add_argument("--variants", nargs="*", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--work", type=Path, help="keep variants and run folders here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="also write the measurements as JSON")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="re-run this stage (and what follows) in runs kept in --work: a code change the "
                        "run folders' hashes do not see, measured without redoing tracking and masks")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_robustness_"))
    sides = [("after", ROOT)]
    worktree = None
    if not args.no_before:
        worktree = work / "before_tree"
        if not worktree.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sides.insert(0, ("before", worktree))
        if args.only_before:
            sides = sides[:1]
    rows, results = [], {}
    try:
        for clip in args.clips:
            for variant in args.variants:
                made = make_variant(clip, variant, work / "variants")
                if made is None:
                    continue
                path, step, res = made
                for side, tree in sides:
                    started = time.perf_counter()
                    run = run_variant(tree, clip, variant, path, res, work / side, args.force)
                    m = measure(run, clip, step)
                    results[f"{clip}|{variant}|{side}"] = m
                    rows.append(row(clip, variant, side, m))
                    print(f"  {clip} {variant} [{side}] {time.perf_counter() - started:.0f} s: "
                          f"{', '.join(verdict(m, clip)) or 'ok'}", file=sys.stderr)
    finally:
        if worktree is not None and args.work is None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print_table("bench_robustness: one scene, every form (BEFORE vs AFTER)", HEADER, rows)
    spreads = []
    for clip in args.clips:
        for side, _ in sides:
            s = spread(results, clip, side)
            results[f"{clip}|spread|{side}"] = s
            spreads.append([
                clip, side, f"{s['ok']}/{s['variants']}",
                f"{s['scale_spread']:.2f} ({s['scale_range'][0]:.2f}-{s['scale_range'][1]:.2f})"
                if "scale_spread" in s else "-",
                "{}-{}".format(*s["on_table_range"]) if "on_table_range" in s else "-",
            ])
    print_table("spread over the variants", ["clip", "side", "variants meeting the targets",
                                             "scale max/min (range)", "on-table count range"], spreads)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

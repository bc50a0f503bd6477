"""Real footage, faithful scene: one table over the sample (and its scenarios) and the real clips,
BEFORE (a git revision) and AFTER (this tree), in one run.

Per clip and side: raw tracker ids vs final object ids per class, IDF1 where ground truth exists
(the sample and its scenarios), objects placed by points / triangulation / fallback (and not
placed), keyframes registered, camera RMS after Sim(3) and our scale over the true one where poses
exist (the sample; hololens_office/poses.txt), the metric scale's method, relations a person would
call wrong (furniture on the table; objects "on" the table whose footprint centre lies beyond its
extent by more than 10 cm plus half their size) and the default task.

Simulation columns (issue 21): actions succeeded in simulation / planned, picks that succeeded,
the goal check on the final physics state, objects that moved more than 2 cm while settling (from
result.json's world_check; "-" before it existed) and objects below their support at the end
(world_check; before it, objects whose top ended more than 5 cm under the table top).

Both sides run the whole pipeline up to simulation (no video) with the offline detector
(TANGRAM_YOLO_WEIGHTS=../shared/models/yolov8n_int8.tflite, GrabCut masks), each in its own
process with this venv; BEFORE is `git worktree add`-ed into a temporary folder and put first on
PYTHONPATH. Inputs are the same files for both sides.

    python bench/bench_realdata.py [--before f8e3109] [--no-before] [--clips NAME ...] [--json out.json]
        [--work DIR]   # keep the run folders (re-running reuses each stage's cache: only for re-reads)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tangram import sample_scene  # noqa: E402
from tangram.geometry.evaluation import camera_centre_errors  # noqa: E402
from tangram.metrics import idf1  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
MODELS = ROOT.parent / "shared" / "models"
HOLO_K = "495.57,495.48,269.50,169.19"
TUM_K = "535.4,539.2,320.1,247.6"
FURNITURE = {"chair", "couch", "bench", "bed", "dining table", "toilet", "desk"}


def clips(selected: list[str] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "sample", "input": sample_scene.ensure_sample(0), "gt": "sample"}]
    for name in sorted(getattr(sample_scene, "SCENARIOS", {})):
        video = sample_scene.ensure_sample(0, scenario=name)
        out.append({"name": f"sample:{name}", "input": video, "gt": "sample"})
    out += [
        {"name": "hololens_office", "input": REAL / "hololens_office.mp4", "args": ["--intrinsics", HOLO_K],
         "gt": "hololens"},
        {"name": "hololens_office (no K)", "input": REAL / "hololens_office.mp4", "gt": "hololens"},
        {"name": "tum_office_desk", "input": REAL / "tum_office_desk", "args": ["--intrinsics", TUM_K]},
        {"name": "tum_office_desk.mp4", "input": REAL / "tum_office_desk.mp4", "args": ["--intrinsics", TUM_K]},
        {"name": "apple_orbit", "input": REAL / "apple_orbit.mp4"},
        {"name": "coffee_static_camera", "input": REAL / "coffee_static_camera.mp4"},
    ]
    if selected:
        out = [c for c in out if c["name"] in selected or c["name"].split(" ")[0] in selected]
    return out


def run_clip(tree: Path, clip: dict[str, Any], exports: Path) -> tuple[Path, float]:
    name = clip["name"].replace(":", "_").replace(".", "_").replace(" ", "_").replace("(", "").replace(")", "")
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "TANGRAM_YOLO_WEIGHTS": str(MODELS / "yolov8n_int8.tflite"),
        "TANGRAM_MODEL_DIR": str(MODELS),
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "false",
        "YOLO_CONFIG_DIR": str(exports / ".yolo"),
    }
    cmd = [sys.executable, str(tree / "main.py"), "--input", str(clip["input"]), "--mode", "simulate", "--no-video",
           "--segmenter", "grabcut", "--exports-dir", str(exports), "--name", name, *clip.get("args", [])]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return exports / name, time.perf_counter() - started


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def measure(run: Path, clip: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = {}
    tracks = _read(run / "tracking" / "tracks.json")
    raw = _read(run / "tracking" / "raw_tracks.json") or tracks
    if tracks:
        m["raw_ids"] = Counter(t["class_name"] for t in raw["tracks"].values())
        m["track_ids"] = Counter(t["class_name"] for t in tracks["tracks"].values())
        if clip.get("gt") == "sample":
            m["idf1"] = _idf1(tracks, clip)
    objs = _read(run / "reconstruction" / "objects.json")
    cams = _read(run / "reconstruction" / "cameras.json")
    stats = _read(run / "reconstruction" / "stats.json")
    manifest = _read(run / "manifest.json") or {}
    rec_stage = manifest.get("stages", {}).get("reconstruction", {})
    m["reconstruction"] = rec_stage.get("status", "?")
    if rec_stage.get("status") == "failed":
        m["reason"] = rec_stage.get("reason", "")[:60]
    if objs:
        m["objects"] = Counter(o["class_name"] for o in objs["objects"])
        m["placed"] = Counter(_placement(o) for o in objs["objects"])
        m["placed"]["not placed"] = len(objs.get("unplaced", []))
    if stats:
        m["registered"] = f"{stats['frames_registered']}/{stats['frames_selected']}"
    if cams:
        m["scale"] = f"{cams['scale']['method']} ±{cams['scale']['uncertainty']:.0%}"
        truth = _true_poses(clip)
        if truth:
            pred = {f["frame_index"]: np.array(f["world_from_camera"]) for f in cams["frames"]}
            err = camera_centre_errors(pred, {f: p for f, p in truth.items() if f in pred})
            if "rmse_m" in err:
                m["cam_rms_cm"] = err["rmse_m"] * 100
                m["scale_ratio"] = 1 / err["sim3_scale"]
    graph = _read(run / "scene_graph" / "scene_graph.json")
    if graph and cams:
        m["wrong"] = wrong_relations(graph, cams.get("table", {}))
    plan = _read(run / "planning" / "plan.json")
    if plan:
        m["task"] = plan.get("task")
    sim = _read(run / "simulation" / "result.json")
    if sim:
        m["actions"] = f"{sum(a['success'] for a in sim['actions'])}/{len(plan['actions']) if plan else '?'}"
        m["picks_ok"] = sum(a["success"] and a["action"]["action"] == "pick" for a in sim["actions"])
        m["goal"] = sim.get("goal_satisfied")
        check = sim.get("world_check") or {}
        m["settle_moved"] = len((check.get("settling") or {}).get("moved", {})) if check else None
        if check:
            m["below"] = len(check.get("below_support", []))
        else:  # before issue 21: count objects that ended more than 5 cm under the table top
            m["below"] = sum(p["aabb_max"][2] < -0.05 for p in sim.get("final_poses", {}).values())
    elif (manifest.get("stages", {}).get("planning", {}) or {}).get("status") == "failed":
        m["task"] = "refused: " + str(manifest["stages"]["planning"].get("reason", ""))[:30]
    return m


def _placement(o: dict[str, Any]) -> str:
    if "placement" in o:
        return o["placement"]
    return "fallback" if o.get("fallback") else "points"  # before issue 9: points, else ray-plane


def _true_poses(clip: dict[str, Any]) -> dict[int, np.ndarray]:
    if clip.get("gt") == "hololens":
        poses = np.loadtxt(REAL / "hololens_office" / "poses.txt").reshape(-1, 4, 4)
        return dict(enumerate(poses))
    if clip.get("gt") == "sample":
        scene = sample_scene.load_sample(Path(clip["input"]).parent)
        return {i: scene.world_from_camera(i) for i in range(scene.num_frames)}
    return {}


def _idf1(tracks: dict[str, Any], clip: dict[str, Any]) -> float:
    scene = sample_scene.load_sample(Path(clip["input"]).parent)
    stride = int(tracks.get("frame_stride", 1) or 1)
    pred = {
        f["frame_index"]: {d["track_id"]: d["box_xyxy"] for d in f["detections"] if d.get("track_id") is not None}
        for f in tracks["frames"]
    }
    gt = {i: scene.boxes(i) for i in range(0, scene.num_frames, stride)}
    return float(idf1(gt, pred)["idf1"])


def wrong_relations(graph: dict[str, Any], table: dict[str, Any]) -> dict[str, int]:
    nodes = {n["id"]: n for n in graph["nodes"]}
    on_table = {e["source"] for e in graph["edges"] if e.get("relation") == "on" and e["target"] == "table"}
    furniture = sum(nodes[u].get("class_name") in FURNITURE for u in on_table)
    outside = 0
    size = table.get("rect_size") or table.get("size")
    if size:
        c = np.array(table.get("rect_center", [0.0, 0.0]), float)
        yaw = float(table.get("rect_yaw", 0.0))
        rot = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
        for u in on_table:
            local = rot @ (np.array(nodes[u]["position"][:2]) - c)
            margin = 0.1 + 0.5 * max(nodes[u]["size"][:2])
            outside += bool(np.any(np.abs(local) > np.array(size) / 2 + margin))
    return {"furniture_on_table": furniture, "outside_support": outside}


def _classes(before: Counter | None, after: Counter | None, top: int = 4) -> str:
    if before is None and after is None:
        return "-"
    a = after or Counter()
    return ", ".join(f"{k} {v}" for k, v in a.most_common(top)) or "none"


def row(name: str, side: str, m: dict[str, Any], seconds: float) -> list[str]:
    raw, final = m.get("raw_ids"), m.get("objects")
    raw_s = f"{sum(raw.values())} ({_classes(None, raw, 3)})" if raw else "-"
    fin_s = f"{sum(final.values())} ({_classes(None, final, 4)})" if final is not None else "-"
    placed = m.get("placed") or {}
    place_s = "/".join(str(placed.get(k, 0)) for k in ("points", "triangulation", "fallback", "not placed"))
    wrong = m.get("wrong") or {}
    return [
        name, side, raw_s, fin_s,
        f"{m['idf1']:.2f}" if "idf1" in m else "-",
        place_s if placed else "-",
        m.get("registered", m.get("reason", m.get("reconstruction", "-"))),
        f"{m['cam_rms_cm']:.1f}" if "cam_rms_cm" in m else "-",
        f"{m['scale_ratio']:.2f}" if "scale_ratio" in m else "-",
        m.get("scale", "-"),
        f"{wrong.get('furniture_on_table', 0)}/{wrong.get('outside_support', 0)}" if wrong else "-",
        str(m.get("task", "-"))[:40],
        str(m.get("actions", "-")),
        str(m.get("picks_ok", "-")),
        str(m.get("goal", "-")),
        "-" if m.get("settle_moved") is None else str(m["settle_moved"]),
        str(m.get("below", "-")),
        f"{seconds:.0f}",
    ]


HEADER = ["clip", "side", "raw tracker ids (top classes)", "final objects (classes)", "IDF1",
          "placed pts/tri/fallback/none", "registered", "cam RMS cm", "scale ours/true", "scale method",
          "wrong: furn-on-table/outside", "default task", "actions ok/planned", "picks ok", "goal held",
          "moved >2 cm settling", "below support at end", "s"]


def print_table(rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="bench_realdata: BEFORE vs AFTER", show_lines=False)
        for h in HEADER:
            table.add_column(h, overflow="fold")
        for r in rows:
            table.add_row(*r)
        Console(width=260).print(table)
    except ImportError:  # plain text
        for r in [HEADER, *rows]:
            print(" | ".join(r))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="f8e3109", help="git revision for BEFORE (default f8e3109)")
    p.add_argument("--no-before", action="store_true", help="only this tree")
    p.add_argument("--clips", nargs="*", help="clip names (default all): sample, sample:NAME, hololens_office...")
    p.add_argument("--work", type=Path, help="keep run folders here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="also write the measurements as JSON")
    args = p.parse_args()
    selected = clips(args.clips)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_realdata_"))
    sides = [("after", ROOT)]
    worktree = None
    if not args.no_before:
        worktree = work / "before_tree"
        if not worktree.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sides.insert(0, ("before", worktree))
    rows, results = [], {}
    try:
        for clip in selected:
            for side, tree in sides:
                run, seconds = run_clip(tree, clip, work / side)
                m = measure(run, clip)
                key = f"{clip['name']}|{side}"
                results[key] = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in m.items()}
                rows.append(row(clip["name"], side, m, seconds))
                print(f"  {clip['name']} [{side}] done in {seconds:.0f} s", file=sys.stderr)
    finally:
        if worktree is not None and args.work is None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `tangram` / `python main.py`.

    tangram [run] --input VIDEO [--mode full] [--name NAME] [--thunder] [--gui] ...
    tangram sample [--out DIR] [--seed N] [--scenario NAME]
    tangram batch INPUT... [--name BATCH] [--workers N | --hosts ... | --scheduler ADDR]; tangram batch status BATCH
    tangram thunder test|setup
    tangram jobs submit|status|fetch
    tangram report RUN_OR_BATCH_FOLDER
    tangram export rerun|mcap RUN_FOLDER
    tangram view RUN_FOLDER

Exit codes: 0 all requested stages done; 1 the run finished but some stage failed or was
skipped (the manifest says why); 2 bad input or settings (one line on stderr); 130 cancelled.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from tangram import __version__
from tangram.errors import TangramError
from tangram.stages import MODES, STAGE_ORDER

log = logging.getLogger("tangram")

SUBCOMMANDS = ("run", "sample", "thunder", "jobs", "batch", "report", "export", "view")


def build_run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tangram",
        description="TANGRAM: turn a video of a tabletop scene into tracks, masks, a 3D scene graph, "
        "a task plan and a simulated robot execution. Results land in exports/<name>/.",
        epilog="Other commands: 'tangram sample --help', 'tangram batch --help' (many inputs on a Dask "
        "cluster), 'tangram report RUN_FOLDER', 'tangram export rerun|mcap RUN_FOLDER', "
        "'tangram view RUN_FOLDER' (Rerun viewer), 'tangram thunder test|setup', "
        "'tangram jobs submit|status|fetch'. Environment: TANGRAM_LOG_LEVEL, TANGRAM_YOLO_WEIGHTS, "
        "TANGRAM_SAM_CHECKPOINT, TANGRAM_MODEL_DIR (folder searched for weights), TANGRAM_<SECTION>_<FIELD> "
        "for any config field, OPENAI_API_KEY / OPENAI_BASE_URL for the planner.",
    )
    p.add_argument("--input", "-i", type=Path,
                   help="video (mp4/mov/avi/mkv), folder of images, or one image; default: the built-in "
                   "sample scene (rendered once with pybullet, then cached)")
    p.add_argument("--mode", choices=list(MODES), default="full",
                   help="run the pipeline up to this stage: track, segment, reconstruct, graph, plan, "
                   "simulate, full (default: full)")
    p.add_argument("--name", help="run name: results go to exports/NAME/ (default: the input's name)")
    p.add_argument("--config", type=Path,
                   help="TOML file overriding config.py (sections as in config.py), or a run's "
                   "exports/RUN/config.json: the same settings again, so the run's finished stages are reused")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help=f"re-run STAGE even if its output is up to date; 'all' for every stage "
                   f"({', '.join(STAGE_ORDER)}); repeatable")
    p.add_argument("--thunder", action="store_true",
                   help="offload heavy stages (segmentation, reconstruction) to the Thunder Compute host "
                   "configured in config.py / TANGRAM_THUNDER_*; falls back to local when it fails")
    p.add_argument("--offload", choices=["auto", "always", "never"],
                   help="with --thunder: let the complexity scorer decide (auto, default), or force")
    p.add_argument("--gui", action="store_true", help="open the desktop GUI instead of running in the terminal")
    p.add_argument("--exports-dir", type=Path, help="where run folders go (default: exports/)")
    p.add_argument("--yolo-weights", help="YOLO weights: path or Ultralytics name (default yolov8n.pt)")
    p.add_argument("--tracker", help="Ultralytics tracker config (bytetrack.yaml, botsort.yaml)")
    p.add_argument("--frame-stride", type=int, help="track every N-th frame (default 1)")
    p.add_argument("--segmenter", choices=["auto", "sam", "grabcut"],
                   help="auto: SAM if a checkpoint is available, else GrabCut; sam: SAM or an error")
    p.add_argument("--sam-model", choices=["vit_b", "vit_l", "vit_h"], help="SAM model size")
    p.add_argument("--sam-checkpoint", help="path to a SAM checkpoint (.pth)")
    p.add_argument("--keyframe-stride", type=int, help="segment every N-th tracked frame (default 10)")
    p.add_argument("--intrinsics", type=_floats(4), metavar="FX,FY,CX,CY",
                   help="known camera intrinsics in pixels: COLMAP then keeps them fixed")
    p.add_argument("--known-size", type=_known_size, metavar="CLASS:METRES",
                   help="metric scale from a known object size, e.g. 'cup:0.095' (default: class size priors)")
    p.add_argument("--mapper", choices=["incremental", "global"], help="COLMAP mapper (default incremental)")
    p.add_argument("--task", help='task for the planner, e.g. "put the cup in the bowl"')
    p.add_argument("--planner", choices=["auto", "llm", "offline"], help="planner (default auto)")
    p.add_argument("--llm-model", help="model name on the OpenAI-compatible server")
    p.add_argument("--llm-base-url", help="OpenAI-compatible server URL (default: OpenAI)")
    p.add_argument("--seed", type=int, help="simulation seed (default 0): the same seed replays the same run")
    p.add_argument("--sim-gui", action="store_true",
                   help="show the pybullet simulation in a window (needs a display); default headless")
    p.add_argument("--no-video", action="store_true", help="do not record the simulation video")
    p.add_argument("--no-recording", action="store_true",
                   help="do not write recording.rrd (Rerun) and simulation/robot.mcap (ROS 2) after the run")
    p.add_argument("--device", help="torch device for tracking and SAM: cpu, cuda, cuda:1")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO; also TANGRAM_LOG_LEVEL)")
    p.add_argument("--version", action="version", version=f"tangram {__version__}")
    return p


def _floats(count: int):
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}") from None
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
        return values

    return parse


def _known_size(text: str) -> tuple[str, float]:
    name, _, size = text.rpartition(":")
    try:
        return name.strip(), float(size)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CLASS:METRES such as cup:0.095, got {text!r}") from None


def cli_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Flags that were given, as config layers; None means 'not given'."""
    return {
        "run": {"exports_dir": str(args.exports_dir) if args.exports_dir else None, "log_level": args.log_level,
                "recording": False if args.no_recording else None},
        "tracking": {"weights": args.yolo_weights, "tracker": args.tracker, "frame_stride": args.frame_stride,
                     "device": args.device},
        "segmentation": {"backend": args.segmenter, "sam_model": args.sam_model,
                         "sam_checkpoint": args.sam_checkpoint, "keyframe_stride": args.keyframe_stride,
                         "device": args.device},
        "reconstruction": {"intrinsics": args.intrinsics, "known_object_size": args.known_size,
                           "mapper": args.mapper},
        "planning": {"task": args.task, "planner": args.planner, "model": args.llm_model,
                     "base_url": args.llm_base_url},
        "simulation": {"seed": args.seed, "gui": True if args.sim_gui else None,
                       "record_video": False if args.no_video else None},
        "thunder": {"offload": args.offload},
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else "run"
    rest = argv[1:] if argv and argv[0] in SUBCOMMANDS else argv
    try:
        return _dispatch(command, rest)
    except TangramError as exc:
        print(f"tangram: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tangram: cancelled; finished stages are kept, run again to resume", file=sys.stderr)
        return 130


def _dispatch(command: str, argv: list[str]) -> int:
    if command == "sample":
        return _sample(argv)
    if command == "thunder":
        from thunder.cli import main_thunder

        return main_thunder(argv)
    if command == "jobs":
        from thunder.cli import main_jobs

        return main_jobs(argv)
    if command == "batch":
        from tangram.fleet.cli import main_batch

        return main_batch(argv)
    if command == "report":
        from tangram.report.cli import main_report

        return main_report(argv)
    if command == "export":
        from tangram.recording.cli import main_export

        return main_export(argv)
    if command == "view":
        from tangram.recording.cli import main_view

        return main_view(argv)
    return _run(build_run_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    from tangram.logs import setup_logging
    from tangram.settings import load_config, secret_values

    config = load_config(args.config, overrides=cli_overrides(args))
    setup_logging(config.run.log_level, secret_values(config))
    if args.gui:
        from gui.platform_check import check

        if (problem := check()) is not None:
            print(problem, file=sys.stderr)
            return 2
        from gui.app import run_gui

        return run_gui(config, input_path=args.input, name=args.name, thunder=args.thunder or None,
                       mode=args.mode)
    return run_in_terminal(config, args)


def run_in_terminal(config: Any, args: argparse.Namespace) -> int:
    """Run the pipeline with progress bars and a summary table; the exit code of `tangram run`."""
    from tangram.progress import RichObserver
    from tangram.runner import Pipeline, default_input, thunder_offload_policy

    input_path = args.input if args.input is not None else default_input()
    offload = thunder_offload_policy(config) if args.thunder else None
    with RichObserver() as observer:
        result = Pipeline(config, observer=observer, offload=offload).run(
            input_path, name=args.name, until=MODES[args.mode], force=args.force)
    RichObserver.print_summary(result)
    return 0 if result.ok else 1


def _sample(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tangram sample",
                                description="Render the built-in tabletop sample scene with pybullet "
                                "(video + ground truth: camera poses, boxes, masks, 3D objects).")
    p.add_argument("--out", type=Path, help="output folder (default: the sample cache folder)")
    p.add_argument("--seed", type=int, default=0, help="scene seed; the same seed gives the same video")
    p.add_argument("--scenario", metavar="NAME",
                   help="a harder variant with exact ground truth: shuffle (identical cups swapped around), "
                   "occlusion (a board sweeps in front of the objects), fast (a 6 fps hand-held clip), "
                   "unknown (four objects outside COCO besides the default ones); "
                   "default: the plain sample")
    args = p.parse_args(argv)
    from tangram.logs import setup_logging
    from tangram.progress import simple_progress
    from tangram.sample_scene import default_sample_path, get_scenario, render_sample

    if args.scenario is not None:
        get_scenario(args.scenario)  # unknown name: one-line error listing the names, exit 2
    setup_logging()
    out = args.out or default_sample_path(args.seed, args.scenario)
    label = f"rendering sample scenario {args.scenario}" if args.scenario else "rendering sample scene"
    with simple_progress(label) as progress:
        scene = render_sample(out, seed=args.seed, progress=progress, scenario=args.scenario)
    print(scene.video_path)
    return 0

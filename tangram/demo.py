"""The demo scripts, `demo.py` (everything local) and `demo_thunder.py` (heavy stages offloaded to
the Thunder host): the same pipeline with presets, writing to exports/<name>/, then a table that
compares this run with its counterpart, stage by stage: where it ran and how long it took.

    python demo.py [--gui] [--name local_demo] [--video my_video.mp4] [--mode full] [--compare NAME]
    python demo_thunder.py [--thunder] [--gui] [--name thunder_demo] [--video my_video.mp4]

Every flag of `tangram` works too (`--yolo-weights`, `--task`, `--config` ...); see --help.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tangram.errors import TangramError
from tangram.stages import STAGE_ORDER

log = logging.getLogger("tangram.demo")


@dataclass(frozen=True)
class Preset:
    name: str  # default run name
    thunder: bool  # offload heavy stages by default
    counterpart: str  # the run compared with by default
    description: str


LOCAL = Preset("local_demo", False, "thunder_demo", "TANGRAM demo, every stage on this machine.")
THUNDER = Preset("thunder_demo", True, "local_demo",
                 "TANGRAM demo with the heavy stages (segmentation, reconstruction) offloaded to the Thunder "
                 "Compute host configured in config.py; a stage falls back to local when the host fails.")


def build_parser(preset: Preset, prog: str) -> argparse.ArgumentParser:
    from tangram.cli import build_run_parser

    p = build_run_parser()
    p.prog = prog
    p.description = (f"{preset.description} Results go to exports/NAME/ (default {preset.name}); a table "
                     f"at the end compares the run with exports/{preset.counterpart}/ when it exists.")
    p.add_argument("--video", dest="input", type=Path, help="same as --input")
    p.add_argument("--compare", metavar="NAME", help=f"run to compare with (default {preset.counterpart})")
    p.set_defaults(name=preset.name, thunder=preset.thunder)
    for action in p._actions:  # argparse has no public way to change an inherited help text
        if action.dest == "name":
            action.help = f"run name: results go to exports/NAME/ (default: {preset.name})"
        elif action.dest == "thunder" and preset.thunder:
            action.help = "offload heavy stages to the Thunder host (this script's default)"
    return p


def main(argv: Sequence[str] | None, preset: Preset, prog: str) -> int:
    args = build_parser(preset, prog).parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        code = _run(args)
    except TangramError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: cancelled; finished stages are kept, run again to resume", file=sys.stderr)
        return 130
    _print_comparison(args, preset)
    return code


def _run(args: argparse.Namespace) -> int:
    from tangram.cli import cli_overrides, run_in_terminal
    from tangram.logs import setup_logging
    from tangram.settings import load_config, secret_values

    overrides = cli_overrides(args)
    if args.thunder:  # the demo's switch means "use the host": enable it for this run
        overrides["thunder"]["enabled"] = True
    config = load_config(args.config, overrides=overrides)
    setup_logging(config.run.log_level, secret_values(config))
    args.exports_dir = Path(config.run.exports_dir)
    if args.gui:
        from gui.app import run_gui

        return run_gui(config, input_path=args.input, name=args.name, thunder=args.thunder, mode=args.mode)
    return run_in_terminal(config, args)


# -- the comparison table --------------------------------------------------------------------


def comparison_rows(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """Per stage that any run has a record of: for each run, (status, where, seconds)."""
    from tangram.runner import load_manifest

    manifests = [load_manifest(d).get("stages", {}) for d in run_dirs]
    rows = []
    for stage in STAGE_ORDER:
        cells = [_cell(m.get(stage)) for m in manifests]
        if any(c["status"] != "-" for c in cells):
            rows.append({"stage": stage, "runs": cells})
    return rows


def _cell(record: dict[str, Any] | None) -> dict[str, Any]:
    if not record:
        return {"status": "-", "where": "", "seconds": None}
    return {"status": record.get("status", "?"), "where": record.get("where", "") or "",
            "seconds": record.get("seconds")}


def comparison_table(run_dirs: Sequence[Path]) -> Table:
    rows = comparison_rows(run_dirs)
    table = Table(title="Local vs Thunder: where each stage ran and how long it took")
    table.add_column("stage")
    for run_dir in run_dirs:
        table.add_column(f"{run_dir.name}: where")
        table.add_column("seconds", justify="right")
    totals = [0.0] * len(run_dirs)
    for row in rows:
        cells: list[str] = [row["stage"]]
        for i, cell in enumerate(row["runs"]):
            where = cell["where"] if cell["status"] == "done" else cell["status"]
            seconds = cell["seconds"]
            cells += [where, f"{seconds:.1f}" if isinstance(seconds, int | float) else "-"]
            totals[i] += seconds if isinstance(seconds, int | float) else 0.0
        table.add_row(*cells)
    table.add_section()
    table.add_row("total", *[v for t in totals for v in ("", f"{t:.1f}")])
    return table


def _print_comparison(args: argparse.Namespace, preset: Preset) -> None:
    exports = Path(getattr(args, "exports_dir", None) or "exports")
    runs = [exports / args.name]
    other = args.compare or preset.counterpart
    if other and other != args.name:
        runs.append(exports / other)
    runs = [r for r in runs if (r / "manifest.json").is_file()]
    if not runs:
        return
    if len(runs) == 1:
        print(f"(no exports/{other}/ yet to compare with: run the other demo script to fill it)")
    try:
        Console().print(comparison_table(runs))
    except (TangramError, ValueError, OSError) as exc:
        print(f"comparison table not available: {exc}", file=sys.stderr)

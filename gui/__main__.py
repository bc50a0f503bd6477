"""`python -m gui [--input VIDEO] [--name NAME] [--config FILE] [--thunder] [--mode MODE]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tangram.errors import TangramError
from tangram.stages import MODES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gui", description="TANGRAM desktop GUI")
    p.add_argument("--input", "-i", type=Path, help="preset input: video, image folder or image")
    p.add_argument("--name", help="preset run name (results in exports/NAME/)")
    p.add_argument("--config", type=Path, help="TOML file overriding config.py, or a run's config.json")
    p.add_argument("--mode", choices=list(MODES), help="preset: run up to this stage")
    p.add_argument("--thunder", action="store_true", default=None, help="preset the Thunder switch on")
    args = p.parse_args(argv)
    from gui.app import run_gui
    from tangram.logs import setup_logging
    from tangram.settings import load_config, secret_values

    try:
        config = load_config(args.config)
        setup_logging(config.run.log_level, secret_values(config))
        return run_gui(config, input_path=args.input, name=args.name, thunder=args.thunder, mode=args.mode)
    except TangramError as exc:
        print(f"tangram: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Options and settings loading shared by the Thunder commands (`tangram thunder ...`, `tangram jobs
...`, `python thunder/thunder_client.py`), so that each command module imports this one and none
imports another command module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from tangram.errors import TangramError


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file overriding config.py, or a run's config.json")
    p.add_argument("--trust-new-host", action="store_true",
                   help="accept and record the host key if the host is not in known_hosts yet (TOFU)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING")


def load_thunder_config(args: argparse.Namespace):  # -> TangramConfig
    from tangram.logs import setup_logging
    from tangram.settings import load_config, secret_values

    # Asking for the test or the setup means using the host: `enabled` only gates --thunder runs.
    overrides: dict = {"run": {"log_level": args.log_level}, "thunder": {"enabled": True}}
    if args.trust_new_host:
        overrides["thunder"]["trust_on_first_use"] = True
    config = load_config(args.config, overrides=overrides)
    setup_logging(config.run.log_level, secret_values(config))
    return config


def run_command(command: Callable[[], int], prog: str = "thunder") -> int:
    """Exit codes of the Thunder commands: a host problem is 1, a bad setting 2, one line each."""
    try:
        return command()
    except TangramError as exc:
        from thunder.errors import ThunderError

        print(f"{prog}: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, ThunderError) else 2

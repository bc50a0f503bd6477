"""`tangram thunder test|setup` and `tangram jobs submit|status|fetch` (tangram.cli dispatches here).

Exit codes: 0 success; 1 the host cannot be used or the job command failed (one line on stderr);
2 bad settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from thunder.options import add_common_options, load_thunder_config, run_command
from thunder.thunder_client import add_test_options, connection_test

log = logging.getLogger("thunder")


def main_thunder(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="tangram thunder", description="The Thunder Compute host.")
    sub = p.add_subparsers(dest="command", required=True)
    test = sub.add_parser("test", help="connection test: reachability, auth, OS, Python, GPU, disk, speed")
    add_common_options(test)
    add_test_options(test)
    setup = sub.add_parser("setup", help="install TANGRAM's worker on the host (done on first use anyway)")
    add_common_options(setup)
    setup.add_argument("--force", action="store_true", help="reinstall even if the same version is there")
    args = p.parse_args(list(argv))
    if args.command == "test":
        return run_command(lambda: connection_test(load_thunder_config(args), args))
    return run_command(lambda: _setup(load_thunder_config(args), args))


def _setup(config, args: argparse.Namespace) -> int:
    from thunder.bootstrap import ensure_worker
    from thunder.thunder_client import ThunderClient

    with ThunderClient(config.thunder) as client:
        env = ensure_worker(client, force=args.force, progress=lambda msg: print(msg, flush=True))
    print(f"Thunder worker ready on {client.label}: {env.python}")
    return 0


def main_jobs(argv: Sequence[str]) -> int:
    from thunder.jobs import main_jobs as jobs_main

    return jobs_main(argv)


if __name__ == "__main__":
    sys.exit(main_thunder(sys.argv[1:]))

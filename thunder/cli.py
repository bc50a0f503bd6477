"""`tangram thunder test|setup` and `tangram jobs submit|status|fetch` (tangram.cli dispatches here).

Exit codes: 0 success; 1 the host cannot be used or the job command failed (one line on stderr);
2 bad settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tangram.errors import TangramError

log = logging.getLogger("thunder")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file overriding config.py")
    p.add_argument("--trust-new-host", action="store_true",
                   help="accept and record the host key if the host is not in known_hosts yet (TOFU)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING")


def _load(args: argparse.Namespace):  # -> TangramConfig
    from tangram.logs import setup_logging
    from tangram.settings import load_config, secret_values

    # Asking for the test or the setup means using the host: `enabled` only gates --thunder runs.
    overrides: dict = {"run": {"log_level": args.log_level}, "thunder": {"enabled": True}}
    if args.trust_new_host:
        overrides["thunder"]["trust_on_first_use"] = True
    config = load_config(args.config, overrides=overrides)
    setup_logging(config.run.log_level, secret_values(config))
    return config


def main_thunder(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="tangram thunder", description="The Thunder Compute host.")
    sub = p.add_subparsers(dest="command", required=True)
    test = sub.add_parser("test", help="connection test: reachability, auth, OS, Python, GPU, disk, speed")
    _common(test)
    test.add_argument("--probe-mb", type=float, default=16.0, help="size of the throughput probe (MB)")
    test.add_argument("--json", action="store_true", help="print the report as JSON")
    setup = sub.add_parser("setup", help="install TANGRAM's worker on the host (done on first use anyway)")
    _common(setup)
    setup.add_argument("--force", action="store_true", help="reinstall even if the same version is there")
    args = p.parse_args(list(argv))
    try:
        config = _load(args)
        if args.command == "test":
            return _test(config, args)
        return _setup(config, args)
    except TangramError as exc:
        from thunder.errors import ThunderError

        print(f"thunder: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, ThunderError) else 2


def _test(config, args: argparse.Namespace) -> int:
    from thunder.scorer import save_host_report
    from thunder.thunder_client import ThunderClient, probe_host

    with ThunderClient(config.thunder) as client:
        report = probe_host(client, int(args.probe_mb * 1e6))
    save_host_report(config.thunder, report)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
        print("Thunder host usable.")
    return 0


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

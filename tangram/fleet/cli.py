"""`tangram batch INPUT... [options]` and `tangram batch status BATCH` (tangram.cli dispatches here).

Exit codes: 0 every input done; 1 some input failed (its reason is in batch.json); 2 bad settings
(one line, before anything starts); 130 cancelled (Ctrl-C or SIGTERM; run the same command again
to resume).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from tangram.stages import MODES, STAGE_ORDER


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tangram batch",
        description="Run TANGRAM over many inputs on a Dask cluster: an embedded LocalCluster, SSH hosts "
        "(set up like the Thunder host), or a Dask scheduler you run. Each input gets its own run folder "
        "exports/BATCH/<input>/; exports/BATCH/batch.json summarises the batch.",
        epilog="'tangram batch status BATCH' summarises a running or finished batch. Hosts: "
        "[user@]host[:port][,gpus=N][,workers=N][,price_per_hour=USD][,key_path=FILE][,known_hosts_path=FILE]; "
        "unset SSH settings come from the [thunder] section. Host keys must be in known_hosts "
        "(ssh-keyscan), or pass --trust-new-host to record them on first use.")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="videos, image folders, folders of videos, or .txt files listing one input per line")
    p.add_argument("--name", help="batch name: results in exports/NAME/ (default batch-<date>-<time>)")
    p.add_argument("--mode", choices=list(MODES),
                   help="run each input up to this stage (default: graph; on --resume the batch's mode)")
    p.add_argument("--workers", type=int, help="LocalCluster workers (default: half the cores)")
    hosts = p.add_mutually_exclusive_group()
    hosts.add_argument("--hosts", nargs="+", metavar="HOST", help="SSH hosts (the first also runs the scheduler)")
    hosts.add_argument("--hosts-file", type=Path, help="file with one host per line")
    hosts.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tls://10.0.0.5:8786")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free port)")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="interface for the metrics endpoint (default 127.0.0.1; 0.0.0.0 opens it to the network)")
    p.add_argument("--tls-ca", help="CA certificate for a tls:// --scheduler")
    p.add_argument("--tls-cert", help="client certificate for a tls:// --scheduler")
    p.add_argument("--tls-key", help="client key for a tls:// --scheduler")
    p.add_argument("--insecure", action="store_true",
                   help="allow a plain tcp:// --scheduler that is not on loopback (no encryption, no authentication)")
    p.add_argument("--resume", action="store_true",
                   help="resume the batch --name (its inputs and mode when none are given)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help=f"re-run STAGE for every input ('all', or one of {', '.join(STAGE_ORDER)})")
    p.add_argument("--config", type=Path, help="TOML file overriding config.py, or a run's config.json")
    p.add_argument("--exports-dir", type=Path, help="where batch folders go (default: exports/)")
    p.add_argument("--trust-new-host", action="store_true",
                   help="accept and record unknown SSH host keys (trust on first use)")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of the live table")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING")
    return p


def main_batch(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and argv[0] == "status":
        return _status(argv[1:])
    return _batch(build_parser().parse_args(argv))


def _status(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tangram batch status", description="Summarise a batch from its folder.")
    p.add_argument("batch", help="batch name (under exports/) or folder")
    p.add_argument("--exports-dir", type=Path)
    p.add_argument("--config", type=Path)
    args = p.parse_args(argv)
    from tangram.fleet.status import find_batch, print_status
    from tangram.settings import load_config

    config = load_config(args.config, overrides={"run": {"exports_dir": str(args.exports_dir)
                                                         if args.exports_dir else None}})
    return print_status(find_batch(args.batch, Path(config.run.exports_dir)))


def _batch(args: argparse.Namespace) -> int:
    from tangram.errors import TangramError
    from tangram.fleet.cluster import parse_host, read_hosts_file
    from tangram.fleet.driver import BatchDriver, BatchOptions, sigterm_as_interrupt
    from tangram.logs import setup_logging
    from tangram.settings import load_config, secret_values

    overrides: dict = {"run": {"exports_dir": str(args.exports_dir) if args.exports_dir else None,
                               "log_level": args.log_level}}
    if args.trust_new_host:
        overrides["thunder"] = {"trust_on_first_use": True}
    config = load_config(args.config, overrides=overrides)
    setup_logging(config.run.log_level, secret_values(config))
    import logging

    quiet = logging.DEBUG if config.run.log_level.upper() == "DEBUG" else logging.WARNING
    for noisy in ("distributed", "bokeh", "asyncssh", "tornado"):
        logging.getLogger(noisy).setLevel(quiet)
    if args.workers is not None and args.workers < 1:
        raise TangramError("--workers must be at least 1")
    hosts = None
    if args.hosts:
        hosts = [parse_host(h, config) for h in args.hosts]
    elif args.hosts_file:
        hosts = read_hosts_file(args.hosts_file, config)
    options = BatchOptions(inputs=list(args.inputs), name=args.name, mode=args.mode, workers=args.workers,
                           hosts=hosts, scheduler=args.scheduler, metrics_port=args.metrics_port,
                           metrics_host=args.metrics_host, insecure=args.insecure, tls_ca=args.tls_ca,
                           tls_cert=args.tls_cert, tls_key=args.tls_key,
                           resume=args.resume, force=list(args.force))
    driver = BatchDriver(config, options)
    with sigterm_as_interrupt():
        if args.no_progress:
            code = driver.run()
        else:
            from tangram.fleet.progress import RichBatchProgress

            with RichBatchProgress() as progress:
                driver.observer = progress
                code = driver.run()
    from tangram.fleet.status import print_status

    print_status(driver.batch_dir)
    return code

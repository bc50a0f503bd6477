"""Print requirements.lock without (or with only) some packages, for pip's --require-hashes.

    python scripts/lockfile.py requirements.lock --without llama-cpp-python
    python scripts/lockfile.py requirements.lock --only pip
    .venv/bin/python scripts/lockfile.py requirements.lock --extraneous   (installed here, not locked)

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(text: str) -> list[tuple[str, str]]:
    """(normalised name, the whole entry with its hash lines) per locked package."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _NAME.match(line)
        if match:
            out.append((_norm(match.group(1)), [line]))
        elif out and line.startswith(" ") and not line.strip().startswith("#"):
            out[-1][1].append(line)
    return [(name, "\n".join(lines)) for name, lines in out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--without", nargs="+", default=[])
    group.add_argument("--only", nargs="+", default=[])
    group.add_argument("--extraneous", action="store_true",
                       help="names of distributions installed in this interpreter that the lock does not pin")
    args = parser.parse_args(argv)
    if args.extraneous:
        import importlib.metadata as md

        locked = {name for name, _ in entries(args.lock.read_text())} | {"tangram"}
        names = {_norm(d.metadata["Name"]) for d in md.distributions()}
        print("\n".join(sorted(names - locked)))
        return 0
    without, only = {_norm(n) for n in args.without}, {_norm(n) for n in args.only}
    picked = [entry for name, entry in entries(args.lock.read_text())
              if (name in only if only else name not in without)]
    if only and len(picked) != len(only):
        print(f"lockfile: {', '.join(sorted(only))} not all in {args.lock}", file=sys.stderr)
        return 2
    print("\n".join(picked))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The inputs of a batch: videos, image folders, folders of videos, or text files listing inputs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tangram.errors import TangramError
from tangram.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES

LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})


@dataclass(frozen=True)
class BatchInput:
    path: Path  # absolute
    name: str  # the run folder's name inside the batch (unique)


def expand_inputs(args: list[str | Path]) -> list[BatchInput]:
    """Every input named by the arguments, in order, each once; run names made unique.

    A video or an image is one input; a folder holding videos gives each video; a folder of images
    is one input (an image sequence); a .txt file lists inputs one per line (# comments, paths
    relative to the file). Paths that do not exist are a TangramError (a typo must not silently
    shrink the batch)."""
    found: list[Path] = []
    for arg in args:
        found += _expand(Path(arg).expanduser(), depth=0)
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in found:
        if path not in seen:
            seen.add(path)
            unique.append(path)
    return _named(unique)


def _expand(path: Path, depth: int) -> list[Path]:
    if not path.exists():
        raise TangramError(f"input not found: {path}")
    path = path.resolve()
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        if depth > 3:
            raise TangramError(f"input lists nested too deep at {path}")
        out: list[Path] = []
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                entry = Path(line).expanduser()
                out += _expand(entry if entry.is_absolute() else path.parent / entry, depth + 1)
        return out
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
        if videos:
            return videos
        return [path]  # an image folder (open_media says so if it holds no images)
    return [path]  # a video, an image, or something open_media will refuse with its reason


def run_name(path: Path) -> str:
    stem = path.stem if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES else path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "input"


def _named(paths: list[Path]) -> list[BatchInput]:
    counts: dict[str, int] = {}
    out = []
    for path in paths:
        base = run_name(path)
        n = counts.get(base, 0)
        counts[base] = n + 1
        out.append(BatchInput(path, base if n == 0 else f"{base}-{n + 1}"))
    return out

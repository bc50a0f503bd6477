"""The inputs of a batch: videos, image folders, folders of videos, or text files listing inputs."""

from __future__ import annotations

import hashlib
import re
import unicodedata
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
    """A readable folder name for one input: its stem with anything but letters (any script), digits,
    `_`, `.` and `-` made `_` (so `café.mp4` stays `café`, not `input`); NFC-normalised."""
    stem = path.stem if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES else path.name
    stem = unicodedata.normalize("NFC", stem)
    return re.sub(r"[^\w.-]+", "_", stem).strip("._-")[:80] or "input"


def safe_batch_name(name: str) -> str:
    """`name` if it is one plain folder name (the batch lands at exports/NAME), else a TangramError."""
    if (not name or name != name.strip() or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or name.startswith("-") or Path(name).is_absolute() or len(name) > 120):
        raise TangramError(f"bad batch name {name!r}: give one plain folder name (no '/', '..' or leading '-')")
    return name


def _hashed(base: str, path: Path, digits: int) -> str:
    return f"{base}-{hashlib.sha256(str(path).encode('utf-8', 'surrogateescape')).hexdigest()[:digits]}"


def _named(paths: list[Path]) -> list[BatchInput]:
    """Unique names that do not depend on the order of the inputs: an input whose readable name no
    other input shares keeps it; inputs sharing one get `-<hash of the resolved path>`; the result
    is checked against every other name (a stem may itself look like `clip-2` or `clip-1a2b3c4d`)
    and the hash made longer until no two names meet (case-insensitively, for such file systems)."""
    bases = {path: run_name(path) for path in paths}
    groups: dict[str, list[Path]] = {}
    for path, base in bases.items():
        groups.setdefault(base.casefold(), []).append(path)
    digits = 8
    while True:
        names = {path: base if len(groups[base.casefold()]) == 1 else _hashed(base, path, digits)
                 for path, base in bases.items()}
        folded = [n.casefold() for n in names.values()]
        if len(set(folded)) == len(folded) or digits >= 64:
            break
        digits += 4
    clashing = {n for n in folded if folded.count(n) > 1}
    if clashing:  # only two paths with one SHA-256; here for completeness
        names = {path: _hashed(names[path], path, 64) if names[path].casefold() in clashing else names[path]
                 for path in paths}
    return [BatchInput(path, names[path]) for path in paths]

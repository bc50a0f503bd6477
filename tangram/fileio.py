"""Atomic writes and content fingerprints.

Every artefact is written to a temporary name in the same folder and renamed into place, so a
run killed at any moment never leaves a half-written file under its final name; whole folders
the same way (`replace_dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def replace_dir(new: Path, target: Path, complete: Callable[[Path], bool] | None = None) -> None:
    """Move the finished folder `new` to `target` (same file system). A previous `target` is first
    renamed to `.old-<name>-<pid>` beside it and removed only once `new` is in place, so a process
    killed between the two renames leaves the old folder to recover (`runner` does).

    complete: for a folder several processes may build at once (the sample cache): when `new`
    cannot be renamed because another process has just put a folder at `target` for which
    `complete(target)` holds, that one is kept."""
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    try:
        new.rename(target)
    except OSError:
        if complete is None or not complete(target):
            raise  # the old folder stays beside it
    shutil.rmtree(old, ignore_errors=True)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: Path | str, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def file_fingerprint(path: Path | str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content (streamed, so big videos don't load into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def path_fingerprint(path: Path | str) -> str:
    """Fingerprint of a file or of a folder's files (names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return file_fingerprint(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(file_fingerprint(child).encode())
    return digest.hexdigest()


def stable_hash(data: Any) -> str:
    """Short hash of JSON-serialisable data, independent of key order."""
    text = json.dumps(data, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

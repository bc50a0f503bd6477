"""Tar streams and checksums, shared by both ends (standard library only: the worker runs it too).

Folders travel as one uncompressed tar stream: the payload (JPEG, PNG, mp4, COLMAP binaries) is
already compressed, and tar keeps one round trip per folder instead of one per file. Extraction
accepts regular files and folders with relative names only, so a hostile or corrupt archive
cannot write outside the destination (Python 3.11.2 on Debian 12 has no tarfile filters yet).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO


def folder_files(folder: Path, exclude: Iterable[str] = ()) -> list[Path]:
    """Files under `folder`, sorted, minus those whose relative path matches an exclude glob."""
    patterns = list(exclude)
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(rel, p) for p in patterns):
            files.append(path)
    return files


def write_tar(fileobj: IO[bytes], members: Iterable[tuple[Path, str]]) -> int:
    """Stream (file, name-in-archive) pairs as one tar; returns the number of files."""
    count = 0
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, arcname in members:
            info = tar.gettarinfo(str(path), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
            count += 1
    return count


def tar_folder(folder: Path, target: Path, prefix: str = "", exclude: Iterable[str] = ()) -> int:
    """Write `folder`'s files into the tar file `target` (atomically); returns the file count."""
    tmp = target.with_name(f".{target.name}.part")
    with open(tmp, "wb") as fh:
        count = write_tar(fh, ((p, f"{prefix}{p.relative_to(folder).as_posix()}")
                               for p in folder_files(folder, exclude)))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(target)
    return count


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    parts = Path(name).parts
    if name.startswith("/") or ".." in parts or not parts:
        raise ValueError(f"unsafe path in archive: {name!r}")
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"archive member {name!r} is not a plain file or folder")


def safe_extract(tar_path: Path, dest: Path) -> list[str]:
    """Extract into `dest` (created); returns the file names. Refuses unsafe members."""
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    with tarfile.open(tar_path, mode="r:") as tar:
        for member in tar:
            _check_member(member)
            target = dest / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            os.chmod(target, 0o644)
            names.append(member.name)
    return names


def extract_into(tar_path: Path, out_dir: Path) -> list[str]:
    """Extract beside `out_dir` first, then move the entries in: a failure leaves `out_dir` as it was."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.import-", dir=out_dir.parent))
    try:
        names = safe_extract(tar_path, staging)
        for entry in sorted(staging.iterdir()):
            os.replace(entry, out_dir / entry.name)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)

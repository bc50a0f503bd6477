"""`tangram report FOLDER`: (re)build the HTML report of a run folder or of a batch folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from tangram.errors import TangramError


def main_report(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="tangram report",
        description="Write FOLDER/report.html: the report of a run folder (exports/<run>/, with manifest.json) "
        "or of a batch folder (exports/<batch>/, with batch.json). It opens from the file system with no "
        "network; zip the folder to share it.",
    )
    p.add_argument("folder", type=Path, help="a run folder or a batch folder")
    args = p.parse_args(argv)
    from tangram.report import write_batch_report, write_run_report
    from tangram.report.batch_report import BATCH_FILE

    folder: Path = args.folder
    if not folder.is_dir():
        raise TangramError(f"no such folder: {folder}")
    if (folder / BATCH_FILE).is_file():
        out = write_batch_report(folder)
    elif (folder / "manifest.json").is_file():
        out = write_run_report(folder)
    else:
        raise TangramError(f"not a TANGRAM run or batch folder (no manifest.json or {BATCH_FILE}): {folder}")
    print(out)
    return 0

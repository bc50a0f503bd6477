"""Recordings of run folders for robotics viewers: a Rerun `.rrd` (`write_rrd`) and a ROS 2 MCAP
file (`write_mcap`). Readers of `exports/<run>/` only; stages that are missing are skipped."""

from __future__ import annotations

from pathlib import Path


def write_rrd(run_dir: Path | str, out: Path | str | None = None) -> Path:
    from tangram.recording.rerun import write_rrd as _write

    return _write(run_dir, out)


def write_mcap(run_dir: Path | str, out: Path | str | None = None) -> Path:
    from tangram.recording.mcap import write_mcap as _write

    return _write(run_dir, out)


__all__ = ["write_mcap", "write_rrd"]

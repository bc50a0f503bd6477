"""`tangram export rerun|mcap RUN_FOLDER`: write a run folder's recording for robotics viewers."""

from __future__ import annotations

import argparse
from pathlib import Path


def main_export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="tangram export",
        description="Write a recording of a run folder (exports/<run>/): 'rerun' writes RUN/recording.rrd "
        "(open it with the Rerun viewer: keyframes with tracked boxes and masks on a frame timeline, cameras, "
        "sparse points, object boxes and the table in 3D); 'mcap' writes RUN/simulation/robot.mcap (RUN/robot.mcap "
        "without a simulation) with ROS 2 /tf_static, /scene/objects markers and /plan (Foxglove, ros2 bag). "
        "Stages the run did not finish are left out.",
    )
    p.add_argument("format", choices=["rerun", "mcap"], help="rerun (.rrd) or mcap (ROS 2)")
    p.add_argument("run", type=Path, help="a run folder, e.g. exports/sample")
    p.add_argument("--out", type=Path, help="write here instead of the default path inside the run folder")
    args = p.parse_args(argv)
    from tangram.errors import TangramError
    from tangram.recording import write_mcap, write_rrd

    try:
        out = (write_rrd if args.format == "rerun" else write_mcap)(args.run, args.out)
    except OSError as exc:
        raise TangramError(f"could not write the {args.format} recording to {args.out or args.run}: "
                           f"{exc.strerror or exc}") from None
    print(out)
    return 0

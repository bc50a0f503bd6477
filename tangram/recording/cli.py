"""`tangram export rerun|mcap RUN_FOLDER`: write a run folder's recording for robotics viewers;
`tangram view RUN_FOLDER`: open its Rerun recording."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path


def main_export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="tangram export",
        description="Write a recording of a run folder (exports/<run>/): 'rerun' writes RUN/recording.rrd "
        "(open it with 'tangram view RUN' or the Rerun viewer: keyframes with tracked boxes and masks on a frame "
        "timeline, cameras, "
        "sparse points, object boxes and the table in 3D, the simulated robot on a sim_time timeline); 'mcap' writes "
        "RUN/simulation/robot.mcap (RUN/robot.mcap without a simulation) with ROS 2 /tf_static, /scene/objects "
        "markers and /plan, and with a simulation /tf, /joint_states and /sim/actions (Foxglove, ros2 bag). "
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


def has_display() -> bool:
    """A desktop to open a window on: always on macOS and Windows, DISPLAY or WAYLAND_DISPLAY elsewhere."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main_view(argv: list[str]) -> int:
    """`tangram view RUN`: RUN/recording.rrd in the Rerun viewer the rerun-sdk wheel ships (written
    first when the run has none). Exit 0 when the viewer ran and closed normally, 2 when it cannot be
    opened here (no display, rerun-sdk missing, the viewer failed), with one sentence on stderr."""
    p = argparse.ArgumentParser(
        prog="tangram view",
        description="Open a run's Rerun recording (RUN/recording.rrd, written first if missing) in the Rerun "
        "viewer that the rerun-sdk wheel ships. Without a display, says how to open it elsewhere.")
    p.add_argument("run", type=Path, help="a run folder (exports/<run>) or an .rrd file")
    args = p.parse_args(argv)
    from tangram.errors import TangramError

    rrd = args.run if args.run.suffix == ".rrd" else args.run / "recording.rrd"
    if not rrd.is_file():
        if args.run.suffix == ".rrd":
            raise TangramError(f"no such recording: {rrd}")
        try:
            from tangram.recording import write_rrd

            rrd = write_rrd(args.run)
        except ImportError as exc:
            raise TangramError(f"{args.run} has no recording.rrd and rerun-sdk is not installed to write one "
                               f"(pip install 'tangram[robotics]'): {exc}") from None
    if importlib.util.find_spec("rerun_cli") is None:
        raise TangramError(f"the Rerun viewer is not installed (pip install 'tangram[robotics]'); {rrd} opens "
                           "with any Rerun viewer of version 0.41 or later")
    if not has_display():
        print(f"tangram: no display here: copy {rrd} to a desktop and open it with `rerun {rrd.name}` "
              "(pip install rerun-sdk==0.41.0), or run `tangram view` where DISPLAY is set", file=sys.stderr)
        return 2
    # The viewer's own messages pass through; it exits 0 even when it could not open its window
    # (e.g. "Error: app creation error: The GPU/graphics driver is lacking ..."), so its stderr is read.
    proc = subprocess.Popen([sys.executable, "-m", "rerun_cli", str(rrd)], stderr=subprocess.PIPE, text=True,
                            errors="replace")
    failed = None
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.startswith("Error:") and failed is None:
            failed = line[len("Error:"):].strip()
    rc = proc.wait()
    if rc != 0 or failed:
        why = f": {failed}" if failed else f" (status {rc})"
        print(f"tangram: the Rerun viewer could not show {rrd}{why}", file=sys.stderr)
        return 2
    return 0

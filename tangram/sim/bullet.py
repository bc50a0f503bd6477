"""pybullet, imported and connected without writing to stdout.

pybullet's C code prints its build banner ("pybullet build time: ...", on stderr) when it first
connects, and "argv[0]=" (on stdout) when `connect` is given options (pybullet_utils' BulletClient
always passes options=""), straight to the file descriptors, past Python and TANGRAM's log. Every
TANGRAM module gets pybullet from here: `from tangram.sim.bullet import connect, pybullet`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_LIBC = ctypes.CDLL(None)


@contextmanager
def quiet_c_output() -> Iterator[None]:
    """Send what C code writes to file descriptors 1 and 2 to /dev/null for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        _LIBC.fflush(None)  # C's stdio buffers hold what was printed: empty them into /dev/null first
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


with quiet_c_output():
    import pybullet
    import pybullet_data
    from pybullet_utils.bullet_client import BulletClient


class _Client(BulletClient):
    """A BulletClient connected without printing (BulletClient's own __init__ passes options='')."""

    def __init__(self, connection_mode: int) -> None:  # deliberately not calling super().__init__
        self._shapes: dict = {}
        self._pid = os.getpid()
        with quiet_c_output():
            self._client = pybullet.connect(connection_mode)
        if self._client < 0:
            raise pybullet.error("cannot connect to pybullet")


def connect(gui: bool = False) -> tuple[BulletClient, str]:
    """A new physics client: a window when asked and a display exists, else headless (DIRECT)."""
    if gui and os.environ.get("DISPLAY"):
        try:
            return _Client(pybullet.GUI), "gui"
        except pybullet.error:
            pass
    return _Client(pybullet.DIRECT), "direct"


__all__ = ["BulletClient", "connect", "pybullet", "pybullet_data", "quiet_c_output"]

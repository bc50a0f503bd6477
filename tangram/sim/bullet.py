"""pybullet, imported and connected without writing to stdout.

pybullet's C code prints its build banner ("pybullet build time: ...") when the module is first
imported and "argv[0]=" when `connect` is given options (pybullet_utils' BulletClient always passes
options=""), straight to file descriptor 1, where TANGRAM writes its own table and results. Every
TANGRAM module gets pybullet from here: `from tangram.sim.bullet import connect, pybullet`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send what C code writes to file descriptor 1 to /dev/null for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


with quiet_stdout():
    import pybullet
    import pybullet_data
    from pybullet_utils.bullet_client import BulletClient


class _Client(BulletClient):
    """A BulletClient connected without printing (BulletClient's own __init__ passes options='')."""

    def __init__(self, connection_mode: int) -> None:  # deliberately not calling super().__init__
        self._shapes: dict = {}
        self._pid = os.getpid()
        with quiet_stdout():
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


__all__ = ["BulletClient", "connect", "pybullet", "pybullet_data", "quiet_stdout"]

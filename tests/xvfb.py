"""A private X server for tests that need a real display: Xvfb on a unix socket only (no TCP),
its display number read from -displayfd once it accepts clients, stopped by its pid afterwards."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def private_xvfb(width: int, height: int) -> Iterator[str]:
    """DISPLAY of a fresh Xvfb screen of width x height x 24 while the block runs."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-nolisten", "tcp", "-screen", "0",
                             f"{width}x{height}x24"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()  # written once the server accepts clients
        assert number.isdigit(), f"Xvfb did not start: {proc.stderr.read().decode()[-500:]}"  # type: ignore[union-attr]
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""Nothing but TANGRAM's own output reaches the terminal: pybullet's C banner and 'argv[0]=' are kept
off stdout and stderr wherever TANGRAM connects to pybullet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
from tangram.sim.bullet import connect, pybullet_data
for gui in (False, True):  # True falls back to DIRECT without a display
    client, mode = connect(gui)
    client.setAdditionalSearchPath(pybullet_data.getDataPath())
    client.loadURDF("franka_panda/panda.urdf", useFixedBase=True)
    client.stepSimulation()
    client.disconnect()
print("ok", mode)
"""


def test_pybullet_prints_nothing_of_its_own() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok direct\n"
    assert proc.stderr == ""
    # the same script on the raw library does print, so the check above can fail
    raw = subprocess.run([sys.executable, "-c", "import pybullet as p; p.connect(p.DIRECT, options='')"],
                         capture_output=True, text=True, timeout=60)
    assert "pybullet build time" in raw.stdout + raw.stderr

"""The environment is the committed lock: every installed distribution has exactly the version that
requirements.lock pins (TANGRAM itself aside), and the lock pins each package once with hashes."""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from lockfile import entries  # noqa: E402


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    pins = {}
    for name, entry in entries(text):
        version = re.match(r"^[^=]+==(\S+)", entry).group(1)
        assert "--hash=sha256:" in entry, f"{name} is locked without a hash"
        assert name not in pins, f"{name} is locked twice"
        pins[name] = version
    return pins


def test_every_installed_package_is_the_locked_version() -> None:
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a virtual environment made by scripts/setup.sh")
    locked = _locked()
    installed = {_norm(d.metadata["Name"]): d.version for d in md.distributions()}
    installed.pop("tangram", None)
    wrong = {n: (v, locked.get(n)) for n, v in installed.items() if locked.get(n) != v}
    assert not wrong, f"installed (version, locked version) that differ from requirements.lock: {wrong}"
    for core in ("torch", "torchvision", "numpy", "opencv-python-headless", "pycolmap", "ultralytics-opencv-headless"):
        assert core in installed, f"{core} is not installed"


def test_lock_selection_for_pip_keeps_hashes() -> None:
    from lockfile import main

    locked = _locked()
    assert {"torch", "torchvision", "pip", "llama-cpp-python"} <= set(locked)
    assert locked["torch"] == "2.14.1" and locked["torchvision"] == "0.29.1"  # the pair in scripts/lock-constraints.txt
    assert main([str(ROOT / "requirements.lock"), "--only", "no-such-package"]) == 2

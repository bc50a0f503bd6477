"""Shared fixtures. Real data and the offline detector come from ../shared when it is there
(CI and developer machines); elsewhere YOLO weights are downloaded when online, or tests skip
with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TANGRAM_SHARED_DIR", ROOT.parent / "shared"))
REAL_DATA = SHARED / "data" / "real"
OFFLINE_DETECTOR = "yolov8n_int8.tflite"

# Before anything imports ultralytics or Qt.
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="tangram-yolo-"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if "TANGRAM_MODEL_DIR" not in os.environ and (SHARED / "models").is_dir():
    os.environ["TANGRAM_MODEL_DIR"] = str(SHARED / "models")

pytest_plugins = ["thunder_fixtures"]


def real_file(name: str) -> Path:
    path = REAL_DATA / name
    if not path.exists():
        pytest.skip(f"real test data {path} is not on this machine (see README: tests and ../shared)")
    return path


@pytest.fixture(scope="session")
def yolo_weights() -> str:
    """The offline int8 detector from $TANGRAM_MODEL_DIR, else yolov8n.pt downloaded when online."""
    from tangram.errors import TangramError
    from tangram.models import find_local, resolve_yolo_weights

    local = find_local(OFFLINE_DETECTOR)
    if local:
        return str(local)
    try:
        return str(resolve_yolo_weights("yolov8n.pt"))
    except TangramError as exc:
        pytest.skip(f"no YOLO weights: {exc}")


@pytest.fixture
def apple_video() -> Path:
    return real_file("apple_orbit.mp4")


@pytest.fixture
def make_config(tmp_path: Path, yolo_weights: str) -> Callable[..., object]:
    """A TangramConfig writing into tmp_path/exports, with per-section overrides."""
    from tangram.settings import load_config

    def make(**sections: dict) -> object:
        overrides = {"run": {"exports_dir": str(tmp_path / "exports")}, "tracking": {"weights": yolo_weights}}
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return load_config(env={}, overrides=overrides)

    return make


@pytest.fixture
def run_cli(tmp_path: Path, yolo_weights: str) -> Callable[..., subprocess.CompletedProcess]:
    """Run `python main.py ARGS` in a subprocess with exports under tmp_path."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "TANGRAM_YOLO_WEIGHTS": yolo_weights,
                    "TANGRAM_EXPORTS_DIR": str(tmp_path / "exports"), **(env or {})}
        return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout, cwd=tmp_path)

    return run


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory, yolo_weights: str) -> Path:
    """The whole pipeline on the rendered sample scene, offline detector and GrabCut (the runner writes
    report.html at the end). One run for the session: tests that edit a run folder copy it first."""
    from tangram.runner import Pipeline, default_input
    from tangram.settings import load_config

    exports = tmp_path_factory.mktemp("sample_exports")
    config = load_config(env={}, overrides={"run": {"exports_dir": str(exports)}, "tracking": {"weights": yolo_weights},
                                            "segmentation": {"backend": "grabcut"}})
    result = Pipeline(config).run(default_input(), name="sample")
    assert result.ok, result.manifest["stages"]
    return result.run_dir


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """world_from_camera (OpenCV axes) of a camera at eye looking at target, z up."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([right, down, forward])
    pose[:3, 3] = eye
    return pose

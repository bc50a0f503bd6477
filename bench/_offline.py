"""What a bench sets up before importing TANGRAM: the repository on sys.path, a private Ultralytics
settings folder (no writes to the user's), and ../shared/models as TANGRAM_MODEL_DIR when it is there
(the offline weights), unless the caller set one."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def setup() -> Path:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="tangram-yolo-"))
    if (SHARED / "models").is_dir():
        os.environ.setdefault("TANGRAM_MODEL_DIR", str(SHARED / "models"))
    return ROOT

"""The contract every stage follows.

A stage is a function of (the run's input, its upstream stages' folders, the config) that writes
its artefacts into `ctx.out_dir`. It knows nothing of where it runs: the runner gives it a fresh
temporary folder (locally, or elsewhere through an executor of `tangram.execution`) and renames the folder
to `exports/<run>/<stage>/` only once the stage returned, so a finished folder is always complete.

A stage that fails with `StageFailed` may leave what explains the failure (diagnostics, a partial
model, a picture) in `ctx.out_dir / "failed"`; the runner keeps that folder as
`exports/<run>/<stage>/failed/` and nothing else of the attempt. The manifest still says `failed`,
so the next run runs the stage again.

Conventions shared by all stages:
- frame_index: 0-based index of a frame in decoding order (video) or in sorted file-name order
  (image folder); a single image is frame 0. Frames written to disk are named
  `frame_{frame_index:06d}.jpg` (see `tangram.media.frame_name`).
- boxes: `box_xyxy` = [x1, y1, x2, y2] in pixels of the original frame, origin top-left, floats.
- object ids: the tracker's `track_id` (int >= 1) names an object in every later stage: masks,
  3D objects, scene-graph nodes, plan arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from config import TangramConfig


def read_artefact(path: Path) -> Any:
    """An upstream stage's JSON artefact; a missing or corrupt file is a StageFailed naming it."""
    from tangram.errors import StageFailed
    from tangram.fileio import read_json

    if not path.is_file():
        raise StageFailed(f"{path.name} not found in {path.parent}")
    try:
        return read_json(path)
    except ValueError as exc:
        raise StageFailed(f"{path.name} is not valid JSON: {exc}") from exc


class ProgressFn(Protocol):
    def __call__(self, completed: float, total: float | None = None, description: str = "") -> None: ...


def no_progress(completed: float, total: float | None = None, description: str = "") -> None:
    """A ProgressFn that reports nowhere."""


@dataclass(frozen=True)
class StageContext:
    stage: str
    input_path: Path  # the run's input: a video, an image folder or one image
    out_dir: Path  # write artefacts here; it is empty when the stage starts
    upstream: Mapping[str, Path]  # finished folders of the stages this one requires
    config: TangramConfig
    progress: ProgressFn = no_progress

    def upstream_dir(self, stage: str) -> Path:
        return self.upstream[stage]


@dataclass
class StageOutcome:
    backend: str  # what ran, e.g. "ultralytics:yolov8n_int8.tflite", "sam:vit_b", "grabcut"
    summary: dict[str, Any] = field(default_factory=dict)  # small figures for the manifest
    where: str = "local"  # "local" or the remote host that ran it (set by the executor)
    # Set by a remote executor: bytes_up, bytes_down, transfer_s, remote_compute_s, cost_usd...
    execution: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageSpec:
    name: str
    requires: tuple[str, ...]  # upstream stages whose folders this stage reads
    config_sections: tuple[str, ...]  # config sections whose values change this stage's output
    run: Callable[[StageContext], StageOutcome]
    offloadable: bool = False  # heavy enough to be worth a remote GPU host
    uses_input: bool = True  # reads the run's input file (else only upstream folders)
    # Cheap check of the settings (weights present and loadable...) before a run starts, so a
    # bad setting is a one-line error instead of a failure halfway through the run.
    preflight: Callable[[TangramConfig], None] | None = None

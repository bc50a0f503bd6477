"""Read a run folder (`exports/<run>/`) for the recording writers: each stage's artefacts, or None
where the stage did not run, failed or left nothing (the writers then skip it).

A stage counts when its artefact file is there and, if the run has a manifest.json, the manifest
does not record the stage as failed or skipped (a stale file from an earlier run is not shown as
this run's result). Formats are those in the stages' docstrings (tangram/stages/*.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tangram.errors import TangramError

ARTEFACTS = {
    "tracking": "tracking/tracks.json",
    "segmentation": "segmentation/masks.json",
    "reconstruction": "reconstruction/cameras.json",
    "scene_graph": "scene_graph/scene_graph.json",
    "planning": "planning/plan.json",
    "simulation": "simulation/result.json",
}


@dataclass
class RunFolder:
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path | str) -> RunFolder:
        """The run folder at `path`; a TangramError (one sentence) when it is not one."""
        path = Path(path)
        if not path.is_dir():
            raise TangramError(f"no such run folder: {path}")
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file() and not any((path / rel).is_file() for rel in ARTEFACTS.values()):
            raise TangramError(f"not a TANGRAM run folder (no manifest.json and no stage artefacts): {path}")
        run = cls(path)
        if manifest_path.is_file():
            manifest = run._json(manifest_path)
            run.manifest = manifest if isinstance(manifest, dict) else {}
        return run

    @property
    def name(self) -> str:
        return str(self.manifest.get("run") or self.path.name)

    def has(self, stage: str) -> bool:
        status = (self.manifest.get("stages", {}).get(stage) or {}).get("status")
        if status in ("failed", "skipped"):
            return False
        return (self.path / ARTEFACTS[stage]).is_file()

    def _json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TangramError(f"{path.relative_to(self.path.parent)} is not readable JSON: {exc}") from None

    def stage_json(self, stage: str) -> dict[str, Any] | None:
        if not self.has(stage):
            return None
        data = self._json(self.path / ARTEFACTS[stage])
        if not isinstance(data, dict):
            raise TangramError(f"{ARTEFACTS[stage]} in {self.path} is not a JSON object")
        return data

    def tracks(self) -> dict[str, Any] | None:
        return self.stage_json("tracking")

    def masks(self) -> dict[str, Any] | None:
        return self.stage_json("segmentation")

    def cameras(self) -> dict[str, Any] | None:
        return self.stage_json("reconstruction")

    def objects(self) -> list[dict[str, Any]]:
        """Placed objects of reconstruction/objects.json ([] when there are none)."""
        if not self.has("reconstruction"):
            return []
        path = self.path / "reconstruction" / "objects.json"
        if not path.is_file():
            return []
        data = self._json(path)
        return list(data.get("objects", [])) if isinstance(data, dict) else []

    def points(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(xyz Nx3 metres, rgb Nx3 uint8) of reconstruction/points.ply, or None."""
        path = self.path / "reconstruction" / "points.ply"
        if not self.has("reconstruction") or not path.is_file():
            return None
        from tangram.geometry.export import read_ply_vertices

        try:
            xyz, rgb = read_ply_vertices(path)
        except (ValueError, StopIteration) as exc:
            raise TangramError(f"reconstruction/points.ply in {self.path} is not a TANGRAM PLY: {exc}") from None
        return xyz, np.asarray(rgb, np.uint8)

    def scene_graph(self) -> dict[str, Any] | None:
        return self.stage_json("scene_graph")

    def graph_objects(self) -> dict[int, dict[str, Any]]:
        """id -> the scene graph's object node (class_name, size, color...): the simulation's objects."""
        out: dict[int, dict[str, Any]] = {}
        for node in (self.scene_graph() or {}).get("nodes", []):
            if node.get("kind") != "object" or node.get("size") is None:
                continue
            try:
                out[int(node["id"])] = node
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def plan(self) -> dict[str, Any] | None:
        return self.stage_json("planning")

    def plan_text(self) -> str | None:
        """plan.json exactly as written (the /plan topic carries it verbatim)."""
        if self.plan() is None:
            return None
        return (self.path / ARTEFACTS["planning"]).read_text()

    def simulation(self) -> dict[str, Any] | None:
        return self.stage_json("simulation")

    def trajectory(self) -> dict[str, np.ndarray] | None:
        """simulation/trajectory.npz (tangram.sim.trajectory) of a finished simulation, or None."""
        path = self.path / "simulation" / "trajectory.npz"
        if not self.has("simulation") or not path.is_file():
            return None
        from tangram.sim.trajectory import load_trajectory

        try:
            data = load_trajectory(path)
        except (OSError, ValueError, KeyError) as exc:
            raise TangramError(f"simulation/trajectory.npz in {self.path} is not readable: {exc}") from None
        return data if len(data.get("t", [])) else None

    def file(self, relative: str) -> Path | None:
        """A file named in an artefact, relative to the stage folder, when it exists inside the run."""
        path = (self.path / relative).resolve()
        if not path.is_file() or not path.is_relative_to(self.path.resolve()):
            return None
        return path

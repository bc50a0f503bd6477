"""The same input and settings give the same 3D artefacts: the sample's reconstruction and scene graph run
twice, from the same (ground-truth) tracks and masks, in two fresh folders, and every figure is compared.

Why this can hold exactly: COLMAP's random generator is seeded (`pycolmap.set_random_seed` and the
mapper/RANSAC seeds in `tangram.geometry.sfm`), the stage fixes its thread count, keyframes and tracks are
processed in sorted order, and JSON is written with sorted keys. Floating-point results may still differ
in the last bits where a library reduces in parallel, so numbers are compared to 1e-6 relative (a micron
on a metre), far below anything a figure in the tests depends on; the structure (keys, lists, ids,
strings, counts) must be identical.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tangram.fileio import read_json
from tangram.sample_scene import ensure_sample, load_sample
from tangram.sim.ground_truth import write_gt_upstream
from tangram.stages.base import StageContext

# Figures that are wall-clock times, not results.
_TIMING_KEYS = {"seconds", "timings_s"}


def _run_3d(root: Path) -> Path:
    from config import default_config
    from tangram.stages import reconstruction, scene_graph

    sample = load_sample(ensure_sample(0).parent)
    write_gt_upstream(sample, root / "tracking", root / "segmentation", range(0, sample.num_frames, 5))
    config = default_config()
    upstream = {"tracking": root / "tracking", "segmentation": root / "segmentation"}
    (root / "reconstruction").mkdir()
    reconstruction.run(StageContext("reconstruction", sample.video_path, root / "reconstruction", upstream, config))
    (root / "scene_graph").mkdir()
    scene_graph.run(StageContext("scene_graph", sample.video_path, root / "scene_graph",
                                 {"reconstruction": root / "reconstruction"}, config))
    return root


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(set(a) ^ set(b))} differ"]
        return [d for k in sorted(a) if k not in _TIMING_KEYS for d in _differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        if not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9):
            return [f"{where}: {a!r} vs {b!r}"]
        return []
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


@pytest.mark.slow
def test_sample_3d_stages_give_the_same_figures_twice(tmp_path: Path) -> None:
    first, second = _run_3d(tmp_path / "a"), _run_3d(tmp_path / "b")
    compared = 0
    for rel in ("reconstruction/cameras.json", "reconstruction/objects.json", "reconstruction/stats.json",
                "scene_graph/scene_graph.json"):
        a, b = read_json(first / rel), read_json(second / rel)
        diffs = _differences(a, b, rel)
        assert not diffs, f"{len(diffs)} figures differ between two identical runs, e.g. {diffs[:5]}"
        compared += 1
    points_a = (first / "reconstruction" / "points.ply").read_bytes()
    points_b = (second / "reconstruction" / "points.ply").read_bytes()
    assert len(points_a) == len(points_b) > 1000  # the same number of 3D points, a real cloud
    assert compared == 4

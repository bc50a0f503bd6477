"""Tracklets: per-track appearance summaries and offline stitching of track fragments.

A library under the tracking stage (`tangram.stages.tracking` calls it); `id_summary` reads a
finished tracking folder for reports and benchmarks.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tangram.fileio import read_json
from tangram.tracklets.appearance import AppearanceBank, box_histogram, similarity
from tangram.tracklets.stitching import (
    CONFUSABLE_GROUPS,
    StitchConfig,
    StitchedObject,
    StitchResult,
    confusable,
    stitch,
    vote,
)

__all__ = [
    "CONFUSABLE_GROUPS",
    "AppearanceBank",
    "StitchConfig",
    "StitchResult",
    "StitchedObject",
    "box_histogram",
    "confusable",
    "id_summary",
    "similarity",
    "stitch",
    "vote",
]


def id_summary(stage_dir: Path | str) -> dict[str, Any]:
    """Raw tracker ids vs final object ids of a tracking folder, overall and per class.

    {"raw": n, "final": n, "per_class": {class: {"raw": n, "final": n}}}; a raw track counts under
    the class it was mostly detected as (confidence-weighted), a final one under its voted class.
    Without raw_tracks.json (folders of format tangram.tracks/1) raw ids are the final ids.
    """
    stage_dir = Path(stage_dir)
    final = read_json(stage_dir / "tracks.json")["tracks"]
    raw_path = stage_dir / "raw_tracks.json"
    raw = read_json(raw_path)["tracks"] if raw_path.is_file() else final
    raw_counts = Counter(t["class_name"] for t in raw.values())
    final_counts = Counter(t["class_name"] for t in final.values())
    return {
        "raw": len(raw),
        "final": len(final),
        "per_class": {name: {"raw": raw_counts.get(name, 0), "final": final_counts.get(name, 0)}
                      for name in sorted(set(raw_counts) | set(final_counts))},
    }

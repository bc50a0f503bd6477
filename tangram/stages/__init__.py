"""Stage registry, in pipeline order. Modules load lazily: importing one may import torch."""

from __future__ import annotations

import importlib

from tangram.stages.base import StageSpec

STAGE_ORDER: tuple[str, ...] = (
    "tracking",
    "segmentation",
    "reconstruction",
    "scene_graph",
    "planning",
    "simulation",
)

# Stage names as people read them (reports, the GUI, summaries), and the short forms for narrow
# table columns (the batch report); one entry per stage of STAGE_ORDER, in that order.
STAGE_TITLES: dict[str, str] = {
    "tracking": "Tracking",
    "segmentation": "Segmentation",
    "reconstruction": "Reconstruction",
    "scene_graph": "Scene graph",
    "planning": "Planning",
    "simulation": "Simulation",
}
STAGE_SHORT_TITLES: dict[str, str] = {
    "tracking": "Track", "segmentation": "Segm.", "reconstruction": "Recon.", "scene_graph": "Graph",
    "planning": "Plan", "simulation": "Sim.",
}

# --mode NAME runs the pipeline up to and including that stage.
MODES: dict[str, str] = {
    "track": "tracking",
    "segment": "segmentation",
    "reconstruct": "reconstruction",
    "graph": "scene_graph",
    "plan": "planning",
    "simulate": "simulation",
    "full": "simulation",
}


def available_stages() -> tuple[str, ...]:
    """Stages whose module exists in this installation."""
    return tuple(name for name in STAGE_ORDER if importlib.util.find_spec(f"tangram.stages.{name}"))


def get_stage(name: str) -> StageSpec:
    if name not in STAGE_ORDER:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_ORDER)}")
    return importlib.import_module(f"tangram.stages.{name}").STAGE

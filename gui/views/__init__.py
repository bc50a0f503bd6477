"""Result views: one tab per stage result, each filled when its stage finishes."""

from gui.views.base import ResultView
from gui.views.cloud_view import CloudView
from gui.views.graph_view import GraphView
from gui.views.plan_view import PlanView
from gui.views.simulation_view import SimulationView
from gui.views.tracks_view import TracksView

__all__ = ["CloudView", "GraphView", "PlanView", "ResultView", "SimulationView", "TracksView", "all_views"]


def all_views() -> list[ResultView]:
    """The views in pipeline order, as the main window shows them."""
    return [TracksView(), CloudView(), GraphView(), PlanView(), SimulationView()]

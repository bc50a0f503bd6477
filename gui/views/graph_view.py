"""The 3D scene graph drawn as a graph: objects placed where they stand on the table (top view),
edges labelled with their relations, and the same relations listed as text beside it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QCheckBox, QLabel, QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from gui.artefacts import load_scene_graph
from gui.views.base import ResultView

SUPPORT_RELATIONS = frozenset({"on", "supported_by", "inside"})
MAX_SPATIAL_DRAWN = 24


def node_label(graph: nx.MultiDiGraph, node: Any) -> str:
    data = graph.nodes[node]
    if data.get("kind") == "table":
        return "table"
    return f"#{node} {data.get('class_name', '')}".strip()


def graph_layout(graph: nx.MultiDiGraph) -> dict[Any, tuple[float, float]]:
    """Objects at their table-frame (x, y); the table node below them. Without positions: spring."""
    pos = {n: tuple(d["position"][:2]) for n, d in graph.nodes(data=True)
           if d.get("kind") != "table" and len(d.get("position", [])) >= 2}
    if len(pos) < graph.number_of_nodes() - 1 or not pos:
        return nx.spring_layout(nx.Graph(graph), seed=0)
    xy = np.array(list(pos.values()), float)
    span = max(float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1])), 0.2)
    for n, _d in graph.nodes(data=True):
        if n not in pos:
            pos[n] = (float(xy[:, 0].mean()), float(xy[:, 1].min() - 0.35 * span))
    return pos


class GraphView(ResultView):
    title = "Scene graph"
    stages = ("scene_graph",)

    def build_content(self) -> QWidget:
        self.figure = Figure(figsize=(6, 5), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.spatial_box = QCheckBox("Draw left/right/front/behind/near edges")
        self.spatial_box.setChecked(True)
        self.spatial_box.toggled.connect(self._redraw)
        self.relations = QTreeWidget()
        self.relations.setHeaderLabels(["subject", "relation", "object"])
        self.relations.setRootIsDecorated(False)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.canvas)
        splitter.addWidget(self.relations)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([600, 300])
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self.info)
        layout.addWidget(self.spatial_box)
        layout.addWidget(splitter, 1)
        self.graph: nx.MultiDiGraph | None = None
        return content

    def load(self, run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
        self.graph = load_scene_graph(run_dir / "scene_graph")
        self._fill_relations(self.graph)
        objects = [n for n, d in self.graph.nodes(data=True) if d.get("kind") != "table"]
        spatial = sum(1 for *_, d in self.graph.edges(data=True) if d.get("relation") not in SUPPORT_RELATIONS)
        self.info.setText(f"{len(objects)} objects, {self.graph.number_of_edges()} relations ({spatial} spatial). "
                          "Objects are placed at their position on the table, seen from above; the list "
                          "beside the drawing has every relation.")
        self.spatial_box.blockSignals(True)
        self.spatial_box.setChecked(spatial <= MAX_SPATIAL_DRAWN)  # hundreds of labelled arrows are unreadable
        self.spatial_box.blockSignals(False)
        self._redraw()

    def _fill_relations(self, graph: nx.MultiDiGraph) -> None:
        self.relations.clear()
        edges = sorted(graph.edges(data=True), key=lambda e: (str(e[0]), str(e[2].get("relation"))))
        for u, v, data in edges:
            relation = str(data.get("relation", "?"))
            item = QTreeWidgetItem([node_label(graph, u), relation, node_label(graph, v)])
            self.relations.addTopLevelItem(item)
        for col in range(3):
            self.relations.resizeColumnToContents(col)

    def _redraw(self) -> None:
        if self.graph is None:
            return
        graph = self.graph
        self.figure.clear()
        ax = self.figure.add_subplot()
        pos = graph_layout(graph)
        labels = _edge_labels(graph, spatial=self.spatial_box.isChecked())
        edges = list(labels)
        nx.draw_networkx_edges(graph, pos, edgelist=edges, ax=ax, arrows=True, arrowsize=14,
                               edge_color="0.45", connectionstyle="arc3,rad=0.12", node_size=900)
        nx.draw_networkx_edge_labels(graph, pos, edge_labels=labels, ax=ax, font_size=7,
                                     connectionstyle="arc3,rad=0.12", bbox={"alpha": 0.7, "lw": 0, "fc": "w"})
        colours = [_node_colour(graph, n) for n in graph]
        nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=900, node_color=colours, edgecolors="0.2")
        names = {n: node_label(graph, n) for n in graph}
        nx.draw_networkx_labels(graph, pos, labels=names, ax=ax, font_size=8)
        ax.set_axis_off()
        ax.margins(0.15)
        self.canvas.draw_idle()

    def clear(self) -> None:
        self.graph = None
        self.figure.clear()
        self.relations.clear()


def _edge_labels(graph: nx.MultiDiGraph, spatial: bool) -> dict[tuple[Any, Any], str]:
    """One label per directed node pair: its relations joined (a MultiDiGraph has one edge each)."""
    grouped: dict[tuple[Any, Any], list[str]] = defaultdict(list)
    for u, v, data in graph.edges(data=True):
        relation = str(data.get("relation", "?"))
        if spatial or relation in SUPPORT_RELATIONS:
            grouped[(u, v)].append(relation)
    return {pair: ", ".join(sorted(set(rels))) for pair, rels in grouped.items()}


def _node_colour(graph: nx.MultiDiGraph, node: Any) -> tuple[float, float, float]:
    data = graph.nodes[node]
    if data.get("kind") == "table":
        return (0.8, 0.7, 0.55)
    colour = data.get("color")
    if isinstance(colour, list | tuple) and len(colour) >= 3:
        # light tint of the object's own colour so the black label stays readable
        return tuple(0.45 + 0.55 * min(max(float(c) / 255.0, 0.0), 1.0) for c in colour[:3])  # type: ignore[return-value]
    return (0.7, 0.8, 0.95)

"""The 3D scene graph: a networkx MultiDiGraph of the table, the objects and their relations.

Nodes: "table" {kind, size [x, y], position [0, 0, 0], ...} and one node per object, its id the
track id {kind: "object", class_name, position (box centre), size, yaw, color, confidence, support,
observations, ...}. Edges u -> v carry `relation` (see `tangram.geometry.relations`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from tangram.fileio import atomic_path, read_json, write_json
from tangram.geometry.relations import TABLE, Box, Relation, compute_relations

FORMAT = "tangram.scene_graph/1"


def boxes_from_objects(objects: Iterable[dict[str, Any]]) -> list[Box]:
    return [
        Box(
            int(o["track_id"]),
            np.array(o["box"]["center"], float),
            np.array(o["box"]["size"], float),
            float(o["box"].get("yaw", 0.0)),
            str(o.get("class_name", "")),
            o.get("kind") == "furniture",
        )
        for o in objects
    ]


def table_box(table: dict[str, Any]) -> Box | None:
    """The table top's extent as a box (rectangle of its points), None when unknown."""
    size = table.get("rect_size")
    if not size or min(size) <= 0:
        return None
    centre = [*[float(v) for v in table.get("rect_center", [0.0, 0.0])], 0.0]
    return Box(-1, np.array(centre), np.array([float(size[0]), float(size[1]), 0.0]), float(table.get("rect_yaw", 0.0)))


def build_graph(
    objects: Sequence[dict[str, Any]],
    table: dict[str, Any],
    near_factor: float,
    contact_tol: float,
    meta: dict[str, Any] | None = None,
) -> nx.MultiDiGraph:
    """Graph from objects.json entries and the table description (size, rect_size, rect_yaw)."""
    graph = nx.MultiDiGraph(
        format=FORMAT, frame="table: x right, y away from the first camera, z up, metres", **(meta or {})
    )
    graph.add_node(
        TABLE,
        kind="table",
        class_name="table",
        position=[0.0, 0.0, 0.0],
        size=[float(v) for v in table.get("size", [0.0, 0.0])],
        rect_size=[float(v) for v in table.get("rect_size", table.get("size", [0.0, 0.0]))],
        rect_yaw=float(table.get("rect_yaw", 0.0)),
        rect_center=[float(v) for v in table.get("rect_center", [0.0, 0.0])],
        floor_z=None if table.get("floor_z") is None else float(table["floor_z"]),
    )
    for o in objects:
        graph.add_node(int(o["track_id"]), **_object_attrs(o))
    for u, rel, v in compute_relations(boxes_from_objects(objects), near_factor, contact_tol, table_box(table)):
        graph.add_edge(u, v, key=rel, relation=rel)
    return graph


def _object_attrs(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "object",
        "class_name": o["class_name"],
        "position": [float(v) for v in o["box"]["center"]],
        "size": [float(v) for v in o["box"]["size"]],
        "yaw": float(o["box"].get("yaw", 0.0)),
        "centroid": [float(v) for v in o.get("centroid", o["box"]["center"])],
        "color": [int(v) for v in o.get("color", [128, 128, 128])],
        "confidence": float(o.get("confidence", 0.0)),
        "support": int(o.get("support", 0)),
        "observations": int(o.get("observations", 0)),
        "fallback": bool(o.get("fallback", False)),
        "method": str(o.get("method", "")),
        "furniture": o.get("kind") == "furniture",
        "placement": str(o.get("placement", "")),
        "members": [int(m) for m in o.get("members", [o["track_id"]])],
        "source": str(o.get("source", "detector")),  # "geometry": found from the 3D points, no detector class
    }


def relation_set(graph: nx.MultiDiGraph) -> set[Relation]:
    return {(u, d["relation"], v) for u, v, d in graph.edges(data=True)}


def write_node_link(graph: nx.MultiDiGraph, path: Path) -> None:
    write_json(path, nx.node_link_data(graph, edges="edges"))


def read_node_link(path: Path) -> nx.MultiDiGraph:
    return nx.node_link_graph(read_json(path), directed=True, multigraph=True, edges="edges")


def write_graphml(graph: nx.MultiDiGraph, path: Path) -> None:
    """GraphML holds only scalars: lists become JSON strings (e.g. position "[0.1, 0.2, 0.05]")."""
    flat = nx.MultiDiGraph()
    flat.graph.update({k: _scalar(v) for k, v in graph.graph.items()})
    for node, data in graph.nodes(data=True):
        flat.add_node(str(node), **{k: _scalar(v) for k, v in data.items()})
    for u, v, key, data in graph.edges(keys=True, data=True):
        flat.add_edge(str(u), str(v), key=key, **{k: _scalar(val) for k, val in data.items()})
    with atomic_path(path) as tmp:
        nx.write_graphml(flat, tmp)


def _scalar(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x))

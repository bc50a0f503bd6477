"""Stage `scene_graph`: objects in the metric table frame -> a networkx graph of spatial relations.

Reads reconstruction/objects.json, cameras.json and points.ply. Writes into `scene_graph/`:
- `scene_graph.json`: networkx node-link data (`nx.node_link_data(G, edges="edges")`) of a
  MultiDiGraph: node "table" and one node per object (id = track id), edges with `relation` in
  on, supported_by, inside, near, left_of, right_of, in_front_of, behind (see
  `tangram.geometry.relations` for the rules and thresholds: `on` the table needs contact with
  its top and a footprint over its extent; furniture, kind "furniture" in objects.json, stands on
  the floor and is never on the table).
  Object nodes carry `graspable` and `grasp_reason` (the Panda's verdict from the measured size).
- `scene_graph.graphml`: the same graph for Gephi/yEd/Cytoscape (lists as JSON strings).
- `top_down.png`: the table seen from above with labelled objects and relations.
- `scene.ply`: the sparse cloud plus one coloured box per object (MeshLab, Blender, CloudCompare).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from tangram.errors import StageFailed
from tangram.fileio import read_json
from tangram.geometry.export import read_ply_vertices, write_scene_ply
from tangram.geometry.graph import build_graph, write_graphml, write_node_link
from tangram.geometry.plots import plot_top_down
from tangram.planning.world import world_from_scene_graph
from tangram.stages.base import StageContext, StageOutcome, StageSpec


def run(ctx: StageContext) -> StageOutcome:
    cfg = ctx.config.scene_graph
    rec_dir = ctx.upstream_dir("reconstruction")
    objects, cameras = _read_reconstruction(rec_dir)
    ctx.progress(0, 4, "relations")
    meta = {"scale": cameras.get("scale", {}), "objects_source": "reconstruction/objects.json"}
    graph = build_graph(objects, cameras.get("table", {}), cfg.near_factor, cfg.contact_tolerance, meta)
    _annotate_graspability(graph)
    write_node_link(graph, ctx.out_dir / "scene_graph.json")
    write_graphml(graph, ctx.out_dir / "scene_graph.graphml")
    ctx.progress(1, 4, "top-down plot")
    poses = [np.array(f["world_from_camera"], float) for f in cameras.get("frames", [])]
    plot_top_down(graph, ctx.out_dir / "top_down.png", poses)
    ctx.progress(2, 4, "3D scene file")
    _write_scene(rec_dir, ctx.out_dir / "scene.ply", objects)
    ctx.progress(4, 4, "done")
    counts: dict[str, int] = {}
    for _, _, d in graph.edges(data=True):
        counts[d["relation"]] = counts.get(d["relation"], 0) + 1
    return StageOutcome(
        "networkx", {"objects": len(objects), "edges": graph.number_of_edges(), "relations": counts}
    )


def _annotate_graspability(graph) -> None:
    """Each object node gets `graspable` and `grasp_reason`: the Panda's verdict from the measured
    size and the neighbours (`tangram.planning.world.World.graspability`)."""
    world = world_from_scene_graph(nx.node_link_data(graph, edges="edges"))
    for oid in world.objects:
        verdict = world.graspability(oid)
        graph.nodes[oid]["graspable"] = verdict["graspable"]
        graph.nodes[oid]["grasp_reason"] = verdict["reason"]


def _read_reconstruction(rec_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    try:
        objects = read_json(rec_dir / "objects.json")["objects"]
        cameras = read_json(rec_dir / "cameras.json")
    except (OSError, ValueError, KeyError) as exc:
        raise StageFailed(f"reconstruction output unreadable ({exc.__class__.__name__}: {exc})") from exc
    return objects, cameras


def _write_scene(rec_dir: Path, path: Path, objects: list[dict[str, Any]]) -> None:
    ply = rec_dir / "points.ply"
    xyz, rgb = read_ply_vertices(ply) if ply.is_file() else (np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    boxes = [
        (o["box"]["center"], o["box"]["size"], o["box"].get("yaw", 0.0), o.get("color", [200, 200, 200]))
        for o in objects
    ]
    write_scene_ply(path, xyz, rgb, boxes)


STAGE = StageSpec(
    name="scene_graph",
    requires=("reconstruction",),
    config_sections=("scene_graph",),
    run=run,
    offloadable=False,
    uses_input=False,
)

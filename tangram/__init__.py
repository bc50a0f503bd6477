"""TANGRAM: tabletop video -> tracks, masks, 3D scene graph, plan and robot simulation."""

__version__ = "0.1.0"

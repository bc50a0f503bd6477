"""Procedural assets of the sample scene: textures, meshes and the URDFs that use them."""

from tangram.assets.meshes import BowlProfile
from tangram.assets.urdfs import (
    TableSpec,
    write_bowl_urdf,
    write_room_urdf,
    write_table_urdf,
    write_teddy_urdf,
    write_tennis_ball_urdf,
)

__all__ = [
    "BowlProfile",
    "TableSpec",
    "write_bowl_urdf",
    "write_room_urdf",
    "write_table_urdf",
    "write_teddy_urdf",
    "write_tennis_ball_urdf",
]

"""Procedural assets of the sample scene: textures, meshes and the URDFs that use them.

Each `write_*` function writes self-contained files into a folder (OBJ + texture + URDF), so any
pybullet client, the simulation stage included, can load the very same bowl, table and room with
`p.loadURDF(path)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tangram.assets.meshes import (
    BowlProfile,
    bowl_collision_boxes,
    bowl_mesh,
    box_mesh,
    room_mesh,
    write_obj,
)
from tangram.assets.textures import terrazzo_texture, value_noise, wall_texture, wood_texture

__all__ = [
    "BowlProfile",
    "TableSpec",
    "write_bowl_urdf",
    "write_room_urdf",
    "write_table_urdf",
]


def _fmt(values: tuple[float, ...] | list[float]) -> str:
    return " ".join(f"{float(v):.6f}" for v in values)


def _save_rgb(path: Path, rgb: np.ndarray) -> None:
    # PNG (lossless): the exact texels are part of the seed's deterministic output.
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"cannot write texture {path}")


def _inertial(mass: float, size: tuple[float, float, float], com: tuple[float, float, float]) -> str:
    """Inertia of a solid box of the body's size: a plausible tensor, unlike pybullet_data's unit ones."""
    sx, sy, sz = size
    ixx, iyy, izz = (mass / 12 * (b * b + c * c) for b, c in ((sy, sz), (sx, sz), (sx, sy)))
    return (f'<inertial><origin xyz="{_fmt(com)}"/><mass value="{mass:.6f}"/>'
            f'<inertia ixx="{ixx:.3e}" ixy="0" ixz="0" iyy="{iyy:.3e}" iyz="0" izz="{izz:.3e}"/></inertial>')


def write_bowl_urdf(folder: Path, rng: np.random.Generator, profile: BowlProfile = BowlProfile(),
                    mass: float = 0.3) -> Path:
    """A ceramic bowl: glazed lathe mesh with a subtly mottled texture, hollow box-compound collision."""
    folder.mkdir(parents=True, exist_ok=True)
    write_obj(folder / "bowl.obj", bowl_mesh(profile), "bowl")
    glaze = value_noise(rng, 256, octaves=5, base_cells=4)[..., None]
    base = np.array([232, 236, 240], np.float32)  # white-blue porcelain
    rim = np.array([60, 90, 160], np.float32)  # a blue band near the rim, as on many bowls
    tex = base * (0.9 + 0.1 * glaze)
    tex[int(256 * 0.47):int(256 * 0.53)] = rim  # v of the rim in bowl_mesh's section parametrisation
    _save_rgb(folder / "bowl.png", tex.astype(np.uint8))
    collisions = [f'<collision><origin xyz="0 0 {profile.wall / 2:.6f}"/><geometry><cylinder '
                  f'radius="{profile.foot_radius:.6f}" length="{profile.wall:.6f}"/></geometry></collision>']
    for size, xyz, rpy in bowl_collision_boxes(profile):
        collisions.append(f'<collision><origin xyz="{_fmt(xyz)}" rpy="{_fmt(rpy)}"/>'
                          f'<geometry><box size="{_fmt(size)}"/></geometry></collision>')
    d = 2 * profile.rim_radius
    urdf = f"""<?xml version="1.0"?>
<robot name="bowl">
  <link name="base_link">
    <contact><lateral_friction value="0.8"/></contact>
    {_inertial(mass, (d, d, profile.height), (0.0, 0.0, profile.height * 0.35))}
    <visual><geometry><mesh filename="bowl.obj"/></geometry>
      <material name="porcelain"><color rgba="1 1 1 1"/><texture filename="bowl.png"/></material></visual>
    {chr(10).join('    ' + c for c in collisions).strip()}
  </link>
</robot>
"""
    path = folder / "bowl.urdf"
    path.write_text(urdf)
    return path


@dataclass(frozen=True)
class TableSpec:
    size: tuple[float, float] = (1.2, 0.8)  # top, metres along world x and y
    top_z: float = 0.75  # height of the top surface above the floor
    thickness: float = 0.04
    leg: float = 0.06


def write_table_urdf(folder: Path, rng: np.random.Generator, spec: TableSpec = TableSpec()) -> Path:
    """A static wooden table; its top's UVs cover the procedural wood texture exactly once."""
    folder.mkdir(parents=True, exist_ok=True)
    sx, sy = spec.size
    write_obj(folder / "table_top.obj", box_mesh((sx, sy, spec.thickness)), "table_top")
    _save_rgb(folder / "table_top.png", wood_texture(rng, 1024))
    top_centre = spec.top_z - spec.thickness / 2
    leg_len = spec.top_z - spec.thickness
    legs = []
    for x in (-1, 1):
        for y in (-1, 1):
            xyz = (x * (sx / 2 - 0.08), y * (sy / 2 - 0.08), leg_len / 2)
            legs.append(f'<visual><origin xyz="{_fmt(xyz)}"/><geometry><box size="{spec.leg} {spec.leg} '
                        f'{leg_len:.4f}"/></geometry><material name="leg"><color rgba="0.35 0.22 0.12 1"/>'
                        f'</material></visual>')
    urdf = f"""<?xml version="1.0"?>
<robot name="table">
  <link name="base_link">
    <contact><lateral_friction value="0.9"/></contact>
    <inertial><mass value="0"/><inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/></inertial>
    <visual><origin xyz="0 0 {top_centre:.6f}"/><geometry><mesh filename="table_top.obj"/></geometry>
      <material name="wood"><color rgba="1 1 1 1"/><texture filename="table_top.png"/></material></visual>
    {chr(10).join('    ' + v for v in legs).strip()}
    <collision><origin xyz="0 0 {top_centre:.6f}"/><geometry><box size="{sx} {sy} {spec.thickness}"/>
      </geometry></collision>
  </link>
</robot>
"""
    path = folder / "table.urdf"
    path.write_text(urdf)
    return path


def write_room_urdf(folder: Path, rng: np.random.Generator, half_extent: float = 2.5,
                    height: float = 2.6) -> Path:
    """A static room: textured floor (collision plane at z=0) and four walls, one atlas texture."""
    folder.mkdir(parents=True, exist_ok=True)
    write_obj(folder / "room.obj", room_mesh(half_extent, height), "room")
    atlas = np.concatenate([terrazzo_texture(rng, 2048), wall_texture(rng, 2048)], axis=1)
    _save_rgb(folder / "room.png", atlas)
    urdf = f"""<?xml version="1.0"?>
<robot name="room">
  <link name="base_link">
    <contact><lateral_friction value="0.8"/></contact>
    <inertial><mass value="0"/><inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/></inertial>
    <visual><geometry><mesh filename="room.obj"/></geometry>
      <material name="room"><color rgba="1 1 1 1"/><texture filename="room.png"/></material></visual>
    <collision><origin xyz="0 0 -0.05"/><geometry><box size="{2 * half_extent} {2 * half_extent} 0.1"/>
      </geometry></collision>
  </link>
</robot>
"""
    path = folder / "room.urdf"
    path.write_text(urdf)
    return path

"""URDFs of the sample scene's generated objects: bowl, teddy bear, tennis ball, table and room.

Each `write_*` function writes self-contained files into a folder (URDF + OBJ + .mtl + PNG
texture), so any pybullet client, the simulation stage's included, loads the very same object with
`p.loadURDF(path)`. Textures come from the given numpy Generator: same seed, same bytes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
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
    uv_sphere,
    write_obj,
)
from tangram.assets.textures import (
    fur_texture,
    tennis_ball_texture,
    terrazzo_texture,
    value_noise,
    wall_texture,
    wood_texture,
)


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


def write_bowl_urdf(folder: Path, rng: np.random.Generator, profile: BowlProfile | None = None,
                    mass: float = 0.3) -> Path:
    """A ceramic bowl: glazed lathe mesh with a subtly mottled texture, hollow box-compound collision."""
    profile = profile or BowlProfile()
    folder.mkdir(parents=True, exist_ok=True)
    write_obj(folder / "bowl.obj", bowl_mesh(profile), "bowl", texture="bowl.png")
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
      <material name="porcelain"><color rgba="1 1 1 1"/></material></visual>
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
    write_obj(folder / "table_top.obj", box_mesh((sx, sy, spec.thickness)), "table_top",
              texture="table_top.png")
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
      <material name="wood"><color rgba="1 1 1 1"/></material></visual>
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
    write_obj(folder / "room.obj", room_mesh(half_extent, height), "room", texture="room.png")
    atlas = np.concatenate([terrazzo_texture(rng, 2048), wall_texture(rng, 2048)], axis=1)
    _save_rgb(folder / "room.png", atlas)
    urdf = f"""<?xml version="1.0"?>
<robot name="room">
  <link name="base_link">
    <contact><lateral_friction value="0.8"/></contact>
    <inertial><mass value="0"/><inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/></inertial>
    <visual><geometry><mesh filename="room.obj"/></geometry>
      <material name="room"><color rgba="1 1 1 1"/></material></visual>
    <collision><origin xyz="0 0 -0.05"/><geometry><box size="{2 * half_extent} {2 * half_extent} 0.1"/>
      </geometry></collision>
  </link>
</robot>
"""
    path = folder / "room.urdf"
    path.write_text(urdf)
    return path


def _write_urdf(path: Path, name: str, link_body: str) -> Path:
    path.write_text(f'<?xml version="1.0"?>\n<robot name="{name}">\n  <link name="base_link">\n{link_body}'
                    f'  </link>\n</robot>\n')
    return path


def _ellipsoid(mesh: str, xyz: tuple[float, float, float], radii: tuple[float, float, float]) -> str:
    return (f'    <visual><origin xyz="{_fmt(xyz)}"/><geometry>'
            f'<mesh filename="{mesh}" scale="{_fmt(radii)}"/>'
            f'</geometry></visual>\n')


# A seated teddy bear facing +x, 15 cm tall, built from textured ellipsoids: (material, centre, radii).
# pybullet_data's teddy_vhacd is a lumpy convex decomposition the COCO detector never took for a
# teddy bear (0 of 30 frames, measured); a round head with ears, muzzle, eyes and nose it does.
_TEDDY_PARTS: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("fur", (0.0, 0.0, 0.05), (0.036, 0.043, 0.05)),  # body
    ("fur", (0.005, 0.0, 0.118), (0.035, 0.037, 0.033)),  # head
    ("fur", (0.0, 0.027, 0.146), (0.012, 0.013, 0.013)),  # ears
    ("fur", (0.0, -0.027, 0.146), (0.012, 0.013, 0.013)),
    ("tan", (0.006, 0.027, 0.147), (0.007, 0.008, 0.008)),  # inner ears
    ("tan", (0.006, -0.027, 0.147), (0.007, 0.008, 0.008)),
    ("tan", (0.032, 0.0, 0.108), (0.014, 0.018, 0.013)),  # muzzle
    ("dark", (0.045, 0.0, 0.113), (0.006, 0.008, 0.005)),  # nose
    ("dark", (0.03, 0.014, 0.127), (0.005, 0.005, 0.005)),  # eyes
    ("dark", (0.03, -0.014, 0.127), (0.005, 0.005, 0.005)),
    ("fur", (0.014, 0.042, 0.062), (0.015, 0.014, 0.03)),  # arms
    ("fur", (0.014, -0.042, 0.062), (0.015, 0.014, 0.03)),
    ("tan", (0.02, 0.0, 0.048), (0.02, 0.03, 0.034)),  # belly
    ("fur", (0.036, 0.024, 0.016), (0.034, 0.017, 0.016)),  # legs
    ("fur", (0.036, -0.024, 0.016), (0.034, 0.017, 0.016)),
    ("tan", (0.068, 0.024, 0.018), (0.004, 0.012, 0.012)),  # foot pads
    ("tan", (0.068, -0.024, 0.018), (0.004, 0.012, 0.012)),
)


def write_teddy_urdf(folder: Path, rng: np.random.Generator, mass: float = 0.15) -> Path:
    """A plush teddy bear (15 x 10 x 10 cm); collision: spheres for body and head, a box for the legs.

    Its head (7 cm wide) fits a Franka Panda's 8 cm gripper opening.
    """
    folder.mkdir(parents=True, exist_ok=True)
    materials = {"fur": (158, 107, 56), "tan": (224, 189, 140), "dark": (22, 18, 16)}
    for name, colour in materials.items():
        write_obj(folder / f"teddy_{name}.obj", uv_sphere(1.0, 12, 18), f"teddy_{name}",
                  texture=f"teddy_{name}.png")
        _save_rgb(folder / f"teddy_{name}.png", fur_texture(rng, colour, 128))
    visuals = "".join(_ellipsoid(f"teddy_{m}.obj", xyz, radii) for m, xyz, radii in _TEDDY_PARTS)
    collisions = (
        '    <collision><origin xyz="0 0 0.05"/><geometry><sphere radius="0.043"/></geometry></collision>\n'
        '    <collision><origin xyz="0.005 0 0.118"/><geometry><sphere radius="0.035"/></geometry>'
        '</collision>\n'
        '    <collision><origin xyz="0.036 0 0.016"/><geometry><box size="0.07 0.08 0.032"/></geometry>'
        '</collision>\n'
    )
    body = ('    <contact><lateral_friction value="0.9"/></contact>\n    '
            + _inertial(mass, (0.1, 0.1, 0.15), (0.012, 0.0, 0.055)) + "\n" + visuals + collisions)
    return _write_urdf(folder / "teddy.urdf", "teddy_bear", body)


def write_tennis_ball_urdf(folder: Path, rng: np.random.Generator, diameter: float = 0.067,
                           mass: float = 0.058) -> Path:
    """A regulation-size tennis ball (6.7 cm, 58 g) with its felt and seam.

    Chosen over pybullet_data's soccer ball: scaled to a graspable 7-10 cm, the soccer ball was
    found as "sports ball" in 2-9 of 18 test views, the tennis ball in 12-14 (measured).
    """
    folder.mkdir(parents=True, exist_ok=True)
    r = diameter / 2
    write_obj(folder / "tennis_ball.obj", uv_sphere(1.0, 20, 32), "tennis_ball", texture="tennis_ball.png")
    _save_rgb(folder / "tennis_ball.png", tennis_ball_texture(rng, 512))
    inertia = 2 / 3 * mass * r * r  # a thin-walled hollow sphere
    body = (
        '    <contact><lateral_friction value="0.7"/><rolling_friction value="0.001"/>'
        '<spinning_friction value="0.001"/></contact>\n'
        f'    <inertial><mass value="{mass}"/>'
        f'<inertia ixx="{inertia:.3e}" ixy="0" ixz="0" iyy="{inertia:.3e}" '
        f'iyz="0" izz="{inertia:.3e}"/></inertial>\n'
        f'    <visual><geometry><mesh filename="tennis_ball.obj" scale="{r} {r} {r}"/></geometry></visual>\n'
        f'    <collision><geometry><sphere radius="{r}"/></geometry></collision>\n'
    )
    return _write_urdf(folder / "tennis_ball.urdf", "tennis_ball", body)


def _rpy_matrix(rpy: tuple[float, float, float]) -> np.ndarray:
    """URDF's fixed-axis roll-pitch-yaw: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = rpy
    rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _obj_vertices(path: Path) -> np.ndarray:
    lines = path.read_text(errors="replace").splitlines()
    rows = [line.split()[1:4] for line in lines if line.startswith("v ")]
    return np.array(rows, float).reshape(-1, 3)


def _primitive_points(geometry: ET.Element) -> np.ndarray | None:
    sphere_dirs = np.array([[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)], float)
    if (el := geometry.find("box")) is not None:
        half = np.array(el.get("size", "0 0 0").split(), float) / 2
        return np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * half
    if (el := geometry.find("sphere")) is not None:
        return sphere_dirs * float(el.get("radius", "0"))  # spans the sphere's AABB under any rotation
    if (el := geometry.find("cylinder")) is not None:
        r, half_len = float(el.get("radius", "0")), float(el.get("length", "0")) / 2
        return np.array([[x * r, y * r, z * half_len] for x, y, z in sphere_dirs])
    return None


def visual_points(urdf: Path, global_scale: float = 1.0) -> np.ndarray:
    """Points (N x 3, metres, URDF link frame) spanning the base link's visual geometry.

    Their bounding box is the object's true size: pybullet's getAABB works on the collision
    shapes and is loose for compounds (18 cm bowl: 26 cm AABB) and padded by contact margins.
    """
    root = ET.parse(urdf).getroot()
    chunks = []
    for visual in root.iter("visual"):
        origin = visual.find("origin")
        xyz = np.array((origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split(), float)
        rpy = np.array((origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split(), float)
        geometry = visual.find("geometry")
        if geometry is None:
            continue
        mesh = geometry.find("mesh")
        if mesh is not None:
            scale = np.array(mesh.get("scale", "1 1 1").split(), float)
            points = _obj_vertices(urdf.parent / mesh.get("filename", "")) * scale
        else:
            points = _primitive_points(geometry)
            if points is None:
                continue
        chunks.append(points @ _rpy_matrix(tuple(rpy)).T + xyz)
    if not chunks:
        raise ValueError(f"{urdf} has no visual geometry")
    return np.concatenate(chunks) * global_scale

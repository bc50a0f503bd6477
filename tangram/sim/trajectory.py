"""The simulation's motion, sampled while the physics steps: `simulation/trajectory.npz`.

Every `EVERY` physics steps (240 Hz / 8 = 30 Hz) and once more at the end, one sample of the
Panda's joint positions, its link frames and every object's base pose, all in the table frame
(the simulation's world), metres, quaternions x, y, z, w. Object poses are pybullet's base frames,
the same as result.json's final_poses. Arrays (np.load(path) needs no pickle):

- `t` (N,): simulation seconds from the first physics step (settling included).
- `joint_names` (J,) and `joint_positions` (N, J): the 7 arm joints and 2 finger joints (rad, m).
- `link_names` (L,), `link_positions` (N, L, 3), `link_quats` (N, L, 4): the base link
  (panda_link0) and every other URDF link (pybullet's link frames).
- `object_ids` (M,), `object_positions` (N, M, 3), `object_quats` (N, M, 4).
- `action_index`, `action_start`, `action_end` (A,) sim seconds, `action_text`, `action_success`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tangram.fileio import atomic_path

TRAJECTORY_NAME = "trajectory.npz"
EVERY = 8  # physics steps between samples: 30 Hz at 240 Hz


class TrajectoryLog:
    """Collects samples from a step hook; `save` writes the .npz."""

    def __init__(self, client: Any, arm_id: int, joints: tuple[int, ...], bodies: dict[int, int],
                 steps: list[int], time_step: float) -> None:
        self.p = client
        self.arm = arm_id
        self.joints = list(joints)
        self.joint_names = [client.getJointInfo(arm_id, j)[1].decode() for j in self.joints]
        self.links = list(range(client.getNumJoints(arm_id)))
        base = client.getBodyInfo(arm_id)[0].decode() or "base"
        self.link_names = [base, *(client.getJointInfo(arm_id, j)[12].decode() for j in self.links)]
        self.bodies = dict(sorted(bodies.items()))
        self.steps = steps
        self.dt = time_step
        self.t: list[float] = []
        self.q: list[list[float]] = []
        self.link_pos: list[np.ndarray] = []
        self.link_quat: list[np.ndarray] = []
        self.obj_pos: list[np.ndarray] = []
        self.obj_quat: list[np.ndarray] = []
        self.actions: list[tuple[int, float, float, str, bool]] = []
        self._last = -1

    @property
    def now(self) -> float:
        return self.steps[0] * self.dt

    def on_steps(self, n: int) -> None:
        if self.steps[0] % EVERY == 0:
            self.sample()

    def sample(self) -> None:
        if self.steps[0] == self._last:
            return
        self._last = self.steps[0]
        p = self.p
        self.t.append(self.now)
        self.q.append([s[0] for s in p.getJointStates(self.arm, self.joints)])
        base_pos, base_quat = p.getBasePositionAndOrientation(self.arm)
        states = p.getLinkStates(self.arm, self.links, computeForwardKinematics=True)
        self.link_pos.append(np.array([base_pos, *(s[4] for s in states)], float))
        self.link_quat.append(np.array([base_quat, *(s[5] for s in states)], float))
        poses = [p.getBasePositionAndOrientation(b) for b in self.bodies.values()]
        self.obj_pos.append(np.array([pos for pos, _ in poses], float).reshape(-1, 3))
        self.obj_quat.append(np.array([q for _, q in poses], float).reshape(-1, 4))

    def action(self, index: int, start: float, end: float, text: str, success: bool) -> None:
        self.actions.append((index, start, end, text, success))

    def save(self, path: Path) -> dict[str, Any]:
        """Write the .npz (atomically); returns result.json's `trajectory` entry."""
        self.sample()
        m = len(self.bodies)
        arrays = {
            "t": np.array(self.t, float),
            "joint_names": np.array(self.joint_names, str),
            "joint_positions": np.array(self.q, float),
            "link_names": np.array(self.link_names, str),
            "link_positions": np.array(self.link_pos, float),
            "link_quats": np.array(self.link_quat, float),
            "object_ids": np.array(list(self.bodies), np.int64),
            "object_positions": np.array(self.obj_pos, float).reshape(-1, m, 3),
            "object_quats": np.array(self.obj_quat, float).reshape(-1, m, 4),
            "action_index": np.array([a[0] for a in self.actions], np.int64),
            "action_start": np.array([a[1] for a in self.actions], float),
            "action_end": np.array([a[2] for a in self.actions], float),
            "action_text": np.array([a[3] for a in self.actions], str),
            "action_success": np.array([a[4] for a in self.actions], bool),
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            np.savez_compressed(stream, **arrays)
        return {"path": path.name, "samples": len(self.t), "hz": round(1.0 / (EVERY * self.dt), 3),
                "sim_seconds": round(self.t[-1], 3) if self.t else 0.0}


def load_trajectory(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}

"""A Franka Panda (pybullet_data's URDF) driven by inverse kinematics and joint position motors.

Motions are straight Cartesian segments cut into waypoints; each waypoint's IK solution is sent
to the joint motors and the physics steps until the arm gets there. The gripper is the real
two-finger hand: closing drives both finger joints with a bounded force, so an object is held only
by contact and friction.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np

from tangram.sim.bullet import pybullet_data

ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
EE_LINK = 11  # panda_grasptarget: between the fingertips
LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
RANGES = tuple(u - lo for u, lo in zip(UPPER, LOWER, strict=True))
HOME = (0.0, -0.5, 0.0, -2.3, 0.0, 1.85, math.pi / 4)
ARM_FORCE = 240.0  # N m per joint motor
FINGER_FORCE = 60.0  # N per finger when squeezing
FINGER_OPEN = 0.04  # metres per finger (8 cm opening)
FINGER_FRICTION = 1.5
SPEED = 0.35  # m/s along Cartesian segments
WAYPOINT = 0.01  # metres between IK waypoints


class PandaArm:
    """The arm in one pybullet client; `step` advances physics (and lets the recorder film)."""

    def __init__(
        self,
        client,
        base_xy: tuple[float, float],
        base_yaw: float,
        base_z: float,
        step: Callable[[int], None],
    ) -> None:
        self.p = client
        self.step = step
        path = os.path.join(pybullet_data.getDataPath(), "franka_panda", "panda.urdf")
        orn = client.getQuaternionFromEuler((0.0, 0.0, base_yaw))
        self.id = client.loadURDF(
            path,
            (base_xy[0], base_xy[1], base_z),
            orn,
            useFixedBase=True,
            flags=client.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT,
        )
        self.base_yaw = base_yaw
        self.base = (base_xy[0], base_xy[1])
        self._calibrate()
        for j, q in enumerate(HOME):
            client.resetJointState(self.id, j, q)
        for j in FINGER_JOINTS:
            client.resetJointState(self.id, j, FINGER_OPEN)
            # High friction pads with a friction anchor: the grasp holds by friction, not by glue.
            client.changeDynamics(
                self.id, j, lateralFriction=FINGER_FRICTION, spinningFriction=0.01, frictionAnchor=True
            )
        self.finger_target = FINGER_OPEN
        self.hold_arm(HOME)
        self._fingers(FINGER_OPEN, FINGER_FORCE)

    def _calibrate(self) -> None:
        """Measure, at set-up, how the hand's yaw relates to the finger axis and to joint 7."""
        for j, q in enumerate(HOME):
            self.p.resetJointState(self.id, j, q)
        for j in FINGER_JOINTS:  # open: the finger frames coincide when closed
            self.p.resetJointState(self.id, j, FINGER_OPEN)
        self.home_yaw = self.ee_pose()[1]
        left = np.array(self.p.getLinkState(self.id, FINGER_JOINTS[0], computeForwardKinematics=True)[4])
        right = np.array(self.p.getLinkState(self.id, FINGER_JOINTS[1], computeForwardKinematics=True)[4])
        self.closing_offset = _wrap(math.atan2(left[1] - right[1], left[0] - right[0]) - self.home_yaw)
        self.p.resetJointState(self.id, 6, HOME[6] + 0.3)
        self.wrist_sign = 1.0 if _wrap(self.ee_pose()[1] - self.home_yaw) > 0 else -1.0

    # -- state -------------------------------------------------------------------------------

    def ee_pose(self) -> tuple[np.ndarray, float]:
        state = self.p.getLinkState(self.id, EE_LINK, computeForwardKinematics=True)
        yaw = self.p.getEulerFromQuaternion(state[5])[2]
        return np.array(state[4]), yaw

    def arm_q(self) -> np.ndarray:
        return np.array([s[0] for s in self.p.getJointStates(self.id, ARM_JOINTS)])

    def finger_gap(self) -> float:
        return float(sum(s[0] for s in self.p.getJointStates(self.id, FINGER_JOINTS)))

    # -- low-level commands ----------------------------------------------------------------------

    def hold_arm(self, q: tuple[float, ...] | np.ndarray) -> None:
        self.p.setJointMotorControlArray(
            self.id,
            ARM_JOINTS,
            self.p.POSITION_CONTROL,
            targetPositions=list(q),
            forces=[ARM_FORCE] * 7,
            positionGains=[0.08] * 7,
        )

    def _fingers(self, target: float, force: float) -> None:
        self.finger_target = target
        for j in FINGER_JOINTS:
            self.p.setJointMotorControl2(
                self.id,
                j,
                self.p.POSITION_CONTROL,
                targetPosition=target,
                force=force,
                positionGain=0.3,
                maxVelocity=0.1,
            )

    def ik(self, pos: np.ndarray, yaw: float) -> np.ndarray:
        orn = self.p.getQuaternionFromEuler((math.pi, 0.0, yaw))
        q = self.p.calculateInverseKinematics(
            self.id,
            EE_LINK,
            pos.tolist(),
            orn,
            lowerLimits=LOWER,
            upperLimits=UPPER,
            jointRanges=RANGES,
            restPoses=self._rest(yaw),
            maxNumIterations=200,
            residualThreshold=1e-5,
        )
        return np.array(q[:7])

    def _rest(self, yaw: float) -> list[float]:
        # Null-space bias: the home posture, wrist turned towards the grasp yaw, so IK picks one branch.
        rest = list(HOME)
        rest[6] = float(
            np.clip(HOME[6] + self.wrist_sign * (yaw - self.home_yaw), LOWER[6] + 0.1, UPPER[6] - 0.1)
        )
        return rest

    # -- motions -----------------------------------------------------------------------------

    def settle_arm(self, q: np.ndarray, max_steps: int = 240, tol: float = 2e-3) -> bool:
        self.hold_arm(q)
        for i in range(max_steps):
            self.step(1)
            if i % 4 == 3 and np.max(np.abs(self.arm_q() - q)) < tol:
                return True
        return False

    def move_to(
        self,
        target: np.ndarray,
        yaw: float,
        stop: Callable[[], bool] | None = None,
        speed: float = SPEED,
        straight: bool = False,
    ) -> bool:
        """Move the grasp frame to `target` with the hand pointing down at `yaw`.

        The path is straight in cylindrical coordinates about the base (radius, bearing and height
        change linearly): a vertical move stays vertical, and a transfer sweeps around the base
        instead of cutting past its axis, where IK would whip the first joint round. `straight`
        makes it a Cartesian line (pushing). `stop` is checked after every physics step (guarded
        moves); returns False if it fired.
        """
        start, start_yaw = self.ee_pose()
        r0, a0 = self._polar(start)
        r1, a1 = self._polar(target)
        da = _wrap(a1 - a0)
        dist = float(np.linalg.norm(target - start)) + abs(da) * 0.5 * (r0 + r1) * 0.3
        n = max(1, math.ceil(dist / WAYPOINT))
        steps_per = max(1, round(WAYPOINT / speed * 240))
        dyaw = _wrap(yaw - start_yaw)
        for k in range(1, n + 1):
            t = k / n
            r, a = r0 + (r1 - r0) * t, a0 + da * t
            point = np.array(
                [
                    self.base[0] + r * math.cos(a),
                    self.base[1] + r * math.sin(a),
                    start[2] + (target[2] - start[2]) * t,
                ]
            )
            if straight:
                point = start + (target - start) * t
            self.hold_arm(self.ik(point, start_yaw + dyaw * t))
            for _ in range(steps_per):  # guarded moves check every physics step
                self.step(1)
                if stop is not None and stop():
                    self.hold_arm(self.arm_q())  # stay where the contact happened
                    return False
        self.settle_arm(self.ik(target, yaw), max_steps=120)
        return True

    def _polar(self, point: np.ndarray) -> tuple[float, float]:
        dx, dy = point[0] - self.base[0], point[1] - self.base[1]
        return math.hypot(dx, dy), math.atan2(dy, dx)

    def move_joints(self, q_goal: tuple[float, ...], seconds: float = 1.5) -> None:
        q0 = self.arm_q()
        n = max(1, int(seconds * 60))
        for k in range(1, n + 1):
            self.hold_arm(q0 + (np.array(q_goal) - q0) * (k / n))
            self.step(4)
        self.settle_arm(np.array(q_goal))

    def open(self, steps: int = 90) -> None:
        self._fingers(FINGER_OPEN, FINGER_FORCE)
        self.step(steps)

    def release(self, extra: float = 0.008, steps: int = 60) -> None:
        """Open just enough to free the held object: fully open fingers would push against a
        container's wall or a neighbour, and drag them along when the hand rises."""
        per_finger = self.finger_gap() / 2
        self._fingers(min(FINGER_OPEN, per_finger + extra), FINGER_FORCE)
        self.step(steps)

    def close(self, max_steps: int = 240) -> float:
        """Squeeze until the fingers have stopped for a while; returns the final joint gap (metres)."""
        self._fingers(0.0, FINGER_FORCE)
        last, still = self.finger_gap(), 0
        for _ in range(max_steps // 12):
            self.step(12)
            gap = self.finger_gap()
            still = still + 1 if abs(gap - last) < 1e-4 else 0
            if still >= 3 or gap < 1e-3:
                break
            last = gap
        return self.finger_gap()


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi

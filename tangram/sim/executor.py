"""Execute plan actions on the simulated Panda and check each one's post-condition in the physics.

pick: the hand comes down over the object's graspable section (found by ray casts through the
object at the finger pads' height), squeezes, lifts; success when the object rose with the hand
and touches both fingers. place_*: the held object is carried over the spot at a safe height,
lowered until it touches down, released; success when, after settling, it rests on/in the target
within tolerance, upright and still. push: the closed hand slides the object; success when it
moved as asked. home: the arm is back in its rest pose.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tangram.planning.actions import Action
from tangram.planning.symbolic import PUSH_BACKOFF, Place, State, apply_action, container_spot
from tangram.planning.world import MAX_WORK_HEIGHT, MAY_TOPPLE, OPEN_PADS_WIDTH, World
from tangram.sim.robot import FINGER_FRICTION, FINGER_JOINTS, HOME, PandaArm
from tangram.sim.scene import SimObject

MAX_OPEN_WIDTH = OPEN_PADS_WIDTH  # what may pass between the open pads (their inner faces are 7.8 cm apart)
FINGERTIP_BELOW = 0.010  # grasp frame height the fingertips need above the support
PALM_DEPTH = 0.045  # how far below the object's top the grasp frame may go before the palm hits it
PLACE_TOL = 0.03  # metres, place_at position tolerance
STILL_SPEED = 0.02  # m/s: "stable after settling"
MAX_TILT = math.radians(25)
GRASP_ATTEMPTS = 2
CARRY_SPEED = 0.2  # m/s with an object in the hand: faster swings loosen a grip on a teddy's head


@dataclass
class Outcome:
    index: int
    action: dict[str, Any]
    success: bool
    reason: str = ""
    checks: dict[str, Any] = field(default_factory=dict)
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "action": self.action,
            "success": self.success,
            "reason": self.reason,
            "checks": self.checks,
            "sim_seconds": round(self.sim_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
        }


class ActionFailed(Exception):
    """An action could not be carried out or its post-condition does not hold."""

    def __init__(self, message: str, checks: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.checks = checks or {}


OVERHEAD = 0.25  # m above the table top: an object resting higher is not on the work surface
CLEARANCE = 0.06  # m between the lowest point of what the hand carries and the tops it passes over
HAND_RADIUS = 0.11  # m: the open hand's reach around the grasp point (fingers' span 0.2 m, margin)
HAND_ABOVE = 0.12  # m: hand and wrist above the grasp point (the hand's body touched at +6 cm)


class Executor:
    def __init__(
        self,
        client,
        world: World,
        objects: dict[int, SimObject],
        arm: PandaArm,
        table: int,
        state: State,
        step_counter: list[int],
    ) -> None:
        self.p = client
        # Plans keep to the arm's comfortable reach band; objects nudged just outside it while
        # executing are still tried: the physics, not the band, decides whether the hand gets there.
        self.world = dataclasses.replace(world, reach=(0.15, 0.85))
        self.objects = objects
        self.arm = arm
        self.table = table
        self.state = state
        self.steps = step_counter  # [total physics steps], shared with the stepping function
        self.held: int | None = None
        self.anchors: dict[int, float] = {}  # object held static where it was seen -> its mass

    def release(self, obj: int | None) -> None:
        """Give an object held where it was seen its mass back (the robot is handling it)."""
        mass = self.anchors.pop(obj, None) if obj is not None else None
        if mass is not None:
            self.p.changeDynamics(self.objects[obj].body, -1, mass=mass)

    # -- physics queries ------------------------------------------------------------------------

    def aabb(self, obj: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.p.getAABB(self.objects[obj].body)
        return np.array(lo), np.array(hi)

    def pose(self, obj: int) -> tuple[np.ndarray, float, float]:
        """Position, yaw and tilt (angle between the body's z axis and the world's)."""
        pos, orn = self.p.getBasePositionAndOrientation(self.objects[obj].body)
        m = np.array(self.p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        yaw = math.atan2(m[1, 0], m[0, 0])
        return np.array(pos), yaw, math.acos(float(np.clip(m[2, 2], -1, 1)))

    def touching(self, obj: int, other_body: int) -> bool:
        return bool(self.p.getContactPoints(bodyA=self.objects[obj].body, bodyB=other_body))

    def finger_contacts(self, obj: int) -> set[int]:
        pts = self.p.getContactPoints(bodyA=self.arm.id, bodyB=self.objects[obj].body)
        return {c[3] for c in pts if c[3] in FINGER_JOINTS}

    def speed(self, obj: int) -> tuple[float, float]:
        lin, ang = self.p.getBaseVelocity(self.objects[obj].body)
        return float(np.linalg.norm(lin)), float(np.linalg.norm(ang))

    def settle(self, max_steps: int = 480, min_steps: int = 48) -> int:
        done = 0
        while done < max_steps:
            self.arm.step(24)
            done += 24
            if done >= min_steps and all(
                self.speed(o)[0] < 0.01 and self.speed(o)[1] < 0.2 for o in self.objects if o != self.held
            ):
                break
        return done

    def safe_z(self, carrying: int | None, path: list[np.ndarray] | None = None) -> float:
        """Height of the hand for a move over the work surface along `path` (xy points, straight
        between them): above every object resting on the work surface (and the held one's bottom
        above them), but under any object held static overhead (a shelf's bottle the
        reconstruction saw but could not seat) that the open hand or the held object would sweep:
        the hand and wrist pass beneath it, or the path is as high as it can be."""
        extra, held = 0.0, None
        if carrying is not None:
            held, ee = self.aabb(carrying), self.arm.ee_pose()[0]
            extra = ee[2] - held[0][2]  # the held object hangs this far below the hand
        boxes = {o: self.aabb(o) for o in self.objects if o != carrying}
        tops = [hi[2] for lo, hi in boxes.values() if lo[2] < OVERHEAD]
        z = float(min(max([*tops, 0.05]) + extra + CLEARANCE, MAX_WORK_HEIGHT + 0.1))
        if path is None:
            return z
        pts = _samples(path)
        reach = np.full(2, HAND_RADIUS)
        if held is not None:  # the held object's footprint around the hand, if wider
            reach = np.maximum(reach, np.maximum(ee[:2] - held[0][:2], held[1][:2] - ee[:2]))
        ceiling, floor = math.inf, 0.05 + extra + CLEARANCE
        for lo, hi in boxes.values():
            gap = np.maximum(np.maximum(lo[:2] - pts, pts - hi[:2]), 0.0)  # per sample, per axis
            if not np.any(np.all(gap < reach, axis=1)):
                continue  # neither the hand nor the held object comes near it
            if lo[2] >= OVERHEAD:
                ceiling = min(ceiling, float(lo[2]) - HAND_ABOVE)
            else:
                floor = max(floor, float(hi[2]) + extra + CLEARANCE)
        if z <= ceiling:
            return z
        # under the overhead object, as high as that allows, never lower than what the path needs
        return float(max(floor, min(ceiling, z)))

    # -- actions ------------------------------------------------------------------------------

    def run(self, index: int, action: Action) -> Outcome:
        t0, s0 = time.perf_counter(), self.steps[0]
        outcome = Outcome(index, action.to_json(), False)
        try:
            _, errors = apply_action(self.world, self.state, action)
            if errors:  # the physics drifted from the plan's assumptions (e.g. an object fell)
                raise ActionFailed("precondition no longer holds: " + "; ".join(errors))
            outcome.checks = getattr(self, f"_{action.name}")(action)
            outcome.success = True
        except ActionFailed as exc:
            outcome.reason = str(exc)
            outcome.checks = exc.checks
        outcome.sim_seconds = (self.steps[0] - s0) / 240
        outcome.wall_seconds = time.perf_counter() - t0
        self._sync_state(action, outcome.success)
        return outcome

    def _sync_state(self, action: Action, ok: bool) -> None:
        """Advance the symbolic state, then overwrite positions with the physics."""
        if ok:
            self.state, _ = apply_action(self.world, self.state, action)
        self.resync()

    def resync(self) -> None:
        places = []
        for oid, place in self.state.places:
            pos = (self.aabb(oid)[0] + self.aabb(oid)[1]) / 2
            places.append((oid, Place(place.kind, place.ref, float(pos[0]), float(pos[1]))))
        self.state = State(self.state.holding, tuple(places))

    def _home(self, action: Action) -> dict[str, Any]:
        self.arm.move_joints(HOME)
        err = float(np.max(np.abs(self.arm.arm_q() - np.array(HOME))))
        if err > 0.05:
            raise ActionFailed(f"the arm stopped {err:.2f} rad from its rest pose")
        return {"joint_error_rad": round(err, 4)}

    def _pick(self, action: Action) -> dict[str, Any]:
        """Grasp and lift; a grasp that slips gets one more try at the next-best section."""
        obj = action.object
        assert obj is not None
        tried: list[np.ndarray] = []
        for attempt in range(1, GRASP_ATTEMPTS + 1):
            checks = self._try_pick(obj, tried)
            checks["attempt"] = attempt
            if checks["lifted_m"] >= 0.05 and checks["finger_contacts"] >= 2:
                return checks
            self.held = None
            self.arm.open()
            self.settle()
        raise ActionFailed(
            f"{self.world.describe(obj)} was not lifted after {GRASP_ATTEMPTS} grasps (last: rose "
            f"{checks['lifted_m'] * 100:.1f} cm, {checks['finger_contacts']} finger(s) touching)",
            checks,
        )

    def _try_pick(self, obj: int, tried: list[np.ndarray]) -> dict[str, Any]:
        gx, gy, axis = self._grasp_frame(obj)
        gx, gy, z, axis, width = self._grasp_plan(obj, gx, gy, axis, avoid=tried)
        tried.append(np.array([gx, gy, z]))
        yaw = _hand_yaw(axis, self.arm)
        lo0, _ = self.aabb(obj)
        top = self.safe_z(None, [self.arm.ee_pose()[0], np.array([gx, gy])])
        self.arm.open(30)
        self.arm.move_to(np.array([gx, gy, top]), yaw)
        self.arm.move_to(np.array([gx, gy, z]), yaw, speed=0.15)
        self._require_at(np.array([gx, gy, z]), f"the grasp pose on {self.world.describe(obj)}")
        gap = self.arm.close()
        self.release(obj)
        self.held = obj
        self.arm.move_to(np.array([gx, gy, top]), yaw, speed=0.15)
        self.arm.step(60)
        lo1, _ = self.aabb(obj)
        return {
            "grasp_height": round(z, 4),
            "section_width": round(width, 4),
            "finger_gap": round(gap, 4),
            "lifted_m": round(float(lo1[2] - lo0[2]), 4),
            "finger_contacts": len(self.finger_contacts(obj)),
        }

    def _grasp_frame(self, obj: int) -> tuple[float, float, float]:
        sim = self.objects[obj]
        pos, yaw, _ = self.pose(obj)
        c, s = math.cos(yaw), math.sin(yaw)
        lx, ly = sim.grasp_local
        return float(pos[0] + c * lx - s * ly), float(pos[1] + s * lx + c * ly), yaw + sim.grasp_axis_local

    def _grasp_plan(
        self, obj: int, gx: float, gy: float, axis: float, avoid: list[np.ndarray] | None = None
    ) -> tuple[float, float, float, float, float]:
        """(x, y, z, closing-axis yaw, section width) of the grasp, from ray casts through the object.

        Candidates: both horizontal axes of its box, grasp centres shifted sideways (along the pads)
        by up to 3 cm, and every level from the fingertips' lowest allowed point to the top. At
        each, three rays per side across the pad width give the section's extent along the closing
        axis. The open fingers must pass every level above the grasp (and touch no other body), the
        palm must stay above the object's top; among those, the widest section wins (contact
        normals most horizontal: a ball is held at its equator), then the one nearest the centre,
        and the grasp centres on that section.
        """
        lo, hi = self.aabb(obj)
        body = self.objects[obj].body
        levels = np.arange(lo[2] + 0.004, hi[2] - 0.002, 0.004)
        zmin = max(lo[2] + FINGERTIP_BELOW, hi[2] - PALM_DEPTH)
        best: tuple[tuple, tuple[float, float, float, float, float]] | None = None
        narrowest = 1.0
        for a in (axis, axis + math.pi / 2):
            u = np.array([math.cos(a), math.sin(a), 0.0])
            v = np.array([-math.sin(a), math.cos(a), 0.0])
            for shift in (0.0, -0.01, 0.01, -0.02, 0.02, -0.03, 0.03):
                tops, bottoms = self._sections(body, np.array([gx, gy, 0.0]) + shift * v, u, v, levels)
                widths = np.maximum(tops - bottoms, 0.0)
                narrowest = min(narrowest, widths[widths > 0].min(initial=1.0))
                for i, z in enumerate(levels):
                    mid = (tops[i] + bottoms[i]) / 2
                    above = (levels >= z - 0.012) & (widths > 0)
                    if (
                        z < zmin
                        or widths[i] < 0.01
                        or tops[above].max() > mid + MAX_OPEN_WIDTH / 2
                        or bottoms[above].min() < mid - MAX_OPEN_WIDTH / 2
                    ):
                        continue
                    # widest (to 3 mm), then near the object's centre line, its box's narrow axis,
                    # and the middle of the allowed band
                    key = (round(widths[i] / 0.003), -abs(shift), a == axis, -abs(z - (zmin + hi[2]) / 2))
                    c = np.array([gx, gy, z]) + shift * v + mid * u
                    if any(np.linalg.norm(c - p) < 0.015 for p in avoid or ()):
                        continue  # a grasp that already slipped
                    if best is None or key > best[0]:
                        best = (key, (float(c[0]), float(c[1]), float(z), a, float(widths[i])))
        if best is None:
            other = " other" if avoid else ""
            raise ActionFailed(
                f"{self.world.describe(obj)} has no{other} section the open gripper "
                f"({MAX_OPEN_WIDTH * 100:.1f} cm) can pass around "
                f"(narrowest {narrowest * 100:.1f} cm)"
            )
        return best[1]

    def _sections(
        self, body: int, centre: np.ndarray, u: np.ndarray, v: np.ndarray, levels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per level: the object's extent along u under the fingers (top and bottom along u; top <
        bottom where nothing is there)."""
        reach = 0.065
        starts, ends = [], []
        for z in levels:
            for s in (-0.011, 0.0, 0.011):
                c = centre + s * v + np.array([0.0, 0.0, z])
                starts += [c + reach * u, c - reach * u]
                ends += [c - reach * u, c + reach * u]
        hits = self.p.rayTestBatch(starts, ends)
        tops, bottoms = np.full(len(levels), -reach), np.full(len(levels), reach)
        for i in range(len(levels)):
            top, bottom = -reach, reach
            for k in range(3):
                a, b = hits[(i * 3 + k) * 2], hits[(i * 3 + k) * 2 + 1]
                if a[0] not in (-1, body) or b[0] not in (-1, body):
                    top, bottom = reach, -reach  # another body within the fingers' sweep
                    break
                if a[0] == body:
                    top = max(top, reach - 2 * reach * a[2])
                    bottom = min(bottom, -reach + 2 * reach * b[2])
            tops[i], bottoms[i] = top, bottom
        return tops, bottoms

    def _carry_and_release(self, x: float, y: float, surface_z: float) -> dict[str, Any]:
        """Carry the held object over (x, y), lower it until it touches down, open, retreat."""
        held = self.held
        assert held is not None
        ee, yaw = self.arm.ee_pose()
        lo, hi = self.aabb(held)
        off = (lo + hi) / 2 - ee  # the object's centre relative to the hand
        drop = ee[2] - lo[2]
        top = self.safe_z(held, [ee, np.array([x - off[0], y - off[1]])])
        self.arm.move_to(np.array([ee[0], ee[1], top]), yaw, speed=CARRY_SPEED)
        self.arm.move_to(np.array([x - off[0], y - off[1], top]), yaw, speed=CARRY_SPEED)
        if len(self.finger_contacts(held)) < 2:
            raise ActionFailed(f"{self.world.describe(held)} slipped out of the gripper while carried")
        others = {s.body for o, s in self.objects.items() if o != held} | {self.table}

        def touched() -> bool:
            """Something now carries the object from below (side brushes don't count), or the arm
            itself ran into something (a container's wall): stop lowering and let go."""
            below = any(
                c[2] in others and c[7][2] > 0.5 and c[9] > 0.5
                for c in self.p.getContactPoints(bodyA=self.objects[held].body)
            )
            return below or any(
                c[2] in others and c[9] > 1.0 for c in self.p.getContactPoints(bodyA=self.arm.id)
            )

        touchdown = surface_z + drop
        self.arm.move_to(
            np.array([x - off[0], y - off[1], max(touchdown + 0.04, top - 0.3)]),
            yaw,
            stop=touched,
            speed=CARRY_SPEED,
        )
        self.arm.move_to(np.array([x - off[0], y - off[1], touchdown - 0.005]), yaw, stop=touched, speed=0.05)
        self.arm.release()
        self.held = None
        ee, _ = self.arm.ee_pose()
        self.arm.move_to(np.array([ee[0], ee[1], top]), yaw, speed=0.2)
        self.settle()
        return {"release_height": round(float(self.aabb(held)[0][2]), 4)}

    def _place_in(self, action: Action) -> dict[str, Any]:
        held, box = self.held, action.target
        assert held is not None and box is not None
        spot = container_spot(self.world, self.state, held, box)
        if spot is None:
            raise ActionFailed(f"no free spot left in {self.world.describe(box)}")
        clo, chi = self.aabb(box)
        checks = self._carry_and_release(spot[0], spot[1], float(clo[2]) + 0.012)
        lo, hi = self.aabb(held)
        centre = (lo + hi) / 2
        # inside the container's own (turned) footprint, not just its axis-aligned bounding box
        _, cyaw, _ = self.pose(box)
        rel = centre[:2] - (clo[:2] + chi[:2]) / 2
        u = math.cos(cyaw) * rel[0] + math.sin(cyaw) * rel[1]
        v = -math.sin(cyaw) * rel[0] + math.cos(cyaw) * rel[1]
        size = self.world.objects[box].size
        inside_xy = abs(u) <= size[0] / 2 + 0.005 and abs(v) <= size[1] / 2 + 0.005
        below_rim = lo[2] < chi[2]
        contents = {self.objects[o].body for o in self.state.children(box)}
        support = self.touching(held, self.objects[box].body) or any(self.touching(held, b) for b in contents)
        checks.update(
            self._still(held),
            inside_xy=bool(inside_xy),
            below_rim=bool(below_rim),
            touching_container=bool(support),
            spot=[round(v, 4) for v in spot],
            landed=[round(float(v), 4) for v in centre[:2]],
        )
        if not (inside_xy and below_rim and support):
            raise ActionFailed(
                f"{self.world.describe(held)} did not end up in {self.world.describe(box)} "
                f"(inside {inside_xy}, below rim {below_rim}, resting on it {support})",
                checks,
            )
        self._require_still(held, checks, upright=False)  # lying down inside a container is still inside
        return checks

    def _place_on(self, action: Action) -> dict[str, Any]:
        held, target = self.held, action.target
        assert held is not None and target is not None
        tlo, thi = self.aabb(target)
        centre_t = (tlo + thi) / 2
        checks = self._carry_and_release(float(centre_t[0]), float(centre_t[1]), float(thi[2]))
        lo, hi = self.aabb(held)
        tlo, thi = self.aabb(target)
        centre = (lo + hi) / 2
        gap = float(lo[2] - thi[2])
        over = tlo[0] <= centre[0] <= thi[0] and tlo[1] <= centre[1] <= thi[1]
        touching = self.touching(held, self.objects[target].body)
        checks.update(
            self._still(held), gap_m=round(gap, 4), over_target=bool(over), touching_target=touching
        )
        if not (touching and over and abs(gap) <= 0.02):
            raise ActionFailed(
                f"{self.world.describe(held)} is not resting on {self.world.describe(target)} "
                f"(touching {touching}, centred over it {over}, height gap {gap * 100:.1f} cm)",
                checks,
            )
        self._require_still(held, checks)
        return checks

    def _place_at(self, action: Action) -> dict[str, Any]:
        held = self.held
        assert held is not None and action.x is not None and action.y is not None
        checks = self._carry_and_release(action.x, action.y, 0.0)
        lo, hi = self.aabb(held)
        centre = (lo + hi) / 2
        err = math.hypot(centre[0] - action.x, centre[1] - action.y)
        on_table = self.touching(held, self.table)
        checks.update(self._still(held), position_error_m=round(err, 4), on_table=on_table)
        if not on_table or err > PLACE_TOL:
            raise ActionFailed(
                f"{self.world.describe(held)} landed {err * 100:.1f} cm from "
                f"({action.x:.2f}, {action.y:.2f})" + ("" if on_table else ", not on the table"),
                checks,
            )
        self._require_still(held, checks)
        return checks

    def _push(self, action: Action) -> dict[str, Any]:
        obj = action.object
        assert obj is not None and action.dx is not None and action.dy is not None
        self.release(obj)
        dist = math.hypot(action.dx, action.dy)
        d = np.array([action.dx, action.dy, 0.0]) / dist
        lo, hi = self.aabb(obj)
        c0 = (lo + hi) / 2
        half = abs(d[0]) * (hi[0] - lo[0]) / 2 + abs(d[1]) * (hi[1] - lo[1]) / 2
        # push low (a third of the height) so the object slides rather than tips
        z = float(max(lo[2] + (hi[2] - lo[2]) / 3, lo[2] + FINGERTIP_BELOW))
        yaw = _hand_yaw(math.atan2(d[1], d[0]) + math.pi / 2, self.arm)  # plates broadside to the push
        start = c0 - d * (half + PUSH_BACKOFF)
        end = c0 + d * (dist - half - 0.008)
        top = self.safe_z(None, [self.arm.ee_pose()[0], start, end])
        self.arm.close()
        self.arm.move_to(np.array([start[0], start[1], top]), yaw)
        self.arm.move_to(np.array([start[0], start[1], z]), yaw, speed=0.15)
        self._require_at(np.array([start[0], start[1], z]), f"behind {self.world.describe(obj)}")
        # slippery fingertips while pushing: grip friction would drag the object's face and tip it
        for j in FINGER_JOINTS:
            self.p.changeDynamics(self.arm.id, j, lateralFriction=0.2)
        try:
            self.arm.move_to(np.array([end[0], end[1], z]), yaw, speed=0.05, straight=True)
            back = end - d * 0.03
            self.arm.move_to(np.array([back[0], back[1], z]), yaw, speed=0.1, straight=True)
        finally:
            for j in FINGER_JOINTS:
                self.p.changeDynamics(self.arm.id, j, lateralFriction=FINGER_FRICTION)
        self.arm.move_to(np.array([back[0], back[1], top]), yaw)
        self.arm.open(30)
        self.settle()
        lo, hi = self.aabb(obj)
        moved = (lo + hi) / 2 - c0
        along = float(moved[:2] @ d[:2])
        lateral = float(abs(moved[0] * d[1] - moved[1] * d[0]))
        checks = {**self._still(obj), "moved_along_m": round(along, 4), "lateral_m": round(lateral, 4)}
        if (
            along < 0.5 * dist
            or along > 1.5 * dist + 0.02
            or lateral > 0.04
            or not self.touching(obj, self.table)
        ):
            raise ActionFailed(
                f"{self.world.describe(obj)} moved {along * 100:.1f} cm along the push "
                f"(asked {dist * 100:.1f}) and {lateral * 100:.1f} cm sideways",
                checks,
            )
        self._require_still(obj, checks)
        return checks

    def _require_at(self, target: np.ndarray, what: str) -> None:
        miss = float(np.linalg.norm(self.arm.ee_pose()[0] - target))
        if miss > 0.012:
            raise ActionFailed(
                f"the hand stopped {miss * 100:.1f} cm short of {what} "
                "(blocked, or at the edge of the arm's workspace)"
            )

    def _still(self, obj: int) -> dict[str, Any]:
        lin, _ = self.speed(obj)
        _, _, tilt = self.pose(obj)
        return {"speed_m_s": round(lin, 4), "tilt_deg": round(math.degrees(tilt), 1)}

    def _require_still(self, obj: int, checks: dict[str, Any], upright: bool = True) -> None:
        if checks["speed_m_s"] > STILL_SPEED:
            raise ActionFailed(
                f"{self.world.describe(obj)} is still moving ({checks['speed_m_s']:.3f} m/s)", checks
            )
        if (
            upright
            and self.world.objects[obj].class_name not in MAY_TOPPLE
            and math.radians(checks["tilt_deg"]) > MAX_TILT
        ):
            raise ActionFailed(
                f"{self.world.describe(obj)} toppled ({checks['tilt_deg']:.0f} degrees)", checks
            )


def _samples(path: list[np.ndarray], step: float = 0.01) -> np.ndarray:
    """Points every `step` metres along a polyline of xy points (its vertices included)."""
    pts = [np.asarray(path[0], float)[:2]]
    for a, b in itertools.pairwise(path):
        a, b = np.asarray(a, float)[:2], np.asarray(b, float)[:2]
        n = max(1, math.ceil(float(np.linalg.norm(b - a)) / step))
        pts += [a + (b - a) * t for t in np.linspace(0.0, 1.0, n + 1)[1:]]
    return np.array(pts)


def _hand_yaw(axis: float, arm: PandaArm) -> float:
    """Hand yaw that closes the fingers along `axis`, the one of the two equivalent yaws nearer home."""
    yaw = axis - arm.closing_offset
    ref = arm.home_yaw
    candidates = [yaw + k * math.pi for k in range(-3, 4)]
    return min(candidates, key=lambda a: abs(a - ref))

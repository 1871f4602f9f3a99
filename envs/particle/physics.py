"""Particle-world physics shared by every particle environment.

Follows the original multi-agent particle environment (MPE) of Lowe et al. (2017):

1. action force ``u * sensitivity`` on each movable agent (sensitivity = ``accel``, default 5);
2. contact force for every pair that both collide: with ``d = |x_a - x_b|``,
   ``pen = margin * softplus((s_a + s_b - d) / margin)``,
   ``F = contact_force * (x_a - x_b) / d * pen``, ``+F`` on ``a`` and ``-F`` on ``b``;
3. integration, velocity first (``integration="velocity_first"``, the original):
   ``v <- v (1 - damping) + F / m * dt``, speed clipped to ``max_speed``, ``x <- x + v dt``.
   ``integration="position_first"`` moves with the old velocity first, then damps and
   accelerates (PettingZoo MPE >= 1.24, mpe2, JaxMARL), for comparisons with that family.

Entities are an array axis ``[E]``: agents first, then objects. Inactive entities (padding,
removed agents) must have ``collide=False`` and ``movable=False``: they then exert and feel no
force and never move.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array

#: Direction of each of the 5 discrete actions: no-op, +x, -x, +y, -y.
DISCRETE_DIRECTIONS = jnp.array(
    [[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=jnp.float32
)


@struct.dataclass
class PhysicsConfig:
    """Constants of the particle world (defaults: the original MPE)."""

    dt: float = struct.field(pytree_node=False, default=0.1)
    damping: float = struct.field(pytree_node=False, default=0.25)
    contact_force: float = struct.field(pytree_node=False, default=100.0)
    contact_margin: float = struct.field(pytree_node=False, default=1e-3)
    integration: Literal["velocity_first", "position_first"] = struct.field(
        pytree_node=False, default="velocity_first"
    )

    def __post_init__(self) -> None:
        if self.integration not in ("velocity_first", "position_first"):
            raise ValueError(
                "integration must be 'velocity_first' or 'position_first', "
                f"got {self.integration!r}"
            )


@struct.dataclass
class Bodies:
    """Static-per-episode properties of ``E`` entities (arrays ``[E]``).

    * ``size``: radius; ``mass``: mass; ``max_speed``: speed cap (``inf`` for none);
    * ``movable``: the entity integrates forces; ``collide``: it takes part in contacts.
    """

    size: Array
    mass: Array
    max_speed: Array
    movable: Array
    collide: Array


def action_force(
    action: Array, action_type: str, sensitivity: Array, active: Array
) -> Array:
    """Force ``[A, 2]`` from a joint action.

    Args:
      action: ``[A]`` int32 (``discrete``: index into :data:`DISCRETE_DIRECTIONS`),
        ``[A, 5]`` float32 (``relaxed``: MPE's weights of the 5 moves, ``(a1 - a2, a3 - a4)``,
        as executed by the original MADDPG), or ``[A, 2]`` float32 (``continuous``, clipped to
        ``[-1, 1]``).
      action_type: ``"discrete" | "relaxed" | "continuous"``.
      sensitivity: ``[A]`` float32 (the agent's ``accel``; MPE default 5).
      active: ``[A]`` bool; inactive agents get zero force.
    """
    if action_type == "discrete":
        u = DISCRETE_DIRECTIONS[jnp.clip(action, 0, 4)]
    elif action_type == "relaxed":
        u = action @ DISCRETE_DIRECTIONS
    elif action_type == "continuous":
        u = jnp.clip(action, -1.0, 1.0)
    else:
        raise ValueError(f"unknown action_type {action_type!r}")
    return jnp.where(active[:, None], u * sensitivity[:, None], 0.0)


def contact_forces(pos: Array, bodies: Bodies, cfg: PhysicsConfig) -> Array:
    """Sum of pairwise contact forces on each entity, ``[E, 2]``.

    Only pairs where both entities collide contribute; force on non-movable entities is dropped
    by :func:`integrate`. Coincident entities (``d = 0``) get no force instead of NaN.
    """
    delta = pos[:, None, :] - pos[None, :, :]  # [E, E, 2], x_a - x_b
    dist2 = jnp.sum(delta**2, axis=-1)
    pair = bodies.collide[:, None] & bodies.collide[None, :]
    pair = pair & ~jnp.eye(pos.shape[0], dtype=bool) & (dist2 > 0)
    dist = jnp.sqrt(jnp.where(pair, dist2, 1.0))
    dmin = bodies.size[:, None] + bodies.size[None, :]
    k = cfg.contact_margin
    pen = jnp.logaddexp(0.0, (dmin - dist) / k) * k
    scale = jnp.where(pair, cfg.contact_force * pen / dist, 0.0)
    return jnp.sum(scale[..., None] * delta, axis=1)


def integrate(
    pos: Array, vel: Array, force: Array, bodies: Bodies, cfg: PhysicsConfig
) -> tuple[Array, Array]:
    """One integration step for ``[E, 2]`` positions and velocities under ``[E, 2]`` forces."""
    mov = bodies.movable[:, None]
    new_vel = vel * (1.0 - cfg.damping) + force / bodies.mass[:, None] * cfg.dt
    speed = jnp.sqrt(jnp.sum(new_vel**2, axis=-1, keepdims=True))
    cap = bodies.max_speed[:, None]
    too_fast = speed > cap
    new_vel = jnp.where(too_fast, new_vel / jnp.where(too_fast, speed, 1.0) * cap, new_vel)
    if cfg.integration == "velocity_first":
        new_pos = pos + new_vel * cfg.dt
    else:
        new_pos = pos + vel * cfg.dt
    return jnp.where(mov, new_pos, pos), jnp.where(mov, new_vel, vel)


def physics_step(
    pos: Array, vel: Array, act_force: Array, bodies: Bodies, cfg: PhysicsConfig
) -> tuple[Array, Array]:
    """Full world step: action forces ``[E, 2]`` (zeros for objects) plus contacts, integrate."""
    force = act_force + contact_forces(pos, bodies, cfg)
    return integrate(pos, vel, force, bodies, cfg)


def pairwise_distance(a: Array, b: Array) -> Array:
    """``[..., N, K]`` Euclidean distances between ``[..., N, 2]`` and ``[..., K, 2]``."""
    d = a[..., :, None, :] - b[..., None, :, :]
    return jnp.sqrt(jnp.sum(d**2, axis=-1))


def uniform_positions(key: Array, n: int, low: float = -1.0, high: float = 1.0) -> Array:
    """``[n, 2]`` float32 positions uniform in ``[low, high]^2``."""
    return jax.random.uniform(key, (n, 2), jnp.float32, low, high)

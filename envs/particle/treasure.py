"""Treasure collection (MRA paper, App. E.1).

``N`` collectors and ``T`` treasures in a particle world. A treasure touched by an agent
(``distance < agent size + treasure size``) gives that agent ``+scale`` and re-appears at a new
uniform position in ``[-1, 1]^2``. Several agents touching the same treasure in one step are each
rewarded. The dense game adds the shaping ``-shaping * distance to the nearest treasure``; the
sparse game (MRA Fig. 4a) has ``shaping = 0``. Collisions between agents may be penalized
(``collision_penalty`` per contact, off by default).

Task (:class:`TreasureTask`, a pytree; build with ``env.make_task``):

* ``n_agents``: ``[]`` int32 in ``1..max_agents``;
* ``n_treasures``: ``[]`` int32 in ``1..max_objects``;
* ``shaping``: ``[]`` float32, dense shaping weight (0.1 dense, 0 sparse);
* ``scale``: ``[]`` float32, reward per treasure (1).

Observation (``A = max_agents``, ``M = max_objects``):

* ``self``: ``[A, 4]`` float32 ``(vx, vy, x, y)``;
* ``agents``: ``[A, A, 4]`` float32, for agent ``j`` seen by ``i``: ``(x_j - x_i, y_j - y_i,
  vx_j, vy_j)``; ``agents_mask``: ``[A, A]``, active ``j != i``;
* ``objects``: ``[A, M, 2]`` float32 treasure position relative to the agent;
  ``objects_mask``: ``[A, M]``, the game's treasures;
* ``team``: ``[A]`` int32 zeros; ``agent_mask``: ``[A]`` the game's agents.

Action: see :class:`envs.particle.base.ParticleEnv` (``discrete`` ``[A]`` int32 by default).

Reward: ``[A]`` float32, ``scale * #treasures touched - shaping * nearest-treasure distance
- collision_penalty * #contacts``; 0 for padding. Never terminates; truncated at
``episode_length`` (25; MRA App. E uses 20).

Extras: ``collected`` ``[]`` float32, treasures collected this step.

Sizes (configurable): agents 0.05, treasures 0.025.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.core import other_agents_mask
from envs.particle.base import ParticleEnv, ParticleState, entity_uniform
from envs.particle.physics import Bodies, pairwise_distance

Array = jax.Array


@struct.dataclass
class TreasureTask:
    """A treasure-collection game (see module docstring)."""

    n_agents: Array
    n_treasures: Array
    shaping: Array
    scale: Array


class Treasure(ParticleEnv):
    """Treasure collection; see the module docstring for every field.

    Args:
      max_agents: agent slots (default 24, MRA's largest training game).
      max_objects: treasure slots (default 20).
      episode_length: time limit (default 25).
      agent_size, treasure_size: radii (0.05, 0.025).
      collision_penalty: reward per agent-agent contact (0 = off).
      n_agents_choices: populations drawn by :meth:`sample_task` (default ``{3, 6, 12, 24}``
        clipped to ``max_agents``).
      action_type, integration: see :class:`~envs.particle.base.ParticleEnv`.
    """

    name = "treasure"

    def __init__(
        self,
        max_agents: int = 24,
        max_objects: int = 20,
        episode_length: int | None = None,
        agent_size: float = 0.05,
        treasure_size: float = 0.025,
        collision_penalty: float = 0.0,
        n_agents_choices: tuple[int, ...] | None = None,
        action_type: str = "discrete",
        integration: str = "velocity_first",
    ):
        super().__init__(max_agents, max_objects, episode_length, action_type, integration)
        self.agent_size = float(agent_size)
        self.treasure_size = float(treasure_size)
        self.collision_penalty = float(collision_penalty)
        if n_agents_choices is None:
            n_agents_choices = tuple(n for n in (3, 6, 12, 24) if n <= self.max_agents) or (
                self.max_agents,
            )
        self.check_count("n_agents_choices", n_agents_choices, self.max_agents, 1)
        self.n_agents_choices = tuple(int(n) for n in n_agents_choices)

    # --- tasks -----------------------------------------------------------------------------
    def make_task(
        self,
        n_agents: int = 6,
        n_treasures: int | None = None,
        shaping: float = 0.1,
        scale: float = 1.0,
    ) -> TreasureTask:
        """A game with ``n_agents`` collectors and ``n_treasures`` (default: ``max_objects``)."""
        n_treasures = self.max_objects if n_treasures is None else n_treasures
        task = TreasureTask(
            n_agents=jnp.asarray(n_agents, jnp.int32),
            n_treasures=jnp.asarray(n_treasures, jnp.int32),
            shaping=jnp.asarray(shaping, jnp.float32),
            scale=jnp.asarray(scale, jnp.float32),
        )
        return self.validate_task(task)

    def validate_task(self, task: TreasureTask) -> TreasureTask:
        self.check_count("n_agents", task.n_agents, self.max_agents, 1)
        self.check_count("n_treasures", task.n_treasures, self.max_objects, 1)
        return task

    def sample_task(self, key: Array) -> TreasureTask:
        """Population uniform over ``n_agents_choices``; all treasure slots used; dense."""
        n = jax.random.choice(key, jnp.asarray(self.n_agents_choices, jnp.int32))
        return TreasureTask(
            n_agents=n,
            n_treasures=jnp.asarray(self.max_objects, jnp.int32),
            shaping=jnp.asarray(0.1, jnp.float32),
            scale=jnp.asarray(1.0, jnp.float32),
        )

    # --- dynamics --------------------------------------------------------------------------
    def bodies(self, state: ParticleState) -> Bodies:
        return self.default_bodies(state.alive, self.agent_size)

    def accel(self, state: ParticleState) -> Array:
        return jnp.full((self.max_agents,), 5.0, jnp.float32)

    def treasure_mask(self, task: TreasureTask) -> Array:
        """``[M]`` bool: treasure slots in the game."""
        return jnp.arange(self.max_objects) < task.n_treasures

    def object_mask(self, task: TreasureTask) -> Array:
        return self.treasure_mask(task)

    def object_sizes(self, state: ParticleState) -> Array:
        return jnp.full((self.max_objects,), self.treasure_size, jnp.float32)

    def init_state(self, key: Array, task: TreasureTask) -> ParticleState:
        k_agents, k_obj, k_next = jax.random.split(key, 3)
        active = self.agent_mask(task)
        pos = entity_uniform(k_agents, self.max_agents) * active[:, None]
        obj = entity_uniform(k_obj, self.max_objects)
        return ParticleState(
            key=k_next,
            step=jnp.zeros((), jnp.int32),
            task=task,
            pos=pos,
            vel=jnp.zeros((self.max_agents, 2), jnp.float32),
            obj_pos=obj,
            alive=active,
        )

    def rules(self, state: ParticleState, key: Array):
        task = state.task
        active = state.alive
        t_mask = self.treasure_mask(task)
        dist = pairwise_distance(state.pos, state.obj_pos)  # [A, M]
        touch = (dist < self.agent_size + self.treasure_size) & active[:, None] & t_mask[None]
        reward = task.scale * jnp.sum(touch, axis=1)
        nearest = jnp.min(jnp.where(t_mask[None], dist, jnp.inf), axis=1)
        reward = reward - task.shaping * nearest
        if self.collision_penalty:
            d_aa = pairwise_distance(state.pos, state.pos)
            contact = (d_aa < 2 * self.agent_size) & other_agents_mask(active)
            reward = reward - self.collision_penalty * jnp.sum(contact, axis=1)
        taken = jnp.any(touch, axis=0)  # [M]
        new_obj = entity_uniform(key, self.max_objects)
        obj = jnp.where(taken[:, None], new_obj, state.obj_pos)
        state = state.replace(obj_pos=obj)
        extras = {"collected": jnp.sum(taken).astype(jnp.float32)}
        discount = active.astype(jnp.float32)
        return state, reward, discount, jnp.asarray(False), extras

    def task_description(self, task: Any) -> Array:
        """``[2]`` float32 game descriptor ``(n_agents, n_treasures) / 10`` (for latent priors)."""
        return jnp.stack([task.n_agents, task.n_treasures]).astype(jnp.float32) / 10.0

"""Resource occupation (MRA paper, Sec. 6 and App. E.1).

``N`` agents and ``n`` resource landmarks in a particle world. Resource ``l`` (``l = 0..n-1``) is
a disc of radius ``size_l = size_unit * (l + 1)``: ``{0.1, 0.2, ..., 0.1 n}`` with the paper's
``size_unit = 0.1``; the MRA authors' code uses ``size_unit = 0.05``. Resources are placed
uniformly in ``[-1, 1]^2`` at reset and stay fixed for the episode; they do not collide. Agents
start uniformly in ``[-1, 1]^2``. An agent occupies a resource when
``distance < agent size + size_l``; it may occupy several (overlapping) resources at once.

Reward (individual): each agent receives, for every resource ``l`` it occupies,
``scale * size_l / (number of agents occupying l)``. Larger resources pay more, and a resource
shared by fewer agents pays each of them more.

Task (:class:`ResourceTask`, a pytree; build with ``env.make_task``):

* ``n_agents``: ``[]`` int32 in ``1..max_agents``;
* ``n_resources``: ``[]`` int32 in ``1..max_objects``;
* ``scale``: ``[]`` float32, reward scale (10, as in the MRA authors' code).

Resource sizes depend only on the slot index, so a game padded to larger maxima has the same
resources as the unpadded one.

Observation (``A = max_agents``, ``M = max_objects``):

* ``self``: ``[A, 4]`` float32 ``(vx, vy, x, y)``;
* ``agents``: ``[A, A, 4]`` float32, for agent ``j`` seen by ``i``: ``(x_j - x_i, y_j - y_i,
  vx_j, vy_j)``; ``agents_mask``: ``[A, A]``, active ``j != i``;
* ``objects``: ``[A, M, 3]`` float32 ``(x_l - x_i, y_l - y_i, size_l)`` of each resource;
  ``objects_mask``: ``[A, M]``, the game's resources;
* ``team``: ``[A]`` int32 zeros; ``agent_mask``: ``[A]`` the game's agents.

Action: see :class:`envs.particle.base.ParticleEnv` (``discrete`` ``[A]`` int32 by default).

Reward: ``[A]`` float32 as above; 0 for padding. Never terminates; truncated at
``episode_length`` (20, as in MRA).

Extras: ``occupied`` ``[]`` float32, number of resources occupied by at least one agent;
``occupants`` ``[M]`` float32, number of agents on each resource.

Sizes (configurable): agents 0.05; agents collide with each other (``agent_collide``), as MPE
agents do by default.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.core import EnvError
from envs.particle.base import ParticleEnv, ParticleState, entity_uniform
from envs.particle.physics import Bodies, pairwise_distance

Array = jax.Array


@struct.dataclass
class ResourceTask:
    """A resource-occupation game (see module docstring)."""

    n_agents: Array
    n_resources: Array
    scale: Array


class Resource(ParticleEnv):
    """Resource occupation; see the module docstring for every field.

    Args:
      max_agents: agent slots (default 15, MRA's largest training game).
      max_objects: resource slots (default 6, as in MRA).
      episode_length: time limit (default 20).
      agent_size: agent radius (0.05).
      size_unit: resource ``l`` has radius ``size_unit * (l + 1)``; 0.1 (paper) or 0.05 (the MRA
        authors' code).
      agent_collide: agents exert contact forces on each other (default True, as in MPE).
      n_agents_choices: populations drawn by :meth:`sample_task` (default ``{6, 9, 12, 15}``
        clipped to ``max_agents``).
      action_type, integration: see :class:`~envs.particle.base.ParticleEnv`.
    """

    name = "resource"
    stochastic_rules = False
    object_feature_dim = 1
    default_episode_length = 20

    def __init__(
        self,
        max_agents: int = 15,
        max_objects: int = 6,
        episode_length: int | None = None,
        agent_size: float = 0.05,
        size_unit: float = 0.1,
        agent_collide: bool = True,
        n_agents_choices: tuple[int, ...] | None = None,
        action_type: str = "discrete",
        integration: str = "velocity_first",
    ):
        super().__init__(max_agents, max_objects, episode_length, action_type, integration)
        if float(size_unit) <= 0 or float(agent_size) <= 0:
            raise EnvError(f"{self.name}: agent_size and size_unit must be positive")
        self.agent_size = float(agent_size)
        self.size_unit = float(size_unit)
        self.agent_collide = bool(agent_collide)
        if n_agents_choices is None:
            n_agents_choices = tuple(n for n in (6, 9, 12, 15) if n <= self.max_agents) or (
                self.max_agents,
            )
        self.check_count("n_agents_choices", n_agents_choices, self.max_agents, 1)
        self.n_agents_choices = tuple(int(n) for n in n_agents_choices)

    # --- tasks -----------------------------------------------------------------------------
    def make_task(
        self, n_agents: int = 6, n_resources: int | None = None, scale: float = 10.0
    ) -> ResourceTask:
        """A game with ``n_agents`` agents and ``n_resources`` (default: ``max_objects``)."""
        n_resources = self.max_objects if n_resources is None else n_resources
        task = ResourceTask(
            n_agents=jnp.asarray(n_agents, jnp.int32),
            n_resources=jnp.asarray(n_resources, jnp.int32),
            scale=jnp.asarray(scale, jnp.float32),
        )
        return self.validate_task(task)

    def validate_task(self, task: ResourceTask) -> ResourceTask:
        self.check_count("n_agents", task.n_agents, self.max_agents, 1)
        self.check_count("n_resources", task.n_resources, self.max_objects, 1)
        return task

    def sample_task(self, key: Array) -> ResourceTask:
        """Population uniform over ``n_agents_choices``; all resource slots used; scale 10."""
        n = jax.random.choice(key, jnp.asarray(self.n_agents_choices, jnp.int32))
        return ResourceTask(
            n_agents=n,
            n_resources=jnp.asarray(self.max_objects, jnp.int32),
            scale=jnp.asarray(10.0, jnp.float32),
        )

    # --- dynamics --------------------------------------------------------------------------
    def bodies(self, state: ParticleState) -> Bodies:
        b = self.default_bodies(state.alive, self.agent_size)
        return b.replace(collide=b.collide & self.agent_collide)

    def accel(self, state: ParticleState) -> Array:
        return jnp.full((self.max_agents,), 5.0, jnp.float32)

    def resource_mask(self, task: ResourceTask) -> Array:
        """``[M]`` bool: resource slots in the game."""
        return jnp.arange(self.max_objects) < task.n_resources

    def resource_sizes(self) -> Array:
        """``[M]`` float32 radii ``size_unit * (l + 1)`` of the resource slots."""
        return self.size_unit * jnp.arange(1, self.max_objects + 1, dtype=jnp.float32)

    def object_mask(self, task: ResourceTask) -> Array:
        return self.resource_mask(task)

    def object_sizes(self, state: ParticleState) -> Array:
        return self.resource_sizes()

    def init_state(self, key: Array, task: ResourceTask) -> ParticleState:
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

    def occupancy(self, state: ParticleState) -> Array:
        """``[A, M]`` bool: active agent ``i`` occupies the game's resource ``l``."""
        sizes = self.resource_sizes()
        dist = pairwise_distance(state.pos, state.obj_pos)  # [A, M]
        occ = dist < self.agent_size + sizes[None, :]
        return occ & state.alive[:, None] & self.resource_mask(state.task)[None, :]

    def rules(self, state: ParticleState, key: Array):
        task = state.task
        occ = self.occupancy(state)
        count = jnp.sum(occ, axis=0)  # [M]
        share = self.resource_sizes() / jnp.maximum(count, 1)  # [M]
        reward = task.scale * jnp.sum(jnp.where(occ, share[None, :], 0.0), axis=1)
        extras = {
            "occupied": jnp.sum(count > 0).astype(jnp.float32),
            "occupants": count.astype(jnp.float32),
        }
        discount = state.alive.astype(jnp.float32)
        return state, reward, discount, jnp.asarray(False), extras

    def object_features(self, state: ParticleState) -> Array:
        """``[M, 1]`` each resource's size."""
        return self.resource_sizes()[:, None]

    def task_description(self, task: Any) -> Array:
        """``[2]`` float32 game descriptor ``(n_agents, n_resources) / 10`` (for latent priors)."""
        return jnp.stack([task.n_agents, task.n_resources]).astype(jnp.float32) / 10.0

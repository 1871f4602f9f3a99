"""Cooperative navigation: the MPE ``simple_spread`` world (Lowe et al., 2017).

``N`` agents must cover ``N`` landmarks while avoiding each other. This is the world peer MPE
implementations (PettingZoo/``mpe2`` ``simple_spread_v3``, JaxMARL ``MPE_simple_spread_v3``)
ship, so :mod:`benchmarks.env_throughput` uses it to compare stepping speed like for like.

Constants follow the reference scenario: agents are colliding discs of size 0.15 (mass 1,
accel 5, no speed cap); landmarks are non-colliding, non-movable, size 0.05; agents and landmarks
start uniform in ``[-1, 1]^2`` with zero velocity; episodes last 25 steps and never terminate.

Reward (``[A]`` float32; 0 for padding):

``r_i = -sum_l min_j |x_j - p_l|  -  collision_penalty * #{j != i : |x_i - x_j| < 2 * 0.15}``

The landmark term is shared by every agent (sum over the game's landmarks of the distance of the
nearest active agent). The collision term is the agent's own, as in the reference scenario's
``reward(agent)``: each contact with another agent costs ``collision_penalty`` (1). Our choice,
documented: contacts with itself are not counted (the original MPE code counted a constant -1
self-contact, which PettingZoo removed), and rewards are not summed over agents (the original
``MultiAgentEnv(shared_reward=True)`` wrapper does). With ``local_ratio`` set, the reward is
PettingZoo's mix ``(1 - local_ratio) * shared + local_ratio * local`` (PettingZoo's default 0.5).

Task (:class:`SpreadTask`, a pytree; build with ``env.make_task``):

* ``n_agents``: ``[]`` int32 in ``1..max_agents``;
* ``n_landmarks``: ``[]`` int32 in ``1..max_objects``.

Observation (``A = max_agents``, ``M = max_objects``), the reference's information in entity
form (communication channels are dropped: simple_spread's agents are silent):

* ``self``: ``[A, 4]`` float32 ``(vx, vy, x, y)``;
* ``agents``: ``[A, A, 2]`` float32 ``x_j - x_i``; ``agents_mask``: ``[A, A]``, active ``j != i``;
* ``objects``: ``[A, M, 2]`` float32 landmark position relative to the agent;
  ``objects_mask``: ``[A, M]``, the game's landmarks;
* ``team``: ``[A]`` int32 zeros; ``agent_mask``: ``[A]`` the game's agents.

Action: see :class:`envs.particle.base.ParticleEnv` (``discrete`` ``[A]`` int32 by default).

Extras: ``collisions`` ``[]`` float32 (agent pairs in contact), ``coverage`` ``[]`` float32 (the
shared landmark-distance sum, positive).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.core import EnvError, other_agents_mask
from envs.particle.base import ParticleEnv, ParticleState, entity_uniform
from envs.particle.physics import Bodies, pairwise_distance

Array = jax.Array


@struct.dataclass
class SpreadTask:
    """A cooperative-navigation game (see module docstring)."""

    n_agents: Array
    n_landmarks: Array


class Spread(ParticleEnv):
    """MPE ``simple_spread``; see the module docstring for every field.

    Args:
      max_agents: agent slots (default 3).
      max_objects: landmark slots (default 3).
      episode_length: time limit (default 25).
      agent_size, landmark_size: radii (0.15, 0.05).
      collision_penalty: reward per contact with another agent (1).
      local_ratio: ``None`` (default) for ``shared + local``; a float in ``[0, 1]`` for
        PettingZoo's ``(1 - local_ratio) * shared + local_ratio * local``.
      action_type, integration: see :class:`~envs.particle.base.ParticleEnv`.
    """

    name = "spread"
    stochastic_rules = False
    observe_other_velocity = False

    def __init__(
        self,
        max_agents: int = 3,
        max_objects: int = 3,
        episode_length: int | None = None,
        agent_size: float = 0.15,
        landmark_size: float = 0.05,
        collision_penalty: float = 1.0,
        local_ratio: float | None = None,
        action_type: str = "discrete",
        integration: str = "velocity_first",
    ):
        super().__init__(max_agents, max_objects, episode_length, action_type, integration)
        self.agent_size = float(agent_size)
        self.landmark_size = float(landmark_size)
        self.collision_penalty = float(collision_penalty)
        if local_ratio is not None and not 0.0 <= float(local_ratio) <= 1.0:
            raise EnvError(f"{self.name}: local_ratio must be in [0, 1], got {local_ratio}")
        self.local_ratio = None if local_ratio is None else float(local_ratio)

    # --- tasks -----------------------------------------------------------------------------
    def make_task(self, n_agents: int | None = None, n_landmarks: int | None = None) -> SpreadTask:
        """A game with ``n_agents`` agents and ``n_landmarks`` landmarks (default: the maxima)."""
        task = SpreadTask(
            n_agents=jnp.asarray(self.max_agents if n_agents is None else n_agents, jnp.int32),
            n_landmarks=jnp.asarray(
                self.max_objects if n_landmarks is None else n_landmarks, jnp.int32
            ),
        )
        return self.validate_task(task)

    def validate_task(self, task: SpreadTask) -> SpreadTask:
        self.check_count("n_agents", task.n_agents, self.max_agents, 1)
        self.check_count("n_landmarks", task.n_landmarks, self.max_objects, 1)
        return task

    def sample_task(self, key: Array) -> SpreadTask:
        """The full game: every agent and landmark slot in use (``key`` is unused)."""
        del key
        return SpreadTask(
            n_agents=jnp.asarray(self.max_agents, jnp.int32),
            n_landmarks=jnp.asarray(self.max_objects, jnp.int32),
        )

    # --- dynamics --------------------------------------------------------------------------
    def bodies(self, state: ParticleState) -> Bodies:
        return self.default_bodies(state.alive, self.agent_size)

    def accel(self, state: ParticleState) -> Array:
        return jnp.full((self.max_agents,), 5.0, jnp.float32)

    def landmark_mask(self, task: SpreadTask) -> Array:
        """``[M]`` bool: landmark slots in the game."""
        return jnp.arange(self.max_objects) < task.n_landmarks

    def object_mask(self, task: SpreadTask) -> Array:
        return self.landmark_mask(task)

    def object_sizes(self, state: ParticleState) -> Array:
        return jnp.full((self.max_objects,), self.landmark_size, jnp.float32)

    def init_state(self, key: Array, task: SpreadTask) -> ParticleState:
        k_agents, k_obj, k_next = jax.random.split(key, 3)
        active = self.agent_mask(task)
        pos = entity_uniform(k_agents, self.max_agents) * active[:, None]
        obj = entity_uniform(k_obj, self.max_objects) * self.landmark_mask(task)[:, None]
        return ParticleState(
            key=k_next,
            step=jnp.zeros((), jnp.int32),
            task=task,
            pos=pos,
            vel=jnp.zeros((self.max_agents, 2), jnp.float32),
            obj_pos=obj,
            alive=active,
        )

    def rewards(self, state: ParticleState) -> tuple[Array, Array, Array]:
        """``(reward [A], coverage [], collisions [])`` of a state (see module docstring)."""
        active = state.alive
        l_mask = self.landmark_mask(state.task)
        dist = pairwise_distance(state.pos, state.obj_pos)  # [A, M]
        nearest = jnp.min(jnp.where(active[:, None], dist, jnp.inf), axis=0)  # [M]
        coverage = jnp.sum(jnp.where(l_mask, nearest, 0.0))
        d_aa = pairwise_distance(state.pos, state.pos)
        contact = (d_aa < 2 * self.agent_size) & other_agents_mask(active)
        local = -self.collision_penalty * jnp.sum(contact, axis=1).astype(jnp.float32)
        if self.local_ratio is None:
            reward = local - coverage
        else:
            reward = (1.0 - self.local_ratio) * -coverage + self.local_ratio * local
        collisions = jnp.sum(contact).astype(jnp.float32) / 2.0
        return reward, coverage, collisions

    def rules(self, state: ParticleState, key: Array):
        del key
        reward, coverage, collisions = self.rewards(state)
        extras = {"coverage": coverage, "collisions": collisions}
        discount = state.alive.astype(jnp.float32)
        return state, reward, discount, jnp.asarray(False), extras

    def task_description(self, task: Any) -> Array:
        """``[2]`` float32 game descriptor ``(n_agents, n_landmarks) / 10``."""
        return jnp.stack([task.n_agents, task.n_landmarks]).astype(jnp.float32) / 10.0

"""Common machinery of the particle worlds: state, padded agents, physics, the step skeleton.

A particle env subclasses :class:`ParticleEnv` and implements

* ``make_task`` / ``sample_task`` / ``validate_task`` (its task pytree),
* ``agent_mask(task) -> [A] bool`` (default: the first ``task.n_agents`` slots),
* ``object_mask(task) -> [M] bool`` and ``object_sizes(state) -> [M]`` (objects in the game,
  their radii; also what :mod:`envs.render` draws),
* ``bodies(state) -> Bodies`` (agent sizes, masses, speed caps; inactive agents neither move
  nor collide) and ``accel(state) -> [A]``,
* ``init_state(key, task) -> ParticleState``,
* ``rules(state, key) -> (state, reward [A], discount [A], terminated [], extras)`` applied
  after the physics step (rewards, respawns, removals),
* optionally ``observe(state) -> Observation`` and ``observation_spec`` (the default is the
  single-team layout: own state, others' relative positions and velocities, objects' relative
  positions plus :meth:`object_features`).

Randomness that depends on the number of slots is drawn per entity with ``fold_in`` of the
entity index (:func:`entity_uniform`), so a game padded to a larger maximum draws exactly the
same numbers for its real agents and objects as the unpadded game.
"""

from __future__ import annotations

import abc
from functools import cached_property
from typing import Any, ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jumanji import specs

from envs.core import (
    EnvError,
    MultiAgentEnv,
    Observation,
    TimeStep,
    is_concrete,
    make_timestep,
    other_agents_mask,
)
from envs.particle.physics import Bodies, PhysicsConfig, action_force, physics_step

Array = jax.Array

ACTION_TYPES = ("discrete", "relaxed", "continuous")


@struct.dataclass
class ParticleState:
    """State of a particle world.

    * ``key``: PRNG key; ``step``: ``[]`` int32 steps taken in the episode;
    * ``task``: the game (env-specific pytree);
    * ``pos``, ``vel``: ``[A, 2]`` float32 agent positions and velocities;
    * ``obj_pos``: ``[M, 2]`` float32 object positions (landmarks, treasures, food);
    * ``alive``: ``[A]`` bool, agents still in play (padding is never alive).
    """

    key: Array
    step: Array
    task: Any
    pos: Array
    vel: Array
    obj_pos: Array
    alive: Array


def entity_uniform(key: Array, n: int, low: float = -1.0, high: float = 1.0) -> Array:
    """``[n, 2]`` positions uniform in ``[low, high]^2``; row ``i`` depends only on ``(key, i)``.

    One draw of shape ``[n, 2]``: with JAX's partitionable threefry (the default since 0.5,
    checked in the tests) element ``(i, j)`` is a function of the key and its index only, so a
    prefix of rows does not change with ``n`` and padding stays inert.
    """
    return jax.random.uniform(key, (n, 2), jnp.float32, low, high)


def relative(pos_from: Array, pos_to: Array) -> Array:
    """``[N, K, 2]``: ``pos_to[k] - pos_from[n]`` for ``[N, 2]`` and ``[K, 2]`` inputs."""
    return pos_to[None, :, :] - pos_from[:, None, :]


class ParticleEnv(MultiAgentEnv[ParticleState, Any], abc.ABC):
    """Base of the particle worlds (see module docstring).

    Args:
      max_agents: number of agent slots ``A``.
      max_objects: number of object slots ``M``.
      episode_length: time limit (truncation).
      action_type: ``"discrete"`` (``[A]`` int32 in ``0..4``: no-op, +x, -x, +y, -y),
        ``"relaxed"`` (``[A, 5]`` float32 weights of the 5 moves, as executed by the original
        MADDPG) or ``"continuous"`` (``[A, 2]`` float32 in ``[-1, 1]``).
      integration: ``"velocity_first"`` (original MPE) or ``"position_first"``.
    """

    default_episode_length: ClassVar[int] = 25
    #: Whether :meth:`rules` uses its key (respawns); if not, ``step`` splits no key.
    stochastic_rules: ClassVar[bool] = True

    def __init__(
        self,
        max_agents: int,
        max_objects: int,
        episode_length: int | None = None,
        action_type: str = "discrete",
        integration: str = "velocity_first",
    ):
        if int(max_agents) < 1:
            raise EnvError(f"{self.name}: max_agents must be >= 1, got {max_agents}")
        if int(max_objects) < 1:
            raise EnvError(f"{self.name}: max_objects must be >= 1, got {max_objects}")
        if action_type not in ACTION_TYPES:
            raise EnvError(
                f"{self.name}: action_type must be one of {ACTION_TYPES}, got {action_type!r}"
            )
        self.max_agents = int(max_agents)
        self.max_objects = int(max_objects)
        self.episode_length = int(episode_length or self.default_episode_length)
        if self.episode_length < 1:
            raise EnvError(f"{self.name}: episode_length must be >= 1")
        self.action_type = action_type
        try:
            self.physics = PhysicsConfig(integration=integration)
        except ValueError as e:
            raise EnvError(f"{self.name}: {e}") from None
        super().__init__()

    # --- to implement ----------------------------------------------------------------------
    def agent_mask(self, task: Any) -> Array:
        """``[A]`` bool: slots that belong to this game."""
        return jnp.arange(self.max_agents) < task.n_agents

    @abc.abstractmethod
    def object_mask(self, task: Any) -> Array:
        """``[M]`` bool: object slots that belong to this game."""

    @abc.abstractmethod
    def object_sizes(self, state: ParticleState) -> Array:
        """``[M]`` float32 object radii (what touching/occupying is measured against)."""

    @abc.abstractmethod
    def bodies(self, state: ParticleState) -> Bodies:
        """Physical properties of the ``A`` agents given the state (inactive: no move/collide)."""

    @abc.abstractmethod
    def accel(self, state: ParticleState) -> Array:
        """``[A]`` float32 action sensitivity."""

    @abc.abstractmethod
    def init_state(self, key: Array, task: Any) -> ParticleState:
        """Initial state of an episode of ``task``."""

    @abc.abstractmethod
    def rules(
        self, state: ParticleState, key: Array
    ) -> tuple[ParticleState, Array, Array, Array, dict]:
        """After physics: ``(state, reward [A], discount [A], terminated [], extras)``."""

    #: Other agents are seen as ``(dx, dy, vx, vy)`` (True) or ``(dx, dy)`` (False).
    observe_other_velocity: ClassVar[bool] = True
    #: Number of extra per-object features from :meth:`object_features`.
    object_feature_dim: ClassVar[int] = 0

    def object_features(self, state: ParticleState) -> Array | None:
        """Extra per-object features ``[M, object_feature_dim]`` (default: none)."""
        return None

    def observe(self, state: ParticleState) -> Observation:
        """Observation of every agent in a single-team world (Pac-Man overrides it):

        ``self [A, 4]`` own ``(vx, vy, x, y)``; ``agents [A, A, 4|2]`` others' relative position
        (and velocity); ``objects [A, M, 2 + k]`` objects' relative position (and
        :meth:`object_features`); masks from ``alive`` and :meth:`object_mask`; padded and
        removed agents' rows are zero.
        """
        active = state.alive
        a_mask = other_agents_mask(active)
        agents = relative(state.pos, state.pos)  # [A, A, 2]
        if self.observe_other_velocity:
            vel_j = jnp.broadcast_to(state.vel[None], agents.shape)
            agents = jnp.concatenate([agents, vel_j], axis=-1)
        o_mask = self.object_mask(state.task)[None, :] & active[:, None]
        objects = relative(state.pos, state.obj_pos)  # [A, M, 2]
        extra = self.object_features(state)
        if extra is not None:
            extra = jnp.broadcast_to(extra[None], (*objects.shape[:2], extra.shape[-1]))
            objects = jnp.concatenate([objects, extra], axis=-1)
        return Observation(
            self=jnp.concatenate([state.vel, state.pos], axis=-1) * active[:, None],
            agents=agents * a_mask[..., None],
            agents_mask=a_mask,
            objects=objects * o_mask[..., None],
            objects_mask=o_mask,
            team=jnp.zeros((self.max_agents,), jnp.int32),
            agent_mask=active,
        )

    @cached_property
    def observation_spec(self) -> specs.Spec[Observation]:
        """Spec of :meth:`observe`'s default layout."""
        return self.observation_spec_from(
            d_self=4,
            d_agent=4 if self.observe_other_velocity else 2,
            d_obj=2 + self.object_feature_dim,
        )

    # --- contract --------------------------------------------------------------------------
    def reset_to(self, key: chex.PRNGKey, task: Any) -> tuple[ParticleState, TimeStep]:
        self.validate_task(task)
        state = self.init_state(key, task)
        obs = self.observe(state)
        a = self.max_agents
        ts = make_timestep(
            obs,
            reward=jnp.zeros((a,), jnp.float32),
            discount=jnp.ones((a,), jnp.float32),
            terminated=False,
            truncated=False,
            first=True,
        )
        return state, ts

    def step(self, state: ParticleState, action: Array) -> tuple[ParticleState, TimeStep]:
        self.check_action(action)
        active = state.alive
        force = action_force(action, self.action_type, self.accel(state), active)
        pos, vel = physics_step(state.pos, state.vel, force, self.bodies(state), self.physics)
        if self.stochastic_rules:
            key, k_rules = jax.random.split(state.key)
        else:
            key, k_rules = state.key, state.key
        state = state.replace(key=key, pos=pos, vel=vel, step=state.step + 1)
        state, reward, discount, terminated, extras = self.rules(state, k_rules)
        obs = self.observe(state)
        ts = make_timestep(
            obs,
            reward=reward,
            discount=discount,
            terminated=terminated,
            truncated=state.step >= self.episode_length,
            extras=extras,
        )
        return state, ts

    @cached_property
    def action_spec(self) -> specs.Spec:
        a = self.max_agents
        if self.action_type == "discrete":
            return specs.MultiDiscreteArray(
                np.full((a,), 5, np.int32), jnp.int32, "action"
            )
        if self.action_type == "relaxed":
            return specs.BoundedArray((a, 5), jnp.float32, 0.0, 1.0, "action")
        return specs.BoundedArray((a, 2), jnp.float32, -1.0, 1.0, "action")

    # --- helpers ---------------------------------------------------------------------------
    def default_bodies(
        self, active: Array, size: float | Array, max_speed: float | Array = jnp.inf
    ) -> Bodies:
        """Bodies of ``A`` agents of mass 1 with the given sizes; inactive ones are frozen."""
        a = self.max_agents
        return Bodies(
            size=jnp.broadcast_to(jnp.asarray(size, jnp.float32), (a,)),
            mass=jnp.ones((a,), jnp.float32),
            max_speed=jnp.broadcast_to(jnp.asarray(max_speed, jnp.float32), (a,)),
            movable=active,
            collide=active,
        )

    def check_count(self, what: str, value: Any, maximum: int, minimum: int = 0) -> None:
        """Raise :class:`EnvError` if a concrete count is outside ``[minimum, maximum]``."""
        if not is_concrete(value):
            return
        v = np.asarray(value)
        if v.size and (v.max() > maximum):
            raise EnvError(
                f"{self.name}: {what}={v.tolist()} exceeds the maximum {maximum} this env was "
                f"built with; build it with a larger maximum"
            )
        if v.size and (v.min() < minimum):
            raise EnvError(f"{self.name}: {what}={v.tolist()} is below the minimum {minimum}")

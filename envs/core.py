"""Core types of the environment layer: observations, time steps, the multi-agent base class.

Every environment in :mod:`envs` follows one contract:

* ``reset(key) -> (state, timestep)`` samples a task with :meth:`MultiAgentEnv.sample_task`
  and starts an episode of it; ``reset_to(key, task)`` starts an episode of a chosen task;
  ``step(state, action) -> (state, timestep)``. The PRNG key lives in ``state.key``.
* Agents are an array axis. Every per-agent array has leading shape ``[A]`` with
  ``A = max_agents``, fixed when the env is built. A task (a pytree) says how many agents are
  active; the others are padding, flagged by ``agent_mask``. Tasks of different populations
  therefore share one compiled program.
* ``step`` never resets. Auto-reset is the :class:`envs.wrappers.AutoReset` wrapper.

Notation used in docstrings: ``A`` max agents, ``M`` max objects (landmarks, treasures,
food, ...), ``d_*`` feature sizes, ``[]`` a scalar.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar, Generic, TypeVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jumanji import specs
from jumanji.env import Environment

Array = jax.Array


@struct.dataclass
class Observation:
    """Entity-structured, padded observation of every agent.

    Fields (``A`` agents, ``M`` objects):

    * ``self``: ``[A, d_self]`` float32, the agent's own features.
    * ``agents``: ``[A, A, d_agent]`` float32, row ``i`` holds agent ``i``'s view of agent ``j``.
    * ``agents_mask``: ``[A, A]`` bool, ``True`` where ``j`` is visible to ``i`` (active, alive,
      ``j != i``). Masked rows are all zeros.
    * ``objects``: ``[A, M, d_obj]`` float32, agent ``i``'s view of object ``m``.
    * ``objects_mask``: ``[A, M]`` bool, ``True`` where the object exists in this game.
    * ``team``: ``[A]`` int32, team id of each agent (0 for single-team games).
    * ``agent_mask``: ``[A]`` bool, ``True`` for agents that are part of this game (``False``
      for padding). It is fixed for an episode; agents removed mid-episode (a caught Pac-Man)
      stay in ``agent_mask`` and are flagged by the env's own features and ``discount``.
    """

    self: Array
    agents: Array
    agents_mask: Array
    objects: Array
    objects_mask: Array
    team: Array
    agent_mask: Array

    @property
    def flat(self) -> Array:
        """Flat padded view ``[A, d_self + A * (d_agent + 1) + M * (d_obj + 1)]`` float32.

        Masked entities are zeroed and each entity block ends with its mask bit, so an MLP sees
        exactly which slots are present. Inactive agents' rows are all zeros.
        """
        a = self.agents * self.agents_mask[..., None]
        o = self.objects * self.objects_mask[..., None]
        a = jnp.concatenate([a, self.agents_mask[..., None].astype(a.dtype)], axis=-1)
        o = jnp.concatenate([o, self.objects_mask[..., None].astype(o.dtype)], axis=-1)
        lead = self.self.shape[:-1]
        flat = jnp.concatenate(
            [self.self, a.reshape(*lead, -1), o.reshape(*lead, -1)], axis=-1
        )
        return flat * self.agent_mask[..., None]


@struct.dataclass
class TimeStep:
    """What an agent sees after ``reset`` or ``step``.

    * ``observation``: :class:`Observation`.
    * ``reward``: ``[A]`` float32; padded and removed agents get exactly 0.
    * ``discount``: ``[A]`` float32, 0 for agents whose own episode has ended (terminated,
      removed, or padding), else 1. Truncation does not zero it.
    * ``terminated``: ``[]`` bool, the game reached a terminal state.
    * ``truncated``: ``[]`` bool, the time limit was hit (and the game did not terminate).
    * ``first``: ``[]`` bool, this is the first step of an episode.
    * ``extras``: dict of arrays (env specific metrics, and ``final_observation`` under
      :class:`envs.wrappers.AutoReset`).
    """

    observation: Observation
    reward: Array
    discount: Array
    terminated: Array
    truncated: Array
    first: Array
    extras: dict = struct.field(default_factory=dict)

    @property
    def done(self) -> Array:
        """``[]`` bool: the episode ended (terminated or truncated)."""
        return jnp.logical_or(self.terminated, self.truncated)


S = TypeVar("S")
T = TypeVar("T")


class EnvError(ValueError):
    """Raised for an invalid environment configuration, task, or action."""


def is_concrete(x: Any) -> bool:
    """Whether every leaf of ``x`` has a concrete value (is not a tracer)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def check_range(name: str, value: Any, low: float, high: float) -> None:
    """Raise :class:`EnvError` if a concrete ``value`` lies outside ``[low, high]``.

    Tracers are skipped: tasks built by :meth:`MultiAgentEnv.make_task` are checked there.
    """
    if not is_concrete(value):
        return
    v = np.asarray(value)
    if v.size and (v.min() < low or v.max() > high):
        raise EnvError(f"{name}={v.tolist()} is outside the allowed range [{low}, {high}]")


def _compile_time_spec(method: Any) -> Any:
    """Wrap a spec method so it works under ``jit`` and is built once per instance.

    jumanji specs run value checks that fail on tracers; building them under
    ``jax.ensure_compile_time_eval`` keeps them concrete wherever they are asked for.
    """
    attr = f"_cached_{method.__name__}"

    @functools.wraps(method)
    def wrapper(self: Any) -> Any:
        cached = self.__dict__.get(attr)
        if cached is None:
            with jax.ensure_compile_time_eval():
                cached = method(self)
            self.__dict__[attr] = cached
        return cached

    wrapper.__wrapped_spec__ = True
    return wrapper


class MultiAgentEnv(Environment, Generic[S, T]):
    """Base of every metajax environment (a :class:`jumanji.env.Environment`).

    Subclasses set the static maxima in ``__init__`` (before calling ``super().__init__()``) and
    implement :meth:`make_task`, :meth:`sample_task`, :meth:`reset_to`, :meth:`step`,
    :meth:`observation_spec` and :meth:`action_spec`. :meth:`reset` is ``reset_to`` on a
    sampled task.

    Class attributes:

    * ``name``: registry name.
    * ``num_teams``: number of teams (parameter-sharing groups).
    """

    name: ClassVar[str] = "env"
    num_teams: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for spec_name in ("observation_spec", "action_spec", "reward_spec", "discount_spec"):
            fn = cls.__dict__.get(spec_name)
            if fn is not None and not getattr(fn, "__wrapped_spec__", False):
                setattr(cls, spec_name, _compile_time_spec(fn))

    max_agents: int
    max_objects: int
    episode_length: int

    # --- tasks -----------------------------------------------------------------------------
    @abc.abstractmethod
    def make_task(self, **fields: Any) -> T:
        """Build one concrete task (a pytree of arrays), validating it against the maxima."""

    @abc.abstractmethod
    def sample_task(self, key: chex.PRNGKey) -> T:
        """Sample a task from the env's default task distribution (jittable)."""

    def validate_task(self, task: T) -> T:
        """Check a concrete task against the static maxima; returns it. Tracers pass through."""
        return task

    # --- dynamics --------------------------------------------------------------------------
    @abc.abstractmethod
    def reset_to(self, key: chex.PRNGKey, task: T) -> tuple[S, TimeStep]:
        """Start an episode of ``task``."""

    def reset(self, key: chex.PRNGKey) -> tuple[S, TimeStep]:
        """Start an episode of a task drawn with :meth:`sample_task`."""
        k_task, k_reset = jax.random.split(key)
        return self.reset_to(k_reset, self.sample_task(k_task))

    @abc.abstractmethod
    def step(self, state: S, action: Array) -> tuple[S, TimeStep]:
        """Advance one step. ``action`` must match :meth:`action_spec` in shape and dtype."""

    # --- specs -----------------------------------------------------------------------------
    @abc.abstractmethod
    def observation_spec(self) -> specs.Spec[Observation]:
        """Spec of :class:`Observation` (shapes and dtypes, padded)."""

    @abc.abstractmethod
    def action_spec(self) -> specs.Spec:
        """Spec of the joint action, leading axis ``A``."""

    def reward_spec(self) -> specs.Array:
        """``[A]`` float32 per-agent reward."""
        return specs.Array((self.max_agents,), jnp.float32, "reward")

    def discount_spec(self) -> specs.BoundedArray:
        """``[A]`` float32 per-agent discount in ``[0, 1]``."""
        return specs.BoundedArray((self.max_agents,), jnp.float32, 0.0, 1.0, "discount")

    # --- helpers for subclasses ------------------------------------------------------------
    def check_action(self, action: Array) -> None:
        """Raise :class:`EnvError` (at trace time) if ``action`` has the wrong shape or dtype."""
        spec = self.action_spec()
        shape = tuple(getattr(action, "shape", ()))
        dtype = jnp.result_type(action)
        if shape != tuple(spec.shape):
            raise EnvError(
                f"{self.name}: action has shape {shape}, expected {tuple(spec.shape)} "
                f"(leading axis = max_agents = {self.max_agents})"
            )
        want = jnp.dtype(spec.dtype)
        if jnp.issubdtype(want, jnp.integer) != jnp.issubdtype(dtype, jnp.integer) or (
            jnp.issubdtype(want, jnp.floating) and not jnp.issubdtype(dtype, jnp.floating)
        ):
            raise EnvError(f"{self.name}: action has dtype {dtype}, expected {want}")

    def observation_spec_from(
        self, d_self: int, d_agent: int, d_obj: int
    ) -> specs.Spec[Observation]:
        """Standard :class:`Observation` spec for feature sizes ``d_self, d_agent, d_obj``."""
        a, m = self.max_agents, self.max_objects
        f32, b = jnp.float32, jnp.bool_
        spec = specs.Spec(
            Observation,
            "ObservationSpec",
            agents=specs.Array((a, a, d_agent), f32, "agents"),
            agents_mask=specs.Array((a, a), b, "agents_mask"),
            objects=specs.Array((a, m, d_obj), f32, "objects"),
            objects_mask=specs.Array((a, m), b, "objects_mask"),
            team=specs.BoundedArray((a,), jnp.int32, 0, max(self.num_teams - 1, 0), "team"),
            agent_mask=specs.Array((a,), b, "agent_mask"),
        )
        # ``self`` collides with the name of Spec.__init__'s first argument: add it afterwards.
        self_spec = specs.Array((a, d_self), f32, "self")
        spec._specs = {"self": self_spec, **spec._specs}
        spec.self = self_spec
        return spec

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_agents={self.max_agents}, "
            f"max_objects={self.max_objects}, episode_length={self.episode_length})"
        )


def make_timestep(
    observation: Observation,
    reward: Array,
    discount: Array,
    terminated: Array,
    truncated: Array,
    first: bool | Array = False,
    extras: dict | None = None,
) -> TimeStep:
    """Build a :class:`TimeStep`, zeroing reward and discount of masked agents.

    ``truncated`` is forced False where ``terminated`` is True.
    """
    mask = observation.agent_mask
    terminated = jnp.asarray(terminated, bool)
    return TimeStep(
        observation=observation,
        reward=jnp.where(mask, reward, 0.0).astype(jnp.float32),
        discount=jnp.where(mask, discount, 0.0).astype(jnp.float32),
        terminated=terminated,
        truncated=jnp.logical_and(jnp.asarray(truncated, bool), ~terminated),
        first=jnp.asarray(first, bool),
        extras={} if extras is None else extras,
    )


def other_agents_mask(active: Array) -> Array:
    """``[A, A]`` bool: ``active[i] & active[j] & (i != j)`` for an ``[A]`` bool ``active``."""
    n = active.shape[0]
    return active[:, None] & active[None, :] & ~jnp.eye(n, dtype=bool)

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
* jumanji 1.x conformance: the timestep is a :class:`jumanji.types.TimeStep` (``step_type``,
  ``first()`` / ``mid()`` / ``last()``, per-agent ``reward`` and ``discount``, ``extras``) and
  the four specs are cached properties (``env.action_spec``, not ``env.action_spec()``), so
  jumanji's ``AutoResetWrapper``, ``VmapAutoResetWrapper`` and ``JumanjiToGymWrapper`` run on
  every env. The gym wrapper converts one scalar reward per step: put jumanji's
  ``MultiToSingleWrapper`` (sum of rewards, max of discounts) in between to step it.

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
from jumanji import types as jumanji_types
from jumanji.env import Environment
from jumanji.types import StepType

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


@chex.dataclass(kw_only=True)
class TimeStep(jumanji_types.TimeStep[Observation]):
    """What an agent sees after ``reset`` or ``step``: a :class:`jumanji.types.TimeStep`.

    jumanji's fields and methods, per agent:

    * ``step_type``: ``[]`` int8 :class:`jumanji.types.StepType`: ``FIRST`` after ``reset``,
      ``LAST`` on the step that ends the episode (terminated or truncated), else ``MID``.
      ``first()``, ``mid()``, ``last()``: ``[]`` bool.
    * ``reward``: ``[A]`` float32; padded and removed agents get exactly 0.
    * ``discount``: ``[A]`` float32, 0 for agents whose own episode has ended (terminated,
      removed, or padding), else 1. Termination zeroes it for every agent (as
      :func:`jumanji.types.termination` does); truncation does not.
    * ``observation``: :class:`Observation` (padded, with masks).
    * ``extras``: dict of arrays (env specific metrics, and ``final_observation`` under
      :class:`envs.wrappers.AutoReset`).

    and two flags that jumanji's ``step_type`` merges (``last() == terminated | truncated``):

    * ``terminated``: ``[]`` bool, the game reached a terminal state.
    * ``truncated``: ``[]`` bool, the time limit was hit (and the game did not terminate).

    Batched (``vmap``) timesteps carry leading batch axes on every leaf. Build one with
    :func:`make_timestep`.
    """

    terminated: Array
    truncated: Array

    @property
    def done(self) -> Array:
        """``[]`` bool: the episode ended (terminated or truncated); ``last()``."""
        return self.last()


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


class spec_property(functools.cached_property):
    """A :func:`functools.cached_property` evaluated under ``jax.ensure_compile_time_eval``.

    jumanji specs run value checks that fail on tracers; building them at compile time keeps
    them concrete wherever they are first asked for (inside ``jit`` or ``vmap`` too). After the
    first access the spec is an entry of the instance ``__dict__``, found without this
    descriptor.
    """

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        with jax.ensure_compile_time_eval():
            return super().__get__(instance, owner)


SPEC_NAMES = ("observation_spec", "action_spec", "reward_spec", "discount_spec")


class MultiAgentEnv(Environment, Generic[S, T]):
    """Base of every metajax environment (a :class:`jumanji.env.Environment`).

    Subclasses set the static maxima in ``__init__`` (before calling ``super().__init__()``,
    which builds the specs) and implement :meth:`make_task`, :meth:`sample_task`,
    :meth:`reset_to`, :meth:`step`, and the cached properties :attr:`observation_spec` and
    :attr:`action_spec` (``@functools.cached_property``, as in jumanji 1.x; they are built
    under ``jax.ensure_compile_time_eval``). :meth:`reset` is ``reset_to`` on a sampled task.

    Class attributes:

    * ``name``: registry name.
    * ``num_teams``: number of teams (parameter-sharing groups).
    """

    name: ClassVar[str] = "env"
    num_teams: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make each spec a :class:`spec_property`; refuse specs written as plain methods."""
        super().__init_subclass__(**kwargs)
        for name in SPEC_NAMES:
            attr = cls.__dict__.get(name)
            if attr is None or isinstance(attr, spec_property):
                continue
            if isinstance(attr, functools.cached_property | property):
                fn = attr.func if isinstance(attr, functools.cached_property) else attr.fget
                prop = spec_property(fn)
                prop.__set_name__(cls, name)
                if getattr(attr, "__isabstractmethod__", False):
                    prop.__isabstractmethod__ = True
                setattr(cls, name, prop)
            else:
                raise TypeError(
                    f"{cls.__qualname__}.{name} must be a property: decorate it with "
                    "@functools.cached_property (jumanji 1.x specs are cached properties; "
                    f"callers read env.{name}, not env.{name}())"
                )

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

    # --- specs (cached properties, as in jumanji 1.x) --------------------------------------
    @abc.abstractmethod
    @spec_property
    def observation_spec(self) -> specs.Spec[Observation]:
        """Spec of :class:`Observation` (shapes and dtypes, padded)."""

    @abc.abstractmethod
    @spec_property
    def action_spec(self) -> specs.Spec:
        """Spec of the joint action, leading axis ``A``."""

    @spec_property
    def reward_spec(self) -> specs.Array:
        """``[A]`` float32 per-agent reward."""
        return specs.Array((self.max_agents,), jnp.float32, "reward")

    @spec_property
    def discount_spec(self) -> specs.BoundedArray:
        """``[A]`` float32 per-agent discount in ``[0, 1]``."""
        return specs.BoundedArray((self.max_agents,), jnp.float32, 0.0, 1.0, "discount")

    # --- helpers for subclasses ------------------------------------------------------------
    def check_action(self, action: Array) -> None:
        """Raise :class:`EnvError` (at trace time) if ``action`` has the wrong shape or dtype."""
        spec = self.action_spec
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
        """Standard :class:`Observation` spec for feature sizes ``d_self, d_agent, d_obj``.

        Masks are bool :class:`jumanji.specs.BoundedArray` in ``[False, True]`` (as jumanji's
        own action masks), so ``jumanji.specs.jumanji_specs_to_gym_spaces`` maps them to
        bounded boxes.
        """
        a, m = self.max_agents, self.max_objects
        f32 = jnp.float32

        def mask(shape: tuple[int, ...], name: str) -> specs.BoundedArray:
            return specs.BoundedArray(shape, jnp.bool_, False, True, name)

        spec = specs.Spec(
            Observation,
            "ObservationSpec",
            agents=specs.Array((a, a, d_agent), f32, "agents"),
            agents_mask=mask((a, a), "agents_mask"),
            objects=specs.Array((a, m, d_obj), f32, "objects"),
            objects_mask=mask((a, m), "objects_mask"),
            team=specs.BoundedArray((a,), jnp.int32, 0, max(self.num_teams - 1, 0), "team"),
            agent_mask=mask((a,), "agent_mask"),
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
    terminated: bool | Array,
    truncated: bool | Array,
    first: bool | Array = False,
    extras: dict | None = None,
) -> TimeStep:
    """Build a :class:`TimeStep` from ``[A]`` ``reward`` / ``discount`` and ``[]`` flags.

    * ``step_type``: ``FIRST`` where ``first``, else ``LAST`` where the episode ended
      (``terminated | truncated``), else ``MID`` (jumanji's ``restart`` / ``termination`` /
      ``truncation`` / ``transition``).
    * Reward and discount of masked agents are zeroed; termination zeroes every discount.
    * ``truncated`` is forced False where ``terminated`` is True.
    """
    mask = observation.agent_mask
    terminated = jnp.asarray(terminated, bool)
    truncated = jnp.logical_and(jnp.asarray(truncated, bool), ~terminated)
    first = jnp.asarray(first, bool)
    step_type = jnp.where(
        first,
        StepType.FIRST,
        jnp.where(terminated | truncated, StepType.LAST, StepType.MID),
    ).astype(jnp.int8)
    discount = jnp.where(mask & ~terminated, discount, 0.0)
    return TimeStep(
        step_type=step_type,
        reward=jnp.where(mask, reward, 0.0).astype(jnp.float32),
        discount=discount.astype(jnp.float32),
        observation=observation,
        extras={} if extras is None else extras,
        terminated=terminated,
        truncated=truncated,
    )


def other_agents_mask(active: Array) -> Array:
    """``[A, A]`` bool: ``active[i] & active[j] & (i != j)`` for an ``[A]`` bool ``active``."""
    n = active.shape[0]
    return active[:, None] & active[None, :] & ~jnp.eye(n, dtype=bool)

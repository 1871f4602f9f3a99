"""Wrappers and batch helpers.

* :class:`AutoReset` starts a new episode of the same task (or a freshly sampled one) when an
  episode ends, keeping the last real observation in ``extras["final_observation"]`` and the
  ``terminated`` / ``truncated`` flags of the step that ended it.
* :func:`batch_reset_to` / :func:`batch_step` vmap an env over a leading batch axis (a stack of
  tasks of different populations compiles once).
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jumanji import specs

from envs.core import EnvError, MultiAgentEnv, TimeStep

Array = jax.Array


def _select(pred: Array, on_true: Any, on_false: Any) -> Any:
    """Tree-wise ``where(pred, on_true, on_false)`` for a scalar ``pred``."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _select_batch(pred: Array, on_true: Any, on_false: Any) -> Any:
    """Tree-wise ``where`` for a ``[B]`` ``pred`` over leaves with leading axis ``B``."""
    def sel(a: Array, b: Array) -> Array:
        return jnp.where(pred.reshape(pred.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(sel, on_true, on_false)


class Wrapper(MultiAgentEnv):
    """Base of the wrappers: copies the static maxima and delegates tasks, dynamics, specs and
    every env-specific helper (task difficulty, game tables, ...) to the wrapped ``env``.
    Subclasses override what they change."""

    def __init__(self, env: MultiAgentEnv):
        self.env = env
        self.name = env.name
        self.num_teams = env.num_teams
        self.max_agents = env.max_agents
        self.max_objects = env.max_objects
        self.episode_length = env.episode_length

    def __getattr__(self, name: str) -> Any:
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def make_task(self, **fields: Any) -> Any:
        return self.env.make_task(**fields)

    def sample_task(self, key: chex.PRNGKey) -> Any:
        return self.env.sample_task(key)

    def validate_task(self, task: Any) -> Any:
        return self.env.validate_task(task)

    def reset_to(self, key: chex.PRNGKey, task: Any) -> tuple[Any, TimeStep]:
        return self.env.reset_to(key, task)

    def step(self, state: Any, action: Array) -> tuple[Any, TimeStep]:
        return self.env.step(state, action)

    @cached_property
    def observation_spec(self) -> specs.Spec:
        return self.env.observation_spec

    @cached_property
    def action_spec(self) -> specs.Spec:
        return self.env.action_spec

    @cached_property
    def reward_spec(self) -> specs.Array:
        return self.env.reward_spec

    @cached_property
    def discount_spec(self) -> specs.BoundedArray:
        return self.env.discount_spec

    @property
    def unwrapped(self) -> MultiAgentEnv:
        """The innermost env (jumanji's ``Environment.unwrapped``)."""
        return self.env.unwrapped

    def check_action(self, action: Array) -> None:
        self.env.check_action(action)


class AutoReset(Wrapper):
    """Reset automatically at the end of each episode.

    The returned timestep of the step that ends an episode carries the *reset* observation in
    ``observation`` (so the caller can act on it), the final observation of the finished episode
    in ``extras["final_observation"]`` (always present: equal to ``observation`` on other
    steps), and that step's ``step_type`` (``LAST``), ``reward``, ``discount``, ``terminated``
    and ``truncated``: the convention of jumanji's ``AutoResetWrapper`` (whose
    ``next_obs_in_extras=True`` keeps the final observation in ``extras["next_obs"]``), which
    resets with ``env.reset`` (a freshly sampled task) instead.

    Args:
      env: the environment to wrap. Its state must have fields ``key`` and ``task``.
      resample_task: if True a new task is drawn with ``env.sample_task`` on reset; by default
        the episode restarts on the same task (one game per batch slot, as the learners need).
    """

    def __init__(self, env: MultiAgentEnv, resample_task: bool = False):
        super().__init__(env)
        self.resample_task = resample_task

    def _with_final(self, ts: TimeStep, final: Any) -> TimeStep:
        return ts.replace(extras={**ts.extras, "final_observation": final})

    def reset_to(self, key: chex.PRNGKey, task: Any) -> tuple[Any, TimeStep]:
        state, ts = self.env.reset_to(key, task)
        return state, self._with_final(ts, ts.observation)

    def reset(self, key: chex.PRNGKey) -> tuple[Any, TimeStep]:
        state, ts = self.env.reset(key)
        return state, self._with_final(ts, ts.observation)

    def _advance(self, next_state: Any) -> tuple[Any, Array, Any]:
        """Split the state's key: ``(state with the new key, reset key, task to reset to)``."""
        if self.resample_task:
            key, k_reset, k_task = jax.random.split(next_state.key, 3)
            task = self.env.sample_task(k_task)
        else:
            key, k_reset = jax.random.split(next_state.key)
            task = next_state.task
        return next_state.replace(key=key), k_reset, task

    def step(self, state: Any, action: Array) -> tuple[Any, TimeStep]:
        next_state, ts = self.env.step(state, action)
        next_state, k_reset, task = self._advance(next_state)
        reset_state, reset_ts = self.env.reset_to(k_reset, task)
        done = ts.done
        state_out = _select(done, reset_state, next_state)
        obs = _select(done, reset_ts.observation, ts.observation)
        extras = {**ts.extras, "final_observation": ts.observation}
        return state_out, ts.replace(observation=obs, extras=extras)

    def batch_step(self, states: Any, actions: Array) -> tuple[Any, TimeStep]:
        """``vmap(step)`` over a leading batch axis, computing resets only on steps where some
        game of the batch ended (``lax.cond``; jumanji's ``VmapAutoResetWrapper`` idea).

        Same results as ``jax.vmap(self.step)``. Under an outer ``vmap`` (e.g. over seeds)
        the ``cond`` becomes a select and costs what ``vmap(step)`` costs.
        """
        next_states, ts = jax.vmap(self.env.step)(states, actions)
        next_states, k_reset, tasks = jax.vmap(self._advance)(next_states)
        done = ts.done

        def reset(_: None) -> tuple[Any, Any]:
            reset_states, reset_ts = jax.vmap(self.env.reset_to)(k_reset, tasks)
            return (_select_batch(done, reset_states, next_states),
                    _select_batch(done, reset_ts.observation, ts.observation))

        def keep(_: None) -> tuple[Any, Any]:
            return next_states, ts.observation

        states_out, obs = jax.lax.cond(jnp.any(done), reset, keep, None)
        extras = {**ts.extras, "final_observation": ts.observation}
        return states_out, ts.replace(observation=obs, extras=extras)

    def __repr__(self) -> str:
        return f"AutoReset({self.env!r}, resample_task={self.resample_task})"


class GoalObservation(Wrapper):
    """Append the task's goal descriptor to every agent's own features (goal-conditioned
    policies, e.g. MESA's goal-conditioned baseline).

    ``obs.self`` becomes ``[A, d_self + G]`` with ``G`` the size of
    ``env.task_description(task)`` (zeros for padded agents); everything else is the wrapped
    env's. The state is the wrapped env's own state (it must carry ``task``), so
    :class:`AutoReset` can wrap this wrapper.

    Raises:
      EnvError: the env has no ``task_description``.
    """

    def __init__(self, env: MultiAgentEnv):
        if not callable(getattr(env, "task_description", None)):
            raise EnvError(f"{env.name}: no task_description, so no goal to observe")
        super().__init__(env)

    def _augment(self, ts: TimeStep, task: Any) -> TimeStep:
        obs = ts.observation
        goal = self.env.task_description(task).astype(obs.self.dtype)
        goal = jnp.broadcast_to(goal, (obs.self.shape[0], goal.shape[-1]))
        goal = goal * obs.agent_mask[:, None]
        # ``replace(self=...)`` would clash with the method's own ``self``
        new = dataclasses.replace(obs, **{"self": jnp.concatenate([obs.self, goal], -1)})
        return ts.replace(observation=new)

    def reset_to(self, key: chex.PRNGKey, task: Any) -> tuple[Any, TimeStep]:
        state, ts = self.env.reset_to(key, task)
        return state, self._augment(ts, task)

    def step(self, state: Any, action: Array) -> tuple[Any, TimeStep]:
        state, ts = self.env.step(state, action)
        return state, self._augment(ts, state.task)

    @cached_property
    def observation_spec(self) -> specs.Spec:
        inner = self.env.observation_spec
        task = self.env.sample_task(jax.random.PRNGKey(0))
        g = int(np.prod(jax.eval_shape(self.env.task_description, task).shape))
        d_self = inner.self.shape[-1] + g
        return self.observation_spec_from(
            d_self, inner.agents.shape[-1], inner.objects.shape[-1])

    def __repr__(self) -> str:
        return f"GoalObservation({self.env!r})"


def stack_tasks(tasks: list[Any]) -> Any:
    """Stack a list of tasks (pytrees of equal structure) into one batched task."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)


def batch_reset_to(env: MultiAgentEnv, keys: Array, tasks: Any) -> tuple[Any, TimeStep]:
    """``vmap(env.reset_to)`` over ``[B]`` keys and a ``[B]``-batched task."""
    return jax.vmap(env.reset_to)(keys, tasks)


def batch_step(env: MultiAgentEnv, states: Any, actions: Array) -> tuple[Any, TimeStep]:
    """``vmap(env.step)`` over a batch of states and ``[B, A, ...]`` actions."""
    return jax.vmap(env.step)(states, actions)


def random_actions(env: MultiAgentEnv, key: chex.PRNGKey) -> Array:
    """A uniformly random joint action matching ``env.action_spec`` (for tests/benchmarks)."""
    spec = env.action_spec
    if isinstance(spec, specs.DiscreteArray | specs.MultiDiscreteArray):
        n = jnp.asarray(np.asarray(spec.num_values))
        return jax.random.randint(key, spec.shape, 0, n, dtype=spec.dtype)
    if isinstance(spec, specs.BoundedArray):
        return jax.random.uniform(
            key, spec.shape, spec.dtype, jnp.asarray(spec.minimum), jnp.asarray(spec.maximum)
        )
    raise TypeError(f"no random action for spec {spec}")

"""Wrappers and batch helpers.

* :class:`AutoReset` starts a new episode of the same task (or a freshly sampled one) when an
  episode ends, keeping the last real observation in ``extras["final_observation"]`` and the
  ``terminated`` / ``truncated`` flags of the step that ended it.
* :func:`batch_reset_to` / :func:`batch_step` vmap an env over a leading batch axis (a stack of
  tasks of different populations compiles once).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jumanji import specs

from envs.core import MultiAgentEnv, TimeStep

Array = jax.Array


def _select(pred: Array, on_true: Any, on_false: Any) -> Any:
    """Tree-wise ``where(pred, on_true, on_false)`` for a scalar ``pred``."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class AutoReset(MultiAgentEnv):
    """Reset automatically at the end of each episode.

    The returned timestep of the step that ends an episode carries the *reset* observation in
    ``observation`` (so the caller can act on it), the final observation of the finished episode
    in ``extras["final_observation"]`` (always present: equal to ``observation`` on other
    steps), and that step's ``reward``, ``discount``, ``terminated`` and ``truncated``.

    Args:
      env: the environment to wrap. Its state must have fields ``key`` and ``task``.
      resample_task: if True a new task is drawn with ``env.sample_task`` on reset; by default
        the episode restarts on the same task (one game per batch slot, as the learners need).
    """

    def __init__(self, env: MultiAgentEnv, resample_task: bool = False):
        self.env = env
        self.resample_task = resample_task
        self.name = env.name
        self.num_teams = env.num_teams
        self.max_agents = env.max_agents
        self.max_objects = env.max_objects
        self.episode_length = env.episode_length

    def __getattr__(self, name: str) -> Any:
        # Delegate env-specific helpers (task difficulty, game tables, ...) to the wrapped env.
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def make_task(self, **fields: Any) -> Any:
        return self.env.make_task(**fields)

    def sample_task(self, key: chex.PRNGKey) -> Any:
        return self.env.sample_task(key)

    def validate_task(self, task: Any) -> Any:
        return self.env.validate_task(task)

    def _with_final(self, ts: TimeStep, final: Any) -> TimeStep:
        return ts.replace(extras={**ts.extras, "final_observation": final})

    def reset_to(self, key: chex.PRNGKey, task: Any) -> tuple[Any, TimeStep]:
        state, ts = self.env.reset_to(key, task)
        return state, self._with_final(ts, ts.observation)

    def reset(self, key: chex.PRNGKey) -> tuple[Any, TimeStep]:
        state, ts = self.env.reset(key)
        return state, self._with_final(ts, ts.observation)

    def step(self, state: Any, action: Array) -> tuple[Any, TimeStep]:
        next_state, ts = self.env.step(state, action)
        if self.resample_task:
            key, k_reset, k_task = jax.random.split(next_state.key, 3)
            task = self.env.sample_task(k_task)
        else:
            key, k_reset = jax.random.split(next_state.key)
            task = next_state.task
        next_state = next_state.replace(key=key)
        reset_state, reset_ts = self.env.reset_to(k_reset, task)
        done = ts.done
        state_out = _select(done, reset_state, next_state)
        obs = _select(done, reset_ts.observation, ts.observation)
        extras = {**ts.extras, "final_observation": ts.observation}
        return state_out, ts.replace(observation=obs, extras=extras)

    def observation_spec(self) -> specs.Spec:
        return self.env.observation_spec()

    def action_spec(self) -> specs.Spec:
        return self.env.action_spec()

    def check_action(self, action: Array) -> None:
        self.env.check_action(action)

    def __repr__(self) -> str:
        return f"AutoReset({self.env!r}, resample_task={self.resample_task})"


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
    """A uniformly random joint action matching ``env.action_spec()`` (for tests/benchmarks)."""
    spec = env.action_spec()
    if isinstance(spec, specs.DiscreteArray | specs.MultiDiscreteArray):
        n = jnp.asarray(np.asarray(spec.num_values))
        return jax.random.randint(key, spec.shape, 0, n, dtype=spec.dtype)
    if isinstance(spec, specs.BoundedArray):
        return jax.random.uniform(
            key, spec.shape, spec.dtype, jnp.asarray(spec.minimum), jnp.asarray(spec.maximum)
        )
    raise TypeError(f"no random action for spec {spec}")

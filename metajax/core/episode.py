"""The one episode player: a policy plays one episode of a task from a reset, without
auto-reset, under ``lax.scan``. Evaluation (:func:`metajax.train.evaluation.make_evaluator`),
playing a trained run (:func:`metajax.pipelines.experiment.play`) and MRA's attention pictures
(:func:`metajax.algos.mra.attention_episode`) all call :func:`play_episode`; what each keeps of
the steps is its ``record`` (a per-step trace) and ``accumulate`` (per-step sums while the
episode lasts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from envs.core import MultiAgentEnv, Observation

Array = jax.Array

#: ``policy(params, obs, carry, key) -> (env action, carry)``
Policy = Callable[[Any, Observation, Any, Array], tuple[Any, Any]]


class Step(NamedTuple):
    """What one step of :func:`play_episode` hands to ``record`` and ``accumulate``: the
    observation acted on, the action, the policy's carry after acting, and the env state and
    timestep after the step."""

    obs: Observation
    action: Any
    carry: Any
    state: Any
    ts: Any


class Played(NamedTuple):
    """One played episode.

    * ``returns [A]``: per-agent undiscounted return, summed until the episode ended (padded
      agents return 0);
    * ``sums``: ``{name: []}`` float32 sums of ``accumulate``'s values over the steps before
      the episode ended (empty without ``accumulate``);
    * ``trace``: ``record``'s value at each step stacked ``[T, ...]`` (``None`` without);
    * ``reset_state``, ``reset_obs``: the state and observation after the reset.
    """

    returns: Array
    sums: dict
    trace: Any
    reset_state: Any
    reset_obs: Observation


def play_episode(
    policy: Policy,
    env: MultiAgentEnv,
    params: Any,
    task: Any,
    key: Array,
    carry0: Any,
    steps: int | None = None,
    record: Callable[[Step], Any] | None = None,
    accumulate: Callable[[Step], dict] | None = None,
) -> Played:
    """Play ``steps`` env steps (default ``env.episode_length``) of ``task`` from
    ``env.reset_to``, the policy's carry starting at ``carry0``; ``key`` is split into the reset
    key and one key per step. Pure and traceable (jit/vmap it as needed).

    ``accumulate(step) -> {name: scalar}``: summed over the steps while the episode lasts
    (each value times 1 while alive, 0 after the step that ended it), in float32.
    """
    steps = env.episode_length if steps is None else int(steps)
    k_reset, k_run = jax.random.split(key)
    state, ts = env.reset_to(k_reset, task)

    def body(c, k):
        state, obs, carry, ret, alive, acc = c
        act, carry = policy(params, obs, carry, k)
        state, ts = env.step(state, act)
        step = Step(obs, act, carry, state, ts)
        ret = ret + jnp.where(alive, ts.reward, 0.0)
        if accumulate is not None:
            live = alive.astype(jnp.float32)
            acc = {n: acc[n] + live * v for n, v in accumulate(step).items()}
        alive = alive & ~ts.done
        out = None if record is None else record(step)
        return (state, ts.observation, carry, ret, alive, acc), out

    acc0 = {}
    if accumulate is not None:  # its names, from shapes only

        def first() -> dict:
            act, carry = policy(params, ts.observation, carry0, k_run)
            return accumulate(Step(ts.observation, act, carry, *env.step(state, act)))

        acc0 = {n: jnp.zeros((), jnp.float32) for n in jax.eval_shape(first)}
    init = (state, ts.observation, carry0, jnp.zeros((env.max_agents,)), jnp.asarray(True),
            acc0)
    (_, _, _, ret, _, acc), trace = jax.lax.scan(body, init, jax.random.split(k_run, steps))
    return Played(ret, acc, trace, state, ts.observation)


def with_reset(first: Any, rest: Any) -> Any:
    """``[T + 1, ...]``: the leaves of ``first`` (e.g. the reset state) put before those of
    ``rest`` ``[T, ...]`` (a recorded trace)."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)

"""Playing whole episodes with a trained (or a uniformly random) policy, and what MESA measures
on them: returns, high-reward transitions, optima found, NashConv, coverage of ``M_*``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.core import MultiAgentEnv
from metajax.algos.mesa import core as mc
from metajax.algos.mesa.config import MESAConfig
from metajax.algos.mesa.features import features, scan_chunk, shared_reward
from metajax.core.interfaces import ActionSpace, Learner
from metajax.core.ops import gumbel_softmax

Array = jax.Array


def random_action(space: ActionSpace, key: Array, n_agents: int) -> tuple[Array, Array]:
    """A uniformly random joint action: ``(env action [A, ...], critic action [A, d])``."""
    if space.kind == "discrete":
        idx = jax.random.randint(key, (n_agents,), 0, space.dim, jnp.int32)
        return idx, jax.nn.one_hot(idx, space.dim)
    if space.kind == "relaxed":
        y = gumbel_softmax(key, jnp.zeros((n_agents, space.dim)))
        return y.reshape((n_agents, *space.env_shape)), y
    a = jax.random.uniform(key, (n_agents, space.dim), minval=-1.0, maxval=1.0)
    return a.reshape((n_agents, *space.env_shape)), a


@struct.dataclass
class EpisodeStats:
    """One played episode (``T`` steps, padded after its end): ``reward`` ``[T]`` shared
    reward, ``alive`` ``[T]`` bool (step within the episode), ``sa`` ``[T, D]`` joint
    features, ``actions`` ``[T, A]`` (discrete envs) or ``[T, A, d]`` critic actions."""

    reward: Array
    alive: Array
    sa: Array
    actions: Array


def make_player(env: MultiAgentEnv, learner: Learner, cfg: MESAConfig,
                random_policy: bool = False) -> Callable[..., EpisodeStats]:
    """``play(params, task, key, greedy) -> EpisodeStats`` for one episode (no auto-reset)."""
    space = ActionSpace.of(env)
    n_agents, steps = env.max_agents, env.episode_length
    carry0 = jnp.zeros_like(learner.initial_carry())

    def play(params: Any, task: Any, key: Array, greedy: bool | Array) -> EpisodeStats:
        k_reset, k_run = jax.random.split(key)
        state, ts = env.reset_to(k_reset, task)

        def body(c, k):
            state, obs, carry, alive = c
            if random_policy:
                env_a, critic_a = random_action(space, k, n_agents)
            else:
                env_a, critic_a, carry = learner.act(params, obs, carry, k, greedy)
            sa = features(cfg, obs, critic_a)
            state, ts = env.step(state, env_a)
            r = shared_reward(ts.reward, obs.agent_mask)
            out = EpisodeStats(reward=jnp.where(alive, r, 0.0), alive=alive, sa=sa,
                               actions=env_a)
            return (state, ts.observation, carry, alive & ~ts.done), out

        init = (state, ts.observation, carry0, jnp.asarray(True))
        _, stats = jax.lax.scan(body, init, jax.random.split(k_run, steps))
        return stats

    return play


def task_metrics(env: MultiAgentEnv, learner: Learner, cfg: MESAConfig,
                 play: Callable[..., EpisodeStats]) -> Callable[..., dict]:
    """``metrics(params, task, key) -> {name: []}`` of a trained learner on one task:

    * ``greedy_return`` / ``stochastic_return``: mean undiscounted shared return per episode;
    * ``high_reward``: transitions with reward ``>= R*`` per stochastic episode (Fig. 7);
      ``zero_shot`` (config): also measure it for each exploration policy and for uniformly
      random actions on the test tasks before meta-testing (Fig. 7, left);
    * ``optimal_value`` and ``optimal_found`` (greedy return reaches it) where the env knows
      its optimum (climb games); ``nash_conv`` of the learned mixed joint policy (one-step
      climb game: ``softmax`` of the actors' logits, the distribution of Gumbel-max actions).
    """
    n = cfg.eval_episodes
    opt_fn = getattr(env, "optimal_value", None) or getattr(env, "optimal_return", None)
    nash_fn = getattr(env, "nash_conv", None)

    def metrics(params: Any, task: Any, key: Array) -> dict:
        k_g, k_s = jax.random.split(key)
        many = jax.vmap(play, (None, None, 0, None))
        g = many(params, task, jax.random.split(k_g, n), True)
        s = many(params, task, jax.random.split(k_s, n), False)
        out = {
            "greedy_return": jnp.mean(jnp.sum(g.reward, -1)),
            "stochastic_return": jnp.mean(jnp.sum(s.reward, -1)),
            "high_reward": jnp.mean(jnp.sum((s.reward >= cfg.threshold) & s.alive, -1)),
        }
        if callable(opt_fn):
            opt = opt_fn(task)
            out["optimal_value"] = opt
            out["optimal_found"] = (out["greedy_return"] >= opt - 1e-4).astype(jnp.float32)
        if callable(nash_fn) and env.episode_length == 1:
            _, ts = env.reset_to(k_g, task)
            logits, _ = learner.outputs(params, ts.observation, jnp.zeros_like(
                learner.initial_carry()))
            out["nash_conv"] = nash_fn(task, jax.nn.softmax(logits, -1))
        return out

    return metrics


def high_reward_hits(play: Callable[..., EpisodeStats], cfg: MESAConfig) -> Callable[..., Array]:
    """``hits(params, task, key) -> [2]``: over ``eval_episodes`` stochastic episodes, the
    mean number of transitions with reward ``>= R*`` per episode and the mean return."""

    def hits(params: Any, task: Any, key: Array) -> Array:
        st = jax.vmap(play, (None, None, 0, None))(
            params, task, jax.random.split(key, cfg.eval_episodes), False)
        return jnp.stack([jnp.mean(jnp.sum((st.reward >= cfg.threshold) & st.alive, -1)),
                          jnp.mean(jnp.sum(st.reward, -1))])

    return hits


def subspace_coverage(play: Callable[..., EpisodeStats], cfg: MESAConfig) -> Callable[..., Any]:
    """``(ds, task, key) -> (inside [], total [])``: of the high-reward pairs that
    ``coverage_episodes`` random episodes of a test task meet, how many lie within ``eps`` of
    ``M_*`` (does the meta-trained subspace contain the test task's high-reward pairs?)."""

    def cover(ds: mc.HighRewardDataset, task: Any, key: Array,
              eps: Array) -> tuple[Array, Array]:
        st = jax.vmap(play, (None, None, 0, None))(
            None, task, jax.random.split(key, cfg.coverage_episodes), False)
        sa = st.sa.reshape(-1, st.sa.shape[-1])
        high = ((st.reward >= cfg.threshold) & st.alive).reshape(-1)
        near = mc.min_distance(ds, sa, scan_chunk(*sa.shape)) < eps
        return jnp.sum(high & near), jnp.sum(high)

    return cover

"""The algorithm-free training rollout (metajax.core.rollout) on a small treasure game."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.wrappers import AutoReset
from metajax.core.rollout import Acted, RolloutState, rollout

N, STEPS, H = 3, 7, 2


def _setup(episode_length: int = 3):
    env = envs.make("treasure", max_agents=2, max_objects=2, episode_length=episode_length)
    auto = AutoReset(env)
    tasks = jax.tree.map(lambda x: jnp.broadcast_to(x, (N, *jnp.shape(x))),
                         env.make_task(n_agents=2, n_treasures=2))
    env_state, ts = jax.vmap(auto.reset_to)(jax.random.split(jax.random.PRNGKey(0), N), tasks)
    a = env.max_agents
    state = RolloutState(env_state, ts.observation, jnp.zeros((N, a, H)), jnp.zeros((N, a)),
                         aux=jnp.zeros((), jnp.int32))
    return env, auto, state


def _behaviour(obs, carry, aux, key, env_steps):
    """Action 0 everywhere; the carry counts steps; aux counts calls; the latent records
    ``env_steps``."""
    n, a = carry.shape[:2]
    action = jnp.zeros((n, a), jnp.int32)
    latent = jnp.broadcast_to(env_steps.astype(jnp.float32), (n, a, 1))
    return Acted(action, jax.nn.one_hot(action, 5), carry + 1.0, latent), aux + 1


def test_rollout_items_stats_and_carry():
    env, auto, state = _setup(episode_length=3)

    def relabel(aux, obs, action, ts):
        return jnp.full_like(ts.reward, 10.0), aux

    run = jax.jit(lambda s, k: rollout(jax.vmap(auto.step), _behaviour, s, k, STEPS,
                                       env_steps=100, reward_scale=0.5, relabel=relabel))
    new, items, stats = run(state, jax.random.PRNGKey(1))
    a = env.max_agents
    assert items.action.shape == (STEPS * N, a, 5) and items.reward.shape == (STEPS * N, a)
    # stored reward: relabelled then scaled; env steps seen by the behaviour: 100 + t * N
    np.testing.assert_array_equal(np.asarray(items.reward), 5.0)
    np.testing.assert_array_equal(np.asarray(items.latent[::N, 0, 0]), 100 + N * np.arange(STEPS))
    assert int(new.aux) == STEPS
    # episodes of 3 steps: 2 complete ones per game in 7 steps, carry reset at each end
    assert int(stats.episodes) == 2 * N
    np.testing.assert_array_equal(np.asarray(new.carry), 1.0)  # one step since the last reset
    np.testing.assert_array_equal(np.asarray(items.carry[:N]), 0.0)
    np.testing.assert_array_equal(np.asarray(items.next_carry[:N]), 1.0)
    # the episode return counts the env reward, not the relabelled one
    env_return = float(stats.mean_return(jnp.zeros(())))
    assert np.isfinite(env_return) and env_return != 10.0 * 3


def test_rollout_without_carry_storage_or_reset():
    env, auto, state = _setup(episode_length=3)
    new, items, stats = jax.jit(lambda s, k: rollout(
        jax.vmap(auto.step), _behaviour, s, k, STEPS, reset_carry=False, store_carry=False))(
        state, jax.random.PRNGKey(2))
    assert items.carry.shape == (STEPS * N, env.max_agents, 0)
    np.testing.assert_array_equal(np.asarray(new.carry), float(STEPS))
    # no episode ended: the previous mean return is kept
    _, _, none = jax.jit(lambda s, k: rollout(jax.vmap(auto.step), _behaviour, s, k, 2))(
        state, jax.random.PRNGKey(3))
    assert int(none.episodes) == 0 and float(none.mean_return(jnp.asarray(7.0))) == 7.0

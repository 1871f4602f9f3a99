"""The one episode player: returns and sums stop when the episode ends, the trace holds every
step, the keys are the reset key and one per step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers import SMALL_CONFIGS

import envs
from envs.wrappers import random_actions
from metajax.core.episode import play_episode, with_reset


def _random_policy(env):
    def policy(params, obs, carry, key):
        return random_actions(env, key), carry + 1

    return policy


def test_returns_and_sums_stop_at_the_end_of_the_episode():
    """Played for 3 steps more than the game lasts: nothing is added after the step that ended
    the episode, while the trace keeps every step."""
    env = envs.make("climb_multistage", **SMALL_CONFIGS["climb_multistage"])
    task = env.sample_task(jax.random.PRNGKey(0))
    T = env.episode_length + 3

    def one(key):
        return play_episode(_random_policy(env), env, None, task, key, jnp.int32(0), steps=T,
                            record=lambda s: (s.ts.reward, s.ts.done, s.carry),
                            accumulate=lambda s: {"length": jnp.float32(1.0),
                                                  "reward0": s.ts.reward[0]})

    out = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(1), 64))
    rewards, done, carry = (np.asarray(x) for x in out.trace)  # [E, T, A], [E, T], [E, T]
    assert rewards.shape[1] == T and done.shape == (64, T)
    np.testing.assert_array_equal(carry, np.broadcast_to(np.arange(1, T + 1), (64, T)))
    # alive before step t: no earlier step ended the episode
    alive = np.concatenate([np.ones((64, 1), bool), ~np.cumsum(done, 1)[:, :-1].astype(bool)], 1)
    length = alive.sum(1)
    assert (length == env.episode_length).all()
    np.testing.assert_array_equal(np.asarray(out.sums["length"]), length)
    np.testing.assert_allclose(np.asarray(out.returns), (rewards * alive[..., None]).sum(1),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.sums["reward0"]), (rewards[..., 0] * alive).sum(1),
                               rtol=1e-6)


def test_the_reset_uses_the_first_half_of_the_key_and_the_trace_can_be_prefixed():
    env = envs.make("treasure", **SMALL_CONFIGS["treasure"])
    task = env.sample_task(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(3)
    out = play_episode(_random_policy(env), env, None, task, key, jnp.int32(0),
                       record=lambda s: s.state)
    state, ts = env.reset_to(jax.random.split(key)[0], task)
    for a, b in zip(jax.tree.leaves(out.reset_state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
    states = with_reset(out.reset_state, out.trace)
    assert jax.tree.leaves(states)[0].shape[0] == env.episode_length + 1
    np.testing.assert_array_equal(out.reset_obs.agent_mask, ts.observation.agent_mask)

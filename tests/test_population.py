"""Population lives in the data: one compilation for every population, and padding is inert."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.wrappers import stack_tasks


def test_treasure_mixed_populations_trace_once():
    """reset + step of a batch mixing 3, 6, 12 and 24 collectors traces exactly once, and the
    same compiled program then serves other mixes and single populations."""
    env = envs.make("treasure", max_agents=24, max_objects=20)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def reset_step(keys, tasks, actions):
        state, _ = jax.vmap(env.reset_to)(keys, tasks)
        state, ts = jax.vmap(env.step)(state, actions)
        return ts.reward, ts.observation.agent_mask

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    actions = jax.random.randint(jax.random.PRNGKey(1), (4, 24), 0, 5)
    for pops in [(3, 6, 12, 24), (24, 12, 6, 3), (6, 6, 6, 6), (24, 24, 24, 24)]:
        tasks = stack_tasks([env.make_task(n_agents=n) for n in pops])
        reward, mask = reset_step(keys, tasks, actions)
        np.testing.assert_array_equal(np.asarray(mask).sum(-1), pops)
        assert np.all(np.asarray(reward)[~np.asarray(mask)] == 0)


def _rollout(env, task, key, actions):
    def body(state, act):
        state, ts = env.step(state, act)
        return state, (state.pos, ts.reward, ts.observation)

    state, ts0 = env.reset_to(key, task)
    _, out = jax.lax.scan(body, state, actions)
    return ts0.observation, out


#: (env, large static config, small static config, task fields, active agent slots in
#: the large env, active object slots). The small env is built with exactly the game's sizes.
PADDING_CASES = {
    "treasure": (
        dict(max_agents=7, max_objects=6),
        dict(max_agents=3, max_objects=4),
        dict(n_agents=3, n_treasures=4),
        3,
        4,
    ),
    "resource": (
        dict(max_agents=6, max_objects=5),
        dict(max_agents=3, max_objects=3),
        dict(n_agents=3, n_resources=3),
        3,
        3,
    ),
}


@pytest.mark.parametrize("name", sorted(PADDING_CASES))
def test_padding_is_inert(name):
    """A game with n agents padded to a larger maximum plays exactly as the unpadded game:
    same key, same actions for the active agents (random junk for padded ones)."""
    big_cfg, small_cfg, fields, n, m = PADDING_CASES[name]
    big = envs.make(name, **big_cfg, episode_length=30)
    small = envs.make(name, **small_cfg, episode_length=30)
    key = jax.random.PRNGKey(3)
    t = 25
    act_small = jax.random.randint(jax.random.PRNGKey(4), (t, small.max_agents), 0, 5)
    junk = jax.random.randint(jax.random.PRNGKey(5), (t, big.max_agents), 0, 5)
    act_big = junk.at[:, :n].set(act_small[:, :n])
    obs0_s, (pos_s, rew_s, obs_s) = jax.jit(_rollout, static_argnums=0)(
        small, small.make_task(**fields), key, act_small)
    obs0_b, (pos_b, rew_b, obs_b) = jax.jit(_rollout, static_argnums=0)(
        big, big.make_task(**fields), key, act_big)

    np.testing.assert_array_equal(np.asarray(pos_b)[:, :n], np.asarray(pos_s)[:, :n])
    np.testing.assert_array_equal(np.asarray(rew_b)[:, :n], np.asarray(rew_s)[:, :n])
    assert np.all(np.asarray(rew_b)[:, n:] == 0)
    assert np.abs(np.asarray(rew_s)).sum() > 0, "the rollout must produce rewards"
    for ob, os_ in [(obs0_b, obs0_s), (obs_b, obs_s)]:
        np.testing.assert_array_equal(
            np.asarray(ob.self)[..., :n, :], np.asarray(os_.self)[..., :n, :])
        np.testing.assert_array_equal(
            np.asarray(ob.agents)[..., :n, :n, :], np.asarray(os_.agents)[..., :n, :n, :])
        np.testing.assert_array_equal(
            np.asarray(ob.objects)[..., :n, :m, :], np.asarray(os_.objects)[..., :n, :m, :])
        # padded slots are invisible
        assert not np.asarray(ob.agents_mask)[..., :, n:].any()
        assert not np.asarray(ob.objects_mask)[..., :, m:].any()
        assert jnp.all(ob.agents[..., n:, :] == 0)


def test_entity_draws_do_not_depend_on_the_number_of_slots():
    """The padding-inert property rests on this: row i of an [n, 2] draw is the same for
    every n (partitionable threefry)."""
    from envs.particle.base import entity_uniform

    key = jax.random.PRNGKey(11)
    small = np.asarray(entity_uniform(key, 3))
    large = np.asarray(entity_uniform(key, 24))
    np.testing.assert_array_equal(small, large[:3])
    assert np.all(np.abs(large) <= 1.0) and len(np.unique(large)) == large.size

"""Treasure collection rules on hand-built states, and the AutoReset wrapper semantics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.core import EnvError
from envs.wrappers import AutoReset


@pytest.fixture(scope="module")
def env():
    return envs.make("treasure", max_agents=4, max_objects=3, episode_length=3)


@pytest.fixture(scope="module")
def step(env):
    return jax.jit(env.step)


def _state(env, task, pos, obj):
    state, _ = env.reset_to(jax.random.PRNGKey(0), task)
    return state.replace(
        pos=jnp.asarray(pos, jnp.float32),
        vel=jnp.zeros((env.max_agents, 2)),
        obj_pos=jnp.asarray(obj, jnp.float32),
    )


NOOP = jnp.zeros((4,), jnp.int32)


def test_touch_rewards_and_respawns(env, step):
    task = env.make_task(n_agents=3, n_treasures=2, shaping=0.0)
    # agent 0 sits on treasure 0; agents 1 and 2 both touch treasure 1; agent 3 is padding
    # placed on treasure 1 too; treasure slot 2 is not in the game (agent 2 sits on it).
    pos = [[0.0, 0.0], [0.5, 0.46], [0.5, 0.6], [0.5, 0.5]]
    obj = [[0.01, 0.0], [0.5, 0.53], [0.5, 0.6]]
    s, ts = step(_state(env, task, pos, obj), NOOP)
    np.testing.assert_allclose(np.asarray(ts.reward), [1.0, 1.0, 1.0, 0.0])
    assert float(ts.extras["collected"]) == 2.0
    new_obj = np.asarray(s.obj_pos)
    assert np.all(np.abs(new_obj[:2] - np.asarray(obj)[:2]).sum(-1) > 1e-3), "no respawn"
    assert np.all(np.abs(new_obj[:2]) <= 1.0)
    np.testing.assert_array_equal(new_obj[2], np.float32(obj[2]))  # out-of-game slot untouched


def test_no_touch_and_shaping(env, step):
    task = env.make_task(n_agents=2, n_treasures=1, shaping=0.1)
    pos = [[0.0, 0.0], [0.0, 0.5], [0, 0], [0, 0]]
    obj = [[0.3, 0.4], [0.9, 0.9], [0.9, 0.9]]  # only treasure 0 is in the game
    s, ts = step(_state(env, task, pos, obj), NOOP)
    np.testing.assert_allclose(
        np.asarray(ts.reward), [-0.1 * 0.5, -0.1 * np.hypot(0.3, 0.1), 0, 0], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(s.obj_pos), np.float32(obj))


def test_sparse_game_has_no_shaping(env, step):
    task = env.make_task(n_agents=2, n_treasures=1, shaping=0.0)
    s, ts = step(_state(env, task, [[0, 0], [0, 0.5], [0, 0], [0, 0]],
                        [[0.3, 0.4]] * 3), NOOP)
    np.testing.assert_array_equal(np.asarray(ts.reward), 0.0)


def test_population_above_maximum(env):
    with pytest.raises(EnvError, match=r"n_agents=5 exceeds the maximum 4"):
        env.make_task(n_agents=5)
    with pytest.raises(EnvError, match="n_treasures"):
        env.make_task(n_agents=2, n_treasures=4)
    with pytest.raises(EnvError, match="n_agents"):
        env.make_task(n_agents=0)
    with pytest.raises(EnvError, match="n_agents"):
        env.reset_to(jax.random.PRNGKey(0), env.make_task(n_agents=2).replace(n_agents=9))


def test_auto_reset_keeps_final_observation(env):
    auto = AutoReset(env)
    task = env.make_task(n_agents=2)
    state, ts = auto.reset_to(jax.random.PRNGKey(0), task)
    step = jax.jit(auto.step)
    acts = jnp.ones((4,), jnp.int32)
    seen = []
    for _ in range(env.episode_length):
        prev = state
        state, ts = step(state, acts)
        seen.append(ts)
    last = seen[-1]
    assert bool(last.truncated) and not bool(last.terminated)
    assert not any(bool(t.done) for t in seen[:-1])
    # the final observation is the real last one: agents moved +x for 3 steps
    final_self = np.asarray(last.extras["final_observation"].self)
    assert np.all(final_self[:2, 0] > 0)  # moving with +x velocity
    # the returned observation is a fresh episode of the same task, at rest
    assert int(state.step) == 0
    np.testing.assert_array_equal(np.asarray(ts.observation.self)[:, :2], 0.0)
    assert int(state.task.n_agents) == 2
    np.testing.assert_array_equal(np.asarray(ts.observation.agent_mask), [1, 1, 0, 0])
    # before the end, final_observation equals the observation
    mid = seen[0]
    np.testing.assert_array_equal(
        np.asarray(mid.extras["final_observation"].self), np.asarray(mid.observation.self))
    assert prev.step == env.episode_length - 1


def test_batch_auto_reset_equals_per_game_auto_reset(env):
    """AutoReset.batch_step (resets under lax.cond) == vmap(AutoReset.step), leaf for leaf,
    across episode ends, with games of different populations."""
    auto = AutoReset(env)
    tasks = envs.wrappers.stack_tasks([env.make_task(n_agents=n) for n in (1, 2, 4)])
    states, _ = jax.vmap(auto.reset_to)(jax.random.split(jax.random.PRNGKey(0), 3), tasks)
    acts = jax.random.randint(jax.random.PRNGKey(1), (2 * env.episode_length + 1, 3, 4), 0, 5)

    def run(step):
        return jax.lax.scan(lambda s, a: step(s, a), states, acts)

    (s1, ts1), (s2, ts2) = jax.jit(lambda: (run(auto.batch_step), run(jax.vmap(auto.step))))()
    assert np.asarray(ts1.done).any()
    for a, b in zip(jax.tree.leaves((s1, ts1)), jax.tree.leaves((s2, ts2)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

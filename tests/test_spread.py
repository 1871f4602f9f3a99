"""Tests of the simple_spread world (envs/particle/spread.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import AutoReset, EnvError, make
from envs.particle.spread import Spread


def _state(env: Spread, pos, obj, n_agents=None, n_landmarks=None):
    """A hand-built state of ``env`` with agents at ``pos`` and landmarks at ``obj``."""
    state, _ = env.reset_to(jax.random.key(0), env.make_task(n_agents, n_landmarks))
    return state.replace(
        pos=jnp.asarray(pos, jnp.float32),
        obj_pos=jnp.asarray(obj, jnp.float32),
        vel=jnp.zeros((env.max_agents, 2), jnp.float32),
    )


def test_registry_and_defaults():
    env = make("spread")
    assert isinstance(env, Spread)
    assert (env.max_agents, env.max_objects, env.episode_length) == (3, 3, 25)
    assert env.agent_size == 0.15 and env.landmark_size == 0.05


def test_reward_hand_built_state():
    env = Spread()
    # Agents 0 and 1 overlap (distance 0.2 < 0.3); agent 2 is far away.
    pos = [[0.0, 0.0], [0.2, 0.0], [1.0, 1.0]]
    obj = [[0.0, 0.5], [0.2, 0.0], [-1.0, -1.0]]
    state = _state(env, pos, obj)
    reward, coverage, collisions = env.rewards(state)
    p, o = np.asarray(pos), np.asarray(obj)
    d = np.linalg.norm(p[:, None] - o[None], axis=-1)
    want_cov = d.min(axis=0).sum()
    np.testing.assert_allclose(coverage, want_cov, rtol=1e-6)
    np.testing.assert_allclose(reward, [-want_cov - 1, -want_cov - 1, -want_cov], rtol=1e-6)
    assert float(collisions) == 1.0
    # PettingZoo's mix.
    env_lr = Spread(local_ratio=0.5)
    r_lr, _, _ = env_lr.rewards(state)
    np.testing.assert_allclose(r_lr, 0.5 * -want_cov + 0.5 * np.array([-1, -1, 0]), rtol=1e-6)


def test_reward_padding():
    env = Spread(max_agents=3, max_objects=3)
    # 2 agents, 2 landmarks: slot 2 (agent and landmark) is padding and must be ignored.
    pos = [[0.0, 0.0], [0.5, 0.0], [0.05, 0.0]]
    obj = [[0.0, 0.1], [0.5, 0.3], [5.0, 5.0]]
    state = _state(env, pos, obj, n_agents=2, n_landmarks=2)
    reward, coverage, collisions = env.rewards(state)
    np.testing.assert_allclose(coverage, 0.1 + 0.3, rtol=1e-6)
    assert float(collisions) == 0.0
    np.testing.assert_allclose(reward[:2], [-0.4, -0.4], rtol=1e-6)
    # Through step: padding gets exactly 0 and does not move.
    state2, ts = env.step(state, jnp.zeros((3,), jnp.int32))
    assert float(ts.reward[2]) == 0.0
    np.testing.assert_array_equal(state2.pos[2], state.pos[2])
    assert not bool(ts.observation.agents_mask[0, 2])
    assert not bool(ts.observation.objects_mask[0, 2])


def test_step_episode_and_observation():
    env = Spread()
    state, ts = env.reset(jax.random.key(1))
    assert bool(ts.first())
    assert ts.observation.self.shape == (3, 4)
    assert ts.observation.agents.shape == (3, 3, 2)
    assert ts.observation.objects.shape == (3, 3, 2)
    assert ts.observation.flat.shape == (3, 4 + 3 * 3 + 3 * 3)
    pos = np.asarray(state.pos)
    assert np.all(np.abs(pos) <= 1.0) and np.all(np.abs(np.asarray(state.obj_pos)) <= 1.0)
    np.testing.assert_allclose(
        ts.observation.objects[1, 2], state.obj_pos[2] - state.pos[1], rtol=1e-6
    )
    step = jax.jit(env.step)
    for t in range(env.episode_length):
        state, ts = step(state, jnp.ones((3,), jnp.int32))
        assert bool(ts.truncated) == (t == env.episode_length - 1)
        assert not bool(ts.terminated)
    # Landmarks never move; reward is shared up to each agent's own collision count.
    assert np.all(np.isfinite(np.asarray(ts.reward)))


def test_auto_reset_vmapped():
    env = AutoReset(Spread())

    def roll(key):
        k0, k1 = jax.random.split(key)
        state, _ = env.reset(k0)

        def body(carry, k):
            s, _ = env.step(carry, jax.random.randint(k, (3,), 0, 5))
            return s, s.step

        return jax.lax.scan(body, state, jax.random.split(k1, 60))[1]

    steps = jax.jit(jax.vmap(roll))(jax.random.split(jax.random.key(2), 4))
    # Each episode restarts after 25 steps: counter goes 1..24, 0 (reset), 1, ...
    np.testing.assert_array_equal(steps[0, :26], [*range(1, 25), 0, 1])


def test_invalid_config():
    with pytest.raises(EnvError):
        Spread().make_task(n_agents=4)
    with pytest.raises(EnvError):
        Spread(local_ratio=2.0)
    with pytest.raises(EnvError):
        Spread().step(Spread().reset(jax.random.key(0))[0], jnp.zeros((2,), jnp.int32))

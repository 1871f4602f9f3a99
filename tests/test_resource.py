"""Resource occupation: reward sharing, padding, validation, batched populations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import EnvError
from envs.particle.resource import Resource
from envs.registry import make
from envs.wrappers import random_actions, stack_tasks

A, M = 4, 3  # tiny maxima: sizes 0.1, 0.2, 0.3


@pytest.fixture(scope="module")
def env():
    return Resource(max_agents=A, max_objects=M)


@pytest.fixture(scope="module")
def reset_to(env):
    return jax.jit(env.reset_to)


@pytest.fixture(scope="module")
def step(env):
    return jax.jit(env.step)


def step_from(env, reset_to, step, task, pos, obj):
    """One step with zero actions from a hand-placed state (agents at rest)."""
    state, _ = reset_to(jax.random.PRNGKey(0), task)
    state = state.replace(
        pos=jnp.asarray(pos, jnp.float32),
        vel=jnp.zeros((A, 2), jnp.float32),
        obj_pos=jnp.asarray(obj, jnp.float32),
    )
    return step(state, jnp.zeros((A,), jnp.int32))


# Resource 0 (size 0.1) at the origin; resources 1 (0.2) and 2 (0.3) overlap around (0.8, 0.6).
OBJ = [[0.0, 0.0], [0.8, 0.8], [0.8, 0.4]]
# Agents 0, 1 share resource 0 (0.16 apart: no contact); agent 2 sits in resources 1 and 2;
# slot 3 is padding, placed on resource 0.
POS = [[0.08, 0.0], [-0.08, 0.0], [0.8, 0.6], [0.0, 0.0]]


@pytest.fixture(scope="module")
def hand_step(env, reset_to, step):
    _, ts = step_from(env, reset_to, step, env.make_task(n_agents=3), POS, OBJ)
    return ts


def test_two_agents_split_a_resource(hand_step):
    # 10 * 0.1 / 2 each; a padded occupant would make it 10 * 0.1 / 3.
    np.testing.assert_allclose(hand_step.reward[:2], [0.5, 0.5], rtol=1e-5)
    np.testing.assert_allclose(hand_step.extras["occupants"], [2.0, 1.0, 1.0])
    assert float(hand_step.extras["occupied"]) == 3.0


def test_agent_on_two_overlapping_resources_gets_both(hand_step):
    np.testing.assert_allclose(hand_step.reward[2], 10 * (0.2 + 0.3), rtol=1e-5)


def test_padded_agent_gets_zero_and_is_not_counted(hand_step):
    assert float(hand_step.reward[3]) == 0.0
    assert float(hand_step.discount[3]) == 0.0


def test_scale_and_off_resource(env, reset_to, step):
    task = env.make_task(n_agents=2, scale=3.0)
    pos = [[0.08, 0.0], [-0.5, -0.5], [0.0, 0.0], [0.0, 0.0]]
    _, ts = step_from(env, reset_to, step, task, pos, OBJ)
    np.testing.assert_allclose(ts.reward, [3.0 * 0.1, 0.0, 0.0, 0.0], rtol=1e-5)


def test_padded_resource_is_not_occupied(env, reset_to, step):
    task = env.make_task(n_agents=1, n_resources=2)
    pos = [[0.8, 0.35], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]  # only inside resource 2 (padding)
    _, ts = step_from(env, reset_to, step, task, pos, OBJ)
    assert float(ts.reward[0]) == 0.0
    assert not bool(ts.observation.objects_mask[0, 2])


def test_size_unit_option_and_threshold():
    env = Resource(max_agents=2, max_objects=3, size_unit=0.05)
    np.testing.assert_allclose(env.resource_sizes(), [0.05, 0.1, 0.15], rtol=1e-6)
    state = env.init_state(jax.random.PRNGKey(0), env.make_task(n_agents=2))
    # occupied when distance < 0.05 + 0.05 for resource 0
    obj = jnp.array([[0.0, 0.0], [5.0, 5.0], [5.0, 5.0]])
    state = state.replace(pos=jnp.array([[0.099, 0.0], [0.101, 0.0]]), obj_pos=obj)
    occ = np.asarray(env.occupancy(state))
    assert occ[0, 0] and not occ[1, 0]


def test_observation_contents(env, reset_to):
    task = env.make_task(n_agents=3, n_resources=2)
    state, ts = reset_to(jax.random.PRNGKey(1), task)
    obs = ts.observation
    assert obs.self.shape == (A, 4) and obs.agents.shape == (A, A, 4)
    assert obs.objects.shape == (A, M, 3)
    np.testing.assert_allclose(obs.self[:3, 2:], state.pos[:3])
    np.testing.assert_allclose(obs.objects[0, :2, :2], state.obj_pos[:2] - state.pos[0], atol=1e-6)
    np.testing.assert_allclose(obs.objects[1, :2, 2], [0.1, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(obs.objects_mask[0], [True, True, False])
    np.testing.assert_array_equal(obs.agents_mask[0], [False, True, True, False])
    assert not np.any(obs.objects_mask[3]) and np.all(obs.objects[3] == 0)
    d_flat = 4 + A * 5 + M * 4
    assert obs.flat.shape == (A, d_flat)
    spec = env.observation_spec
    assert spec.objects.shape == (A, M, 3)


def test_validation_errors(env):
    with pytest.raises(EnvError, match="n_agents"):
        env.make_task(n_agents=A + 1)
    with pytest.raises(EnvError, match="n_agents"):
        env.make_task(n_agents=0)
    with pytest.raises(EnvError, match="n_resources"):
        env.make_task(n_agents=2, n_resources=M + 1)
    with pytest.raises(EnvError, match="n_agents_choices"):
        Resource(max_agents=4, n_agents_choices=(6,))
    with pytest.raises(EnvError, match="action"):
        env.step(env.reset(jax.random.PRNGKey(0))[0], jnp.zeros((A + 1,), jnp.int32))


def test_defaults_registry_and_sampling():
    env = make("resource")
    assert isinstance(env, Resource)
    assert (env.max_agents, env.max_objects, env.episode_length) == (15, 6, 20)
    assert env.n_agents_choices == (6, 9, 12, 15)
    assert Resource(max_agents=10).n_agents_choices == (6, 9)
    tasks = jax.vmap(env.sample_task)(jax.random.split(jax.random.PRNGKey(0), 64))
    assert set(np.asarray(tasks.n_agents).tolist()) == {6, 9, 12, 15}
    assert np.all(np.asarray(tasks.n_resources) == 6) and np.all(np.asarray(tasks.scale) == 10)
    np.testing.assert_allclose(env.task_description(env.make_task(9, 4)), [0.9, 0.4])


def test_padding_does_not_change_the_game():
    small, big = Resource(max_agents=3, max_objects=2), Resource(max_agents=6, max_objects=5)
    key = jax.random.PRNGKey(3)
    s_small = small.init_state(key, small.make_task(n_agents=3, n_resources=2))
    s_big = big.init_state(key, big.make_task(n_agents=3, n_resources=2))
    np.testing.assert_array_equal(s_small.pos, s_big.pos[:3])
    np.testing.assert_array_equal(s_small.obj_pos, s_big.obj_pos[:2])
    np.testing.assert_array_equal(big.resource_sizes()[:2], small.resource_sizes())


def test_batched_populations_jit_vmap(env):
    traces = []

    @jax.jit
    def rollout(keys, tasks):
        traces.append(1)
        states, ts0 = jax.vmap(env.reset_to)(keys, tasks)

        def body(states, key):
            acts = jax.vmap(lambda k: random_actions(env, k))(jax.random.split(key, keys.shape[0]))
            states, ts = jax.vmap(env.step)(states, acts)
            return states, ts

        states, ts = jax.lax.scan(body, states, jax.random.split(keys[0], env.episode_length))
        return ts0, states, ts

    tasks = stack_tasks([env.make_task(n, r) for n, r in [(1, 1), (2, 3), (4, 2)]])
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    ts0, states, ts = rollout(keys, tasks)
    np.testing.assert_array_equal(ts0.observation.agent_mask.sum(-1), [1, 2, 4])
    assert ts.reward.shape == (env.episode_length, 3, A)
    mask = np.asarray(ts.observation.agent_mask)
    assert np.all(np.asarray(ts.reward)[~mask] == 0) and np.all(np.isfinite(ts.reward))
    assert np.all(np.asarray(ts.reward) >= 0)
    np.testing.assert_array_equal(states.pos[0, 1:], 0.0)  # padded agents never move
    assert not np.any(ts.truncated[:-1]) and np.all(ts.truncated[-1])
    np.testing.assert_array_equal(ts.observation.objects_mask[-1, :, 0].sum(-1), [1, 3, 2])
    # a different population mix reuses the compiled program
    rollout(keys, stack_tasks([env.make_task(n, 3) for n in (3, 1, 2)]))
    assert len(traces) == 1

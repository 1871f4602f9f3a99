"""MPE climb game: every reward rule, padding, landmark sampling, difficulty, batching."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import EnvError
from envs.particle.climb import MPEClimb
from envs.registry import make
from envs.wrappers import random_actions, stack_tasks

A, M = 3, 4
LANDMARKS = [[0.0, 0.0], [0.5, 0.0], [-0.5, 0.0]]  # radius 0.1; target u = 0


@pytest.fixture(scope="module")
def env():
    return MPEClimb(max_agents=A, max_objects=M)


@pytest.fixture(scope="module")
def reset_to(env):
    return jax.jit(env.reset_to)


@pytest.fixture(scope="module")
def step(env):
    return jax.jit(env.step)


@pytest.fixture(scope="module")
def run(env, reset_to, step):
    def run(pos, task=None, obj=None):
        """One zero-action step from agents at rest at ``pos`` (placed without overlap)."""
        task = task if task is not None else env.make_task(LANDMARKS, u=0, k=2, n_agents=3)
        state, _ = reset_to(jax.random.PRNGKey(0), task)
        state = state.replace(pos=jnp.asarray(pos, jnp.float32), vel=jnp.zeros((A, 2)))
        if obj is not None:
            state = state.replace(obj_pos=jnp.asarray(obj, jnp.float32))
        return step(state, jnp.zeros((A,), jnp.int32))[1]

    return run


def rewards(ts):
    return np.asarray(ts.reward).tolist()


def test_k_on_target_and_all_on_gives_one(run):
    ts = run([[0.06, 0.0], [-0.06, 0.0], [0.5, 0.0]])
    assert rewards(ts) == [1.0, 1.0, 1.0]
    assert float(ts.extras["on_target"]) == 2
    assert bool(ts.extras["all_on"]) and bool(ts.extras["high_reward"])


def test_none_on_target_and_all_on_gives_one_minus_delta(env, run):
    pos = [[0.44, 0.0], [0.56, 0.0], [-0.5, 0.0]]
    ts = run(pos)
    assert rewards(ts) == [0.5, 0.5, 0.5]
    assert bool(ts.extras["all_on"]) and not bool(ts.extras["high_reward"])
    ts = run(pos, task=env.make_task(LANDMARKS, u=0, k=2, n_agents=3, delta=0.2))
    np.testing.assert_allclose(ts.reward, [0.8, 0.8, 0.8], rtol=1e-6)


def test_one_agent_off_every_landmark_gives_zero(run):
    ts = run([[0.06, 0.0], [-0.06, 0.0], [0.8, 0.8]])
    assert rewards(ts) == [0.0, 0.0, 0.0]
    assert not bool(ts.extras["all_on"]) and float(ts.extras["on_target"]) == 2
    # "on" is strictly inside the landmark radius
    assert rewards(run([[0.06, 0.0], [-0.06, 0.0], [0.601, 0.0]])) == [0.0] * 3
    assert rewards(run([[0.06, 0.0], [-0.06, 0.0], [0.599, 0.0]])) == [1.0] * 3


def test_wrong_count_on_target_gives_zero(run):
    ts = run([[0.0, 0.0], [0.5, 0.0], [-0.5, 0.0]])  # f_u = 1
    assert rewards(ts) == [0.0] * 3 and bool(ts.extras["all_on"])
    ang = np.deg2rad([90.0, 210.0, 330.0])  # f_u = 3, agents 0.12 apart
    ts = run(np.stack([0.07 * np.cos(ang), 0.07 * np.sin(ang)], -1))
    assert rewards(ts) == [0.0] * 3 and float(ts.extras["on_target"]) == 3


def test_padded_agent_is_ignored(env, run):
    task = env.make_task(LANDMARKS, u=0, k=2, n_agents=2)
    ts = run([[0.06, 0.0], [-0.06, 0.0], [0.9, 0.9]], task=task)  # slot 2 off: padding
    assert rewards(ts) == [1.0, 1.0, 0.0]
    assert float(ts.discount[2]) == 0.0


def test_padded_landmark_does_not_count(env, run):
    task = env.make_task(LANDMARKS, u=0, k=2, n_agents=3)
    obj = LANDMARKS + [[0.0, 0.5]]  # slot 3 is not part of the game
    ts = run([[0.06, 0.0], [-0.06, 0.0], [0.0, 0.5]], task=task, obj=obj)
    assert rewards(ts) == [0.0] * 3 and not bool(ts.extras["all_on"])


def test_target_is_any_landmark(env, run):
    task = env.make_task(LANDMARKS, u=2, k=1, n_agents=3)
    assert rewards(run([[-0.5, 0.0], [0.06, 0.0], [-0.06, 0.0]], task=task)) == [1.0] * 3
    assert rewards(run([[0.5, 0.0], [0.06, 0.0], [-0.06, 0.0]], task=task)) == [0.5] * 3


def test_observation_hides_task_and_masks_padding(env, reset_to):
    task = env.make_task(LANDMARKS, u=1, k=2, agent_start=[[0.1, 0.2], [0.3, -0.4]])
    state, ts = reset_to(jax.random.PRNGKey(0), task)
    obs = ts.observation
    assert obs.self.shape == (A, 4) and obs.agents.shape == (A, A, 4)
    assert obs.objects.shape == (A, M, 2)
    np.testing.assert_allclose(obs.self[:2, 2:], [[0.1, 0.2], [0.3, -0.4]])
    np.testing.assert_allclose(obs.objects[1, :3], np.array(LANDMARKS) - [0.3, -0.4], atol=1e-6)
    np.testing.assert_allclose(obs.agents[0, 1, :2], [0.2, -0.6], atol=1e-6)
    np.testing.assert_array_equal(obs.objects_mask[0], [True, True, True, False])
    np.testing.assert_array_equal(obs.agents_mask[0], [False, True, False])
    assert not np.any(obs.agent_mask[2:]) and np.all(obs.objects[2] == 0)
    # u and k are not observed: another target gives the same observation
    other = task.replace(u=jnp.asarray(2, jnp.int32), k=jnp.asarray(1, jnp.int32))
    _, ts2 = reset_to(jax.random.PRNGKey(0), other)
    for a, b in zip(jax.tree.leaves(ts.observation), jax.tree.leaves(ts2.observation), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fixed_and_random_start(env, reset_to):
    start = [[0.1, 0.2], [0.3, -0.4], [-0.7, 0.9]]
    fixed = env.make_task(LANDMARKS, agent_start=start)
    for seed in (0, 1):
        s, _ = reset_to(jax.random.PRNGKey(seed), fixed)
        np.testing.assert_allclose(s.pos, start)
    free = env.make_task(LANDMARKS, agent_start=start, fixed_start=False)
    s0, _ = reset_to(jax.random.PRNGKey(0), free)
    s1, _ = reset_to(jax.random.PRNGKey(1), free)
    assert not np.allclose(s0.pos, s1.pos) and np.all(np.abs(s0.pos) <= 1)


def test_collisions_configurable(env, reset_to):
    state, _ = reset_to(jax.random.PRNGKey(0), env.make_task(LANDMARKS, n_agents=2))
    np.testing.assert_array_equal(env.bodies(state).collide, [True, True, False])
    off = MPEClimb(max_agents=A, max_objects=M, agent_collide=False)
    assert not np.any(off.bodies(state).collide)
    np.testing.assert_array_equal(off.bodies(state).movable, [True, True, False])


def test_validation_errors(env):
    with pytest.raises(EnvError, match="n_agents"):
        env.make_task(LANDMARKS, n_agents=A + 1)
    with pytest.raises(EnvError, match="n_agents"):
        env.make_task(LANDMARKS, agent_start=np.zeros((A + 1, 2)))
    with pytest.raises(EnvError, match="n_landmarks"):
        env.make_task([[0.0, 0.3 * i] for i in range(M + 1)])
    with pytest.raises(EnvError, match="u="):
        env.make_task(LANDMARKS, u=3)
    with pytest.raises(EnvError, match="k="):
        env.make_task(LANDMARKS, k=3, n_agents=2)
    with pytest.raises(EnvError, match="overlap"):
        env.make_task([[0.0, 0.0], [0.15, 0.0]])
    with pytest.raises(EnvError, match="agent_start"):
        env.make_task(LANDMARKS, fixed_start=True)
    good = env.make_task(LANDMARKS)
    with pytest.raises(EnvError, match="landmarks"):
        env.validate_task(good.replace(landmarks=jnp.zeros((M + 1, 2))))
    with pytest.raises(EnvError, match="n_agents"):
        env.sample_tasks(jax.random.PRNGKey(0), 1, n_agents=A + 1)


def test_defaults_and_registry(env):
    default = make("mpe_climb")
    assert isinstance(default, MPEClimb)
    assert (default.max_agents, default.max_objects, default.episode_length) == (3, 6, 100)
    assert (default.landmark_radius, default.agent_size, default.k) == (0.1, 0.05, 2)
    task = jax.jit(env.sample_task)(jax.random.PRNGKey(0))
    assert int(task.n_agents) == A and int(task.n_landmarks) == M and int(task.k) == 2
    assert bool(task.fixed_start) and float(task.delta) == 0.5
    desc = env.task_description(env.make_task(LANDMARKS, u=2, k=2, n_agents=3))
    np.testing.assert_allclose(desc, [0, 0, 1, 0, 2 / A], rtol=1e-6)


@pytest.fixture(scope="module")
def sampled(env):
    return env.sample_tasks(jax.random.PRNGKey(0), 48, batch=64)


def test_sampled_landmarks_do_not_overlap(env, sampled):
    lm, n = np.asarray(sampled.landmarks), np.asarray(sampled.n_landmarks)
    assert np.all(n == M)
    for t in range(lm.shape[0]):
        for i, j in itertools.combinations(range(n[t]), 2):
            assert np.linalg.norm(lm[t, i] - lm[t, j]) >= 2 * env.landmark_radius
    assert np.all(np.abs(lm) <= env.landmark_range)
    u = np.asarray(sampled.u)
    assert np.all((0 <= u) & (u < n)) and len(set(u.tolist())) > 1
    assert np.all(np.asarray(sampled.k) == 2)


def test_landmark_sampling_is_padding_invariant(env):
    key = jax.random.PRNGKey(7)
    bigger = MPEClimb(max_agents=A, max_objects=M + 2)
    small_lm = jax.jit(env.sample_landmarks)(key)
    np.testing.assert_array_equal(small_lm, jax.jit(bigger.sample_landmarks)(key)[:M])


def test_difficulty_matches_numpy(env, sampled):
    got, got_all = jax.jit(
        jax.vmap(lambda t: (env.task_difficulty(t), env.task_difficulty(t, "all")))
    )(sampled)
    got, got_all = np.asarray(got), np.asarray(got_all)
    for t in range(4):
        na, nl = int(sampled.n_agents[t]), int(sampled.n_landmarks[t])
        ag = np.asarray(sampled.agent_start[t, :na], np.float64)
        lm = np.asarray(sampled.landmarks[t, :nl], np.float64)
        cross = [np.linalg.norm(a - b) for a in ag for b in lm]
        np.testing.assert_allclose(got[t], np.mean(cross), rtol=1e-5)
        pts = np.concatenate([ag, lm])
        pairs = [np.linalg.norm(p - q) for p, q in itertools.combinations(pts, 2)]
        np.testing.assert_allclose(got_all[t], np.mean(pairs), rtol=1e-5)


def test_sample_tasks_difficulty_range(env):
    tasks = env.sample_tasks(jax.random.PRNGKey(1), 6, n_agents=2, difficulty=(1.1, 1.5), batch=64)
    d = np.asarray(jax.vmap(env.task_difficulty)(tasks))
    assert d.shape == (6,) and np.all((d >= 1.1) & (d < 1.5))
    assert np.all(np.asarray(tasks.n_agents) == 2)
    assert np.all(np.asarray(tasks.agent_start)[:, 2] == 0)
    with pytest.raises(EnvError, match="difficulty"):
        env.sample_tasks(jax.random.PRNGKey(1), 1, difficulty=(10.0, None), batch=64, max_rounds=1)


def test_batched_populations_jit_vmap(env):
    traces = []

    @jax.jit
    def rollout(keys, tasks):
        traces.append(1)
        states, ts0 = jax.vmap(env.reset_to)(keys, tasks)

        def body(states, key):
            acts = jax.vmap(lambda k: random_actions(env, k))(jax.random.split(key, keys.shape[0]))
            return jax.vmap(env.step)(states, acts)

        states, ts = jax.lax.scan(body, states, jax.random.split(keys[0], env.episode_length))
        return ts0, states, ts

    tasks = stack_tasks(
        [
            env.make_task(LANDMARKS[:1], k=1, n_agents=1),
            env.make_task(LANDMARKS[:2], u=1, k=2, n_agents=2),
            env.make_task(LANDMARKS, u=2, k=2, n_agents=3),
        ]
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    ts0, states, ts = rollout(keys, tasks)
    np.testing.assert_array_equal(ts0.observation.agent_mask.sum(-1), [1, 2, 3])
    np.testing.assert_array_equal(ts0.observation.objects_mask[:, 0].sum(-1), [1, 2, 3])
    r, mask = np.asarray(ts.reward), np.asarray(ts.observation.agent_mask)
    assert r.shape == (env.episode_length, 3, A) and np.all(r[~mask] == 0)
    assert set(np.unique(r).tolist()) <= {0.0, 0.5, 1.0}
    for b, n in enumerate([1, 2, 3]):  # shared reward: equal across the game's agents
        assert np.all(r[:, b, :n] == r[:, b, :1])
    np.testing.assert_array_equal(states.pos[0, 1:], 0.0)  # padded agents never move
    assert not np.any(ts.truncated[:-1]) and np.all(ts.truncated[-1])
    np.testing.assert_array_equal(ts.extras["high_reward"], r[..., 0] == 1.0)
    rollout(keys, stack_tasks([env.make_task(LANDMARKS, n_agents=n, k=1) for n in (3, 1, 2)]))
    assert len(traces) == 1

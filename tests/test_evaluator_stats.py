"""Episode statistics of the runner's evaluator (``make_evaluator(..., stats=True)``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from metajax.core import taskspec
from metajax.core.interfaces import Learner
from metajax.train import evaluation

EPISODES = 6
LENGTH = 12


def _random_learner(env) -> Learner:
    """Uniform random moves; only ``policy`` and ``initial_carry`` are used by the evaluator."""
    a = env.max_agents

    def policy(params, obs, carry, key, greedy):
        return jax.random.randint(key, (a,), 0, 5, jnp.int32), carry

    return Learner(init=None, update=None, policy=policy, policy_params=None,
                   initial_carry=lambda: jnp.zeros((a, 0)), env_steps_per_update=0, tasks=None)


@pytest.fixture(scope="module")
def pacman():
    # Huge ghosts in a small world: Pac-Man are caught, and games end early, within a few steps.
    env = envs.make("pacman", max_pacman=2, max_ghosts=2, max_objects=3, episode_length=LENGTH,
                    ghost_size=0.45, food_size=0.1)
    tasks = taskspec.build_tasks(env, ({"n_pacman": 1, "n_ghosts": 2, "n_food": 3},
                                     {"n_pacman": 2, "n_ghosts": 1, "n_food": 2}))
    return env, tasks, _random_learner(env)


def _python_loop(env, learner, tasks, key, n_seeds):
    """The evaluator's episodes replayed step by step in Python, with its key schedule."""
    n_tasks = jax.tree.leaves(tasks)[0].shape[0]
    keys = jax.random.split(key, n_seeds * n_tasks * EPISODES).reshape(
        n_seeds, n_tasks, EPISODES, -1)
    reset, step = jax.jit(env.reset_to), jax.jit(env.step)
    policy = jax.jit(learner.policy)
    ret = np.zeros((n_seeds, n_tasks, EPISODES, env.max_agents))
    stats = {k: np.zeros((n_seeds, n_tasks, EPISODES)) for k in ("length", "caught", "eaten")}
    for s in range(n_seeds):
        for k in range(n_tasks):
            task = jax.tree.map(lambda x, k=k: x[k], tasks)
            for e in range(EPISODES):
                k_reset, k_run = jax.random.split(keys[s, k, e])
                state, ts = reset(k_reset, task)
                carry = learner.initial_carry()
                for kt in jax.random.split(k_run, env.episode_length):
                    act, carry = policy(None, ts.observation, carry, kt, True)
                    state, ts = step(state, act)
                    ret[s, k, e] += np.asarray(ts.reward)
                    stats["length"][s, k, e] += 1
                    stats["caught"][s, k, e] += float(ts.extras["caught"])
                    stats["eaten"][s, k, e] += float(ts.extras["eaten"])
                    if bool(ts.done):
                        break
    return ret, stats


def test_pacman_stats_match_a_python_loop(pacman):
    env, tasks, learner = pacman
    key = jax.random.PRNGKey(3)
    evaluate = evaluation.make_evaluator(learner, env, EPISODES, stats=True)
    ret, stats = evaluate(jnp.zeros((2,)), tasks, key, True)
    assert set(stats) == {"length", "caught", "eaten"}
    for v in stats.values():
        assert v.shape == (2, 2, EPISODES)
    want_ret, want = _python_loop(env, learner, tasks, key, n_seeds=2)
    np.testing.assert_allclose(np.asarray(ret), want_ret, rtol=1e-5, atol=1e-5)
    for name in want:
        np.testing.assert_array_equal(np.asarray(stats[name]), want[name], err_msg=name)
    length = want["length"]
    assert (length < LENGTH).any() and (length == LENGTH).any()  # both endings are exercised
    # A game ends early only when every Pac-Man is caught: task 0 has 1 Pac-Man, task 1 has 2.
    early = length < LENGTH
    np.testing.assert_array_equal(want["caught"][:, 0][early[:, 0]], 1.0)
    np.testing.assert_array_equal(want["caught"][:, 1][early[:, 1]], 2.0)
    # The returns alone are what the default evaluator returns.
    plain = evaluation.make_evaluator(learner, env, EPISODES)(jnp.zeros((2,)), tasks, key, True)
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(ret))


def test_non_scalar_extras_are_skipped():
    """Resource's extras: ``occupied`` ``[]`` is summed, ``occupants`` ``[M]`` is skipped."""
    env = envs.make("resource", max_agents=2, max_objects=2, episode_length=4)
    tasks = taskspec.build_tasks(env, ({"n_agents": 2, "n_resources": 2},))
    ret, stats = evaluation.make_evaluator(_random_learner(env), env, 3, stats=True)(
        jnp.zeros((1,)), tasks, jax.random.PRNGKey(0), True)
    assert ret.shape == (1, 1, 3, 2)
    assert set(stats) == {"length", "occupied"}
    np.testing.assert_array_equal(np.asarray(stats["length"]), 4.0)
    assert np.all((np.asarray(stats["occupied"]) >= 0) & (np.asarray(stats["occupied"]) <= 8))

"""Tests of the Pac-Man-like world (envs/particle/pacman.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import EnvError, make
from envs.particle.pacman import PacMan
from envs.wrappers import random_actions, stack_tasks

# Small world: slots P0 P1 P2 | G3 G4 (A = 5), 3 food slots.
MAX_P, MAX_G, MAX_F = 3, 2, 3
P0, P1, P2, G3, G4 = range(5)
NOOP = jnp.zeros((MAX_P + MAX_G,), jnp.int32)


@pytest.fixture(scope="module")
def env() -> PacMan:
    return PacMan(max_pacman=MAX_P, max_ghosts=MAX_G, max_objects=MAX_F, populations=((2, 1),))


@pytest.fixture(scope="module")
def step(env):
    return jax.jit(env.step)


@pytest.fixture(scope="module")
def reset(env):
    return jax.jit(env.reset_to)


def _state(env, reset, pos, food, n_pacman=2, n_ghosts=1, n_food=2):
    """A hand-built state: agents at ``pos`` (slot order), food at ``food``, at rest."""
    state, _ = reset(jax.random.key(0), env.make_task(n_pacman, n_ghosts, n_food))
    return state.replace(
        pos=jnp.asarray(pos, jnp.float32),
        obj_pos=jnp.asarray(food, jnp.float32),
        vel=jnp.zeros_like(state.vel),
    )


def _near_food(p, food, n_food=2):
    return np.min(np.linalg.norm(np.asarray(food)[:n_food] - np.asarray(p), axis=-1))


FOOD = np.array([[0.8, -0.8], [-0.8, 0.8], [0.0, 0.0]], np.float32)


def test_registry_defaults_and_layout():
    env = make("pacman")
    assert isinstance(env, PacMan) and env.num_teams == 2
    assert (env.max_pacman, env.max_ghosts, env.max_agents) == (8, 8, 16)
    assert (env.max_objects, env.episode_length) == (20, 25)
    assert env.populations == ((4, 2), (6, 3), (8, 4))
    task = env.make_task(n_pacman=2, n_ghosts=8)
    mask = np.asarray(env.agent_mask(task))
    np.testing.assert_array_equal(np.flatnonzero(mask), [0, 1, *range(8, 16)])
    np.testing.assert_allclose(env.task_description(task), [0.2, 0.8, 2.0])
    state = env.init_state(jax.random.key(0), task)
    b = env.bodies(state)
    np.testing.assert_allclose(b.size, [0.05] * 8 + [0.075] * 8)
    np.testing.assert_allclose(b.max_speed, [3.0] * 8 + [2.0] * 8)
    np.testing.assert_allclose(env.accel(state), [4.0] * 8 + [2.0] * 8)


def test_population_validation():
    env = PacMan(max_pacman=3, max_ghosts=2, max_objects=3)
    assert env.populations == ((3, 2),)  # no MRA game fits: the maxima
    for bad in (
        {"n_pacman": 4, "n_ghosts": 1},
        {"n_pacman": 0, "n_ghosts": 1},
        {"n_pacman": 1, "n_ghosts": 3},
        {"n_pacman": 1, "n_ghosts": 0},
        {"n_pacman": 1, "n_ghosts": 1, "n_food": 4},
        {"n_pacman": 1, "n_ghosts": 1, "n_food": 0},
    ):
        with pytest.raises(EnvError):
            env.make_task(**bad)
    with pytest.raises(EnvError, match="n_ghosts"):
        PacMan(max_pacman=8, max_ghosts=4, populations=((2, 8),))
    with pytest.raises(EnvError):
        PacMan(max_pacman=0)
    with pytest.raises(EnvError):  # a hand-made task is checked on reset too
        bad_task = env.make_task(1, 1).replace(n_pacman=jnp.asarray(5, jnp.int32))
        env.reset_to(jax.random.key(0), bad_task)


def test_sample_task_draws_populations():
    env = PacMan(max_pacman=8, max_ghosts=4, max_objects=4)
    tasks = jax.vmap(env.sample_task)(jax.random.split(jax.random.key(0), 64))
    games = set(map(tuple, np.stack([tasks.n_pacman, tasks.n_ghosts], axis=1).tolist()))
    assert games == {(4, 2), (6, 3), (8, 4)}
    assert np.all(np.asarray(tasks.n_food) == 4)


def test_catch_removes_pacman(env, step, reset):
    # Ghost G3 sits on P0 (distance 0: no contact force, caught). The padded ghost slot G4
    # sits on P1 and the padded Pac-Man slot P2 on food 0: padding must neither catch nor eat.
    pos = [[0.5, 0.5], [-0.5, -0.5], FOOD[0], [0.5, 0.5], [-0.5, -0.5]]
    state = _state(env, reset, pos, FOOD)
    state, ts = step(state, NOOP)
    r = np.asarray(ts.reward)
    np.testing.assert_allclose(r[G3], 5.0, atol=1e-6)
    np.testing.assert_allclose(r[P0], -5.0 - 0.1 * _near_food(pos[P0], FOOD), rtol=1e-5)
    np.testing.assert_allclose(r[P1], -0.1 * _near_food(pos[P1], FOOD), rtol=1e-5)
    assert r[P2] == 0.0 and r[G4] == 0.0
    np.testing.assert_array_equal(state.alive, [False, True, False, True, False])
    np.testing.assert_array_equal(ts.discount, [0.0, 1.0, 0.0, 1.0, 0.0])
    assert not bool(ts.terminated) and not bool(ts.truncated)
    assert float(ts.extras["caught"]) == 1.0 and float(ts.extras["eaten"]) == 0.0
    np.testing.assert_array_equal(state.obj_pos, FOOD)  # padded P2 did not eat food 0
    obs = ts.observation
    assert not np.any(obs.agents_mask[:, P0]) and not np.any(obs.agents_mask[P0])
    assert bool(obs.agents_mask[G3, P1]) and bool(obs.agents_mask[P1, G3])
    assert not np.any(obs.objects_mask[P0])
    np.testing.assert_array_equal(obs.agent_mask, [True, True, False, True, False])
    assert float(obs.self[P0, 4]) == 0.0 and float(obs.self[P1, 4]) == 1.0
    np.testing.assert_allclose(obs.agents[G3, P1], [-1, -1, 0, 0, 1, 1, 0], atol=1e-6)

    # Next step: the caught Pac-Man is pushed by its action but must not move; a ghost
    # overlapping it (distance 0.06 < 0.125) is not pushed (no collision), does not catch it
    # again, and food on the dead Pac-Man is not eaten.
    g = np.asarray(pos[P0]) + [0.06, 0.0]
    food = np.array([FOOD[0], pos[P0], FOOD[2]], np.float32)
    state = state.replace(pos=state.pos.at[G3].set(g), obj_pos=jnp.asarray(food, jnp.float32))
    action = NOOP.at[P0].set(1)
    state2, ts = step(state, action)
    np.testing.assert_array_equal(state2.pos[P0], state.pos[P0])
    np.testing.assert_array_equal(state2.vel[P0], [0.0, 0.0])
    np.testing.assert_allclose(state2.pos[G3], g, atol=1e-7)
    r = np.asarray(ts.reward)
    assert r[P0] == 0.0 and float(ts.discount[P0]) == 0.0
    np.testing.assert_allclose(r[G3], -0.1 * np.linalg.norm(g - np.asarray(pos[P1])), rtol=1e-5)
    assert float(ts.extras["caught"]) == 0.0 and float(ts.extras["eaten"]) == 0.0
    np.testing.assert_array_equal(state2.obj_pos, food)
    assert not bool(ts.terminated)

    # Catching the last Pac-Man terminates the game: every discount drops to 0.
    state3 = state2.replace(pos=state2.pos.at[G3].set(state2.pos[P1]))
    state4, ts = step(state3, NOOP)
    assert bool(ts.terminated) and not bool(ts.truncated)
    np.testing.assert_array_equal(ts.discount, np.zeros(5))
    np.testing.assert_allclose(ts.reward[G3], 5.0, atol=1e-6)
    assert not np.any(state4.alive[:MAX_P])
    assert not np.any(ts.observation.agents_mask)


def test_each_touching_ghost_scores(env, step, reset):
    pos = [[0.5, 0.5], [-0.5, -0.5], [0.0, 0.0], [0.5, 0.5], [0.5, 0.5]]
    state = _state(env, reset, pos, FOOD, n_ghosts=2)
    state, ts = step(state, NOOP)
    r = np.asarray(ts.reward)
    np.testing.assert_allclose(r[[G3, G4]], [5.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(r[P0], -5.0 - 0.1 * _near_food(pos[P0], FOOD), rtol=1e-5)
    assert float(ts.extras["caught"]) == 1.0
    assert not bool(ts.terminated)  # P1 is still in play


def test_food_eaten_and_respawns(env, step, reset):
    # P1 sits on food 1, ghost G3 on food 0 (ghosts don't eat), P0 far from everything.
    pos = [[0.0, 0.5], FOOD[1], [0.0, 0.0], FOOD[0], [0.0, 0.0]]
    state = _state(env, reset, pos, FOOD)
    state, ts = step(state, NOOP)
    r = np.asarray(ts.reward)
    np.testing.assert_allclose(r[P1], 2.0, atol=1e-6)  # +2, nearest food at distance 0
    np.testing.assert_allclose(r[P0], -0.1 * _near_food(pos[P0], FOOD), rtol=1e-5)
    assert float(ts.extras["eaten"]) == 1.0 and float(ts.extras["caught"]) == 0.0
    food = np.asarray(state.obj_pos)
    np.testing.assert_array_equal(food[0], FOOD[0])
    assert np.linalg.norm(food[1] - np.asarray(FOOD[1])) > 1e-3
    assert np.all(np.abs(food[1]) <= 0.9)
    np.testing.assert_array_equal(food[2], FOOD[2])  # padded slot untouched
    assert not np.any(ts.observation.objects_mask[:, 2])


def test_padding_never_appears(env):
    task = env.make_task(2, 1, 2)

    @jax.jit
    def rollout(key):
        state, ts0 = env.reset_to(key, task)

        def body(state, k):
            state, ts = env.step(state, random_actions(env, k))
            return state, (state.pos, ts)

        _, out = jax.lax.scan(body, state, jax.random.split(key, 15))
        return state.pos, out

    pos0, (pos, ts) = rollout(jax.random.key(3))
    pad = np.array([P2, G4])
    pos0 = np.asarray(pos0)
    assert np.all(np.asarray(ts.reward)[:, pad] == 0.0)
    assert np.all(np.asarray(ts.discount)[:, pad] == 0.0)
    obs = ts.observation
    assert not np.any(np.asarray(obs.agents_mask)[:, :, pad])
    assert not np.any(np.asarray(obs.agents_mask)[:, pad, :])
    assert not np.any(np.asarray(obs.objects_mask)[:, pad])
    assert np.all(np.asarray(obs.self)[:, pad] == 0.0)
    assert np.all(np.asarray(obs.agents)[:, :, pad] == 0.0)
    np.testing.assert_array_equal(np.asarray(pos)[:, pad], np.broadcast_to(pos0[pad], (15, 2, 2)))


def test_padding_is_inert():
    # The (2, 1) game in a padded world plays exactly as in an unpadded one.
    big = PacMan(max_pacman=3, max_ghosts=2, max_objects=3)
    small = PacMan(max_pacman=2, max_ghosts=1, max_objects=2)
    slots = np.array([0, 1, 3])  # small's slots inside big

    def run(env, task, scatter):
        @jax.jit
        def f(key, actions):
            state, _ = env.reset_to(key, task)

            def body(state, a):
                state, ts = env.step(state, scatter(a))
                return state, (state.pos, ts.reward, state.obj_pos)

            return jax.lax.scan(body, state, actions)[1]

        return f

    actions = jax.random.randint(jax.random.key(1), (8, 3), 0, 5, dtype=jnp.int32)
    key = jax.random.key(5)
    pos_s, rew_s, food_s = run(small, small.make_task(2, 1, 2), lambda a: a)(key, actions)
    pos_b, rew_b, food_b = run(
        big, big.make_task(2, 1, 2), lambda a: jnp.zeros(5, jnp.int32).at[slots].set(a)
    )(key, actions)
    np.testing.assert_allclose(pos_b[:, slots], pos_s, atol=1e-6)
    np.testing.assert_allclose(rew_b[:, slots], rew_s, atol=1e-5)
    np.testing.assert_allclose(food_b[:, :2], food_s, atol=1e-6)


def test_jit_vmap_mixed_populations():
    env = PacMan(max_pacman=8, max_ghosts=4, max_objects=4)
    tasks = stack_tasks([env.make_task(4, 2), env.make_task(8, 4)])
    traces = []

    @jax.jit
    def rollout(keys, tasks):
        traces.append(1)
        states, ts0 = jax.vmap(env.reset_to)(keys, tasks)

        def body(states, k):
            acts = jax.vmap(lambda kk: random_actions(env, kk))(jax.random.split(k, 2))
            states, ts = jax.vmap(env.step)(states, acts)
            return states, ts

        return ts0, jax.lax.scan(body, states, jax.random.split(keys[0], 10))[1]

    ts0, ts = rollout(jax.random.split(jax.random.key(0), 2), tasks)
    swapped = stack_tasks([env.make_task(8, 4, 2), env.make_task(4, 2)])
    rollout(jax.random.split(jax.random.key(1), 2), swapped)  # new games, same program
    assert len(traces) == 1
    spec = env.observation_spec
    assert ts0.observation.self.shape == (2, *spec.self.shape)
    assert ts.observation.agents.shape == (10, 2, *spec.agents.shape)
    assert ts0.reward.shape == (2, 12)
    np.testing.assert_array_equal(np.sum(ts0.observation.agent_mask, axis=-1), [6, 12])
    mask_42 = np.zeros(12, bool)
    mask_42[[0, 1, 2, 3, 8, 9]] = True
    np.testing.assert_array_equal(ts0.observation.agent_mask[0], mask_42)
    np.testing.assert_array_equal(ts0.observation.team[0], [0] * 8 + [1] * 4)
    pad = np.r_[4:8, 10:12]  # padding of the (4, 2) game
    assert np.all(np.asarray(ts.reward)[:, 0, pad] == 0.0)
    assert not np.any(np.asarray(ts.observation.agents_mask)[:, 0][..., pad])
    assert np.all(np.isfinite(np.asarray(ts.reward)))

"""Reference policies (metajax/reference.py): random and scripted play of the MRA games."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from metajax.algos import reference
from metajax.core import taskspec
from metajax.train import evaluation

EPISODES = 16
NOOP, PX, MX, PY, MY = range(5)


def _mean_per_agent(returns, tasks, env) -> float:
    """Mean return per agent in the game over seeds, episodes and the single task."""
    mask = np.asarray(jax.vmap(evaluation._agent_mask_of(env))(tasks))[0]
    return float(np.asarray(returns)[:, 0][..., mask].mean())


# --- moves for hand-made observations -------------------------------------------------------


def test_move_towards_picks_the_dominant_axis():
    d = jnp.array([[1.0, 0.0], [-1.0, 0.2], [0.1, 2.0], [0.3, -0.8], [0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(reference.move_towards(d)), [PX, MX, PY, MY, NOOP])


def _observe(env, task, pos, obj):
    """The env's observation of a hand-placed world (agents at ``pos``, objects at ``obj``)."""
    state, _ = env.reset_to(jax.random.PRNGKey(0), task)
    state = state.replace(pos=jnp.asarray(pos, jnp.float32),
                          obj_pos=jnp.asarray(obj, jnp.float32))
    return env.observe(state)


def _scripted(env, task, pos, obj) -> np.ndarray:
    """:func:`reference.scripted_action` on :func:`_observe` (jitted: eager ops are slow)."""
    f = jax.jit(lambda pos, obj: reference.scripted_action(env, _observe(env, task, pos, obj)))
    return np.asarray(f(jnp.asarray(pos, jnp.float32), jnp.asarray(obj, jnp.float32)))


def test_scripted_collectors_go_to_the_nearest_object():
    # Treasure: agent 0 has a treasure straight to its +x side (and one far off to -y);
    # agent 1's nearest is the far one, below it; agent 2 is padding.
    env = envs.make("treasure", max_agents=3, max_objects=2)
    act = _scripted(env, env.make_task(n_agents=2, n_treasures=2),
                    [[0.0, 0.0], [0.1, -0.5], [0.0, 0.0]], [[0.3, 0.0], [0.0, -0.9]])
    np.testing.assert_array_equal(act, [PX, MY, NOOP])
    # Resource: the resource at -x is the nearest for agent 0; agent 1 sits above the +y one.
    env = envs.make("resource", max_agents=2, max_objects=2)
    act = _scripted(env, env.make_task(n_agents=2, n_resources=2),
                    [[0.0, 0.0], [0.8, 0.9]], [[-0.4, 0.1], [0.8, 0.2]])
    np.testing.assert_array_equal(act, [MX, MY])


def test_scripted_pacman_flees_or_eats_and_ghosts_chase():
    # Slots: P0 P1 | G2 G3; food F0 F1. G2 is close to +x of P0 (P0 flees to -x); P1 is far
    # from every ghost and has food straight above (+y); G2's nearest live Pac-Man is P0 at -x;
    # G3 (below P1) has P1 nearest, straight above it (+y).
    env = envs.make("pacman", max_pacman=2, max_ghosts=2, max_objects=2)
    task = env.make_task(n_pacman=2, n_ghosts=2, n_food=2)
    pos = [[0.0, 0.0], [1.5, 1.0], [0.3, 0.05], [1.5, 0.0]]
    np.testing.assert_array_equal(_scripted(env, task, pos, [[1.5, 1.4], [-0.5, 0.0]]),
                                  [MX, PY, MX, PY])
    # Without a ghost within the flee radius, P0 goes to its nearest food (-x) instead.
    pos[2] = [0.0, -1.0]
    assert _scripted(env, task, pos, [[1.5, 1.4], [-0.5, 0.0]])[0] == MX
    pos[2] = [0.0, 1.0]
    assert _scripted(env, task, pos, [[1.5, 1.4], [0.0, -0.3]])[0] == MY


def test_per_team_kinds_and_action_types():
    env = envs.make("pacman", max_pacman=2, max_ghosts=2, max_objects=2)
    task = env.make_task(n_pacman=2, n_ghosts=2, n_food=2)
    obs = jax.jit(_observe, static_argnums=0)(
        env, task, [[0.0, 0.0], [1.5, 1.0], [0.3, 0.05], [1.5, 0.0]], [[1.5, 1.4], [-0.5, 0.0]])
    learner = reference.reference_learner(env, ("random", "scripted"))
    carry = learner.initial_carry()
    assert carry.shape == (4, 0)
    play = jax.jit(jax.vmap(lambda k: learner.policy(None, obs, carry, k, True)[0]))
    acts = np.asarray(play(jax.random.split(jax.random.PRNGKey(2), 20)))  # [20, A]
    assert len(np.unique(acts[:, :2])) > 2  # Pac-Man random
    np.testing.assert_array_equal(acts[:, 2:], [[MX, PY]] * 20)  # ghosts scripted
    np.testing.assert_array_equal(np.asarray(reference.kind_codes(env, "scripted")), [1, 1])
    cont = envs.make("treasure", max_agents=1, max_objects=1, action_type="continuous")
    act = _scripted(cont, cont.make_task(n_agents=1, n_treasures=1), [[0.0, 0.0]], [[0.0, 0.5]])
    np.testing.assert_array_equal(act, [[0, 1]])
    a = reference.random_action(cont, jax.random.PRNGKey(0))
    assert a.shape == (1, 2) and np.all(np.abs(np.asarray(a)) <= 1)


def test_clear_errors():
    spread = envs.make("spread", episode_length=5)
    with pytest.raises(ValueError, match="no scripted policy for env 'spread'"):
        reference.reference_learner(spread, "scripted")
    reference.reference_learner(spread, "random")  # random plays any env
    pac = envs.make("pacman", max_pacman=1, max_ghosts=1, max_objects=1)
    with pytest.raises(ValueError, match="unknown reference policy"):
        reference.reference_learner(pac, "greedy")
    with pytest.raises(ValueError, match="2 team"):
        reference.reference_learner(pac, ("random", "scripted", "random"))


# --- scripted beats random -----------------------------------------------------------------


def test_scripted_beats_random_on_resource_occupation():
    env = envs.make("resource", max_agents=3, max_objects=3, episode_length=20)
    tasks = taskspec.build_tasks(env, ({"n_agents": 3, "n_resources": 3},))
    out = {kind: reference.reference_returns(env, tasks, kind, EPISODES, jax.random.PRNGKey(0),
                                             stats=True) for kind in ("random", "scripted")}
    ret = {k: _mean_per_agent(r, tasks, env) for k, (r, _) in out.items()}
    occupied = {k: float(s["occupied"].mean()) for k, (_, s) in out.items()}
    # measured (random vs scripted): return 7.1 vs 24.2 per agent; 8.6 vs 33.6 resource-steps
    # occupied per episode
    assert ret["scripted"] > 2 * ret["random"], ret
    assert occupied["scripted"] > 2.5 * occupied["random"], occupied
    assert out["random"][0].shape == (1, 1, EPISODES, 3)
    np.testing.assert_array_equal(np.asarray(out["random"][1]["length"]), 20.0)


def test_scripted_beats_random_on_treasure_collection():
    env = envs.make("treasure", max_agents=2, max_objects=6, episode_length=20)
    tasks = taskspec.build_tasks(env, ({"n_agents": 2, "n_treasures": 6},))
    out = {kind: reference.reference_returns(env, tasks, kind, EPISODES, jax.random.PRNGKey(0),
                                             seeds=2, stats=True)
           for kind in ("random", "scripted")}
    ret = {k: _mean_per_agent(r, tasks, env) for k, (r, _) in out.items()}
    collected = {k: float(s["collected"].mean()) for k, (_, s) in out.items()}
    # measured (random vs scripted): return -0.79 vs 1.82 per agent; 0.41 vs 4.8 treasures
    # collected per episode
    assert ret["scripted"] > ret["random"] + 1.5, ret
    assert collected["scripted"] > collected["random"] + 2.5, collected
    assert out["scripted"][0].shape == (2, 1, EPISODES, 2)


def test_scripted_teams_beat_random_on_pacman():
    env = envs.make("pacman", max_pacman=4, max_ghosts=2, max_objects=6, episode_length=20)
    tasks = taskspec.build_tasks(env, ({"n_pacman": 4, "n_ghosts": 2, "n_food": 6},))
    team = np.asarray(evaluation._team_ids(env))
    mask = np.asarray(jax.vmap(evaluation._agent_mask_of(env))(tasks))[0]
    out, per_team = {}, {}
    for name, kind in {"random": "random", "chase": ("random", "scripted"),
                       "flee": ("scripted", "random")}.items():
        r, s = reference.reference_returns(env, tasks, kind, EPISODES, jax.random.PRNGKey(0),
                                           stats=True)
        out[name] = {k: float(v.mean()) for k, v in s.items()}
        per_team[name] = {t: float(v.mean()) for t, v in
                          evaluation.team_returns(np.asarray(r)[:, 0], team, mask).items()}
    # measured (caught / eaten per episode; team returns per agent):
    #   random: 0.25 / 1.1, Pac-Man -0.70, ghosts -0.73
    #   chasing ghosts (random Pac-Man): 2.0 / 0.88, Pac-Man -2.9, ghosts 3.9
    #   fleeing, eating Pac-Man (random ghosts): 0.0 / 6.5, Pac-Man 2.6, ghosts -1.4
    assert out["chase"]["caught"] > out["random"]["caught"] + 1.0, out
    assert per_team["chase"][1] > per_team["random"][1] + 2.0, per_team
    assert out["flee"]["eaten"] > out["random"]["eaten"] + 3.0, out
    assert per_team["flee"][0] > per_team["random"][0] + 2.0, per_team
    assert out["flee"]["caught"] <= out["random"]["caught"], out


# --- per-team summaries --------------------------------------------------------------------


def test_team_returns_by_hand():
    # Slots: P0 P1 (P2 padding) | G3 G4; two episodes.
    team = np.array([0, 0, 0, 1, 1])
    mask = np.array([True, True, False, True, True])
    r = np.array([[1.0, 3.0, 99.0, -2.0, 4.0],
                  [0.0, -1.0, 99.0, 6.0, 0.0]])
    out = evaluation.team_returns(r, team, mask)
    assert set(out) == {0, 1}
    np.testing.assert_allclose(out[0], [2.0, -0.5])
    np.testing.assert_allclose(out[1], [1.0, 3.0])
    one = evaluation.team_returns(r[0], team, mask)
    assert one[0].shape == () and float(one[0]) == 2.0 and float(one[1]) == 1.0
    # Per-task masks broadcast against [K, E, A] returns: task 1 has no ghost G4.
    masks = np.array([[True, True, False, True, True],
                      [True, False, False, True, False]])[:, None]
    out = evaluation.team_returns(np.stack([r, r]), team, masks)
    np.testing.assert_allclose(out[0], [[2.0, -0.5], [1.0, 0.0]])
    np.testing.assert_allclose(out[1], [[1.0, 3.0], [-2.0, 6.0]])
    # A team with no agent in the game is left out.
    assert set(evaluation.team_returns(r, team, team == 0)) == {0}

"""MESA's pieces: task splits (metajax/pipelines/mesa.py), joint features, the M_* collection
flush, the Eq. 6 coverage step, exploration during meta-testing, the goal wrapper, the stage
loop (metajax/algos/mesa/)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.wrappers import AutoReset, GoalObservation
from metajax.algos.maddpg import ORIGINAL, make_maddpg
from metajax.algos.mesa import config, explorers, features, metatest, report, stages, subspace
from metajax.algos.mesa import core as mc
from metajax.core import ops
from metajax.core.interfaces import ActionSpace
from metajax.pipelines import mesa
from metajax.train.loop import ONCE

_LEARNER = dataclasses.replace(
    ORIGINAL, batch_size=8, buffer_size=64, num_envs=4, rollout_steps=1, learning_starts=8,
    hidden=(8,))


def _cfg(**kw) -> config.MESAConfig:
    base = dict(env="climb", env_config=dict(max_agents=2, num_actions=4), n_train=4, n_test=2,
                split={"test_filter": {"k": 2}}, maddpg=_LEARNER, seeds=2)
    base.update(kw)
    return config.MESAConfig(**base)


# --- config and tasks -----------------------------------------------------------------------------


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="methods"):
        _cfg(methods=("mesa", "nope"))
    with pytest.raises(ValueError, match="num_envs"):
        _cfg(n_train=8)  # 4 parallel games cannot cover 8 training tasks
    with pytest.raises(ValueError, match="split"):
        _cfg(split={"tests": {}})
    with pytest.raises(ValueError, match="eps"):
        _cfg(eps=0.0)
    with pytest.raises(ValueError, match="overlap"):
        _cfg(split={"train": {}, "test": {}, "overlap": True})  # only with test_filter
    with pytest.raises(ValueError, match="overlap"):
        _cfg(split={"test_filter": {"k": 2}, "overlap": "yes"})


def test_task_sets_disjoint_filtered_and_per_seed():
    env = envs.make("climb", max_agents=2, num_actions=4)
    cfg = _cfg(seeds=3)
    train, test = mesa.seed_task_sets(env, cfg)
    assert train.k.shape == (3, 4) and test.k.shape == (3, 2)
    assert np.all(np.asarray(test.k) == 2)  # the test filter
    pairs = lambda t, s: {(int(k), int(u)) for k, u in zip(t.k[s], t.u[s], strict=True)}  # noqa: E731
    for s in range(3):
        assert not pairs(train, s) & pairs(test, s)
        assert len(pairs(train, s)) == 4 and len(pairs(test, s)) == 2
    # chosen by seed: not every seed draws the same test tasks
    assert len({tuple(sorted(pairs(test, s))) for s in range(3)}) > 1
    with pytest.raises(mesa.ExperimentError, match="test_filter"):
        mesa.task_sets(env, _cfg(n_test=5), jax.random.PRNGKey(0))  # only 4 games have k=2


def test_explicit_task_lists_name_an_unknown_field():
    from metajax.config import ConfigError

    env = envs.make("climb", max_agents=2, num_actions=4)
    split = {"train_tasks": [{"k": 1, "u": 0}], "test_tasks": [{"k": 2, "uu": 1}]}
    with pytest.raises(ConfigError, match=r"unknown task field 'uu' for Climb \(task fields"):
        mesa.task_sets(env, _cfg(n_train=1, n_test=1, split=split), jax.random.PRNGKey(0))


def test_task_sets_overlap_may_reuse_training_tasks_for_testing():
    env = envs.make("climb", max_agents=2, num_actions=4)
    default = mesa.seed_task_sets(env, _cfg(seeds=12))
    overlap = mesa.seed_task_sets(env, _cfg(seeds=12, split={"test_filter": {"k": 2},
                                                            "overlap": True}))
    seen_default = mesa.seen_in_training(*default)
    seen_overlap = mesa.seen_in_training(*overlap)
    assert seen_default.shape == seen_overlap.shape == (12, 2)
    assert not seen_default.any()  # disjoint
    assert seen_overlap.any() and not seen_overlap.all()
    train, test = overlap
    assert np.all(np.asarray(test.k) == 2)  # still the filter's tasks
    for s in range(12):
        pairs = {(int(k), int(u)) for k, u in zip(train.k[s], train.u[s], strict=True)}
        assert len(pairs) == 4  # without replacement
        hit = {(2, int(u)) for u in test.u[s]} & pairs
        assert bool(hit) == bool(seen_overlap[s].any())
    # training tasks come from the whole space, k = 2 games included
    assert np.any(np.asarray(train.k) == 2) and np.any(np.asarray(train.k) == 1)


def test_found_rate_split_by_seen_in_training():
    res = {"optimal_found": {"per_task": [[1.0, 0.0], [0.0, 1.0]]},
           "greedy_return": {"mean": 0.75, "std": 0.0, "per_task": [[1.0, 0.5], [0.5, 1.0]]}}
    seen = np.array([[True, True], [False, False]])
    out = report.found_by_seen(res, seen)
    assert out["all"] == {"found": 2, "runs": 4, "fraction": 0.5}
    assert out["seen"]["found"] == 1 and out["unseen"]["found"] == 1
    assert report.found_by_seen({"greedy_return": res["greedy_return"]}, seen) is None
    res["optimal_found"].update(mean=0.5, std=0.0)
    table = report.results_table({"name": "t", "env": "climb", "seeds": 2, "n_test": 2,
                                "methods": {"mesa": res}, "test_in_train": seen.tolist(),
                                "tasks": {"test": {"k": [[2, 2], [2, 2]],
                                                   "u": [[0, 1], [2, 3]]}}})
    assert "0.50 (1/2)" in table and "| 0 | k=2, u=1 | yes | 0.500 |" in table


def test_task_sets_from_samplers_respect_populations():
    env = envs.make("mpe_climb", max_agents=3, max_objects=5)
    cfg = _cfg(env="mpe_climb", split={"train": {"n_agents": 2, "n_landmarks": 5},
                                       "test": {"n_agents": 3, "n_landmarks": 4}})
    train, test = mesa.task_sets(env, cfg, jax.random.PRNGKey(1))
    assert np.all(np.asarray(train.n_agents) == 2) and np.all(np.asarray(test.n_agents) == 3)
    assert np.all(np.asarray(test.n_landmarks) == 4)


# --- features, collection, coverage ------------------------------------------------------------


def test_joint_features_mask_padding_and_weight_actions():
    env = envs.make("climb", max_agents=3, num_actions=4)
    _, ts = env.reset_to(jax.random.PRNGKey(0), env.make_task(n_agents=2, k=1, u=0))
    act = jax.nn.one_hot(jnp.array([1, 2, 3]), 4)
    x = features.joint_features(ts.observation, act, action_weight=2.0)
    flat = ts.observation.flat.reshape(-1)
    assert x.shape == (flat.shape[0] + 12,)
    np.testing.assert_array_equal(x[flat.shape[0]:].reshape(3, 4),
                                  [[0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]])


def test_flush_rollout_keeps_valuable_pairs_and_relabelled_predecessors():
    cfg = _cfg(threshold=1.0, relabel_gamma=0.5, dataset_capacity=16)
    # one game, a rollout of 5 steps: rewards 0, 0, 1 | 0.5, 0 with an episode end after step 2
    r = jnp.array([[0.0], [0.0], [1.0], [0.5], [0.0]])
    done = jnp.array([[False], [False], [True], [False], [False]])
    sa = jnp.arange(5, dtype=jnp.float32)[:, None, None] * jnp.ones((5, 1, 2))
    aux = subspace.CollectAux(ds=mc.dataset_init(16, 2), sa=sa, reward=r, done=done,
                          t=jnp.int32(5), key=jax.random.PRNGKey(0))
    out = subspace.flush_rollout(aux, cfg)
    kept = np.asarray(out.ds.data[np.asarray(out.ds.mask)][:, 0])
    vals = np.asarray(out.ds.value[np.asarray(out.ds.mask)])
    order = np.argsort(kept)
    # steps 0 and 1 lead to the reward at step 2 (Eq. 5: 0.5^2, 0.5^1); step 3 (0 < r < R*) and
    # step 4 (nothing follows in its episode) are not kept
    np.testing.assert_array_equal(kept[order], [0, 1, 2])
    np.testing.assert_allclose(vals[order], [0.25, 0.5, 1.0])
    assert int(out.t) == 0


def test_coverage_step_hand_values():
    ds = mc.dataset_add(mc.dataset_init(4, 2), jnp.array([[0.0, 0.0], [5.0, 0.0]]),
                        jnp.ones(2, bool), value=jnp.array([1.0, 0.25]))
    centers = jnp.array([[0.0, 0.0], [5.0, 0.0]])
    aux = explorers.CoverageAux(ds=ds, centers=centers, global_counts=jnp.array([1, 0], jnp.int32),
                           counts=jnp.array([[1, 0], [1, 0]], jnp.int32),
                           reward_ema=jnp.zeros(()), inside_ema=jnp.zeros(()),
                           eps=jnp.float32(0.5))
    # game 0 near pair 0 (cluster 0, N_hat = 1), game 1 near pair 1 (cluster 1, unseen)
    sa = jnp.array([[0.1, 0.0], [5.0, 0.2]])
    r, aux = explorers.coverage_step(aux, sa, jnp.array([False, False]), power=5.0)
    np.testing.assert_allclose(r, [1.0 / 2**5, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(aux.counts, [[2, 0], [1, 1]])
    # repeat: counts grow; game 1 ends its episode and restarts from N_hat
    r, aux = explorers.coverage_step(aux, sa, jnp.array([False, True]), power=5.0)
    np.testing.assert_allclose(r, [1.0 / 3**5, 0.25 / 2**5], rtol=1e-6)
    np.testing.assert_array_equal(aux.counts, [[3, 0], [1, 0]])
    # outside eps: no reward, but the visit is counted
    r, aux = explorers.coverage_step(aux, jnp.array([[2.0, 0.0], [9.0, 9.0]]),
                                jnp.array([False, False]), power=5.0)
    np.testing.assert_array_equal(r, [0.0, 0.0])


def test_nearest_matches_brute_force_and_merge_keeps_every_row():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(10, 3)).astype(np.float32)
    ds = mc.dataset_add(mc.dataset_init(12, 3), jnp.asarray(data), jnp.ones(10, bool),
                        value=jnp.arange(10, dtype=jnp.float32))
    x = rng.normal(size=(7, 3)).astype(np.float32)
    nearest = jax.jit(mc.nearest, static_argnums=2, compiler_options=ONCE)
    for chunk in (None, 3):
        dist, idx = nearest(ds, jnp.asarray(x), chunk)
        d = np.linalg.norm(x[:, None] - data[None], axis=-1)
        np.testing.assert_array_equal(idx, d.argmin(1))
        np.testing.assert_allclose(dist, d.min(1), rtol=1e-5)
    np.testing.assert_array_equal(ds.value[np.asarray(idx)], d.argmin(1))  # r_hat per pair
    both = mc.dataset_merge(jax.tree.map(lambda a, b: jnp.stack([a, b]), ds, ds))
    assert both.data.shape == (24, 3) and int(both.mask.sum()) == 20 and int(both.count) == 20
    # the stored rows come first, in order, each with its own r_hat
    np.testing.assert_array_equal(both.mask, np.arange(24) < 20)
    np.testing.assert_array_equal(both.data[:20], np.concatenate([data, data]))
    np.testing.assert_array_equal(both.value[:20], np.concatenate([np.arange(10)] * 2))
    dist, idx = nearest(both, jnp.asarray(x), 5)
    np.testing.assert_array_equal(idx, d.argmin(1))  # ties: the lowest index
    np.testing.assert_allclose(dist, d.min(1), rtol=1e-5)


# --- exploration during meta-testing -----------------------------------------------------------


@pytest.fixture(scope="module")
def explore_setup():
    env = envs.make("climb", max_agents=2, num_actions=4)
    task = env.make_task(k=2, u=1)
    learner = make_maddpg(_LEARNER, env, task)
    space = ActionSpace.of(env)
    params = jax.jit(learner.init, compiler_options=ONCE)(jax.random.PRNGKey(0)).params.actor
    # an "explorer" whose logits always pick action 3: large bias on the output layer
    biased = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 50.0 * jax.nn.one_hot(3, 4)
        if "bias" in jax.tree_util.keystr(p) and x.shape[-1] == 4 else x, params)
    stack = jax.tree.map(lambda x: x[None], biased)  # E = 1
    return env, task, learner, space, stack


_EXPLORE_PROGRAMS: dict = {}


def _explore_run(explore_setup, mode, p_start, p_end):
    """One exploration-hook step of 4 climb games in ``mode`` (jitted once per ``p``: eager
    dispatch of the hook is slow)."""
    env, task, learner, space, stack = explore_setup
    if (p_start, p_end) not in _EXPLORE_PROGRAMS:
        cfg = _cfg(num_explorers=1, p_start=p_start, p_end=p_end, anneal_steps=10)
        hooks = metatest.exploration_hooks(cfg, learner, space, 4, 2, 0,
                                       jax.tree.map(lambda x: x[0], stack))

        def run(stack, mode):
            aux = hooks.init(jax.random.PRNGKey(0), None).replace(params=stack, mode=mode)
            auto = AutoReset(env)
            state, ts = jax.vmap(auto.reset_to)(jax.random.split(jax.random.PRNGKey(1), 4),
                                                ops.tile(task, 4))
            learner_env = jnp.zeros((4, 2), jnp.int32)
            learner_critic = jax.nn.one_hot(learner_env, 4)
            return hooks.act(aux, ts.observation, jax.random.PRNGKey(2), jnp.int32(0),
                             learner_env, learner_critic)

        _EXPLORE_PROGRAMS[p_start, p_end] = jax.jit(run, compiler_options=ONCE)
    return _EXPLORE_PROGRAMS[p_start, p_end](stack, jnp.int32(mode))


def test_exploration_hook_modes(explore_setup):
    # MESA mode with p_e = 1: the explorer (always action 3) plays every game
    env_a, critic_a, aux = _explore_run(explore_setup, 1, 1.0, 1.0)
    np.testing.assert_array_equal(env_a, 3)
    np.testing.assert_array_equal(critic_a, jax.nn.one_hot(env_a, 4))
    np.testing.assert_array_equal(aux.who, 0)
    # p_e = 0, or the plain-MADDPG mode: the learner's actions are untouched
    for mode, p in ((1, 0.0), (0, 1.0)):
        env_a, _, aux = _explore_run(explore_setup, mode, p, p)
        np.testing.assert_array_equal(env_a, 0)
        np.testing.assert_array_equal(aux.who, -1)
    # random mode: uniform actions, not the explorer's
    env_a, _, _ = _explore_run(explore_setup, 2, 1.0, 1.0)
    assert env_a.shape == (4, 2) and not np.all(np.asarray(env_a) == 3)


def test_exploration_hook_keeps_the_player_for_the_whole_episode(explore_setup):
    env, task, learner, space, stack = explore_setup
    cfg = _cfg(num_explorers=1, p_start=0.5, p_end=0.5, anneal_steps=10)
    hooks = metatest.exploration_hooks(cfg, learner, space, 4, 2, 0,
                                   jax.tree.map(lambda x: x[0], stack))
    aux = jax.jit(hooks.init, static_argnums=1, compiler_options=ONCE)(
        jax.random.PRNGKey(0), None).replace(params=stack, mode=jnp.int32(1))
    obs = jax.jit(jax.vmap(lambda k: env.reset_to(k, task)[1].observation),
                  compiler_options=ONCE)(jax.random.split(jax.random.PRNGKey(0), 4))
    la = jnp.zeros((4, 2), jnp.int32)
    act = jax.jit(hooks.act, compiler_options=ONCE)  # one program for both calls
    _, _, aux = act(aux, obs, jax.random.PRNGKey(5), jnp.int32(0), la, jax.nn.one_hot(la, 4))
    first = np.asarray(aux.who)
    # mid-episode (no done reported): the same player, whatever the draw
    _, _, aux2 = act(aux, obs, jax.random.PRNGKey(6), jnp.int32(0), la, jax.nn.one_hot(la, 4))
    np.testing.assert_array_equal(aux2.who, first)
    # after an episode end every game draws again
    ts = type("TS", (), {"reward": jnp.zeros((4, 2)), "done": jnp.ones(4, bool)})()
    _, aux3 = hooks.reward(aux2, obs, None, ts)
    assert np.all(np.asarray(aux3.fresh))


def test_goal_observation_appends_the_task_description():
    env = envs.make("climb", max_agents=3, num_actions=4)
    goal = GoalObservation(env)
    task = env.make_task(n_agents=2, k=2, u=3)
    _, ts = AutoReset(goal).reset_to(jax.random.PRNGKey(0), task)
    d = np.asarray(env.task_description(task))
    base = env.reset_to(jax.random.PRNGKey(0), task)[1].observation.self
    np.testing.assert_array_equal(ts.observation.self[:2, base.shape[1]:], np.stack([d, d]))
    np.testing.assert_array_equal(ts.observation.self[2], 0.0)  # padding sees nothing
    assert goal.observation_spec.self.shape == ts.observation.self.shape


def test_config_changes_lets_old_runs_resume_but_names_real_changes():
    from metajax.config import to_dict

    cfg = config.MESAConfig(name="t", env="climb", n_train=1, maddpg=ORIGINAL)
    now = to_dict(cfg)
    # a run written before a field existed: unchanged while the field keeps its default
    old = {k: v for k, v in now.items() if k != "xla_fast"}
    old["maddpg"] = {k: v for k, v in now["maddpg"].items() if k != "exploration_noise"}
    assert config.config_changes(old, now) == []
    assert config.config_changes(old, to_dict(dataclasses.replace(cfg, xla_fast=True))) == [
        "xla_fast"]
    later = dataclasses.replace(cfg, test_steps=7, maddpg=dataclasses.replace(ORIGINAL, tau=0.5,
                                exploration_noise=0.3))
    assert config.config_changes(old, to_dict(later)) == [
        "maddpg.exploration_noise", "maddpg.tau", "test_steps"]
    assert config.config_changes(now, now) == []


def test_pipeline_coverage_step_scanned_over_games_matches_brute_force():
    """The pipeline's Eq. 6 step (``explorers.coverage_step`` -> ``mc.coverage_step`` ->
    ``mc.count_step``), scanned over 3 games x 40 steps with episode ends, against a plain
    Python loop over the paper's definition; the counts are asserted at every step."""
    rng = np.random.default_rng(3)
    g, t, k, eps = 3, 40, 4, 0.6
    stored = rng.normal(size=(6, 2)).astype(np.float32)
    value = rng.uniform(0.1, 1.0, size=6).astype(np.float32)
    ds = mc.dataset_add(mc.dataset_init(8, 2), jnp.asarray(stored), jnp.ones(6, bool),
                        value=jnp.asarray(value))
    centers = stored[:k]
    gc = np.array([0, 2, 0, 1], np.int32)
    # visits near stored pairs (often) or far from all (sometimes)
    near = stored[rng.integers(0, 6, (t, g))] + rng.normal(0, 0.2, (t, g, 2))
    sa = np.where(rng.uniform(size=(t, g, 1)) < 0.8, near, 5.0 + near).astype(np.float32)
    done = rng.uniform(size=(t, g)) < 0.15
    aux = explorers.CoverageAux(ds=ds, centers=jnp.asarray(centers), global_counts=jnp.asarray(gc),
                           counts=jnp.broadcast_to(jnp.asarray(gc), (g, k)),
                           reward_ema=jnp.zeros(()), inside_ema=jnp.zeros(()),
                           eps=jnp.float32(eps))

    def body(aux, inp):
        r, aux = explorers.coverage_step(aux, inp[0], inp[1], 5.0)
        return aux, (r, aux.counts)

    _, (r, counts) = jax.jit(lambda a, x, d: jax.lax.scan(body, a, (x, d)),
                             compiler_options=ONCE)(aux, jnp.asarray(sa), jnp.asarray(done))
    # brute force
    n = np.tile(gc, (g, 1)).astype(np.int64)
    for step in range(t):
        for j in range(g):
            x = sa[step, j]
            d = np.linalg.norm(stored - x, axis=1)
            c = int(np.argmin(np.linalg.norm(centers - x, axis=1)))
            n[j, c] += 1
            want = value[d.argmin()] / n[j, c] ** 5 if d.min() < eps else 0.0
            assert float(r[step, j]) == pytest.approx(want, rel=1e-5, abs=1e-12), (step, j)
            if done[step, j]:
                n[j] = gc
        np.testing.assert_array_equal(counts[step], n)
    assert done.any() and (np.asarray(r) > 0).any() and (np.asarray(r) == 0).any()


def test_multistage_features_separate_stages_but_not_histories():
    """The multi-stage climb default metric (experiments/mesa_multistage.py): the same joint
    action at two different stages is more than eps apart, different joint actions at one
    stage too, while two histories of one stage with the same joint action are within eps."""
    from metajax.pipelines.experiment import load_experiment

    cfg = load_experiment(Path(__file__).parents[1] / "experiments" / "mesa_multistage.py").config
    env = envs.make(cfg.env, **cfg.env_config)
    task = env.make_task(k=jnp.array([2, 1, 2, 2, 1]), u=jnp.array([0, 1, 2, 3, 4]))

    def play(actions):
        """Features of every stage of one episode of the given joint actions [S, 2]."""
        state, ts = env.reset_to(jax.random.PRNGKey(0), task)
        out = []
        for a in actions:
            a = jnp.asarray(a, jnp.int32)
            out.append(np.asarray(features.features(cfg, ts.observation, jax.nn.one_hot(a, 10))))
            state, ts = env.step(state, a)
        return np.stack(out)

    same = play([[3, 3]] * 5)
    d_stage = min(np.linalg.norm(same[i] - same[j]) for i in range(5) for j in range(i))
    assert d_stage > cfg.eps, d_stage
    other = play([[3, 4]] * 5)
    assert min(np.linalg.norm(same[i] - other[i]) for i in range(5)) > cfg.eps
    # stage 4 after a completely different history, same joint action: still "near"
    hist = play([[7, 8], [9, 1], [2, 5], [6, 0], [3, 3]])
    assert np.linalg.norm(same[4] - hist[4]) < cfg.eps
    with pytest.raises(ValueError, match="start:stop"):
        _cfg(obs_scale={"a:b": 2.0})


def test_one_step_default_split_is_the_papers():
    """experiments/mesa_climb.py: test games drawn uniformly from all 20 games (both k = 1 and
    k = 2 occur), disjoint from each seed's 10 training games; k2_only keeps the old split."""
    from metajax.pipelines.experiment import configure, load_experiment

    exp = load_experiment(Path(__file__).parents[1] / "experiments" / "mesa_climb.py")
    cfg = exp.config
    env = envs.make(cfg.env, **cfg.env_config)
    train, test = mesa.seed_task_sets(env, cfg)
    assert np.asarray(test.k).shape == (cfg.seeds, 5)
    assert set(np.asarray(test.k).ravel().tolist()) == {1, 2}
    assert not mesa.seen_in_training(train, test).any()
    for s in range(cfg.seeds):  # distinct games within each set as well
        pairs = set(zip(np.asarray(train.k[s]).tolist(), np.asarray(train.u[s]).tolist(),
                        strict=True))
        assert len(pairs) == 10
    k2 = configure(exp, ["k2_only"])
    _, test2 = mesa.seed_task_sets(env, k2)
    assert np.all(np.asarray(test2.k) == 2)


def test_mesa_report_refuses_an_unfinished_run(tmp_path, capsys):
    from metajax.pipelines import mesa_report

    with pytest.raises(SystemExit):
        mesa_report.main([str(tmp_path)])
    assert "not a finished MESA run" in capsys.readouterr().err


def _stage_step(bad_chunk: int):
    """A fake compiled stage: chunk metrics ``[S=2, U=3]``, seed 1's loss infinite in chunk
    ``bad_chunk`` (0-based)."""

    def step(state, c):
        loss = jnp.where((c == bad_chunk) & (jnp.arange(2) == 1)[:, None], jnp.inf, 0.5)
        m = {"episode_return": jnp.ones((2, 3)), "critic_loss": loss * jnp.ones((2, 3)),
             "env_steps": jnp.full((2, 3), 4 * (c + 1))}
        return state + 1, m

    return step


def test_stage_loop_stops_on_a_nonfinite_chunk(tmp_path):
    from metajax.train.loop import NonFiniteError

    lines = []
    lg = stages.StageLog(tmp_path, lines.append)
    with pytest.raises(NonFiniteError, match=r"MESA stage explorer_0: non-finite critic_loss "
                                             r"in chunk 2/3 \(seed index 1\)"):
        stages.run_stage(lg, "explorer_0", _stage_step(1), 0, 9, 3, 4)
    rows = (tmp_path / "metrics_explorer_0.jsonl").read_text().splitlines()
    assert len(rows) == 1  # the diverged chunk is not logged

    lines.clear()
    state = stages.run_stage(lg, "explorer_0", _stage_step(1), 0, 9, 3, 4, allow_nonfinite=True)
    assert state == 3
    assert sum("warning: MESA stage explorer_0: non-finite critic_loss" in x for x in lines) == 1
    assert len((tmp_path / "metrics_explorer_0.jsonl").read_text().splitlines()) == 3
    assert stages.run_stage(lg, "collect", _stage_step(-1), 0, 9, 3, 4) == 3  # all finite


def test_stage_chunk_over_tasks_is_the_nested_scan():
    """:func:`stages.stage_chunk` (``make_chunk`` over seeds, the update vmapped over tasks
    inside the scan) computes what ``vmap(vmap(scan(update)))`` does, metrics ``[S, B, U]``,
    also when compiled at the cheap optimisation level."""
    from metajax.core.interfaces import Learner

    def update(state, t):
        key, total = state
        key, k = jax.random.split(key)
        x = jax.random.normal(k) * (t + 1.0)
        return (key, total + x), {"x": x, "env_steps": t}

    learner = Learner(init=None, update=update, policy=None, policy_params=None,
                      initial_carry=None, env_steps_per_update=1, tasks=None)
    keys = jax.vmap(lambda k: jax.random.split(k, 3))(jax.random.split(jax.random.PRNGKey(0), 2))
    state = (keys, jnp.zeros((2, 3)))

    def nested(state, c):
        ts = c * 4 + jnp.arange(4)
        one = lambda s: jax.lax.scan(update, s, ts)  # noqa: E731
        return jax.vmap(jax.vmap(one))(state)

    want_state, want = jax.jit(nested)(state, jnp.int32(1))
    for fast in (False, True):
        step = stages.stage_chunk(learner, 4, 2, fast)
        got_state, got = step(jax.tree.map(jnp.copy, state), jnp.int32(1))
        assert got["x"].shape == (2, 3, 4)
        np.testing.assert_allclose(got["x"], want["x"], rtol=1e-6)
        np.testing.assert_array_equal(got["env_steps"], want["env_steps"])
        np.testing.assert_allclose(got_state[1], want_state[1], rtol=1e-6)

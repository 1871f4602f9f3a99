"""The other learners as MESA meta-test methods (metajax/algos/mesa/learners.py): MAPPO, IPPO,
MAPPO-RND, QMIX and VDN trained from scratch on every (seed, test task) of a tiny one-step climb
run, recorded like MADDPG, resumable, and equal to the same learner trained on its own."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

import envs
from metajax.algos.maddpg import ORIGINAL
from metajax.algos.mesa import config, learners
from metajax.algos.mesa.play import make_player, task_metrics
from metajax.algos.mesa.stages import stage_chunk
from metajax.algos.ppo import PPOConfig
from metajax.algos.qmix import QMixConfig
from metajax.core.ops import ONCE, take, tile
from metajax.pipelines import mesa

_MADDPG = dataclasses.replace(
    ORIGINAL, batch_size=8, buffer_size=64, num_envs=16, rollout_steps=1, learning_starts=8,
    hidden=(8,))

#: 2 seeds x 2 unseen k = 2 test games of G(2, k, u, 4); 2048 meta-test steps per game: PPO
#: 64 updates of 32 steps (one chunk), QMIX 256 of 8 (4 chunks), MADDPG 128 of 16 (2 chunks).
CFG = config.MESAConfig(
    name="learners", env="climb", env_config=dict(max_agents=2, num_actions=4), n_train=4,
    n_test=2, split={"test_filter": {"k": 2}}, maddpg=_MADDPG, seeds=2, test_steps=2048,
    chunk_updates=64, eval_every=2, eval_episodes=4, xla_fast=True,
    methods=("maddpg", "mappo", "qmix"),
    ppo=PPOConfig(num_envs=8, rollout_steps=4, epochs=2, minibatches=2, hidden=(16,), lr=1e-2),
    qmix=QMixConfig(num_envs=8, hidden=16, buffer_windows=256, batch_windows=16,
                    eps_anneal_steps=1000, lr=3e-3))

#: The expected return of two uniformly random players of a k = 2 game with 4 actions:
#: 0.5 P(nobody plays u) + P(both do) = 0.5 * 9/16 + 1/16.
RANDOM = 0.5 * 9 / 16 + 1 / 16


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("learners") / "run"
    return mesa.run_mesa(CFG, out, log=lambda s: None)


def test_methods_recorded_like_maddpg(run):
    r = run.results
    env = envs.make(CFG.env, **CFG.env_config)
    _, test = mesa.seed_task_sets(env, CFG)
    opt = np.asarray(jax.vmap(jax.vmap(env.optimal_value))(test))
    keys = set(r["methods"]["maddpg"])
    for m in CFG.methods:
        res = r["methods"][m]
        assert set(res) == keys  # the same metrics, nash_conv included
        for k in ("greedy_return", "stochastic_return", "high_reward", "optimal_found",
                  "nash_conv"):
            assert np.asarray(res[k]["per_task"]).shape == (2, 2), (m, k)
        np.testing.assert_array_equal(res["optimal_value"]["per_task"], opt)
        assert res["env_steps"] == 2048
        assert f"test_{m}_s" in r["timing"]
        assert r["curves"][m][0][0] == 0 and r["curves"][m][-1][0] == 2048
    # a learner trained on its test game beats uniformly random play there (it settles on the
    # safe 0.5 at least); one trained on nothing, or evaluated on another game, need not
    for m in ("mappo", "qmix"):
        assert np.min(r["methods"][m]["greedy_return"]["per_task"]) >= 0.5 > RANDOM, m
    assert set(r["comparisons"]) == {"mappo", "qmix"}
    md = (run.run_dir / "results.md").read_text()
    assert "| mappo |" in md and "| qmix |" in md
    data = json.loads((run.run_dir / "results.json").read_text())
    for group in ("greedy_return", "optimal_found"):
        assert set(data["stats"][group]["methods"]) == set(CFG.methods)


def test_meta_test_equals_the_learner_trained_on_its_own(run):
    """Seed 1's second test game: MAPPO built by the same factory on that game alone, with the
    key the pipeline derives for it (seed key folded with stage tag 7, split over test tasks),
    trained by the train loop's chunk (:func:`metajax.train.loop.make_chunk`, through
    :func:`metajax.algos.mesa.stages.stage_chunk`) for the same updates, then measured with the
    evaluation keys (tag 6): the same greedy and stochastic returns and NashConv as the vmapped
    meta-test (which a wrong task, key or learner would not give)."""
    env = envs.make(CFG.env, **CFG.env_config)
    _, test = mesa.seed_task_sets(env, CFG)
    s, j = 1, 1
    task = take(take(test, s), j)
    seed_key = jax.random.split(jax.random.PRNGKey(CFG.seed), CFG.seeds)[s]
    key = jax.random.split(jax.random.fold_in(seed_key, 7), CFG.n_test)[j]
    eval_key = jax.random.split(jax.random.fold_in(seed_key, 6), CFG.n_test)[j]
    learner = learners.method_learner(CFG, env, "mappo", tile(task, 1))
    state = jax.jit(learner.init)(key, tile(task, CFG.ppo.num_envs))
    state = jax.tree.map(lambda x: x[None], state)
    state, _ = stage_chunk(learner, 64, 1, fast=True)(state, 0)  # the train loop's chunk
    params = jax.tree.map(lambda x: x[0], learner.policy_params(state))
    metrics = task_metrics(env, learner, CFG, make_player(env, learner, CFG))
    m = jax.jit(metrics, compiler_options=ONCE)(params, task, eval_key)
    res = run.results["methods"]["mappo"]
    for k in ("greedy_return", "stochastic_return", "optimal_value"):
        assert float(m[k]) == pytest.approx(res[k]["per_task"][s][j], abs=1e-6), k
    assert float(m["nash_conv"]) == pytest.approx(res["nash_conv"]["per_task"][s][j], abs=1e-4)


def test_resume_reloads_the_learner_methods(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run.run_dir, copy)
    said: list[str] = []
    again = mesa.run_mesa(CFG, copy, resume=True, log=said.append).results
    for m in ("mappo", "qmix"):
        assert any(f"resumed: meta-test of {m}" in line for line in said)
        assert again["methods"][m] == run.results["methods"][m]


def test_outputs_give_the_learners_own_actions():
    """``outputs`` are the logits of each learner's stochastic policy: PPO's own sampled action
    for every key, and QMIX's eps_end-greedy distribution around its greedy action."""
    env = envs.make("climb", max_agents=2, num_actions=4)
    task = env.sample_task(jax.random.PRNGKey(0))
    _, ts = env.reset_to(jax.random.PRNGKey(1), task)
    obs = ts.observation
    for method in ("mappo_rnd", "vdn"):  # the pipeline test runs mappo and qmix
        ln = learners.method_learner(CFG, env, method, tile(task, 1))
        params = ln.policy_params(jax.jit(ln.init, compiler_options=ONCE)(
            jax.random.PRNGKey(2), tile(task, 8)))
        carry = ln.initial_carry()
        logits, _ = ln.outputs(params, obs, carry)
        greedy, _ = ln.policy(params, obs, carry, jax.random.PRNGKey(3), True)
        np.testing.assert_array_equal(np.argmax(logits, -1), greedy)
        env_a, critic_a, _ = ln.act(params, obs, carry, jax.random.PRNGKey(3), True)
        np.testing.assert_array_equal(env_a, greedy)
        np.testing.assert_array_equal(np.argmax(critic_a, -1), greedy)
        if method in ("qmix", "vdn"):
            np.testing.assert_allclose(np.exp(logits).sum(-1), 1.0, rtol=1e-6)
            assert np.exp(logits).max() == pytest.approx(0.95 + 0.05 / 4)
            continue
        ks = jax.random.split(jax.random.PRNGKey(10), 64)
        sampled, _ = jax.vmap(ln.policy, (None, None, None, 0, None))(params, obs, carry, ks,
                                                                      False)
        np.testing.assert_array_equal(sampled, jax.vmap(jax.random.categorical, (0, None))(
            ks, logits))
        assert len(np.unique(np.asarray(sampled))) > 1  # the keys do draw different actions


def test_method_configs():
    assert learners.method_config(CFG, "mappo_rnd").rnd_coef == CFG.rnd_coef > 0
    assert learners.method_config(CFG, "mappo").rnd_coef == 0.0
    assert learners.method_config(CFG, "vdn") is CFG.qmix


def test_bad_methods_and_configs_refused():
    for methods in (("mappo", "nope"), (), ("qmix", "qmix")):
        with pytest.raises(ValueError, match="methods"):
            dataclasses.replace(CFG, methods=methods)
    with pytest.raises(ValueError, match="rnd_coef"):
        dataclasses.replace(CFG, ppo=PPOConfig(rnd_coef=0.1))
    with pytest.raises(ValueError, match="rnd_coef"):
        dataclasses.replace(CFG, methods=("mappo_rnd",), rnd_coef=0.0)


def test_action_spaces(tmp_path):
    """On the Swimmer, PPO plays the continuous torques (its Gaussian policy) and QMIX the
    11-point discretization; QMIX is refused, before anything trains, on a continuous env
    without one; an MPE climb game is discrete as it is."""
    cfg = dataclasses.replace(CFG, env="swimmer_climb",
                              env_config=dict(episode_length=10, action_type="continuous"),
                              split={}, methods=("maddpg", "qmix", "mappo"))
    env = envs.make(cfg.env, **cfg.env_config)
    assert learners.method_env(cfg, env, "mappo") is env
    task = jax.tree.map(lambda x: x[None], env.sample_task(jax.random.PRNGKey(0)))  # [1]
    learner = learners.method_learner(cfg, env, "mappo", task)
    state = jax.jit(learner.init)(jax.random.PRNGKey(0))  # one compile, not one per op
    ts_obs = jax.tree.map(lambda x: x[0], state.obs)
    a, stored, _ = jax.jit(lambda p, o, c, k: learner.act(p, o, c, k, False))(
        state.params, ts_obs, learner.initial_carry(), jax.random.PRNGKey(1))
    assert a.shape == (2, 1) and stored.shape == (2, 1) and float(abs(a).max()) <= 1.0
    q_env = learners.method_env(cfg, env, "qmix")
    assert q_env.action_type == "discrete" and q_env.n_bins == learners.DISCRETE_BINS == 11
    spread = envs.make("spread", action_type="continuous")
    with pytest.raises(ValueError, match="'qmix' cannot play spread's continuous") as e:
        learners.method_env(dataclasses.replace(cfg, methods=("qmix",)), spread, "qmix")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not one of"):
        learners.method_env(cfg, env, "maddpg")
    mpe = envs.make("mpe_climb", max_agents=2, max_objects=3)
    assert learners.method_env(CFG, mpe, "mappo") is mpe


def test_config_changes_name_the_learner_fields():
    now = json.loads(json.dumps(dataclasses.asdict(CFG), default=str))
    later = json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(
        CFG, ppo=dataclasses.replace(CFG.ppo, lr=0.5))), default=str))
    assert config.config_changes(now, later) == ["ppo.lr"]
    # a run written before these fields existed stays resumable at their defaults
    old = {k: v for k, v in now.items() if k not in ("ppo", "qmix", "rnd_coef")}
    default = json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(
        CFG, ppo=PPOConfig(), qmix=QMixConfig())), default=str))
    assert config.config_changes(old, default) == []
    assert config.config_changes(old, now) == ["ppo", "qmix"]


@pytest.mark.parametrize("name", ["mesa_climb", "mesa_multistage", "mesa_mpe_2a5l",
                                  "mesa_mpe_3a6l", "mesa_e2_mpe_2a3l", "mesa_swimmer"])
def test_table2_files_have_a_learners_preset_their_env_accepts(name):
    from pathlib import Path

    from metajax.pipelines import experiment as xp

    exp = xp.load_experiment(Path(__file__).parents[1] / "experiments" / f"{name}.py")
    cfg = xp.configure(exp, ("learners",))
    assert cfg.methods[0] == "maddpg" and set(cfg.methods[1:]) <= set(config.LEARNER_METHODS)
    assert cfg.seeds == exp.config.seeds and cfg.test_steps == exp.config.test_steps
    learners.check_methods(cfg, envs.make(cfg.env, **cfg.env_config))

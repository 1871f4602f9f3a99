"""MESA end to end on a small one-step climb task space: the pipeline's files, resume (also of
a deleted stage), every baseline and the zero-shot stage, and a learning test where MESA finds
the optimal joint action on the test games far more often than plain MADDPG and random
exploration with the same budget.

Task space: ``G(2, 2, u, U=5, delta)`` with ``u in {0, 1}``; training games use
``delta = 0.25``, test games ``delta = 0.5`` (disjoint tasks that share their high-reward joint
actions, the structure MESA transfers). Plain MADDPG faces a partner that plays ``u`` with
probability 1/5 early on, below the 1/3 that makes ``u`` worth more than the sub-optimal
equilibrium, and stays at 0.5; MESA's two exploration policies, trained on the coverage reward
over ``M_*``, play ``(0, 0)`` and ``(1, 1)`` and pull the learner to the optimum.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import types

import jax
import numpy as np
import pytest

import envs
from metajax.algos.maddpg import ORIGINAL
from metajax.algos.mesa.features import feature_dim
from metajax.algos.mesa.subspace import subspace_like
from metajax.pipelines.mesa import METHODS, MESAConfig, run_mesa
from metajax.train.checkpoint import Checkpointer, CheckpointError

pytestmark = pytest.mark.early  # trains whole runs (see conftest.py)

_M = dataclasses.replace(ORIGINAL, actor_lr=5e-3, critic_lr=5e-3, batch_size=32,
                         buffer_size=10_000, num_envs=20, rollout_steps=1, learning_starts=500,
                         hidden=(32, 32))

CFG = MESAConfig(
    name="mesa_test", env="climb", env_config=dict(max_agents=2, num_actions=5),
    n_train=2, n_test=2,
    split={"train_tasks": [dict(k=2, u=0, delta=0.25), dict(k=2, u=1, delta=0.25)],
           "test_tasks": [dict(k=2, u=0, delta=0.5), dict(k=2, u=1, delta=0.5)]},
    maddpg=_M, collect=dataclasses.replace(_M, buffer_size=2_000),
    collect_steps=1_000, dataset_capacity=64, num_clusters=2, num_explorers=2,
    explorer_steps=3_000, count_episodes=4, test_steps=6_000, anneal_steps=4_000,
    chunk_updates=100, eval_every=0, eval_episodes=2, zero_shot=True, coverage_episodes=16,
    seeds=4, xla_fast=True)


def mesa_job(out: str) -> None:
    """The whole pipeline."""
    run_mesa(CFG, out, log=lambda s: None)



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mesa_learning") / "out"
    mesa_job(str(out))
    return out, types.SimpleNamespace(results=json.loads((out / "results.json").read_text()))


def test_mesa_finds_the_optimum_where_maddpg_and_random_do_not(run):
    _, res = run
    found = {m: np.asarray(r["optimal_found"]["per_task"])
             for m, r in res.results["methods"].items()}
    # 4 seeds x 2 test games each; MADDPG alone is stuck at the sub-optimal equilibrium, and
    # uniformly random episodes (1/5 x 1/5 chance of the optimum) do not pull it out either
    assert found["mesa"].mean() >= 0.75, found
    assert found["maddpg"].mean() <= 0.25, found
    assert found["random"].mean() <= 0.25, found
    mesa, maddpg = res.results["methods"]["mesa"], res.results["methods"]["maddpg"]
    assert mesa["greedy_return"]["mean"] > maddpg["greedy_return"]["mean"] + 0.3
    assert (mesa["greedy_return"]["mean"]
            > res.results["methods"]["random"]["greedy_return"]["mean"] + 0.3)
    # the paired comparison over seeds says so too, with a CI
    comp = res.results["comparisons"]["mesa"]["greedy_return"]
    assert comp["diff"]["lo"] > 0 and comp["verdict"] == "holds", comp
    lo, hi = mesa["greedy_return"]["ci"]
    assert lo <= mesa["greedy_return"]["mean"] <= hi
    # results.json's statistics: for 0/1 scores on equally many seeds per task,
    # P(X > Y) = 1/2 + (rate of X - rate of Y) / 2
    st = res.results["stats"]["optimal_found"]
    assert list(st["methods"]) == list(res.results["methods"]) and st["threshold"] == 1.0
    p = st["prob_improvement"]["mesa > maddpg"]
    assert p["point"] == pytest.approx(0.5 + (found["mesa"].mean() - found["maddpg"].mean()) / 2)
    assert p["lo"] <= p["point"] <= p["hi"]
    gap = st["methods"]["mesa"]["aggregate"]["optimality_gap"]["point"]
    assert gap == pytest.approx(1 - found["mesa"].mean())


def test_every_baseline_and_the_zero_shot_stage_ran(run):
    _, res = run
    r = res.results
    assert set(r["methods"]) == set(METHODS)
    for m in METHODS:
        g = np.asarray(r["methods"][m]["greedy_return"]["per_task"])
        assert g.shape == (4, 2) and np.all(np.isfinite(g)) and np.all((g >= 0) & (g <= 1)), m
    z = r["zero_shot_high_reward"]
    per = np.asarray(z["explorers_per_task"])  # [S, E, K]
    assert per.shape == (4, 2, 2) and np.all(np.isfinite(per))
    # the test optima (0, 0), (1, 1) are valuable pairs of M_* by construction: every
    # high-reward pair random play meets on the test games lies within eps of it
    assert z["test_pairs_seen"] > 0 and z["test_pairs_in_subspace"] == 1.0
    # each explorer plays one valuable joint action: far more optima per episode than random
    assert per.mean() > 2 * z["random"] and per.mean() >= 0.3, (per.mean(), z["random"])
    assert set(r["timing"]) == {"collect_s", "explorers_s", "pretrain_meta_s", "goal_meta_s",
                                *(f"test_{m}_s" for m in METHODS)}


def _subspace(out, cfg: MESAConfig) -> dict:
    """The stored ``M_*`` and k-means centers of a run (its ``stages/subspace`` checkpoint)."""
    env = envs.make(cfg.env, **cfg.env_config)
    dim = feature_dim(cfg, env, env.make_task(k=2, u=0))
    # the layout the test reads: every agent's observation, then its one-hot action
    obs = env.reset_to(jax.random.PRNGKey(0), env.make_task(k=2, u=0))[1].observation
    assert dim == env.max_agents * (obs.flat.shape[-1] + cfg.env_config["num_actions"])
    like = subspace_like(cfg, dim)
    ck = Checkpointer(out / "stages" / "subspace", max_to_keep=1)
    try:
        tree, _, _ = ck.restore(like)
    finally:
        ck.close()
    return tree


def test_subspace_holds_only_valuable_pairs_and_explorers_split_it(run):
    out, res = run
    sub = _subspace(out, CFG)
    data, mask = np.asarray(sub["ds"].data), np.asarray(sub["ds"].mask)
    u_count = CFG.env_config["num_actions"]
    for s in range(CFG.seeds):
        rows = data[s][mask[s]]
        assert len(rows) > 0
        acts = rows[:, -2 * u_count:].reshape(-1, 2, u_count).argmax(-1)  # [rows, 2 players]
        # every stored pair is (0, 0) or (1, 1): the optima of the two training games
        assert np.all(acts[:, 0] == acts[:, 1]) and set(acts[:, 0].tolist()) <= {0, 1}, s
        assert np.all(np.asarray(sub["ds"].value[s])[mask[s]] == 1.0)
    # N_hat after explorer 0 concentrates on one cluster; explorer 1 visits mostly the other
    after = np.asarray(res.results["global_counts_per_explorer"], np.float64)  # [E, S, K]
    first = after[0]
    second = after[1] - after[0]
    top = first.argmax(-1)
    share0 = first.max(-1) / first.sum(-1)
    share1 = 1 - second[np.arange(CFG.seeds), top] / second.sum(-1)
    assert np.all(share0 >= 0.9), share0
    assert np.all(share1 >= 0.5), share1


def test_run_directory_and_resume(run):
    out, res = run
    for f in ("config.json", "results.json", "results.md", "metrics.jsonl",
              "metrics_collect.jsonl", "metrics_explorer0.jsonl", "metrics_test_maddpg.jsonl"):
        assert (out / f).is_file(), f
    assert json.loads((out / "results.json").read_text())["methods"].keys() == set(METHODS)
    assert "| mesa |" in (out / "results.md").read_text()
    # a second run into the same directory must be asked for explicitly
    with pytest.raises(CheckpointError, match="resume"):
        run_mesa(CFG, out, log=lambda s: None)
    # resuming a finished run retrains nothing and reports the same results
    before = (out / "metrics_collect.jsonl").stat().st_mtime
    again = run_mesa(CFG, out, resume=True, log=lambda s: None)
    assert (out / "metrics_collect.jsonl").stat().st_mtime == before
    assert json.loads(json.dumps(again.results["methods"])) == res.results["methods"]
    # and the wall-clock of every reloaded stage is the one it took when it ran
    assert again.results["timing"] == res.results["timing"]
    # a different config is refused
    other = dataclasses.replace(CFG, explorer_steps=4_000)
    with pytest.raises(CheckpointError, match="different config"):
        run_mesa(other, out, resume=True, log=lambda s: None)


def test_a_deleted_stage_is_recomputed_equal_to_the_uninterrupted_run(run, tmp_path):
    out, res = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    # the second exploration policy's checkpoint is gone, and with it every stage that reads
    # the exploration policies (the zero-shot measurement and MESA's meta-test); each stage is
    # reloaded or recomputed on its own, so the other meta-tests are reloaded (a stop during
    # explorer 1 would also lose them: recomputing those is the same code from their own keys)
    gone = ("explorer1", "zero_shot", "test_mesa")
    for name in gone:
        shutil.rmtree(copy / "stages" / name)
    mtimes = {m: (copy / f"metrics_test_{m}.jsonl").stat().st_mtime for m in METHODS}
    again = run_mesa(CFG, copy, resume=True, log=lambda s: None).results
    for m in METHODS:  # only the deleted stages ran again
        ran = (copy / f"metrics_test_{m}.jsonl").stat().st_mtime != mtimes[m]
        assert ran == (f"test_{m}" in gone), m
    assert again["global_counts"] == res.results["global_counts"]
    assert again["global_counts_per_explorer"] == res.results["global_counts_per_explorer"]
    assert again["zero_shot_high_reward"] == res.results["zero_shot_high_reward"]
    for m in METHODS:
        for k, v in res.results["methods"][m].items():
            assert again["methods"][m][k] == json.loads(json.dumps(v)), (m, k)


def test_report_from_the_committed_export_equals_the_report_from_the_run(run, tmp_path):
    from metajax.pipelines import mesa_report

    out, res = run
    data = mesa_report.export(out, "cmd")
    assert set(data["methods"]) == set(METHODS)
    assert np.asarray(data["methods"]["mesa"]["greedy_return"]).shape == (4, 2)
    text = mesa_report.report(data)
    again = json.loads(json.dumps(data))  # what a committed JSON gives back
    assert mesa_report.report(again) == text
    assert "| mesa |" in text and "holds" in text and "uniformly random policy" in text

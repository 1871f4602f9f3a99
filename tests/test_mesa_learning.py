"""MESA end to end on a small one-step climb task space: the pipeline's files, resume, and a
learning test where MESA finds the optimal joint action on the test games far more often than
plain MADDPG with the same budget.

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
import types

import numpy as np
import pytest
from conftest import background_job, background_result

from metajax.checkpoint import CheckpointError
from metajax.maddpg import ORIGINAL
from metajax.mesa import MESAConfig, run_mesa

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
    chunk_updates=100, eval_every=0, eval_episodes=2, zero_shot=False,
    methods=("mesa", "maddpg"), seeds=4, xla_fast=True)


def mesa_job(out: str) -> None:
    """The whole pipeline, as a background job (see ``conftest.background_job``)."""
    run_mesa(CFG, out, log=lambda s: None)


background_job("mesa_learning", "test_mesa_learning", "mesa_job", "run")


@pytest.fixture(scope="module")
def run():
    out = background_result("mesa_learning")
    return out, types.SimpleNamespace(results=json.loads((out / "results.json").read_text()))


def test_mesa_finds_the_optimum_where_maddpg_does_not(run):
    _, res = run
    found = {m: np.asarray(r["optimal_found"]["per_task"])
             for m, r in res.results["methods"].items()}
    # 4 seeds x 2 test games each; MADDPG alone is stuck at the sub-optimal equilibrium
    assert found["mesa"].mean() >= 0.75, found
    assert found["maddpg"].mean() <= 0.25, found
    mesa, maddpg = res.results["methods"]["mesa"], res.results["methods"]["maddpg"]
    assert mesa["greedy_return"]["mean"] > maddpg["greedy_return"]["mean"] + 0.3
    # the high-reward dataset holds only the two valuable joint actions' pairs, and the two
    # exploration policies were counted into the global pseudo-count
    assert all(n > 0 for n in res.results["dataset_size"])
    # N_hat after both exploration policies: the second one covered the cluster the first
    # left (each policy adds its visits; with one cluster per valuable joint action, a second
    # policy on the first one's cluster would leave the other at 0)
    counts = np.asarray(res.results["global_counts"])  # [seeds, clusters]
    assert np.all(counts > 0), counts


def test_run_directory_and_resume(run):
    out, res = run
    for f in ("config.json", "results.json", "results.md", "metrics.jsonl",
              "metrics_collect.jsonl", "metrics_explorer0.jsonl", "metrics_test_maddpg.jsonl"):
        assert (out / f).is_file(), f
    assert json.loads((out / "results.json").read_text())["methods"].keys() == {"mesa", "maddpg"}
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
    assert set(res.results["timing"]) == {"collect_s", "explorers_s", "test_mesa_s",
                                          "test_maddpg_s"}
    # a different config is refused
    other = dataclasses.replace(CFG, explorer_steps=4_000)
    with pytest.raises(CheckpointError, match="different config"):
        run_mesa(other, out, resume=True, log=lambda s: None)

"""``metajax sweep``: a grid of traced hyperparameters x seeds is one compiled program whose
members equal separate runs bit for bit; shape-changing keys split the grid into groups;
refusals are one line; an interrupted sweep resumes to the uninterrupted one.

Every run is a 2-seed one-step climb game of 2 players (the cheapest env to compile) of 4
chunks of 8 env steps (2 updates of 4 games x 1 step), the first gradient step in chunk 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from helpers import run_in_subprocess

from metajax.algos.maddpg import MADDPGConfig
from metajax.cli import main
from metajax.config import ConfigError
from metajax.pipelines import experiment as xp
from metajax.pipelines import runner, sweep
from metajax.train import loop

os.environ["WANDB_MODE"] = "disabled"

EXPERIMENT = '''"""A tiny climb game for the sweep tests."""

from metajax.algos.maddpg import MADDPGConfig
from metajax.pipelines.runner import TrainConfig

CONFIG = TrainConfig(
    name="swept",
    env="climb",
    env_config=dict(max_agents=2, num_actions=4),
    tasks=(dict(k=2, u=1),),
    maddpg=MADDPGConfig(hidden=(8,), batch_size=8, buffer_size=64, num_envs=4,
                        rollout_steps=1, learning_starts=12, gumbel_temperature=0.7),
    total_env_steps=32,
    chunk_updates=2,
    eval_episodes=2,
    seeds=2,
)
'''

#: the 3 x 2 grid: learning rates (in the Adam states) and the soft-update rate (in the update)
GRID = ["maddpg.actor_lr=0.001,0.01,0.03", "maddpg.tau=0.01,0.2"]
GRID_ARGS = ["--grid", GRID[0], "--grid", GRID[1]]
SEEDS = 2
QUIET = ["--wandb", "disabled", "--no-progress"]
TIMING = ("time", "sps")


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exp") / "swept.py"
    path.write_text(EXPERIMENT)
    return path


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING}
            for x in path.read_text().splitlines()]


def _member(rows: list[dict], m: int) -> list[dict]:
    """One member's metrics rows as a 1-seed run's (every list cut to its entry ``m``)."""
    return [{k: (v[m] if isinstance(v, list) else v) for k, v in r.items()} for r in rows]


@pytest.fixture(scope="module")
def swept(experiment_file, tmp_path_factory):
    """The 3 x 2 x 2-seed sweep through the CLI, its chunk's update wrapped in
    ``chex.assert_max_traces(n=1)``: a second trace of the chunk (a recompilation, or a group
    per point) fails the sweep."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    make_chunk = loop.make_chunk
    chunks = []

    def once(learner, *args, **kwargs):
        chunks.append(learner)
        traced_once = chex.assert_max_traces(learner.update, n=1)
        return make_chunk(learner._replace(update=traced_once), *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "make_chunk", once)
    try:
        code = main(["sweep", str(experiment_file), *GRID_ARGS,
                     "--seeds", str(SEEDS), "--out", str(out), *QUIET])
    finally:
        mp.undo()
    assert code == 0
    return out, chunks


def test_a_grid_is_one_compiled_program_with_a_results_table(swept, capsys):
    out, chunks = swept
    assert len(chunks) == 1  # one group: every key traced
    spec = json.loads((out / "sweep.json").read_text())
    assert [len(g["members"]) for g in spec["groups"]] == [6 * SEEDS]
    summary = json.loads((out / "results.json").read_text())
    assert len(summary["points"]) == 6 and summary["stat"] == "iqm"
    for p in summary["points"]:
        assert np.asarray(p["scores"]).shape == (SEEDS, 1)
        assert p["iqm"]["lo"] <= p["iqm"]["point"] <= p["iqm"]["hi"]
    best = max(summary["points"], key=lambda p: p["iqm"]["point"])
    assert summary["best"]["point"] == best["point"]
    assert best["point"] not in summary["best_ties"]
    table = (out / "results.md").read_text()
    assert table.count("\n") == 8 and "**best**" in table
    assert (out / "heatmap.png").stat().st_size > 0  # a 2-D grid


def _assert_members_equal_runs(sweep_dir: Path, cfg, grid: dict, points, tmp_path: Path):
    """Points ``points`` of the sweep in ``sweep_dir``, each as its own ``runner.train``
    (constants folded into the program, plain Adam), give per seed exactly the sweep member's
    metrics and the point's evaluation (traced values, learning rates in the Adam states)."""
    plan = sweep.plan_sweep(cfg, grid, SEEDS)
    assert len(plan.groups) == 1
    rows = _rows(sweep_dir / "groups" / "g0" / "metrics.jsonl")
    evals = json.loads((sweep_dir / "groups" / "g0" / "results.json").read_text())["points"]
    for i in points:
        alone = runner.train(plan.configs[i], tmp_path / f"p{i}", wandb_mode="disabled",
                             progress=False, log=lambda _: None)
        sep = _rows(tmp_path / f"p{i}" / "metrics.jsonl")
        for s in range(SEEDS):
            assert _member(rows, i * SEEDS + s) == _member(sep, s), (plan.points[i], s)
        assert {k: v for k, v in evals[i].items() if k not in ("point", "values")} == (
            alone.results), plan.points[i]
    assert rows[-1]["grad_steps"][0] > 0  # learning did happen


def test_members_equal_separate_runs_bit_for_bit(swept, experiment_file, tmp_path):
    """Two opposite corners of the grid (both values of tau, two learning rates); the other
    four points in the slow test below."""
    out, _ = swept
    _assert_members_equal_runs(out, xp.load_experiment(experiment_file).config,
                               sweep.parse_grid(GRID), (0, 5), tmp_path)


@pytest.mark.slow
def test_every_member_equals_a_separate_run_bit_for_bit(swept, experiment_file, tmp_path):
    out, _ = swept
    _assert_members_equal_runs(out, xp.load_experiment(experiment_file).config,
                               sweep.parse_grid(GRID), (1, 2, 3, 4), tmp_path)


def _spread_continuous():
    """Continuous actions: the exploration noise and gamma are traced."""
    cfg = runner.TrainConfig(
        env="spread", env_config=dict(episode_length=5, action_type="continuous"),
        maddpg=MADDPGConfig(hidden=(8,), batch_size=8, buffer_size=64, num_envs=2,
                            rollout_steps=5, learning_starts=10),
        total_env_steps=40, chunk_updates=2, eval_episodes=2, seeds=SEEDS)
    return cfg, {"maddpg.exploration_noise": [0.1, 0.4], "maddpg.gamma": [0.9]}


def _mra():
    """MRA on two treasure games: its loss coefficients, Reptile step size and the prior's
    temperature are traced (with the Eq. 11 step on, mi_coef > 0)."""
    from metajax.algos import mra
    from metajax.pipelines import mra as mra_pipeline

    tiny = dataclasses.replace(
        mra.MRA_SMALL, batch_size=16, buffer_size=200, learning_starts=20, rollout_steps=5,
        num_envs=2, updates_per_rollout=2, hidden=(8,), num_heads=2, head_dim=4, embed_dim=8,
        critic_hidden=8)
    cfg = mra_pipeline.MRAConfig(
        env="treasure", env_config=dict(max_agents=3, max_objects=2, episode_length=5),
        tasks=({"n_agents": 2, "n_treasures": 2}, {"n_agents": 3, "n_treasures": 2}),
        maddpg=tiny, total_env_steps=60, chunk_updates=2, eval_episodes=2, seeds=SEEDS)
    return cfg, {"mra.entropy_coef": [0.0, 0.05], "mra.prior_temperature": [0.6],
                 "mra.mi_coef": [0.3], "mra.alpha": [0.8], "maddpg.critic_lr": [3e-3]}


def traced_fields_job(out: str, case: Callable[[], tuple] = _mra) -> None:
    """Sweep ``case``'s grid into ``out/sweep`` and check two members against their own runs."""
    cfg, grid = case()
    out_dir = Path(out)
    sweep.run_sweep(cfg, grid, SEEDS, out_dir / "sweep", wandb_mode="disabled",
                    progress=False, log=lambda _: None)
    _assert_members_equal_runs(out_dir / "sweep", cfg, grid, (0, 1), out_dir)


@pytest.mark.slow
@pytest.mark.parametrize("case", [_spread_continuous, _mra], ids=["spread", "mra"])
def test_other_traced_fields_equal_separate_runs(case, tmp_path):
    """MRA's case runs in a process under the default XLA profile: under the fast-compile one
    (the suite's, tests/conftest.py) its sweep members and their own runs part in the last bits
    from the third chunk on (XLA:CPU's loop emitters at O1 generate other code for the
    member-vmapped program); bit for bit is a claim of the default profile."""
    if case is _mra:
        run_in_subprocess("test_sweep", "traced_fields_job", tmp_path / "out",
                          {"METAJAX_FAST_COMPILE": "0", "XLA_FLAGS": ""})
    else:
        traced_fields_job(str(tmp_path), case)


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_one(swept, experiment_file,
                                                                tmp_path):
    out, _ = swept
    cfg = xp.load_experiment(experiment_file).config
    grid = sweep.parse_grid(GRID)
    part = tmp_path / "part"
    first = sweep.run_sweep(cfg, grid, SEEDS, part, wandb_mode="disabled", progress=False,
                            max_chunks=2, log=lambda _: None)
    assert first.summary == {} and not (part / "results.json").exists()
    with pytest.raises(Exception, match="already holds a sweep; pass --resume"):
        sweep.run_sweep(cfg, grid, SEEDS, part, progress=False, log=lambda _: None)
    sweep.run_sweep(cfg, grid, SEEDS, part, resume=True, wandb_mode="disabled",
                    progress=False, log=lambda _: None)
    g = Path("groups") / "g0"
    assert _rows(part / g / "metrics.jsonl") == _rows(out / g / "metrics.jsonl")
    assert (json.loads((part / "results.json").read_text())
            == json.loads((out / "results.json").read_text()))
    with pytest.raises(Exception, match="holds a different sweep"):
        sweep.run_sweep(cfg, {**grid, "maddpg.tau": [0.5]}, SEEDS, part, resume=True,
                        progress=False, log=lambda _: None)


def test_shape_changing_keys_split_the_grid_into_listed_groups(experiment_file):
    cfg = xp.load_experiment(experiment_file).config
    plan = sweep.plan_sweep(cfg, sweep.parse_grid(
        ["maddpg.batch_size=4,8", "maddpg.tau=0.01,0.1", "maddpg.hidden=[8],[4,4]"]), 2)
    assert [g.static for g in plan.groups] == [
        {"maddpg.batch_size": 4, "maddpg.hidden": (8,)},
        {"maddpg.batch_size": 4, "maddpg.hidden": (4, 4)},
        {"maddpg.batch_size": 8, "maddpg.hidden": (8,)},
        {"maddpg.batch_size": 8, "maddpg.hidden": (4, 4)}]
    assert all(g.traced == ("maddpg.tau",) and len(g.points) == 2 for g in plan.groups)
    lines = plan.describe()
    assert lines[0] == "sweep: 8 grid points x 2 seeds = 16 members in 4 compiled programs"
    assert lines[1].startswith("  group g0: maddpg.batch_size=4 maddpg.hidden=(8,); traced: "
                               "maddpg.tau; 2 point(s) x 2 seed(s)")


def test_mra_mi_coef_zero_is_its_own_group():
    from metajax.pipelines import mra as mra_pipeline

    plan = sweep.plan_sweep(mra_pipeline.MRAConfig(), {"mra.mi_coef": [0.0, 0.5, 1.0],
                                              "mra.entropy_coef": [0.0, 0.01]}, 2)
    assert [len(g.points) for g in plan.groups] == [2, 4]
    assert plan.groups[0].structure == (False,) and plan.groups[1].traced == (
        "mra.mi_coef", "mra.entropy_coef")


@pytest.mark.parametrize("args, named", [
    (["--grid", "seeds=1,2"], "--grid seeds: cannot be swept"),
    (["--grid", "maddpg.nope=1,2"], "unknown config key 'maddpg.nope'"),
    (["--grid", "maddpg.tau=0.1", "--grid", "maddpg.tau=0.2"], "given twice"),
    (["--grid", "maddpg.tau=0.1", "--set", "maddpg.tau=0.2"], "both --set and --grid"),
    (["--grid", "maddpg.batch_size=8,128"], "batch_size=128 exceeds maddpg.buffer_size"),
    ([], "at least one --grid"),
])
def test_refusals_are_one_line(experiment_file, tmp_path, capsys, args, named):
    code = main(["sweep", str(experiment_file), *args, "--out", str(tmp_path / "o"), *QUIET])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert named in err
    assert not (tmp_path / "o").exists()


def test_other_pipelines_are_refused_in_one_line(tmp_path, capsys):
    repo = Path(__file__).resolve().parents[1]
    code = main(["sweep", str(repo / "experiments" / "mesa_climb.py"), "--grid",
                 "maddpg.tau=0.1,0.2", "--out", str(tmp_path / "o"), *QUIET])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "'mesa' is a multi-stage pipeline" in err, err


def test_parse_grid_reads_numbers_strings_and_lists():
    assert sweep.parse_grid(["a=1,2.5", "b=mlp,gru", "c=[8],[16,16]", "d=true"]) == {
        "a": [1, 2.5], "b": ["mlp", "gru"], "c": [[8], [16, 16]], "d": [True]}
    with pytest.raises(ConfigError, match="key=v1,v2"):
        sweep.parse_grid(["a"])


@pytest.mark.parametrize("algo", ["mappo", pytest.param("qmix", marks=pytest.mark.slow)])
def test_untraced_learners_sweep_one_group_per_point_equal_to_runs(algo, tmp_path):
    """PPO and QMIX trace no hyperparameters: a sweep over their learning rate puts each point
    in a group of its own, and each group's members equal a separate run of the point bit for
    bit; a traced ``hypers=`` that is not empty is refused."""
    from metajax.algos.ppo import PPOConfig
    from metajax.algos.qmix import QMixConfig
    from metajax.core.interfaces import ignoring_hypers

    cfg = runner.TrainConfig(
        env="climb", env_config=dict(max_agents=2, num_actions=3), tasks=({"k": 1, "u": 0},),
        algo=algo, ppo=PPOConfig(num_envs=4, rollout_steps=2, epochs=1, minibatches=2,
                                 hidden=(8,)),
        qmix=QMixConfig(num_envs=2, window=1, hidden=8, batch_windows=2, buffer_windows=8),
        total_env_steps=16, chunk_updates=2, eval_episodes=2, seeds=SEEDS)
    key = "ppo.lr" if algo == "mappo" else "qmix.lr"
    grid = {key: [1e-3, 1e-2]}
    plan = sweep.plan_sweep(cfg, grid, SEEDS)
    assert [g.points for g in plan.groups] == [(0,), (1,)]
    sweep.run_sweep(cfg, grid, SEEDS, tmp_path / "sweep", wandb_mode="disabled",
                    progress=False, log=lambda _: None)
    # the second group against a separate run of its point (every group is built by the same
    # code, and each separate run is one more compile of the learner)
    for i in (1,):
        rows = _rows(tmp_path / "sweep" / "groups" / f"g{i}" / "metrics.jsonl")
        evals = json.loads((tmp_path / "sweep" / "groups" / f"g{i}" / "results.json")
                           .read_text())["points"]
        alone = runner.train(plan.configs[i], tmp_path / f"p{i}", wandb_mode="disabled",
                             progress=False, log=lambda _: None)
        sep = _rows(tmp_path / f"p{i}" / "metrics.jsonl")
        for s in range(SEEDS):
            assert _member(rows, s) == _member(sep, s), (i, s)
        assert {k: v for k, v in evals[0].items() if k not in ("point", "values")} == (
            alone.results)
    # and the first group trained with its own learning rate
    assert (_rows(tmp_path / "sweep" / "groups" / "g0" / "metrics.jsonl")
            != _rows(tmp_path / "sweep" / "groups" / "g1" / "metrics.jsonl"))
    learner = ignoring_hypers(runner.build_learner(cfg, runner.build_env(cfg)))
    with pytest.raises(ValueError, match="traces no hyperparameters"):
        learner.init(jax.random.PRNGKey(0), hypers={"lr": 1.0})

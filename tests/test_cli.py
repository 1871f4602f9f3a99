"""The ``metajax`` command line end to end on a tiny experiment: run -> eval -> plot -> render,
then the errors a user can make (each exits with status 2 and names what is wrong).

One module-scoped run (2 seeds, 2 chunks of a 3-agent treasure game) is shared by every test;
the error cases fail before anything is compiled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import is_finite_float
from PIL import Image

from metajax.cli import main
from metajax.pipelines import runner
from metajax.pipelines.experiment import configure, load_experiment, read_run_config
from metajax.pipelines.registry import Pipeline
from metajax.pipelines.runner import TrainConfig

os.environ["WANDB_MODE"] = "disabled"

pytestmark = pytest.mark.early  # trains whole runs (see conftest.py)

EPISODE_LENGTH = 5

TINY_EXPERIMENT = f'''"""A tiny treasure game for the CLI tests."""

from metajax.algos.maddpg import MADDPGConfig
from metajax.pipelines.runner import TrainConfig

CONFIG = TrainConfig(
    name="tiny",
    env="treasure",
    env_config=dict(max_agents=3, max_objects=3, episode_length={EPISODE_LENGTH},
                    action_type="relaxed"),
    tasks=(dict(n_agents=3, n_treasures=3),),
    maddpg=MADDPGConfig(hidden=(8,), batch_size=8, buffer_size=64, num_envs=2,
                        rollout_steps=5, learning_starts=10),
    total_env_steps=1_000,
    chunk_updates=2,
    eval_episodes=2,
    checkpoint_every=1,
)

PRESETS = {{"smaller": {{"maddpg.batch_size": 4}}}}
'''

#: 2 chunks of 2 updates of 2 games x 5 steps.
TOTAL_STEPS = 40


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exp") / "tiny.py"
    path.write_text(TINY_EXPERIMENT)
    return path


def cli_run_job(out: str) -> None:
    """``metajax run`` of the tiny experiment into ``out/tiny``."""
    root = Path(out)
    root.mkdir(parents=True)
    (root / "tiny.py").write_text(TINY_EXPERIMENT)
    code = main(["run", str(root / "tiny.py"), "--out", str(root / "tiny"), "--seeds", "2",
                 "--wandb", "disabled", "--no-progress",
                 "--set", f"total_env_steps={TOTAL_STEPS}", "--preset", "smaller"])
    if code != 0:
        raise SystemExit(code)



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_run") / "out"
    cli_run_job(str(out))
    return out / "tiny"


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    """A copy of the shared run, for the tests that write into a run directory (eval, resume):
    the shared one stays as the run left it."""
    return Path(shutil.copytree(run_dir, tmp_path / "tiny"))


def _error(capsys) -> str:
    return capsys.readouterr().err


# --- run -> eval -> plot -> render ----------------------------------------------------------------


def test_run_writes_a_run_directory(run_dir, experiment_file):
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["pipeline"] == "train"
    assert saved["algo_config"]["seeds"] == 2
    assert saved["algo_config"]["total_env_steps"] == TOTAL_STEPS
    assert saved["algo_config"]["maddpg"]["batch_size"] == 4  # the preset
    cfg, pipeline = read_run_config(run_dir)
    assert isinstance(cfg, TrainConfig) and pipeline == "train"
    exp = load_experiment(experiment_file)
    assert cfg == configure(exp, ["smaller"], {"total_env_steps": TOTAL_STEPS}, seeds=2)
    assert (run_dir / "experiment.py").read_text() == experiment_file.read_text()

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in rows] == [1, 2]
    assert rows[-1]["env_steps"] == [TOTAL_STEPS, TOTAL_STEPS]
    assert all(len(r["episode_return"]) == 2 for r in rows)

    steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 2

    results = json.loads((run_dir / "results.json").read_text())
    assert results["chunk"] == 2
    for mode in ("greedy", "stochastic"):
        assert len(results[mode]) == 1 and len(results[mode][0]["per_seed"]) == 2


def test_eval_writes_eval_json(run_copy, capsys):
    run_dir = run_copy
    code = main(["eval", str(run_dir), "--episodes", "2", "--task", "n_agents=2", "n_treasures=3"])
    assert code == 0
    out = capsys.readouterr().out
    assert "n_agents=2 n_treasures=3" in out and "greedy" in out
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["checkpoint"] == 2 and results["env_steps"] == TOTAL_STEPS
    assert results["tasks"] == [{"n_agents": 2, "n_treasures": 3}]
    for mode in ("greedy", "stochastic"):
        entry = results[mode][0]
        assert len(entry["per_seed"]) == 2
        assert all(is_finite_float(v) for v in entry["per_seed"])


def test_plot_writes_png(run_dir, tmp_path):
    out = tmp_path / "curves.png"
    assert main(["plot", str(run_dir), "--out", str(out),
                 "--metric", "episode_return", "--metric", "critic_loss"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100


def test_statistics_compare_plot_and_export_of_the_run(run_dir, tmp_path, capsys):
    """results.json keeps every episode and carries the statistics; ``compare``, ``plot
    --stats`` and ``export --marl-eval`` read the finished run."""
    import numpy as np
    from test_run_stats import _check_marl_eval_layout

    from metajax import stats

    results = json.loads((run_dir / "results.json").read_text())
    for mode in ("greedy", "stochastic"):
        entry = results[mode][0]
        per_ep = np.asarray(entry["per_episode"])
        assert per_ep.shape == (2, 2)  # seeds, eval_episodes
        np.testing.assert_allclose(per_ep.mean(1), entry["per_seed"], rtol=1e-6)
        block = results["stats"][mode]
        assert block["tasks"] == ["n_agents=3 n_treasures=3"] and block["threshold"] is None
        assert block["methods"]["tiny"]["seeds"] == 2
        assert block["methods"]["tiny"]["aggregate"]["iqm"] == stats.aggregate(
            entry["per_seed"])["iqm"]
    assert "optimal_value" not in results  # treasure has no known optimum

    assert main(["compare", str(run_dir)]) == 0
    out = capsys.readouterr().out
    iqm = results["stats"]["stochastic"]["methods"]["tiny"]["aggregate"]["iqm"]
    assert "== stochastic" in out and stats.fmt(iqm) in out
    assert main(["plot", str(run_dir), "--stats", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "profile_greedy.png", "profile_stochastic.png", "stats_greedy.png",
        "stats_stochastic.png"]
    assert main(["export", str(run_dir), "--marl-eval", str(tmp_path / "m.json")]) == 0
    data = json.loads((tmp_path / "m.json").read_text())
    _check_marl_eval_layout(data)
    runs = data["treasure"]["n_agents=3 n_treasures=3"]["tiny"]
    assert list(runs) == ["seed_0", "seed_1"]
    assert runs["seed_1"]["absolute_metrics"]["greedy_return"] == results["greedy"][0][
        "per_episode"][1]
    capsys.readouterr()


def test_render_writes_gif(run_dir, tmp_path, capsys):
    out = tmp_path / "episode.gif"
    assert main(["render", str(run_dir), "--out", str(out), "--seed-index", "1"]) == 0
    assert "seed index 1" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == EPISODE_LENGTH + 1  # the reset state, then every step


def test_resume_of_a_finished_run_changes_nothing(run_copy, experiment_file):
    run_dir = run_copy
    before = (run_dir / "metrics.jsonl").read_text()
    code = main(["run", str(experiment_file), "--out", str(run_dir), "--seeds", "2",
                 "--wandb", "disabled", "--no-progress", "--resume",
                 "--set", f"total_env_steps={TOTAL_STEPS}", "--preset", "smaller"])
    assert code == 0
    assert (run_dir / "metrics.jsonl").read_text() == before


# --- errors ---------------------------------------------------------------------------------------


def test_missing_experiment_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.py"), "--out", str(tmp_path / "r")]) == 2
    assert "nope.py" in _error(capsys) and not (tmp_path / "r").exists()


def test_experiment_file_without_config(tmp_path, capsys):
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    assert main(["run", str(path), "--out", str(tmp_path / "r")]) == 2
    assert "CONFIG" in _error(capsys)


def test_unknown_config_key_is_named(experiment_file, tmp_path, capsys):
    code = main(["run", str(experiment_file), "--out", str(tmp_path / "r"),
                 "--set", "maddpg.actor_lrr=0.1"])
    assert code == 2
    err = _error(capsys)
    assert "maddpg.actor_lrr" in err and "actor_lr" in err
    assert not (tmp_path / "r").exists()


def test_bad_config_value_and_unknown_preset(experiment_file, tmp_path, capsys):
    assert main(["run", str(experiment_file), "--out", str(tmp_path / "r"),
                 "--set", "seeds=many"]) == 2
    assert "seeds" in _error(capsys)
    assert main(["run", str(experiment_file), "--out", str(tmp_path / "r"),
                 "--preset", "huge"]) == 2
    err = _error(capsys)
    assert "huge" in err and "smaller" in err


def test_eval_without_checkpoint(tmp_path, run_dir, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "config.json" in _error(capsys)
    empty = tmp_path / "no_ckpt"
    empty.mkdir()
    (empty / "config.json").write_text((run_dir / "config.json").read_text())
    assert main(["eval", str(empty)]) == 2
    assert "no checkpoint" in _error(capsys)
    assert main(["render", str(empty)]) == 2
    assert "no checkpoint" in _error(capsys)


def test_run_into_an_existing_run_needs_resume(run_copy, experiment_file, capsys):
    run_dir = run_copy
    before = (run_dir / "metrics.jsonl").read_text()
    assert main(["run", str(experiment_file), "--out", str(run_dir), "--no-progress"]) == 2
    assert "--resume" in _error(capsys)
    # resuming with another config is refused too, naming what differs (a larger
    # total_env_steps would extend the run, see test_reliability; a smaller one is refused)
    assert main(["run", str(experiment_file), "--out", str(run_dir), "--resume",
                 "--no-progress", "--seeds", "2", "--set", "total_env_steps=20"]) == 2
    err = _error(capsys)
    assert "different config" in err and "total_env_steps: 40 -> 20" in err
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_interrupted_run_says_how_to_resume(experiment_file, tmp_path, monkeypatch, capsys):
    def interrupted(cfg, run_dir, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "PIPELINE", Pipeline(interrupted, TrainConfig))
    out = tmp_path / "r"
    assert main(["run", str(experiment_file), "--out", str(out), "--set", "seed=3"]) == 130
    err = _error(capsys)
    assert "interrupted" in err
    assert f"run {experiment_file} --out {out} --set seed=3 --resume" in err
    assert (out / "experiment.py").is_file()


def test_plot_unknown_metric(run_dir, tmp_path, capsys):
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "x.png"),
                 "--metric", "nonsense"]) == 2
    err = _error(capsys)
    assert "nonsense" in err and "episode_return" in err


@pytest.mark.slow
def test_matrix_game_run_eval_render(tmp_path, capsys):
    """A one-step climb game: eval prints its table, render draws the action distribution."""
    path = tmp_path / "climb.py"
    path.write_text(
        "from metajax.algos.maddpg import MADDPGConfig\n"
        "from metajax.pipelines.runner import TrainConfig\n"
        "CONFIG = TrainConfig(name='c', env='climb', env_config=dict(num_actions=4),\n"
        "    tasks=(dict(k=2, u=1),), maddpg=MADDPGConfig(hidden=(8,), batch_size=8,\n"
        "    buffer_size=64, num_envs=4, rollout_steps=1, learning_starts=8),\n"
        "    total_env_steps=16, chunk_updates=2, eval_episodes=2)\n")
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--wandb", "disabled",
                 "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["optimal_value"] == [1.0]  # the climb game's optimum: normalised groups
    assert set(results["stats"]) == {"greedy", "greedy_normalized", "stochastic",
                                     "stochastic_normalized"}
    assert ">= 2 seeds" in results["stats"]["greedy_normalized"]["skipped"]  # one seed
    assert main(["eval", str(out), "--episodes", "3"]) == 0
    assert "k=2 u=1" in capsys.readouterr().out
    assert len(json.loads((out / "eval.json").read_text())["greedy"][0]["per_episode"][0]) == 3
    assert main(["render", str(out), "--out", str(tmp_path / "a.gif"), "--episodes", "5"]) == 0
    assert "greedy joint action" in capsys.readouterr().out
    with Image.open(tmp_path / "a.png") as im:
        assert im.format == "PNG"

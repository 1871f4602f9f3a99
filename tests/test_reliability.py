"""Reliability of runs: a NaN or an infinity stops a run at the end of its chunk (keeping the
last finite checkpoint), invalid configs and task specs fail with one line before anything is
compiled, and a finished run can be extended to a larger ``total_env_steps``.

Every run here is a 2-seed one-step climb game of 2 players (the cheapest env to compile),
8 env steps per chunk (2 updates of 4 games x 1 step), whose first gradient step is in chunk 2
(``learning_starts=12``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import types
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import tiny_climb_experiment

from metajax.cli import DIVERGED, main
from metajax.config import ConfigError, override
from metajax.pipelines import experiment as xp
from metajax.pipelines import runner
from metajax.train import loop

pytestmark = pytest.mark.early  # trains whole runs (see conftest.py)

os.environ["WANDB_MODE"] = "disabled"

EXPERIMENT = tiny_climb_experiment("reliable", 16)

#: env steps per chunk (per seed)
PER_CHUNK = 8
QUIET = ["--wandb", "disabled", "--no-progress"]


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exp") / "reliable.py"
    path.write_text(EXPERIMENT)
    return path


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _all_finite(tree) -> bool:
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.inexact))


# --- NaN / inf guard ------------------------------------------------------------------------


def test_nonfinite_checks_name_metric_and_seeds():
    metrics = {"env_steps": np.array([[10, 20], [10, 20]]),
               "critic_loss": np.array([[0.1, np.inf], [0.1, 0.2]], np.float32),
               "actor_loss": np.array([[0.1, 0.2], [np.nan, 0.2]], np.float32),
               "q_mean": np.zeros((2, 2), np.float32)}
    bad = loop.nonfinite_metrics(metrics)
    assert bad == {"critic_loss": [0], "actor_loss": [1]}
    msg = loop.nonfinite_report(bad, np.array([True, False]), 3, 5)
    assert msg == "non-finite critic_loss in chunk 3/5 (seed indices 0, 1; also actor_loss, " \
                  "parameters)"
    assert loop.nonfinite_report({}, np.array([True, True]), 3, 5) is None
    assert loop.nonfinite_report({}, np.array([True, False]), 1, 2) == (
        "non-finite parameters in chunk 1/2 (seed index 1)")

    w = np.ones((3, 4), np.float32)
    w[2, 1] = np.nan
    state = types.SimpleNamespace(params={"w": w, "n": np.arange(3)})  # seeds [S=3, ...]
    learner = runner.Learner(*([None] * 7))
    np.testing.assert_array_equal(loop.make_finite_check(learner)(state), [True, True, False])


#: ``metajax run`` of a run whose critic learning rate, 1e10, makes the critic loss infinite at
#: its first gradient step (chunk 2 of 4), after ``--out RUN``.
DIVERGING = [*QUIET, "--set", "maddpg.critic_lr=1e10", "total_env_steps=32"]


def diverged_job(out: str) -> None:
    """The diverging run through the CLI into ``out/run``, its exit status and stderr in
    ``out/code`` and ``out/stderr``."""
    root = Path(out)
    root.mkdir(parents=True)
    (root / "exp.py").write_text(EXPERIMENT)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", str(root / "exp.py"), "--out", str(root / "run"), *DIVERGING])
    (root / "code").write_text(str(code))
    (root / "stderr").write_text(err.getvalue())



@pytest.fixture(scope="module")
def diverged(tmp_path_factory) -> tuple[Path, int, str]:
    """``(run directory, exit status, stderr)`` of the diverging run."""
    root = tmp_path_factory.mktemp("reliability_diverged") / "out"
    diverged_job(str(root))
    return root / "run", int((root / "code").read_text()), (root / "stderr").read_text()


def test_divergence_stops_the_run_and_keeps_the_last_finite_checkpoint(diverged):
    """One error line naming the metric, chunk and seeds, exit status 3; the checkpoint on
    disk is chunk 1's, finite."""
    out, code, err = diverged
    assert code == DIVERGED
    err = err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert "non-finite critic_loss in chunk 2/4" in err and "seed indices 0, 1" in err, err
    assert "last finite checkpoint (chunk 1)" in err and "--allow-nonfinite" in err, err
    assert [r["chunk"] for r in _rows(out)] == [1, 2]  # the diverged chunk's row is kept
    assert np.isinf(_rows(out)[-1]["critic_loss"]).all()
    assert not (out / "results.json").exists()  # the diverged state was not evaluated

    run = xp.load_run(out)
    assert run.step == 1 and run.meta["chunk"] == 1
    assert _all_finite(run.state.params)
    assert np.asarray(run.state.env_steps).tolist() == [PER_CHUNK] * 2


def test_allow_nonfinite_keeps_going(diverged, experiment_file, capsys):
    """``--resume --allow-nonfinite`` continues the diverged run from chunk 1 to the end."""
    out = diverged[0]
    assert main(["run", str(experiment_file), "--out", str(out), *DIVERGING, "--resume",
                 "--allow-nonfinite"]) == 0
    stdout = capsys.readouterr().out
    assert "warning: non-finite critic_loss in chunk 2/4" in stdout
    assert [r["chunk"] for r in _rows(out)] == [1, 2, 3, 4]
    assert json.loads((out / "config.json").read_text())["algo_config"]["allow_nonfinite"]
    assert xp.load_run(out).step == 4


# --- validation before compilation ----------------------------------------------------------


@pytest.mark.parametrize("setting, named", [
    ("total_env_steps=0", "total_env_steps must be >= 1"),
    ("chunk_updates=0", "chunk_updates must be >= 1"),
    ("eval_episodes=0", "eval_episodes must be >= 1"),
    ("eval_every=-1", "eval_every must be >= 0"),
    ("checkpoint_every=-2", "checkpoint_every must be >= 0"),
    ("seeds=0", "seeds must be >= 1"),
    ("maddpg.rollout_steps=0", "rollout_steps must be >= 1"),
    ("maddpg.updates_per_rollout=0", "updates_per_rollout must be >= 1"),
    ("maddpg.learning_starts=-1", "learning_starts must be >= 0"),
    ("maddpg.batch_size=65", "maddpg.batch_size=65 exceeds maddpg.buffer_size=64"),
    ("maddpg.learning_starts=17", "maddpg.learning_starts=17 is beyond total_env_steps=16"),
    ("maddpg.batch_size=17", "maddpg.batch_size=17 is beyond total_env_steps=16"),
])
def test_invalid_config_is_one_line(experiment_file, tmp_path, capsys, setting, named):
    out = tmp_path / "r"
    assert main(["run", str(experiment_file), "--out", str(out), *QUIET,
                 "--set", setting]) == 2
    assert named in _one_line_error(capsys)
    assert not out.exists()


def test_related_fields_may_be_set_in_any_order(experiment_file):
    exp = xp.load_experiment(experiment_file)
    # between the first two overrides the batch (8) is larger than the buffer (4)
    cfg = xp.configure(exp, (), {"maddpg.buffer_size": 4, "maddpg.batch_size": 2,
                                 "maddpg.learning_starts": 4})
    cfg.validate()
    with pytest.raises(ConfigError, match=r"batch_size=16 exceeds maddpg\.buffer_size=4"):
        override(cfg, {"maddpg.batch_size": 16}).validate()


def test_unknown_task_field_is_one_line(experiment_file, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", str(experiment_file), "--out", str(out), *QUIET,
                 "--set", 'tasks=[{"k": 2, "n_bananas": 3}]']) == 2
    err = _one_line_error(capsys)
    assert "unknown task field 'n_bananas' for Climb (task fields: n_agents, k, u, delta)" in err
    assert not (out / "config.json").exists()
    assert main(["rollout", "treasure", "--task", "n_bananas=1"]) == 2
    assert "n_bananas" in _one_line_error(capsys)


def test_unwritable_out_is_one_line(experiment_file, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert main(["run", str(experiment_file), "--out", str(blocker / "run"), *QUIET]) == 2
    err = _one_line_error(capsys)
    assert f"--out {blocker / 'run'} is not a writable directory" in err
    assert main(["eval", str(tmp_path), "--out", str(blocker / "eval.json")]) == 2
    assert "is not a writable directory" in _one_line_error(capsys)


# --- extending a run ------------------------------------------------------------------------


def short_run_job(out: str) -> None:
    """The experiment run to its 16 env steps (2 chunks) through the CLI into ``out/run``."""
    root = Path(out)
    root.mkdir(parents=True)
    (root / "exp.py").write_text(EXPERIMENT)
    code = main(["run", str(root / "exp.py"), "--out", str(root / "run"), *QUIET])
    if code != 0:
        raise SystemExit(code)



@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """The run directory of ``short_run_job``."""
    out = tmp_path_factory.mktemp("reliability_short") / "out"
    short_run_job(str(out))
    return out / "run"


def test_eval_with_unknown_task_field_is_one_line(short_run, capsys):
    assert main(["eval", str(short_run), "--task", "n_bananas=3"]) == 2
    err = _one_line_error(capsys)
    assert "unknown task field 'n_bananas' for Climb (task fields: n_agents, k, u, delta)" in err


def test_extending_a_finished_run_equals_a_longer_run(short_run, experiment_file, tmp_path,
                                                      capsys):
    """16 env steps, then ``--resume --set total_env_steps=32``: chunks 3 and 4 follow, and
    the metrics and the final state are those of a straight run to 32, bit for bit."""
    extended = tmp_path / "extended"
    shutil.copytree(short_run, extended)
    longer = ["--set", "total_env_steps=32"]
    assert main(["run", str(experiment_file), "--out", str(extended), *QUIET, "--resume",
                 *longer]) == 0
    assert "total_env_steps 16 -> 32" in capsys.readouterr().out
    assert json.loads((extended / "config.json").read_text())["algo_config"][
        "total_env_steps"] == 32
    straight = tmp_path / "straight"
    assert main(["run", str(experiment_file), "--out", str(straight), *QUIET, *longer]) == 0

    rows, ref = _rows(extended), _rows(straight)
    assert [r["chunk"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["env_steps"] == [32, 32] and rows[-1]["grad_steps"][0] > 0
    for a, b in zip(rows, ref, strict=True):
        assert {k: v for k, v in a.items() if k not in ("time", "sps")} == {
            k: v for k, v in b.items() if k not in ("time", "sps")}
    a, b = xp.load_run(extended), xp.load_run(straight)
    assert a.step == b.step == 4
    jax.tree.map(np.testing.assert_array_equal, a.state, b.state)
    assert json.loads((extended / "results.json").read_text()) == json.loads(
        (straight / "results.json").read_text())


def test_resume_refuses_a_smaller_total_or_another_field(short_run, experiment_file, capsys):
    before = (short_run / "metrics.jsonl").read_text()
    base = ["run", str(experiment_file), "--out", str(short_run), *QUIET, "--resume"]
    assert main([*base, "--set", "total_env_steps=12"]) == 2
    err = _one_line_error(capsys)
    assert "different config" in err and "total_env_steps: 16 -> 12 (a resumed run can only " \
        "grow)" in err
    assert main([*base, "--set", "total_env_steps=32", "maddpg.actor_lr=0.5",
                 "chunk_updates=4"]) == 2
    err = _one_line_error(capsys)
    assert "chunk_updates: 2 -> 4" in err and "maddpg.actor_lr: 0.01 -> 0.5" in err
    assert "total_env_steps" not in err.split("(differences:")[1].split("; only")[0]
    # fields that cannot change what is trained may change
    assert loop.resume_conflicts(
        json.loads((short_run / "config.json").read_text())["algo_config"],
        override(xp.read_run_config(short_run)[0],
                 {"eval_every": 3, "checkpoint_every": 5, "allow_nonfinite": True})) == []
    assert (short_run / "metrics.jsonl").read_text() == before

"""Checkpoint integrity: a checkpoint damaged the way a crash or a full disk leaves it (a
truncated data file, random bytes over a data file, a missing item directory) is detected, and
``load_run``, ``metajax eval``/``render`` and ``metajax run --resume`` fall back to the newest
intact checkpoint with a one-line warning; with every checkpoint damaged the CLI prints one
``error:`` line and exits with status 2.

One module-scoped run (1 seed, 2 chunks of a 3-agent treasure game, checkpoints 1 and 2, in a
module fixture) is copied by every test that damages it; the Checkpointer tests use a
three-array tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.cli import main
from metajax.pipelines import experiment as xp
from metajax.train.checkpoint import DAMAGED_DIR, Checkpointer, CheckpointError, abstract_like

os.environ["WANDB_MODE"] = "disabled"

pytestmark = pytest.mark.early  # trains whole runs (see conftest.py)

EXPERIMENT = '''"""A tiny treasure game for the checkpoint integrity tests."""

from metajax.algos.maddpg import MADDPGConfig
from metajax.pipelines.runner import TrainConfig

CONFIG = TrainConfig(
    name="tiny_integrity",
    env="treasure",
    env_config=dict(max_agents=3, max_objects=3, episode_length=5, action_type="relaxed"),
    tasks=(dict(n_agents=3, n_treasures=3),),
    maddpg=MADDPGConfig(hidden=(8,), batch_size=4, buffer_size=64, num_envs=2,
                        rollout_steps=5, learning_starts=10),
    seeds=1,
    total_env_steps=40,
    chunk_updates=2,
    eval_episodes=2,
    checkpoint_every=1,
)
'''

RUN = ["--wandb", "disabled", "--no-progress"]
DAMAGE = ("truncated", "random", "missing")


def integrity_run_job(out: str) -> None:
    """``metajax run`` of the tiny experiment into ``out/tiny`` (2 chunks: checkpoints 1, 2)."""
    root = Path(out)
    root.mkdir(parents=True)
    (root / "tiny.py").write_text(EXPERIMENT)
    code = main(["run", str(root / "tiny.py"), "--out", str(root / "tiny"), *RUN])
    if code != 0:
        raise SystemExit(code)



@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("integrity_run") / "out"
    integrity_run_job(str(out))
    return out / "tiny"


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    """A fresh copy of the trained run (checkpoints 1 and 2)."""
    return Path(shutil.copytree(trained, tmp_path / "tiny"))


def _data_file(step_dir: Path) -> Path:
    """The largest file of the state item: the array data."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def damage(run_dir: Path, step: int, how: str) -> None:
    """Damage checkpoint ``step`` as a crash or a full disk would."""
    step_dir = run_dir / "checkpoints" / str(step)
    if how == "missing":
        shutil.rmtree(step_dir / "state")
        return
    path = _data_file(step_dir)
    size = path.stat().st_size
    if how == "truncated":
        os.truncate(path, size // 2)
    elif how == "random":
        with path.open("r+b") as f:
            f.seek(size // 3)
            f.write(np.random.default_rng(0).bytes(max(16, size // 3)))
    else:  # pragma: no cover
        raise ValueError(how)


def _lines(text: str) -> list[str]:
    """Output lines, without Python's own warnings (e.g. a DeprecationWarning of a library)."""
    return [ln for ln in text.splitlines()
            if ln.strip() and "Warning:" not in ln and "warnings.warn" not in ln]


def _fallback_warning(err: str, bad: int = 2, used: int = 1) -> str:
    lines = [ln for ln in _lines(err) if ln.startswith("warning:")]
    assert len(lines) == 1, err
    assert f"checkpoint {bad} " in lines[0] and f"using checkpoint {used}" in lines[0]
    return lines[0]


# --- load_run, eval, render -----------------------------------------------------------------------


@pytest.mark.parametrize("how", DAMAGE)
def test_load_run_falls_back_past_a_damaged_checkpoint(run_dir, trained, how, capsys):
    damage(run_dir, 2, how)
    run = xp.load_run(run_dir)
    assert run.step == 1 and run.meta == {"chunk": 1, "processes": 1}
    _fallback_warning(capsys.readouterr().err)
    older = xp.load_run(trained, step=1)
    for a, b in zip(jax.tree.leaves(run.state), jax.tree.leaves(older.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # asking for the damaged step by name is an error, not a fallback
    with pytest.raises(CheckpointError, match=r"checkpoint .*/2 is damaged"):
        xp.load_run(run_dir, step=2)


def test_eval_falls_back_to_the_older_checkpoint(run_dir, capsys):
    damage(run_dir, 2, "random")
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0
    _fallback_warning(capsys.readouterr().err)
    assert json.loads((run_dir / "eval.json").read_text())["checkpoint"] == 1


def test_render_falls_back_to_the_older_checkpoint(run_dir, tmp_path, capsys):
    damage(run_dir, 2, "truncated")
    out = tmp_path / "episode.gif"
    assert main(["render", str(run_dir), "--out", str(out)]) == 0
    _fallback_warning(capsys.readouterr().err)
    assert out.stat().st_size > 0


# --- resume ---------------------------------------------------------------------------------------


def test_resume_continues_from_the_older_checkpoint(run_dir, trained, capsys):
    damage(run_dir, 2, "missing")
    code = main(["run", str(run_dir / xp.EXPERIMENT_COPY), "--out", str(run_dir), "--resume",
                 *RUN])
    assert code == 0
    captured = capsys.readouterr()
    _fallback_warning("\n".join(ln for ln in captured.err.splitlines() if "moved" not in ln))
    assert "at chunk 1/2" in captured.out
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in rows] == [1, 2]
    # the damaged checkpoint was moved aside and written again, from the resumed state
    assert (run_dir / DAMAGED_DIR / "2").is_dir()
    run = xp.load_run(run_dir)
    assert run.step == 2 and "warning" not in capsys.readouterr().err
    # resuming is bit for bit: the same evaluation as the uninterrupted run
    a = json.loads((trained / "results.json").read_text())
    b = json.loads((run_dir / "results.json").read_text())
    assert a["greedy"] == b["greedy"] and a["stochastic"] == b["stochastic"]


# --- every checkpoint damaged: one error line -----------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "render", "resume"])
def test_every_checkpoint_damaged_is_one_error_line(run_dir, tmp_path, command):
    damage(run_dir, 2, "truncated")
    damage(run_dir, 1, "random")
    args = {"eval": ["eval", str(run_dir)],
            "render": ["render", str(run_dir), "--out", str(tmp_path / "x.gif")],
            "resume": ["run", str(run_dir / xp.EXPERIMENT_COPY), "--out", str(run_dir),
                       "--resume", *RUN]}[command]
    r = subprocess.run([sys.executable, "-m", "metajax.cli", *args], capture_output=True,
                       text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2, r.stderr
    err = _lines(r.stderr)
    assert len(err) == 1, r.stderr
    assert err[0].startswith("error: no intact checkpoint under ")
    assert "2: " in err[0] and "1: " in err[0]
    assert not (tmp_path / "x.gif").exists()


# --- the Checkpointer on a small tree -------------------------------------------------------------


TREE = {"a": jnp.arange(1000, dtype=jnp.float32), "b": jnp.ones((3, 4)), "c": jnp.zeros((2, 0))}


@pytest.fixture
def small(tmp_path) -> Path:
    """Checkpoints 1 and 2 of ``TREE + step``."""
    ck = Checkpointer(tmp_path / "small")
    for s in (1, 2):
        ck.save(s, jax.tree.map(lambda x, s=s: x + s, TREE), {"x": 1}, {"chunk": s})
    ck.close()
    return tmp_path / "small"


@pytest.mark.parametrize("how", DAMAGE)
def test_verify_names_the_damage(small, how):
    damage(small, 2, how)
    ck = Checkpointer(small)
    try:
        reason = ck.verify(2, abstract_like(TREE))
        assert reason and "\n" not in reason
        assert ("state/ is missing" in reason) if how == "missing" else reason
        assert ck.verify(1, abstract_like(TREE)) is None
    finally:
        ck.close()


def test_checksum_catches_what_the_restore_misses(small, capsys):
    """A few bytes changed inside a compressed chunk can decode to wrong numbers without an
    error: the CRC-32 of the ``integrity`` item catches them."""
    path = _data_file(small / "checkpoints" / "2")
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\x00\x01\x02\x03" * 4)
    ck = Checkpointer(small)
    try:
        state, _, meta = ck.restore(abstract_like(TREE))
    finally:
        ck.close()
    assert meta == {"chunk": 1} and float(state["a"][3]) == 4.0 and state["c"].shape == (2, 0)
    warning = _fallback_warning(capsys.readouterr().err)
    assert "CRC-32" in warning


def test_checkpoints_without_checksums_still_restore(small, capsys):
    shutil.rmtree(small / "checkpoints" / "2" / "integrity")  # as written before it existed
    ck = Checkpointer(small)
    try:
        _, _, meta = ck.restore(abstract_like(TREE))
    finally:
        ck.close()
    assert meta == {"chunk": 2} and not _lines(capsys.readouterr().err)


def test_a_different_learner_is_not_damage(small, capsys):
    ck = Checkpointer(small)
    try:
        with pytest.raises(CheckpointError, match=r"does not match this learner.*a has shape"):
            ck.restore(abstract_like({**TREE, "a": jnp.zeros(999)}))
        with pytest.raises(CheckpointError, match="does not match this learner"):
            ck.restore(abstract_like({"a": TREE["a"]}))
    finally:
        ck.close()
    assert not _lines(capsys.readouterr().err)


def test_saving_again_moves_the_damaged_checkpoint_aside(small, capsys):
    damage(small, 2, "truncated")
    ck = Checkpointer(small)
    try:
        state, _, meta = ck.restore(abstract_like(TREE))
        assert meta == {"chunk": 1} and ck.damaged.keys() == {2}
        ck.save(2, state, {"x": 1}, {"chunk": 2, "again": True})
        ck.wait()
        assert ck.steps() == [1, 2]
        _, _, meta = ck.restore(abstract_like(TREE))
        assert meta == {"chunk": 2, "again": True} and ck.restored_step == 2
    finally:
        ck.close()
    assert (small / DAMAGED_DIR / "2" / "state").is_dir()
    err = _lines(capsys.readouterr().err)
    assert len(err) == 2 and "moved damaged checkpoint" in err[1]


def test_read_config_falls_back_and_fails_in_one_line(small, capsys):
    (small / "checkpoints" / "2" / "config" / "metadata").write_text('{"x": ')
    ck = Checkpointer(small)
    try:
        assert ck.read_config() == ({"x": 1}, {"chunk": 1})
        _fallback_warning(capsys.readouterr().err)
        shutil.rmtree(small / "checkpoints" / "1" / "meta")
        with pytest.raises(CheckpointError, match="no intact config of checkpoint") as e:
            ck.read_config()
        assert "\n" not in str(e.value)
    finally:
        ck.close()


def test_a_damaged_mesa_stage_is_one_error_line(tmp_path):
    """MESA's stage checkpoints (``stages/<name>``, one step each) go through the same
    Checkpointer: a damaged stage cannot fall back, it fails in one line."""
    from metajax.pipelines.mesa import _Stages

    config = {"algo_config": {}, "pipeline": "mesa"}
    stages = _Stages(tmp_path, config)
    stages.save("subspace", TREE, {"size": 3})
    damage(tmp_path / "stages" / "subspace", 0, "random")
    assert stages.has("subspace")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint under .*subspace") as e:
        stages.load("subspace", TREE)
    assert "\n" not in str(e.value)


def test_abandoned_orbax_reads_stay_off_stderr_other_errors_do_not():
    """asyncio reports an abandoned failed read as a Task or (several reads failing at once) a
    Future "exception was never retrieved"; both are dropped, an unrelated error is kept."""
    import logging

    from metajax.train.checkpoint import _LeftoverFilter

    def record(msg: str, exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None,
                                 (type(exc), exc, None))

    damaged = ValueError('OUT_OF_RANGE: Error reading "params/0.0" in OCDBT database')
    f = _LeftoverFilter()
    for kind in ("Task", "Future"):
        assert not f.filter(record(f"{kind} exception was never retrieved\nfuture: <F>", damaged))
    assert f.filter(record("Future exception was never retrieved", RuntimeError("a real bug")))
    assert f.filter(record("something else", damaged))

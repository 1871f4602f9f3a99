"""Kill anywhere: a ``metajax run`` SIGKILLed during compilation, mid-chunk or during a
checkpoint write (the test-only kill points of :mod:`metajax.train.killpoint`), then continued with
``metajax run ... --resume``, ends exactly as the uninterrupted run: the same ``metrics.jsonl``
rows (but for the wall-clock ``time`` and ``sps``), the same ``results.json`` and the same
checkpoints, whose final state is equal bit for bit.

The run is the 2-seed one-step climb game of ``tests/test_reliability.py`` (the cheapest env to
compile): 4 chunks of 8 env steps, a checkpoint after every chunk (Orbax keeps the last 2), an
evaluation every 2 chunks. The uninterrupted run is a module fixture; each killed run is a CLI
subprocess with ``METAJAX_TEST_KILL_AT`` set, sharing the session's compilation cache; the final
``--resume`` runs the CLI in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import tiny_climb_experiment

from metajax.cli import main
from metajax.pipelines import experiment as xp
from metajax.train import killpoint, loop
from metajax.train.checkpoint import DAMAGED_DIR, Checkpointer
from metajax.train.killpoint import VAR

pytestmark = pytest.mark.early  # trains whole runs (see conftest.py)

os.environ["WANDB_MODE"] = "disabled"

EXPERIMENT = tiny_climb_experiment("killed", 32, eval_every=2, checkpoint_every=1)

QUIET = ["--wandb", "disabled", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]
#: Row fields that measure wall-clock time, not what was trained.
CLOCK = ("time", "sps")
TMP = ".orbax-checkpoint-tmp"


def reference_job(out: str) -> None:
    """The uninterrupted run through the CLI into ``out/run``."""
    root = Path(out)
    root.mkdir(parents=True)
    (root / "exp.py").write_text(EXPERIMENT)
    code = main(["run", str(root / "exp.py"), "--out", str(root / "run"), *QUIET])
    if code != 0:
        raise SystemExit(code)



@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run's rows, results, checkpoint steps and final state."""
    out = tmp_path_factory.mktemp("kill_reference") / "out"
    reference_job(str(out))
    run = out / "run"
    return {"rows": _rows(run), "results": _results(run), "steps": _steps(run),
            "state": xp.load_run(run).state}


def _rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(ln).items() if k not in CLOCK}
            for ln in (run / "metrics.jsonl").read_text().splitlines()]


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def _steps(run: Path) -> list[int]:
    ck = Checkpointer(run)
    try:
        return ck.steps()
    finally:
        ck.close()


def _killed_run(exp: Path, run: Path, point: str, resume: bool) -> str:
    """``metajax run`` in a subprocess that kills itself at ``point``; its stderr."""
    env = dict(os.environ, WANDB_MODE="disabled", **{VAR: point})
    env["JAX_COMPILATION_CACHE_DIR"] = os.environ["METAJAX_TEST_JAX_CACHE"]
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
    args = ["run", str(exp), "--out", str(run), *QUIET, *(["--resume"] if resume else [])]
    r = subprocess.run([sys.executable, "-m", "metajax.cli", *args], capture_output=True,
                       text=True, timeout=600, cwd=ROOT, env=env)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-3000:])
    assert f"{VAR}: killed at {point}" in r.stderr, r.stderr[-3000:]
    return r.stderr


def _check_killed_at(point: str, run: Path) -> None:
    """What a kill at ``point`` leaves behind."""
    ckpts = run / "checkpoints"
    steps = _steps(run) if ckpts.is_dir() else []
    rows = [r["chunk"] for r in _rows(run)]
    if point == "compile":  # in the first chunk call of the process: no new row
        assert not rows or rows[-1] == max(steps), (rows, steps)
    elif point.startswith("chunk:"):  # chunk N was running: no row N
        n = int(point.split(":")[1])
        assert rows[-1] == n - 1 and max(steps) <= n - 1, (rows, steps)
    else:  # checkpoint N: written into its tmp directory, never committed nor listed
        n = int(point.split(":")[1])
        tmp = ckpts / f"{n}{TMP}"
        assert n not in steps and max(steps) == n - 1, steps
        assert (tmp / "state").is_dir() and not (tmp / "commit_success.txt").exists()
        assert rows[-1] >= n, rows  # the row of chunk N came before its checkpoint


#: Kill points of the successive runs before the final ``--resume`` (the first run starts fresh).
CASES = {
    "compile": ("compile",),  # nothing saved: --resume starts from scratch
    "mid_chunk": ("chunk:3",),  # checkpoint 2 may still be in flight
    "checkpoint_write": ("checkpoint:2",),
    "final_checkpoint_write": pytest.param(("checkpoint:4",), marks=pytest.mark.slow),
    "again_and_again": pytest.param(("checkpoint:3", "compile", "chunk:4"),
                                    marks=pytest.mark.slow),
}


@pytest.mark.parametrize("points", list(CASES.values()), ids=list(CASES))
def test_resume_after_a_kill_is_bit_for_bit(points, reference, tmp_path, capsys):
    exp, run = tmp_path / "exp.py", tmp_path / "run"
    exp.write_text(EXPERIMENT)
    for i, point in enumerate(points):
        _killed_run(exp, run, point, resume=i > 0)
        _check_killed_at(point, run)

    ref = reference
    assert main(["run", str(exp), "--out", str(run), *QUIET, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err, captured.err  # a tmp directory is not damage
    if points[-1].startswith("checkpoint:"):
        assert f"at chunk {int(points[-1].split(':')[1]) - 1}/4" in captured.out

    assert _rows(run) == ref["rows"]
    assert _results(run) == ref["results"]
    assert _steps(run) == ref["steps"] == [3, 4]
    assert not list((run / "checkpoints").glob(f"*{TMP}*"))  # saved again over the tmp dir
    assert not (run / DAMAGED_DIR).exists()
    state = xp.load_run(run).state
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref["state"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not list(run.glob(".*.tmp"))  # the atomic writes left no temporary file


def test_kill_points_are_inert_unless_armed(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    assert killpoint.checkpoint_hook(lambda: 1) is None
    with killpoint.compiling(lambda: None):
        killpoint.kill_at("chunk:1")
    monkeypatch.setenv(VAR, "checkpoint:2")
    assert callable(killpoint.checkpoint_hook(lambda: 1))
    killpoint.kill_at("checkpoint:1")  # another point: nothing happens


def test_a_metrics_row_cut_short_is_dropped_on_resume(tmp_path):
    """A run killed while appending a row leaves a last line that is not JSON; it was written
    after the checkpoint resumed from, so it goes with the rest of the tail."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"chunk": 1, "x": 1}\n{"chunk": 2, "x": 2}\n{"chunk": 3, "x"')
    loop._truncate_metrics(path, 2)
    assert path.read_text() == '{"chunk": 1, "x": 1}\n{"chunk": 2, "x": 2}\n'
    path.write_text('{"chunk": 1, "x": 1}\n{"chunk": 2, "x"\n{"chunk": 3, "x": 3}\n')
    with pytest.raises(json.JSONDecodeError):  # damage inside the file is not a kill's
        loop._truncate_metrics(path, 2)
    assert not list(tmp_path.glob(".*.tmp"))

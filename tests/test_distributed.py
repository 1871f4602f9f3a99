"""Multi-process runs (``metajax run --distributed``, :mod:`metajax.train.distributed`).

The slow test launches two local processes (coordinator on 127.0.0.1, each with two fake CPU
devices) that train 4 seeds together: their metrics equal a one-process 4-device run to the
shard test's tolerance, and a kill of both processes followed by ``--resume`` of both gives the
uninterrupted result. The fast tests cover the refusals (member count over the global devices,
a resume with another process count, ``--distributed`` outside the ``metajax`` command).

    pytest -m slow tests/test_distributed.py -n0
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import tiny_climb_experiment

from metajax.cli import main
from metajax.config import ConfigError
from metajax.train import loop

#: The config of ``tests/test_training.py``'s shard test (the cheapest game to compile).
EXPERIMENT = '''"""Two processes x two devices (tests/test_distributed.py)."""
from metajax.algos.maddpg import MADDPGConfig
from metajax.pipelines.runner import TrainConfig

CONFIG = TrainConfig(
    name="dist", env="climb", env_config=dict(max_agents=2, num_actions=4),
    tasks=({"k": 2, "u": 1},),
    maddpg=MADDPGConfig(batch_size=32, buffer_size=2000, learning_starts=40,
                        rollout_steps=2, num_envs=5, updates_per_rollout=2, hidden=(16,)),
    total_env_steps=400, chunk_updates=10, seeds=4, eval_episodes=2, checkpoint_every=1)
'''
ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(exp: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "metajax", "run", str(exp), "--out", str(out),
            "--no-progress", *extra]


def _one_process(exp: Path, out: Path, devices: int) -> None:
    env = {**BASE_ENV, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    r = subprocess.run(_cmd(exp, out), cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _two_processes(exp: Path, out: Path, *extra: str, kill_at: str | None = None) -> list[str]:
    """Both processes of one distributed run; their outputs (process 0 first)."""
    port = _free_port()
    procs = []
    for pid in (0, 1):
        env = {**BASE_ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
               "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
               "JAX_PROCESS_ID": str(pid)}
        if kill_at:
            env["METAJAX_TEST_KILL_AT"] = kill_at
        procs.append(subprocess.Popen(_cmd(exp, out, "--distributed", *extra), cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    want = -9 if kill_at else 0
    for p, text in zip(procs, outs, strict=True):
        assert p.returncode == want, text[-3000:]
    return outs


def _rows(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(ln).items() if k not in ("time", "sps")}
            for ln in lines]


@pytest.mark.slow
def test_two_processes_match_one_and_resume_after_kill(tmp_path):
    exp = tmp_path / "dist.py"
    exp.write_text(EXPERIMENT)
    _one_process(exp, tmp_path / "one", devices=4)
    outs = _two_processes(exp, tmp_path / "two")
    assert "2 process(es), 4 device(s) (2 on this one)" in outs[0]
    assert "run directory" in outs[0] and "run directory" not in outs[1]  # process 0 talks
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(one) == len(two) == 4
    for a, b in zip(one, two, strict=True):
        for k in ("chunk", "env_steps", "grad_steps", "episodes"):
            assert a[k] == b[k], k
        for k in ("episode_return", "critic_loss", "actor_loss", "q_mean"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert len(set(two[-1]["critic_loss"])) == 4  # four different seeds, not one repeated
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    for mode in ("greedy", "stochastic"):
        np.testing.assert_allclose(r1[mode][0]["per_episode"], r2[mode][0]["per_episode"],
                                   rtol=1e-5, atol=1e-6)
    # killed together after chunk 3 was dispatched (checkpoints 1 and 2 on disk), resumed
    killed = tmp_path / "killed"
    _two_processes(exp, killed, kill_at="chunk:3")
    assert len(_rows(killed)) == 2
    outs = _two_processes(exp, killed, "--resume")
    assert "resumed" in outs[0]
    assert _rows(killed) == two  # the uninterrupted two-process run, bit for bit
    assert json.loads((killed / "results.json").read_text()) == r2
    # one process cannot continue it
    r = subprocess.run(_cmd(exp, killed, "--resume", "--set", "total_env_steps=500"), cwd=ROOT,
                       env=BASE_ENV, capture_output=True, text=True)
    assert r.returncode == 2 and "trained by 2 process(es)" in r.stderr, r.stderr


def test_members_must_fill_the_global_devices(monkeypatch):
    devices = jax.devices() * 4
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "devices", lambda: devices)
    with pytest.raises(ConfigError, match=r"6 members .* do not divide over the 4 devices of "
                       r"2 processes; use a multiple of 4 \(e.g. --seeds 8\)"):
        loop.seed_mesh(6)


def test_resume_with_another_process_count_is_refused(tmp_path, capsys):
    from metajax.config import to_dict
    from metajax.pipelines import experiment as xp
    from metajax.pipelines import runner
    from metajax.train.checkpoint import Checkpointer

    exp = tmp_path / "tiny.py"
    exp.write_text(tiny_climb_experiment("tiny", 16))
    run = tmp_path / "run"
    # the first checkpoint of the run as two processes would have saved it ("processes": 2)
    cfg = xp.configure(xp.load_experiment(str(exp)), [], {}, None)
    learner = runner.build_learner(cfg, runner.build_env(cfg))
    state = jax.jit(jax.vmap(learner.init))(
        jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds))
    config = {"algo_config": to_dict(cfg), "pipeline": "train"}
    ckpt = Checkpointer(run)
    ckpt.save(1, state, config, {"chunk": 1, "processes": 2})
    ckpt.close()
    (run / "config.json").write_text(json.dumps(config))
    assert main(["run", str(exp), "--out", str(run), "--wandb", "disabled", "--no-progress",
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {run} was trained by 2 process(es); refusing to resume it with 1 "
                   "(resume with the same process count)")


def test_distributed_outside_the_metajax_command_and_bad_environment(tmp_path, capsys):
    exp = tmp_path / "tiny.py"
    exp.write_text(tiny_climb_experiment("tiny", 16))
    # metajax.cli.main cannot join after the environments were imported: one line
    assert main(["run", str(exp), "--out", str(tmp_path / "a"), "--distributed"]) == 2
    assert "through the metajax command" in capsys.readouterr().err
    assert main(["run", str(exp), "--out", str(tmp_path / "a"), "--process-id", "1"]) == 2
    assert "need --distributed" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "metajax", "run", str(exp), "--distributed"],
                       cwd=ROOT, env={**BASE_ENV, "JAX_NUM_PROCESSES": "two"},
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: $JAX_NUM_PROCESSES='two' is not an integer"


@pytest.mark.slow
def test_two_process_sweep_matches_one(tmp_path):
    """A 2-point grid x 2 seeds (4 members) over two processes: every member's metrics and the
    sweep's table equal a one-process 4-device sweep."""
    exp = tmp_path / "dist.py"
    exp.write_text(EXPERIMENT)
    grid = ["--grid", "maddpg.tau=0.01,0.05", "--seeds", "2"]

    def cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "metajax", "sweep", str(exp), "--out", str(out),
                "--no-progress", *grid, *extra]

    env = {**BASE_ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    r = subprocess.run(cmd(tmp_path / "one"), cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    port = _free_port()
    procs = [subprocess.Popen(
        cmd(tmp_path / "two", "--distributed"), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env={**BASE_ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
             "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
             "JAX_PROCESS_ID": str(pid)}) for pid in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    one, two = _rows(tmp_path / "one" / "groups" / "g0"), _rows(tmp_path / "two" / "groups" / "g0")
    assert len(one) == 4
    for a, b in zip(one, two, strict=True):
        for k in ("episode_return", "critic_loss", "actor_loss", "q_mean"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)
    s1 = json.loads((tmp_path / "one" / "results.json").read_text())
    s2 = json.loads((tmp_path / "two" / "results.json").read_text())
    assert [p["scores"] for p in s1["points"]] == [p["scores"] for p in s2["points"]]

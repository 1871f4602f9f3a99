"""MADDPG through the runner: it learns, it is deterministic, it resumes bit for bit, and a
seed axis sharded over 4 (fake CPU) devices gives the same results as one device."""

from __future__ import annotations

import json
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import run_in_subprocess

import envs
from metajax.algos.maddpg import MADDPGConfig
from metajax.pipelines.runner import TrainConfig, train

pytestmark = pytest.mark.early  # trains whole runs (see conftest.py)

LEARN = TrainConfig(
    name="learn",
    env="treasure",
    env_config=dict(max_agents=2, max_objects=2, action_type="relaxed", episode_length=25),
    tasks=({"n_agents": 2, "n_treasures": 2},),
    maddpg=MADDPGConfig(
        batch_size=256, buffer_size=20_000, learning_starts=1_000, rollout_steps=25,
        num_envs=4, updates_per_rollout=4, actor_lr=3e-3, critic_lr=3e-3,
    ),
    total_env_steps=50_000,
    chunk_updates=50,
    seeds=2,
    eval_episodes=20,
)


def train_full_run(out: str) -> None:
    """The learning run."""
    train(LEARN, out, wandb_mode="disabled", progress=False, log=lambda s: None)



@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> types.SimpleNamespace:
    """The uninterrupted run: its directory, ``results.json`` and ``metrics.jsonl`` rows."""
    run_dir = tmp_path_factory.mktemp("treasure_learning") / "out"
    train_full_run(str(run_dir))
    return types.SimpleNamespace(
        run_dir=run_dir,
        results=json.loads((run_dir / "results.json").read_text()),
        metrics=[json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()],
    )


def _random_return(cfg: TrainConfig, episodes: int = 200) -> float:
    """Mean per-agent return of uniformly random relaxed actions (the untrained baseline)."""
    env = envs.make(cfg.env, **cfg.env_config)
    task = env.make_task(**cfg.tasks[0])

    def episode(key):
        state, ts = env.reset_to(key, task)

        def step(s, k):
            a = jax.random.dirichlet(k, jnp.ones(5), (env.max_agents,))
            s, ts = env.step(s, a)
            return s, ts.reward

        _, r = jax.lax.scan(step, state, jax.random.split(key, env.episode_length))
        return r.sum(0)[: int(task.n_agents)].mean()

    keys = jax.random.split(jax.random.PRNGKey(123), episodes)
    return float(jnp.mean(jax.jit(jax.vmap(episode))(keys)))


def test_maddpg_learns_treasure(full_run):
    """Two collectors, two treasures: the trained policy clearly beats random actions.

    Random play (uniform moves, or relaxed samples of uniform logits) returns about -2 per
    agent; MADDPG gets to about 0 by 50k steps (0.3-0.6 by 60k). A learner whose actor or
    critic does not update stays near -2 or below, and the first chunks (an untrained critic
    steering the actor) return about -4."""
    rand = _random_return(LEARN)
    res = full_run.results
    for mode in ("greedy", "stochastic"):
        per_seed = np.asarray(res[mode][0]["per_seed"])
        assert np.all(per_seed > rand + 1.2), (mode, per_seed, rand)
    first = np.mean(full_run.metrics[0]["episode_return"])
    last = np.mean(full_run.metrics[-1]["episode_return"])
    assert last > first + 1.0
    assert all(np.isfinite(v).all() for m in full_run.metrics for k, v in m.items()
               if isinstance(v, list))


def test_run_directory_layout(full_run):
    d = full_run.run_dir
    lines = (d / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(full_run.metrics) == 10
    row = json.loads(lines[-1])
    assert len(row["episode_return"]) == LEARN.seeds and row["env_steps"] == [50_000] * 2
    assert json.loads((d / "config.json").read_text())["pipeline"] == "train"
    results = json.loads((d / "results.json").read_text())
    assert set(results) >= {"greedy", "stochastic", "env_steps", "tasks"}
    assert (d / "checkpoints").is_dir()


def test_determinism_and_resume(full_run, tmp_path):
    """Same seed -> identical metrics; 2 chunks + checkpoint + resume for 2 more == the first
    4 chunks of the uninterrupted run, bit for bit."""
    part = train(LEARN, tmp_path, wandb_mode="disabled", progress=False, max_chunks=2,
                 log=lambda s: None)
    assert [m["chunk"] for m in part.metrics] == [1, 2]
    # a restored checkpoint is strongly typed: a weakly typed leaf in the fresh state would
    # make the resumed run compile its chunk a second time
    weak = [jax.tree_util.keystr(p) for p, x in
            jax.tree_util.tree_flatten_with_path(part.state)[0] if x.weak_type]
    assert not weak, weak
    rest = train(LEARN, tmp_path, resume=True, wandb_mode="disabled", progress=False,
                 max_chunks=2, log=lambda s: None)
    assert [m["chunk"] for m in rest.metrics] == [3, 4]
    resumed = part.metrics + rest.metrics
    for a, b in zip(resumed, full_run.metrics[:4], strict=True):
        for k in ("env_steps", "grad_steps", "episode_return", "critic_loss", "actor_loss",
                  "q_mean", "episodes"):
            assert a[k] == b[k], (a["chunk"], k, a[k], b[k])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["chunk"] for x in lines] == [1, 2, 3, 4]


def test_refuses_to_overwrite_or_resume_other_config(full_run, tmp_path):
    from metajax.train.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="already holds a run"):
        train(LEARN, full_run.run_dir, wandb_mode="disabled", progress=False)
    other = LEARN.__class__(**{**LEARN.__dict__, "seed": 7})
    with pytest.raises(CheckpointError, match="different config"):
        train(other, full_run.run_dir, resume=True, wandb_mode="disabled", progress=False)


def shard_job(out: str) -> None:
    """One shard run (``XLA_FLAGS`` set by the job) writing ``out/result.json``."""
    cfg = TrainConfig(
        name="shard", env="climb", env_config=dict(max_agents=2, num_actions=4),
        tasks=({"k": 2, "u": 1},),
        maddpg=MADDPGConfig(batch_size=32, buffer_size=2000, learning_starts=40,
                            rollout_steps=2, num_envs=5, updates_per_rollout=2, hidden=(16,)),
        total_env_steps=400, chunk_updates=10, seeds=4, eval_episodes=2)
    r = train(cfg, Path(out) / "run", wandb_mode="disabled", progress=False, log=lambda s: None)
    devices = len(r.state.key.sharding.device_set)
    (Path(out) / "result.json").write_text(json.dumps(
        {"devices": devices, "n_devices": jax.device_count(), "metrics": r.metrics}))


@pytest.fixture(scope="module")
def shard_runs(tmp_path_factory) -> tuple[dict, dict]:
    """``result.json`` of the 4-device run, in a process of its own (the device count is fixed
    when XLA's CPU backend starts), and of the same run on this process's one device; the
    cheapest game to compile, as sharding is about the seed axis, not the env."""
    assert jax.device_count() == 1
    out = tmp_path_factory.mktemp("shard4") / "out"
    run_in_subprocess("test_training", "shard_job", out, {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"})
    single = tmp_path_factory.mktemp("shard1") / "out"
    shard_job(str(single))
    return tuple(json.loads((o / "result.json").read_text()) for o in (out, single))


def test_sharded_seeds_match_single_device(shard_runs):
    sharded, single = shard_runs
    assert sharded["n_devices"] == 4 and sharded["devices"] == 4
    assert single["devices"] == 1
    for a, b in zip(sharded["metrics"], single["metrics"], strict=True):
        for k in ("env_steps", "grad_steps", "episodes"):
            assert a[k] == b[k]
        for k in ("episode_return", "critic_loss", "actor_loss", "q_mean"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)
    # seeds differ from each other (the seed axis is not collapsed)
    assert len(set(sharded["metrics"][-1]["critic_loss"])) == 4

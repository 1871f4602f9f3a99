"""MESA: cooperative meta-exploration (Zhang, Liang, Wu, Fang, AAMAS 2024), Algorithms 1 and 2.

The pipeline runs the stages of :mod:`metajax.algos.mesa` one after another, vmapped over seeds
(and over training or test tasks inside each stage):

1. **High-reward subspace** (Alg. 1 lines 1-6,
   :func:`~metajax.algos.mesa.subspace.collect_subspace`): MADDPG on each training task
   fills ``M_*`` with the valuable joint (state, action) pairs and their Eq. 5-relabelled
   predecessors; k-means on ``M_*`` gives the hash ``phi``.
2. **Exploration policies** (Alg. 1 lines 7-20,
   :func:`~metajax.algos.mesa.explorers.train_explorers`): ``E`` MADDPG policies trained one
   after another on the coverage reward of Eq. 6, the global count ``N_hat`` growing after
   each; then their zero-shot measurement on the test tasks
   (:func:`~metajax.algos.mesa.explorers.zero_shot`, Fig. 7 left).
3. **Meta-testing** (Alg. 2, :func:`~metajax.algos.mesa.metatest.meta_test`): MADDPG on each
   unseen test task, an exploration policy playing each episode with the annealed probability
   ``p_e``; the baselines ``maddpg``, ``random``, ``pretrain`` and ``goal``
   (:func:`~metajax.algos.mesa.metatest.pretrain_baselines`) with the same budgets, and, when
   ``methods`` name them, the other learners of Table 2 trained from scratch on each test task
   (``mappo``, ``ippo``, ``mappo_rnd``, ``qmix``, ``vdn``; :mod:`metajax.algos.mesa.learners`).

This module draws the tasks (:func:`task_sets`), runs the stages (:func:`run_mesa`) and holds
the experiment families (:func:`mpe_climb_config`, :data:`MPE_PAPER_PRESET`).

``metajax run experiments/mesa_*.py`` runs it (pipeline ``"mesa"``): the run directory gets
``config.json``, ``metrics_<stage>.jsonl`` per stage (``metrics.jsonl`` is MESA's meta-test),
``results.json`` (with a ``"stats"`` block: IQM, mean, median, optimality gap, performance
profiles and probabilities of improvement of the methods with 95 % stratified bootstrap CIs,
:func:`metajax.train.run_stats.mesa_groups`) and ``results.md`` (the table), ``curves.png``
(greedy return of each method during meta-testing) and Orbax checkpoints of each finished
stage under ``stages/``; ``--resume`` skips the finished stages.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.core import MultiAgentEnv
from metajax.algos.maddpg import MADDPGConfig
from metajax.algos.mesa.config import (
    ALL_METHODS,
    LEARNER_METHODS,
    METHODS,
    MESAConfig,
    config_changes,
)
from metajax.algos.mesa.explorers import (
    explorer_learner,
    explorers_like,
    train_explorers,
    zero_shot,
)
from metajax.algos.mesa.features import feature_dim
from metajax.algos.mesa.learners import check_methods
from metajax.algos.mesa.metatest import meta_test, pretrain_baselines
from metajax.algos.mesa.report import summarize, write_results
from metajax.algos.mesa.stages import Context, StageLog, StageStore
from metajax.algos.mesa.subspace import collect_subspace
from metajax.algos.ppo import PPOConfig
from metajax.algos.qmix import QMixConfig
from metajax.config import to_dict
from metajax.core.ops import take
from metajax.core.taskspec import make_task
from metajax.pipelines.experiment import ExperimentError, Pipeline
from metajax.train.checkpoint import CheckpointError
from metajax.train.loop import wandb_run

__all__ = ["ALL_METHODS", "LEARNER_METHODS", "METHODS", "MPE_PAPER_PRESET", "PIPELINE",
           "MESAConfig", "MESAResult", "config_changes", "learners_preset", "mpe_climb_config",
           "run_mesa", "seed_task_sets", "seen_in_training", "summarize", "task_record",
           "task_sets"]

Array = jax.Array

#: The stage checkpoints of a run directory (the name tests and older code import).
_Stages = StageStore


# --- tasks ------------------------------------------------------------------------------------


def task_sets(env: MultiAgentEnv, cfg: MESAConfig, key: Array) -> tuple[Any, Any]:
    """``(train [n_train], test [n_test])`` task stacks for one seed (see
    :class:`MESAConfig`); raises :class:`ExperimentError` when the env cannot draw them."""
    split = cfg.split
    if "train_tasks" in split or "test_tasks" in split:
        if not ("train_tasks" in split and "test_tasks" in split):
            raise ExperimentError("split needs both train_tasks and test_tasks")
        made = [[make_task(env, t) for t in split[k]] for k in ("train_tasks", "test_tasks")]
        return tuple(jax.tree.map(lambda *xs: jnp.stack(xs), *m) for m in made)
    if "test_filter" in split:
        space_fn = getattr(env, "task_space", None)
        if not callable(space_fn):
            raise ExperimentError(f"{env.name}: split.test_filter needs an enumerable "
                                  "task_space()")
        space = space_fn()
        size = int(jax.tree.leaves(space)[0].shape[0])
        ok = np.ones(size, bool)
        for field, value in split["test_filter"].items():
            ok &= np.asarray(getattr(space, field)) == value
        rng = np.random.default_rng(np.asarray(jax.random.bits(key, (2,))).tolist())
        cand, rest = np.nonzero(ok)[0], np.nonzero(~ok)[0]
        if len(cand) < cfg.n_test:
            raise ExperimentError(f"only {len(cand)} tasks match test_filter, need {cfg.n_test}")
        test = rng.permutation(cand)[: cfg.n_test]
        if split.get("overlap", False):
            # training tasks uniform over the whole space: a test task may be among them
            if size < cfg.n_train:
                raise ExperimentError(f"the task space holds {size} tasks, need "
                                      f"n_train={cfg.n_train}")
            train = rng.permutation(size)[: cfg.n_train]
            return take(space, train), take(space, test)
        pool = np.concatenate([rest, np.setdiff1d(cand, test)])
        if len(pool) < cfg.n_train:
            raise ExperimentError(f"only {len(pool)} tasks left for training, need "
                                  f"{cfg.n_train}")
        train = rng.permutation(pool)[: cfg.n_train]
        return take(space, train), take(space, test)
    if "train" in split or "test" in split:
        sample = getattr(env, "sample_tasks", None)
        if not callable(sample):
            raise ExperimentError(f"{env.name}: split.train/test need env.sample_tasks")
        k_train, k_test = jax.random.split(key)
        return (sample(k_train, cfg.n_train, **split.get("train", {})),
                sample(k_test, cfg.n_test, **split.get("test", {})))
    split_fn = getattr(env, "split_tasks", None)
    if not callable(split_fn):
        raise ExperimentError(f"{env.name}: no split_tasks; give split.train/test or "
                              "split.test_filter")
    return split_fn(key, cfg.n_train, cfg.n_test)


def seed_task_sets(env: MultiAgentEnv, cfg: MESAConfig) -> tuple[Any, Any]:
    """``(train [S, n_train], test [S, n_test])``: each seed draws its own sets (disjoint
    unless ``split.overlap``)."""
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed + 7919), cfg.seeds)
    sets = [task_sets(env, cfg, k) for k in keys]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *xs)  # noqa: E731
    return stack([s[0] for s in sets]), stack([s[1] for s in sets])


def seen_in_training(train: Any, test: Any) -> np.ndarray:
    """``[S, n_test]`` bool: is test task ``j`` of seed ``s`` equal (every field) to one of
    that seed's training tasks? ``train`` ``[S, n_train]``, ``test`` ``[S, n_test]`` stacks."""
    out = None
    for a, b in zip(jax.tree.leaves(train), jax.tree.leaves(test), strict=True):
        a, b = np.asarray(a), np.asarray(b)  # [S, B, ...], [S, K, ...]
        eq = (a[:, None] == b[:, :, None]).reshape(b.shape[0], b.shape[1], a.shape[1], -1)
        eq = eq.all(-1)  # [S, K, B]
        out = eq if out is None else out & eq
    return out.any(-1)


def task_record(tasks: Any) -> dict:
    """A task stack as ``{field: nested lists}`` (for ``results.json``)."""
    if dataclasses.is_dataclass(tasks):
        names = [f.name for f in dataclasses.fields(tasks)]
        return {n: np.asarray(getattr(tasks, n)).tolist() for n in names}
    return {"leaves": [np.asarray(x).tolist() for x in jax.tree.leaves(tasks)]}


# --- the pipeline -----------------------------------------------------------------------------


@dataclasses.dataclass
class MESAResult:
    """What :func:`run_mesa` returns: ``results`` (also in ``results.json``) and the run
    directory."""

    results: dict
    run_dir: Path


def run_mesa(
    cfg: MESAConfig,
    run_dir: str | Path,
    resume: bool = False,
    wandb_mode: str = "disabled",
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> MESAResult:
    """Run MESA and its baselines (``cfg.methods``) into ``run_dir`` (see module docstring):
    Alg. 1 (subspace, exploration policies, their zero-shot measurement; only when ``mesa``
    is among the methods), the pretrained baselines, Alg. 2 and the baselines' meta-tests, the
    results. ``resume``: every finished stage is reloaded from ``stages/<name>``.

    Each stage's chunks go through :class:`metajax.train.loop.HostLog` (the runner's
    progress bar, or log lines with steps/s and ETA, and wandb rows under ``<stage>/``) and
    into ``metrics_<stage>.jsonl``.
    """
    show = sys.stderr.isatty() if progress is None else progress
    ctx = open_run(cfg, Path(run_dir), resume, log, show)
    ctx.log.wb = wandb_run(wandb_mode, Path(run_dir), cfg)
    try:
        return _run(ctx)
    finally:
        if ctx.log.wb is not None:
            ctx.log.wb.finish()


def _run(ctx: Context) -> MESAResult:
    cfg = ctx.cfg
    explorers = explorers_like(ctx, explorer_learner(ctx))  # zeros: no mesa, no explorers
    if "mesa" in cfg.methods:
        sub = collect_subspace(ctx)
        explorers = train_explorers(ctx, sub)
        if cfg.zero_shot:
            zero_shot(ctx, sub, explorers)
    pretrained = pretrain_baselines(ctx)
    curves = meta_test(ctx, explorers.params, pretrained)
    seen = np.asarray(ctx.results["test_in_train"], bool)
    table = write_results(ctx.log.run_dir, ctx.results, curves, seen, cfg.name)
    ctx.log.say(f"wrote {ctx.log.run_dir / 'results.md'}\n{table}")
    return MESAResult(results=ctx.results, run_dir=ctx.log.run_dir)


def open_run(cfg: MESAConfig, run_dir: Path, resume: bool, log: Callable[[str], None],
             show: bool = False) -> Context:
    """The :class:`~metajax.algos.mesa.stages.Context` of a run into ``run_dir``: its
    ``config.json``, the env, each seed's tasks, the results so far; a directory holding
    another run's stages is refused unless ``resume``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dict = {"algo_config": to_dict(cfg), "pipeline": "mesa"}
    store = StageStore(run_dir, config_dict)
    if not resume and store.root.exists() and any(store.root.iterdir()):
        raise CheckpointError(f"{run_dir} already holds a MESA run; pass --resume to continue "
                              "it or choose another --out")
    (run_dir / "config.json").write_text(json.dumps(config_dict, indent=1))
    lg = StageLog(run_dir, log, show)
    env = envs.make(cfg.env, **cfg.env_config)
    check_methods(cfg, env)
    train, test = seed_task_sets(env, cfg)
    lg.say(f"{cfg.name}: env {env!r}, {cfg.seeds} seed(s), {cfg.n_train} training and "
           f"{cfg.n_test} test tasks per seed, methods {', '.join(cfg.methods)}")
    seen = seen_in_training(train, test)  # [S, K]
    results: dict = {"name": cfg.name, "env": cfg.env, "seeds": cfg.seeds,
                     "n_train": cfg.n_train, "n_test": cfg.n_test, "methods": {}, "timing": {},
                     "test_in_train": seen.tolist(),
                     "tasks": {"train": task_record(train), "test": task_record(test)}}
    if seen.any():
        lg.say(f"{int(seen.sum())} of {seen.size} (seed, test task) pairs are also training "
               "tasks of their seed (split.overlap)")
    return Context(cfg=cfg, env=env, train=train, test=test,
                   seed_keys=jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds),
                   dim=feature_dim(cfg, env, take(take(train, 0), 0)), store=store, log=lg,
                   resume=resume, results=results)


def _no_load(run_dir: Path, cfg: Any, step: int | None) -> Any:
    raise ExperimentError(
        f"{run_dir} is a MESA run: it evaluates every method itself (see results.md and "
        "results.json); `metajax eval/render` work on runs of the train pipeline")


#: The ``"mesa"`` pipeline (:data:`metajax.pipelines.registry.PIPELINES`).
PIPELINE = Pipeline(run_mesa, MESAConfig, load=_no_load)


# --- experiment families ----------------------------------------------------------------------


def mpe_climb_config(
    n_agents: int, n_landmarks: int, name: str | None = None, **overrides: Any
) -> MESAConfig:
    """The CPU-sized default of a Table 2 MPE column ``{n}A{U}L``: ``k = 2``, 6 training and 3
    test games per seed (Table 1: 30 and 15/18, so 5x fewer training and 5-6x fewer test
    games; ``MPE_PAPER_PRESET`` restores them), landmark layouts and agent starts drawn per
    task as in the paper ("the environments are different in landmark positions";
    :meth:`envs.particle.climb.MPEClimb.sample_tasks`), 50-step episodes, landmark
    radius 0.2 (the env's default 0.1 makes the sparse reward so rare that no learner meets it
    in a CPU budget: with 0.1, 30k collection steps per game found 0-53 rewarded pairs per seed;
    ``MPE_PAPER_PRESET`` restores 0.1).

    Joint (state, action) vector: every agent's observation (own velocity and position,
    relative positions of the others and of the landmarks) and its action weighted by 0.1, so
    two agents resting on the same landmarks are close whatever they press; ``eps = 0.5``
    allows about one landmark radius of error per agent. ``overrides`` replace fields.

    The other learners (``--preset learners``, :func:`learners_preset`; not tuned): MAPPO/IPPO
    with one 50-step episode of 8 games per update, QMIX/VDN with one-episode windows of 4
    games (one gradient step per 200 env steps; MADDPG here takes one per 75) and epsilon
    annealed over the first half of the budget like MESA's ``p_e``.
    """
    learner = MADDPGConfig(
        actor_lr=1e-3, critic_lr=1e-3, batch_size=512, buffer_size=100_000, num_envs=6,
        rollout_steps=50, updates_per_rollout=4, learning_starts=5_000, tau=0.01)
    tasks = {"n_agents": n_agents, "n_landmarks": n_landmarks, "k": 2}
    cfg = MESAConfig(
        name=name or f"mesa_mpe_{n_agents}a{n_landmarks}l",
        env="mpe_climb",
        env_config=dict(max_agents=n_agents, max_objects=n_landmarks, episode_length=50, k=2,
                        landmark_radius=0.2),
        n_train=6,
        n_test=3,
        split={"train": tasks, "test": tasks},
        maddpg=learner,
        collect=dataclasses.replace(learner, buffer_size=20_000),
        collect_steps=30_000,
        dataset_capacity=512,
        action_weight=0.1,
        eps=0.5,
        num_clusters=32,
        num_explorers=2,
        explorer_steps=30_000,
        test_steps=60_000,
        anneal_steps=30_000,
        chunk_updates=20,
        eval_every=5,
        eval_episodes=4,
        seeds=3,
        ppo=PPOConfig(num_envs=8, rollout_steps=50, epochs=4, minibatches=4, hidden=(64, 64),
                      lr=5e-4, ent_coef=0.01),
        qmix=QMixConfig(num_envs=4, hidden=64, batch_windows=32, buffer_windows=1000,
                        eps_anneal_steps=30_000, lr=5e-4, target_every=20),
    )
    return dataclasses.replace(cfg, **overrides)


def learners_preset(name: str, methods: tuple[str, ...] = LEARNER_METHODS) -> dict[str, Any]:
    """The ``learners`` preset of a Table 2 experiment file named ``name``: MADDPG (the paired
    reference: same seeds, test tasks and meta-test keys as in the default run) and the other
    learners ``methods`` (:data:`LEARNER_METHODS`), none of which needs meta-training."""
    return {"name": f"{name}_learners", "methods": ("maddpg", *methods)}


#: ``--preset paper`` of the MPE columns (MESA Table 1): 30 training and 15 test games,
#: 500k collection steps (per game here), 3M meta-training and meta-testing steps, batch 300
#: trajectories, lr 1e-4, 50k random steps, GRU actors, 100-step episodes.
MPE_PAPER_PRESET: dict[str, Any] = {
    # first: the exploration policies (``explorer`` unset = the ``maddpg`` section) play one
    # training task per parallel game, so there must be n_train of them by the time n_train
    # is set (overrides are checked one at a time)
    "maddpg.num_envs": 30,
    "n_train": 30,
    "n_test": 15,
    "env_config.episode_length": 100,
    "env_config.landmark_radius": 0.1,
    "maddpg.actor": "gru",
    "maddpg.actor_lr": 1e-4,
    "maddpg.critic_lr": 1e-4,
    "maddpg.batch_size": 30_000,
    "maddpg.buffer_size": 1_000_000,
    "maddpg.rollout_steps": 100,
    "maddpg.learning_starts": 50_000,
    "collect.actor": "gru",
    "collect.num_envs": 30,
    "collect.rollout_steps": 100,
    "collect.buffer_size": 200_000,
    "collect_steps": 500_000,
    "explorer_steps": 3_000_000,
    "test_steps": 3_000_000,
    "anneal_steps": 1_500_000,
    "qmix.eps_anneal_steps": 1_500_000,
    "dataset_capacity": 4096,
    "chunk_updates": 100,
}

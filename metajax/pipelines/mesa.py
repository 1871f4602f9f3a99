"""MESA: cooperative meta-exploration (Zhang, Liang, Wu, Fang, AAMAS 2024), Algorithms 1 and 2.

The pipeline, vmapped over seeds (and over training or test tasks inside each stage):

1. **High-reward subspace** (Alg. 1 lines 1-6): MADDPG is trained on each training task (one
   learner per task, vmapped); every rollout's joint (state, action) vectors with reward
   ``>= R*``, and their zero-reward predecessors relabelled with Eq. 5, enter a fixed-capacity
   dataset ``M_*`` (reservoir sampled per task, then the union over tasks). k-means on ``M_*``
   gives the hash ``phi`` (:mod:`metajax.algos.mesa.kmeans`).
2. **Exploration policies** (Alg. 1 lines 7-20): ``E`` MADDPG policies trained one after
   another over the training tasks on the coverage reward of Eq. 6 (:class:`CoverageAux`): a
   visit within ``eps`` of ``M_*`` earns the stored ``r_hat`` of the nearest pair, times
   ``f_d(N) = 1/N^5`` of the trajectory-level pseudo-count of its cluster, started from the
   global count ``N_hat``. After each policy, ``N_hat`` grows by that policy's visits.
3. **Meta-testing** (Alg. 2): MADDPG on each unseen test task (vmapped); at the start of every
   episode of every parallel game, with probability ``p_e`` (annealed to 0) a uniformly drawn
   exploration policy plays the episode instead of the learner; one shared replay buffer.
   Optional behaviour-cloning warm-up of the learner on the replay (Sec. 6.5).

Baselines with the same budgets (``MESAConfig.methods``): ``maddpg`` (no exploration policy),
``random`` (uniformly random actions play the episodes MESA's explorers would), ``pretrain``
(an unconditioned policy pretrained on every training task with their reward, then fine-tuned
on the test task), ``goal`` (the same with the goal descriptor ``env.task_description`` in the
observation, :class:`envs.wrappers.GoalObservation`).

Joint (state, action) vectors are the padded flat observations of every agent (slices of it
optionally rescaled by ``obs_scale``) followed by every agent's action as the critic sees it
(one-hot, relaxed sample or continuous), scaled by ``action_weight`` (:func:`joint_features`);
padded agents contribute zeros. The L2 distance on them is Eq. 6's metric.

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
import functools
import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import envs
from envs.core import MultiAgentEnv, Observation
from envs.wrappers import GoalObservation
from metajax import stats
from metajax.algos.maddpg import MADDPGConfig, MADDPGState, make_maddpg
from metajax.algos.mesa import core as mc
from metajax.algos.mesa.kmeans import assign, fit_kmeans
from metajax.config import to_dict
from metajax.core.interfaces import ActionSpace, Learner, RolloutHooks
from metajax.core.ops import gumbel_softmax
from metajax.core.replay import make_replay
from metajax.core.taskspec import make_task
from metajax.pipelines.experiment import ExperimentError, Pipeline
from metajax.train import run_stats
from metajax.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from metajax.train.loop import ONCE, NonFiniteError, nonfinite_metrics, nonfinite_report

Array = jax.Array

#: Every method the pipeline can run in meta-testing.
METHODS = ("mesa", "maddpg", "random", "pretrain", "goal")
#: Methods that share one compiled meta-test program (same observation, exploration hook).
_HOOKED = {"mesa": 1, "maddpg": 0, "random": 2, "pretrain": 0}


@dataclasses.dataclass(frozen=True)
class MESAConfig:
    """A MESA experiment: meta-training on training tasks, meta-testing on unseen ones.

    Tasks (chosen per seed from ``seed``; train and test disjoint unless ``overlap``):

    * ``n_train``/``n_test``: tasks per seed;
    * ``split``: how to draw them. ``{"test_filter": {field: value}}``: from the env's
      enumerable ``task_space()``, test tasks among those matching the filter, training tasks
      among the rest; adding ``"overlap": True`` draws the training tasks uniformly (without
      replacement) from the *whole* task space instead, independently of the test tasks, so a
      test task may also be a training task (one reading of the MESA paper's Sec. 6.2, "ten
      training tasks and three different test tasks"; its App. B.1.1 asks for test tasks
      "different from the training tasks", the default). ``results.json`` records per seed
      and test task whether it is also a training task (``test_in_train``);
      ``{"train": {...}, "test": {...}}``: keyword arguments of two calls of
      the env's ``sample_tasks`` (e.g. populations, difficulty ranges);
      ``{"train_tasks": [...], "test_tasks": [...]}``: explicit ``make_task`` keyword dicts,
      the same for every seed (``n_train``/``n_test`` must match their lengths); ``{}``: the
      env's ``split_tasks(key, n_train, n_test)``.

    Metric of Eq. 6: ``action_weight`` scales the actions, ``obs_scale`` (``{"start:stop":
    weight}``) slices of every agent's flat observation (:func:`joint_features`). The radius is
    ``eps``, or, with ``eps_quantile = q``, chosen per seed from the training tasks alone after
    collection: the ``q``-quantile of the distance from each stored pair to the nearest pair of
    another training task (:func:`metajax.algos.mesa.core.radius_from_training`; ``results.json``
    records it as ``eps_per_seed``).

    Learners: ``maddpg`` is the off-policy learner ``f`` of meta-testing; ``collect`` (default:
    ``maddpg``) the per-task learner of the data collection; ``explorer`` (default: ``maddpg``)
    the exploration policies and the pretrained baselines (its ``num_envs`` parallel games
    cycle over the training tasks, so it must be ``>= n_train``).

    ``xla_fast``: compile the training chunks too at XLA's cheap optimisation level (faster
    compiles, slower steps: for tiny configs and tests, where compilation dominates).

    ``allow_nonfinite``: by default a chunk of any stage whose metrics hold a NaN or an infinity
    stops the run (:class:`metajax.train.loop.NonFiniteError`, exit status 3 from the CLI; finished
    stages stay checkpointed for ``--resume``); ``True`` logs one warning per stage instead.

    Budgets in env steps (per learner): ``collect_steps`` per training task,
    ``explorer_steps`` per exploration policy, ``pretrain_steps`` (default
    ``num_explorers * explorer_steps``, MESA's meta-training budget) for the pretrained
    baselines, ``test_steps`` per test task.
    """

    name: str = "mesa"
    env: str = "climb"
    env_config: dict = dataclasses.field(default_factory=dict)
    n_train: int = 10
    n_test: int = 3
    split: dict = dataclasses.field(default_factory=dict)
    maddpg: MADDPGConfig = dataclasses.field(default_factory=MADDPGConfig)
    collect: MADDPGConfig | None = None
    explorer: MADDPGConfig | None = None
    # stage 1: high-reward subspace
    collect_steps: int = 3_000
    threshold: float = 1.0
    relabel_gamma: float = 0.05
    relabel_window: int | None = None
    dataset_capacity: int = 512
    action_weight: float = 1.0
    obs_scale: dict = dataclasses.field(default_factory=dict)
    num_clusters: int = 16
    kmeans_iters: int = 50
    # stage 2: exploration policies
    num_explorers: int = 4
    explorer_steps: int = 10_000
    eps: float = 0.5
    eps_quantile: float | None = None
    decay_power: float = 5.0
    count_episodes: int = 8
    count_outside: bool = False
    # stage 3: meta-testing
    test_steps: int = 50_000
    p_start: float = 1.0
    p_end: float = 0.0
    anneal_steps: int = 25_000
    anneal_kind: str = "linear"
    bc_steps: int = 0
    bc_lr: float = 1e-3
    pretrain_steps: int | None = None
    methods: tuple[str, ...] = METHODS
    zero_shot: bool = True
    coverage_episodes: int = 256
    eval_episodes: int = 10
    eval_every: int = 4
    chunk_updates: int = 250
    xla_fast: bool = False
    allow_nonfinite: bool = False
    seed: int = 0
    seeds: int = 3

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got "
                             f"{self.methods!r}")
        for f in ("n_train", "n_test", "seeds", "num_explorers", "num_clusters",
                  "dataset_capacity", "chunk_updates", "eval_episodes", "count_episodes"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")
        for f in ("collect_steps", "explorer_steps", "test_steps", "anneal_steps"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")
        if not 0.0 <= self.p_end <= 1.0 or not 0.0 <= self.p_start <= 1.0:
            raise ValueError("p_start and p_end must be in [0, 1]")
        if self.anneal_kind not in mc.SCHEDULES:
            raise ValueError(f"anneal_kind must be one of {tuple(mc.SCHEDULES)}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        parse_obs_scale(self.obs_scale)
        if self.eps_quantile is not None and not 0.0 < self.eps_quantile <= 1.0:
            raise ValueError(f"eps_quantile must be in (0, 1], got {self.eps_quantile}")
        if self.explorer_config.num_envs < self.n_train:
            raise ValueError(
                f"explorer.num_envs={self.explorer_config.num_envs} < n_train={self.n_train}: "
                "each parallel game of an exploration policy plays one training task, so "
                "every training task needs one (raise explorer.num_envs)")
        if {"pretrain", "goal"} & set(self.methods):
            # the pretrained networks (explorer config) initialise the meta-test learner
            arch = ("actor", "critic", "hidden", "num_heads", "head_dim", "embed_dim",
                    "critic_hidden", "gru_hidden", "param_sharing")
            diff = [f for f in arch
                    if getattr(self.explorer_config, f) != getattr(self.maddpg, f)]
            if diff:
                raise ValueError(f"the pretrain/goal baselines need the explorer and maddpg "
                                 f"networks to match; they differ in {diff}")
        bad = set(self.split) - {"test_filter", "overlap", "train", "test", "train_tasks",
                                 "test_tasks"}
        if bad:
            raise ValueError(f"unknown split keys {sorted(bad)}; use test_filter (with "
                             "optional overlap), train/test or train_tasks/test_tasks")
        if "overlap" in self.split:
            if not isinstance(self.split["overlap"], bool):
                raise ValueError(f"split.overlap must be True or False, got "
                                 f"{self.split['overlap']!r}")
            if "test_filter" not in self.split:
                raise ValueError("split.overlap only applies to split.test_filter")
        for key, n in (("train_tasks", self.n_train), ("test_tasks", self.n_test)):
            if key in self.split and len(self.split[key]) != n:
                raise ValueError(f"split.{key} lists {len(self.split[key])} tasks, but "
                                 f"n_{key.split('_')[0]}={n}")

    @property
    def collect_config(self) -> MADDPGConfig:
        return self.collect or self.maddpg

    @property
    def explorer_config(self) -> MADDPGConfig:
        return self.explorer or self.maddpg

    @property
    def pretrain_budget(self) -> int:
        if self.pretrain_steps is not None:
            return self.pretrain_steps
        return self.num_explorers * self.explorer_steps


# --- tasks ----------------------------------------------------------------------------------


def _take(tree: Any, idx: Any) -> Any:
    return jax.tree.map(lambda x: jnp.asarray(x)[jnp.asarray(idx)], tree)


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
            return _take(space, train), _take(space, test)
        pool = np.concatenate([rest, np.setdiff1d(cand, test)])
        if len(pool) < cfg.n_train:
            raise ExperimentError(f"only {len(pool)} tasks left for training, need "
                                  f"{cfg.n_train}")
        train = rng.permutation(pool)[: cfg.n_train]
        return _take(space, train), _take(space, test)
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


def _tile(task: Any, n: int) -> Any:
    """``[n]`` copies of one (unbatched) task."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), task)


def _cycle(tasks: Any, n: int) -> Any:
    """``[n]`` games cycling over a ``[B]`` stack of tasks."""
    b = jax.tree.leaves(tasks)[0].shape[0]
    return _take(tasks, jnp.arange(n) % b)


# --- joint (state, action) features ---------------------------------------------------------


def parse_obs_scale(obs_scale: dict) -> tuple[tuple[int, int, float], ...]:
    """``{"start:stop": weight}`` (``MESAConfig.obs_scale``) as sorted ``(start, stop,
    weight)`` slices of an agent's flat observation; raises ``ValueError`` naming a bad key."""
    out = []
    for key, w in obs_scale.items():
        parts = str(key).split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"obs_scale key {key!r} must be 'start:stop' (two integers)")
        a, b = int(parts[0]), int(parts[1])
        if a >= b:
            raise ValueError(f"obs_scale key {key!r}: start must be below stop")
        out.append((a, b, float(w)))
    out.sort()
    for (_, b0, _), (a1, _, _) in itertools.pairwise(out):
        if a1 < b0:
            raise ValueError(f"obs_scale slices overlap: {sorted(obs_scale)}")
    return tuple(out)


def joint_features(obs: Observation, action: Array, action_weight: float = 1.0,
                   obs_scale: tuple[tuple[int, int, float], ...] = ()) -> Array:
    """The joint (state, action) vector of one game: ``[A * (d_obs + d)]`` float32.

    ``obs`` ``[A, ...]`` (every agent's padded flat view ``[A, d_obs]``), ``action`` ``[A, d]``
    (the critic's action), both zeroed for padded agents; actions scaled by
    ``action_weight``; the observation features ``start:stop`` of every agent scaled by
    ``weight`` for each slice of ``obs_scale`` (:func:`parse_obs_scale`), e.g. the stage
    one-hot of the multi-stage climb game, so that the same joint action at two stages is more
    than ``eps`` apart.
    """
    mask = obs.agent_mask[:, None].astype(jnp.float32)
    flat = obs.flat
    if obs_scale:
        if obs_scale[-1][1] > flat.shape[-1]:
            raise ValueError(f"obs_scale slice {obs_scale[-1][:2]} is beyond the "
                             f"{flat.shape[-1]} observation features")
        w = np.ones(flat.shape[-1], np.float32)
        for a, b, v in obs_scale:
            w[a:b] = v
        flat = flat * w
    a = action.reshape(action.shape[0], -1) * mask * action_weight
    return jnp.concatenate([flat.reshape(-1), a.reshape(-1)]).astype(jnp.float32)


def features(cfg: MESAConfig, obs: Observation, action: Array) -> Array:
    """:func:`joint_features` with ``cfg``'s ``action_weight`` and ``obs_scale``: the one
    metric of ``M_*``, the coverage reward, the visit counts and the diagnostics."""
    return joint_features(obs, action, cfg.action_weight, parse_obs_scale(cfg.obs_scale))


def shared_reward(reward: Array, mask: Array) -> Array:
    """The team reward of a cooperative game: mean over the game's agents (``[..., A] ->
    [...]``)."""
    m = mask.astype(jnp.float32)
    return jnp.sum(reward * m, -1) / jnp.maximum(jnp.sum(m, -1), 1.0)


# --- stage 1: the high-reward dataset -------------------------------------------------------


@struct.dataclass
class CollectAux:
    """Carried by the collecting learner (one training task, ``N`` parallel games).

    * ``ds``: this task's ``M_*`` (capacity ``C``);
    * ``sa`` ``[R, N, D]``, ``reward`` ``[R, N]``, ``done`` ``[R, N]``: the latest rollout of
      ``R`` steps (written by the reward hook, flushed into ``ds`` after the rollout);
    * ``t``: ``[]`` int32 step within the rollout; ``key``: reservoir sampling key.
    """

    ds: mc.HighRewardDataset
    sa: Array
    reward: Array
    done: Array
    t: Array
    key: Array


def collect_hooks(cfg: MESAConfig, n_envs: int, steps: int, dim: int) -> RolloutHooks:
    """Hooks that record each rollout's joint features, shared rewards and episode ends."""

    def init(key: Array, games: Any) -> CollectAux:
        del games
        return CollectAux(
            ds=mc.dataset_init(cfg.dataset_capacity, dim),
            sa=jnp.zeros((steps, n_envs, dim)), reward=jnp.zeros((steps, n_envs)),
            done=jnp.zeros((steps, n_envs), bool), t=jnp.zeros((), jnp.int32), key=key)

    def reward(aux: CollectAux, obs: Observation, action: Array, ts: Any):
        sa = jax.vmap(functools.partial(features, cfg))(obs, action)
        r = shared_reward(ts.reward, obs.agent_mask)
        t = aux.t % steps
        aux = aux.replace(sa=aux.sa.at[t].set(sa), reward=aux.reward.at[t].set(r),
                          done=aux.done.at[t].set(ts.done), t=aux.t + 1)
        return ts.reward, aux

    def metrics(aux: CollectAux) -> dict:
        return {"dataset_size": jnp.sum(aux.ds.mask), "dataset_offered": aux.ds.count}

    return RolloutHooks(init=init, reward=reward, metrics=metrics)


def flush_rollout(aux: CollectAux, cfg: MESAConfig) -> CollectAux:
    """Add the recorded rollout's valuable pairs and relabelled predecessors to ``M_*``
    (:func:`metajax.algos.mesa.core.dataset_keep`; values from Eq. 5). Relabelling looks ahead only
    within the rollout, so a rollout of whole episodes is exact (a predecessor more than a
    rollout away from its valuable pair would get ``gamma^(t'-t) ~ 0`` anyway)."""
    r, done = aux.reward.T, aux.done.T  # [N, R]
    done = done.at[:, -1].set(True)  # nothing beyond this rollout is known
    keep = jax.vmap(lambda rr, dd: mc.dataset_keep(rr, cfg.threshold, dd, cfg.relabel_window))(
        r, done)
    value = jax.vmap(lambda rr, dd: mc.relabel_rewards(rr, cfg.relabel_gamma, dd))(r, done)
    sa = jnp.swapaxes(aux.sa, 0, 1)  # [N, R, D]
    key, k_add = jax.random.split(aux.key)
    ds = mc.dataset_add(aux.ds, sa.reshape(-1, sa.shape[-1]), keep.reshape(-1), k_add,
                        value.reshape(-1))
    return aux.replace(ds=ds, t=jnp.zeros((), jnp.int32), key=key)


# --- stage 2: coverage reward ---------------------------------------------------------------


@struct.dataclass
class CoverageAux:
    """Carried by an exploration policy in training (``N`` parallel games).

    * ``ds``: ``M_*`` (the union over training tasks); ``centers`` ``[K, D]``: its k-means;
    * ``global_counts`` ``[K]``: ``N_hat``; ``counts`` ``[N, K]``: each game's trajectory
      count ``N``, reset to ``N_hat`` when its episode ends;
    * ``reward_ema``, ``inside_ema``: ``[]`` running means of the coverage reward and of the
      fraction of visits within ``eps`` of ``M_*`` (metrics); ``eps``: ``[]`` the radius.
    """

    ds: mc.HighRewardDataset
    centers: Array
    global_counts: Array
    counts: Array
    reward_ema: Array
    inside_ema: Array
    eps: Array


def scan_chunk(rows: int, dim: int) -> int:
    """Rows of ``M_*`` compared at once with ``rows`` pairs of ``dim`` features: at most 256
    (so that :func:`metajax.algos.mesa.core.nearest` skips the empty part of a large capacity) and
    ``[rows, chunk, dim]`` near 64 MB at most (one chunk of the whole capacity needed 109 GB for
    the 2A6L MPE zero-shot stage)."""
    return max(1, min(256, (1 << 24) // max(1, rows * dim)))


def coverage_step(aux: CoverageAux, sa: Array, done: Array,
                  power: float) -> tuple[Array, CoverageAux]:
    """:func:`metajax.algos.mesa.core.coverage_step` (Eq. 6, radius ``aux.eps``) on the carried
    state of ``N`` games: ``sa [N, D]`` visited pairs, ``done [N]`` episode ends after this step.
    Returns ``(reward [N], aux)`` with the counts advanced and the running metrics updated."""
    r, inside, counts = mc.coverage_step(aux.ds, aux.centers, aux.counts, aux.global_counts,
                                         sa, done, aux.eps, power, scan_chunk(*sa.shape))
    rate = 0.01
    return r, aux.replace(
        counts=counts,
        reward_ema=(1 - rate) * aux.reward_ema + rate * jnp.mean(r),
        inside_ema=(1 - rate) * aux.inside_ema + rate * jnp.mean(inside.astype(jnp.float32)))


def coverage_hooks(cfg: MESAConfig, n_envs: int, capacity: int, dim: int) -> RolloutHooks:
    """Hooks replacing the env reward by the coverage reward (the state of ``M_*``, the hash
    and ``N_hat`` is set after ``init``)."""

    def init(key: Array, games: Any) -> CoverageAux:
        del key, games
        k = cfg.num_clusters
        return CoverageAux(
            ds=mc.dataset_init(capacity, dim), centers=jnp.zeros((k, dim)),
            global_counts=jnp.zeros((k,), jnp.int32), counts=jnp.zeros((n_envs, k), jnp.int32),
            reward_ema=jnp.zeros(()), inside_ema=jnp.zeros(()),
            eps=jnp.asarray(cfg.eps, jnp.float32))

    def reward(aux: CoverageAux, obs: Observation, action: Array, ts: Any):
        sa = jax.vmap(functools.partial(features, cfg))(obs, action)
        r, aux = coverage_step(aux, sa, ts.done, cfg.decay_power)
        return r[:, None] * obs.agent_mask.astype(jnp.float32), aux

    def metrics(aux: CoverageAux) -> dict:
        return {"coverage_reward": aux.reward_ema, "in_subspace": aux.inside_ema}

    return RolloutHooks(init=init, reward=reward, metrics=metrics)


# --- stage 3: exploration during meta-testing -----------------------------------------------


@struct.dataclass
class ExploreAux:
    """Carried by the meta-test learner (``N`` parallel games).

    * ``params``: the ``E`` exploration policies' actor parameters, stacked ``[E, ...]``;
    * ``mode``: ``[]`` int32, 0 = the learner always acts, 1 = MESA's explorers, 2 = uniformly
      random actions (the random-exploration baseline);
    * ``who``: ``[N]`` int32, who plays the current episode (-1 the learner, else the explorer);
    * ``fresh``: ``[N]`` bool, the next step starts an episode; ``carry`` ``[N, A, h]``: the
      explorer's recurrent state; ``explore_ema``: ``[]`` running fraction of explored steps.
    """

    params: Any
    mode: Array
    who: Array
    fresh: Array
    carry: Array
    explore_ema: Array


def random_action(space: ActionSpace, key: Array, n_agents: int) -> tuple[Array, Array]:
    """A uniformly random joint action: ``(env action [A, ...], critic action [A, d])``."""
    if space.kind == "discrete":
        idx = jax.random.randint(key, (n_agents,), 0, space.dim, jnp.int32)
        return idx, jax.nn.one_hot(idx, space.dim)
    if space.kind == "relaxed":
        y = gumbel_softmax(key, jnp.zeros((n_agents, space.dim)))
        return y.reshape((n_agents, *space.env_shape)), y
    a = jax.random.uniform(key, (n_agents, space.dim), minval=-1.0, maxval=1.0)
    return a.reshape((n_agents, *space.env_shape)), a


def exploration_hooks(cfg: MESAConfig, explorer: Learner, space: ActionSpace, n_envs: int,
                      n_agents: int, carry_dim: int, example_params: Any) -> RolloutHooks:
    """Alg. 2 as a behaviour hook: per game and episode, an explorer plays w.p. ``p_e``."""
    e = cfg.num_explorers

    def init(key: Array, games: Any) -> ExploreAux:
        del key, games
        return ExploreAux(
            params=example_params, mode=jnp.zeros((), jnp.int32),
            who=jnp.full((n_envs,), -1, jnp.int32), fresh=jnp.ones((n_envs,), bool),
            carry=jnp.zeros((n_envs, n_agents, carry_dim)), explore_ema=jnp.zeros(()))

    def act(aux: ExploreAux, obs: Observation, key: Array, env_steps: Array,
            env_a: Array, critic_a: Array):
        k_p, k_who, k_act, k_rand = jax.random.split(key, 4)
        p_e = mc.anneal(env_steps, cfg.p_start, cfg.p_end, cfg.anneal_steps, cfg.anneal_kind)
        explore = (jax.random.uniform(k_p, (n_envs,)) < p_e) & (aux.mode > 0)
        pick = jax.random.randint(k_who, (n_envs,), 0, e, jnp.int32)
        who = jnp.where(aux.fresh, jnp.where(explore, pick, -1), aux.who)
        carry = jnp.where(aux.fresh[:, None, None], 0.0, aux.carry)

        def one(w, o, c, k):
            p = jax.tree.map(lambda x: x[jnp.clip(w, 0, e - 1)], aux.params)
            return explorer.act(p, o, c, k, False)

        ex_env, ex_critic, new_carry = jax.vmap(one)(
            who, obs, carry, jax.random.split(k_act, n_envs))
        r_env, r_critic = jax.vmap(lambda k: random_action(space, k, n_agents))(
            jax.random.split(k_rand, n_envs))
        use_random = aux.mode == 2
        ex_env = jnp.where(use_random, r_env, ex_env)
        ex_critic = jnp.where(use_random, r_critic, ex_critic)
        on = who >= 0

        def sel(a, b):
            return jnp.where(on.reshape(on.shape + (1,) * (a.ndim - 1)), a, b)

        rate = 0.01
        aux = aux.replace(who=who, fresh=jnp.zeros_like(aux.fresh), carry=new_carry,
                          explore_ema=(1 - rate) * aux.explore_ema
                          + rate * jnp.mean(on.astype(jnp.float32)))
        return sel(ex_env, env_a), sel(ex_critic, critic_a), aux

    def reward(aux: ExploreAux, obs: Observation, action: Array, ts: Any):
        del obs, action
        return ts.reward, aux.replace(fresh=ts.done)

    def metrics(aux: ExploreAux) -> dict:
        return {"explored": aux.explore_ema}

    return RolloutHooks(init=init, act=act, reward=reward, metrics=metrics)


# --- evaluation -----------------------------------------------------------------------------


@struct.dataclass
class EpisodeStats:
    """One played episode (``T`` steps, padded after its end): ``reward`` ``[T]`` shared
    reward, ``alive`` ``[T]`` bool (step within the episode), ``sa`` ``[T, D]`` joint
    features, ``actions`` ``[T, A]`` (discrete envs) or ``[T, A, d]`` critic actions."""

    reward: Array
    alive: Array
    sa: Array
    actions: Array


def make_player(env: MultiAgentEnv, learner: Learner, cfg: MESAConfig,
                random_policy: bool = False) -> Callable[..., EpisodeStats]:
    """``play(params, task, key, greedy) -> EpisodeStats`` for one episode (no auto-reset)."""
    space = ActionSpace.of(env)
    n_agents, steps = env.max_agents, env.episode_length
    carry0 = jnp.zeros_like(learner.initial_carry())

    def play(params: Any, task: Any, key: Array, greedy: bool | Array) -> EpisodeStats:
        k_reset, k_run = jax.random.split(key)
        state, ts = env.reset_to(k_reset, task)

        def body(c, k):
            state, obs, carry, alive = c
            if random_policy:
                env_a, critic_a = random_action(space, k, n_agents)
            else:
                env_a, critic_a, carry = learner.act(params, obs, carry, k, greedy)
            sa = features(cfg, obs, critic_a)
            state, ts = env.step(state, env_a)
            r = shared_reward(ts.reward, obs.agent_mask)
            out = EpisodeStats(reward=jnp.where(alive, r, 0.0), alive=alive, sa=sa,
                               actions=env_a)
            return (state, ts.observation, carry, alive & ~ts.done), out

        init = (state, ts.observation, carry0, jnp.asarray(True))
        _, stats = jax.lax.scan(body, init, jax.random.split(k_run, steps))
        return stats

    return play


def task_metrics(env: MultiAgentEnv, learner: Learner, cfg: MESAConfig,
                 play: Callable[..., EpisodeStats]) -> Callable[..., dict]:
    """``metrics(params, task, key) -> {name: []}`` of a trained learner on one task:

    * ``greedy_return`` / ``stochastic_return``: mean undiscounted shared return per episode;
    * ``high_reward``: transitions with reward ``>= R*`` per stochastic episode (Fig. 7);
      ``zero_shot`` (config): also measure it for each exploration policy and for uniformly
      random actions on the test tasks before meta-testing (Fig. 7, left);
    * ``optimal_value`` and ``optimal_found`` (greedy return reaches it) where the env knows
      its optimum (climb games); ``nash_conv`` of the learned mixed joint policy (one-step
      climb game: ``softmax`` of the actors' logits, the distribution of Gumbel-max actions).
    """
    n = cfg.eval_episodes
    opt_fn = getattr(env, "optimal_value", None) or getattr(env, "optimal_return", None)
    nash_fn = getattr(env, "nash_conv", None)

    def metrics(params: Any, task: Any, key: Array) -> dict:
        k_g, k_s = jax.random.split(key)
        many = jax.vmap(play, (None, None, 0, None))
        g = many(params, task, jax.random.split(k_g, n), True)
        s = many(params, task, jax.random.split(k_s, n), False)
        out = {
            "greedy_return": jnp.mean(jnp.sum(g.reward, -1)),
            "stochastic_return": jnp.mean(jnp.sum(s.reward, -1)),
            "high_reward": jnp.mean(jnp.sum((s.reward >= cfg.threshold) & s.alive, -1)),
        }
        if callable(opt_fn):
            opt = opt_fn(task)
            out["optimal_value"] = opt
            out["optimal_found"] = (out["greedy_return"] >= opt - 1e-4).astype(jnp.float32)
        if callable(nash_fn) and env.episode_length == 1:
            _, ts = env.reset_to(k_g, task)
            logits, _ = learner.outputs(params, ts.observation, jnp.zeros_like(
                learner.initial_carry()))
            out["nash_conv"] = nash_fn(task, jax.nn.softmax(logits, -1))
        return out

    return metrics


# --- generic chunked stage runner -----------------------------------------------------------


def _nest(fn: Callable, levels: int, in_axes: tuple) -> Callable:
    for _ in range(levels):
        fn = jax.vmap(fn, in_axes=in_axes)
    return fn


def _chunk_fn(update: Callable, chunk: int, levels: int, fast: bool = False) -> Callable:
    """``jit(vmap^levels(scan(update)))``: ``(state, c) -> (state, metrics [..., chunk])``;
    ``fast``: compiled at XLA's cheap optimisation level (:data:`metajax.train.loop.ONCE`)."""

    def one(state: Any, c: Array) -> tuple[Any, dict]:
        ts = c * chunk + jnp.arange(chunk)
        return jax.lax.scan(lambda s, t: update(s, t), state, ts)

    return jax.jit(_nest(one, levels, (0, None)), donate_argnums=0,
                   compiler_options=ONCE if fast else None)


class _Log:
    """Progress lines and per-stage ``metrics_<stage>.jsonl`` files of a MESA run."""

    def __init__(self, run_dir: Path, log: Callable[[str], None]):
        self.run_dir, self.log = run_dir, log
        self.t0 = time.perf_counter()

    def path(self, stage: str) -> Path:
        return self.run_dir / f"metrics_{stage}.jsonl"

    def row(self, stage: str, row: dict) -> None:
        with self.path(stage).open("a") as f:
            f.write(json.dumps(row) + "\n")

    def say(self, text: str) -> None:
        self.log(f"[{time.perf_counter() - self.t0:7.1f}s] {text}")


def _per_seed(m: dict) -> dict:
    """Chunk metrics ``[S, ..., U]`` -> per-seed lists (mean over inner axes, last update for
    counters and returns, mean over updates for losses)."""
    out = {}
    for k, v in m.items():
        v = np.asarray(v, np.float64)
        v = v[..., -1] if k in ("env_steps", "grad_steps", "episode_return", "dataset_size",
                               "dataset_offered", "coverage_reward", "in_subspace",
                               "explored") else v.mean(-1)
        out[k] = v.reshape(v.shape[0], -1).mean(-1).tolist()
    return out


def _run_stage(log: _Log, stage: str, step: Callable, state: Any, n_updates: int, chunk: int,
               steps_per_update: int,
               after: Callable[[Any, int], tuple[Any, dict]] | None = None,
               allow_nonfinite: bool = False) -> Any:
    """Run ``ceil(n_updates / chunk)`` chunks of the compiled ``step``; log every chunk.
    ``after(state, chunks_done) -> (state, extra metrics)`` runs on the host between chunks.

    A chunk whose float metrics (``[S, ...]``) hold a NaN or an infinity raises
    :class:`metajax.train.loop.NonFiniteError` before its row is logged or its state kept (the
    stage's checkpoint is written only after the stage), unless ``allow_nonfinite``: then one
    warning is logged and the stage goes on."""
    n_chunks = max(1, math.ceil(n_updates / chunk))
    log.path(stage).write_text("")
    t0 = time.perf_counter()
    warned = False
    for c in range(n_chunks):
        state, m = step(state, jnp.int32(c))
        m = jax.device_get(m)
        bad = nonfinite_metrics(m)
        if bad:
            seeds = len(np.asarray(next(iter(m.values()))))
            msg = f"MESA stage {stage}: " + nonfinite_report(bad, np.ones(seeds, bool), c + 1,
                                                            n_chunks)
            if not allow_nonfinite:
                raise NonFiniteError(f"{msg}; the finished stages are checkpointed (--resume "
                                     "continues from them; --allow-nonfinite goes on)")
            if not warned:
                log.say(f"warning: {msg} (allow_nonfinite: going on)")
                warned = True
        row = {"stage": stage, "chunk": c + 1, **_per_seed(m)}
        if after is not None:
            state, more = after(state, c + 1)
            row.update(more)
        log.row(stage, row)
        if (c + 1) % max(1, n_chunks // 4) == 0 or c + 1 == n_chunks:
            ret = np.mean(row["episode_return"])
            log.say(f"{stage}: chunk {c + 1}/{n_chunks}, {(c + 1) * chunk * steps_per_update:,} "
                    f"env steps per learner, return {ret:.3f}"
                    + (f", greedy {np.mean(row['greedy_return']):.3f}"
                       if "greedy_return" in row else "")
                    + f" ({time.perf_counter() - t0:.0f}s)")
    return state


# --- the pipeline ---------------------------------------------------------------------------


@dataclasses.dataclass
class MESAResult:
    """What :func:`run_mesa` returns: ``results`` (also in ``results.json``) and the run
    directory."""

    results: dict
    run_dir: Path


#: :class:`MESAConfig` fields that may change on ``--resume`` (they do not change what is
#: trained).
RESUMABLE_FIELDS = ("allow_nonfinite",)


def _defaults(cls: type) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def config_changes(saved: dict, current: dict, cls: type | None = None) -> list[str]:
    """Dotted names of the :class:`MESAConfig` fields (``cls``) whose value in ``current``
    differs from ``saved`` (both ``to_dict`` form). A field missing from ``saved`` (added to
    metajax after the run was written) counts as unchanged when ``current`` holds its default,
    so old runs stay resumable."""
    cls = MESAConfig if cls is None else cls
    defaults = _defaults(cls)
    out = []
    for k in sorted(set(saved) | set(current)):
        if k not in saved:
            if k not in defaults or json.loads(json.dumps(defaults[k], default=str)) != current[k]:
                out.append(k)
        elif k in ("maddpg", "collect", "explorer") and isinstance(saved[k], dict) and (
                isinstance(current.get(k), dict)):
            out += [f"{k}.{c}" for c in config_changes(saved[k], current[k], MADDPGConfig)]
        elif saved[k] != current.get(k):
            out.append(k)
    return out


class _Stages:
    """Orbax checkpoints of finished stages under ``run_dir/stages/<name>``."""

    def __init__(self, run_dir: Path, config: dict):
        self.root, self.config = run_dir / "stages", config

    def has(self, name: str) -> bool:
        return (self.root / name / "checkpoints").is_dir() and Checkpointer(
            self.root / name).latest_step() is not None

    def save(self, name: str, tree: Any, meta: dict | None = None) -> None:
        ck = Checkpointer(self.root / name, max_to_keep=1)
        ck.save(0, tree, self.config, meta or {})
        ck.close()

    def load(self, name: str, like: Any) -> tuple[Any, dict]:
        ck = Checkpointer(self.root / name, max_to_keep=1)
        try:
            saved, _ = ck.read_config()
            changed = [c for c in config_changes(saved.get("algo_config", {}),
                                                 self.config["algo_config"])
                       if c not in RESUMABLE_FIELDS]
            if changed or saved.get("pipeline") != self.config["pipeline"]:
                raise CheckpointError(f"{self.root / name} was written by a different config "
                                      f"(changed: {', '.join(changed) or 'pipeline'})")
            tree, _, meta = ck.restore(abstract_like(like))
        finally:
            ck.close()
        return tree, meta


def _resumed_time(results: dict, key: str, meta: dict) -> None:
    """A stage reloaded on resume keeps the wall-clock it took when it ran (stages saved
    before this was recorded have none)."""
    if "seconds" in meta:
        results["timing"][key] = meta["seconds"]


def _hits(play: Callable[..., EpisodeStats], cfg: MESAConfig) -> Callable[..., Array]:
    """``hits(params, task, key) -> [2]``: over ``eval_episodes`` stochastic episodes, the
    mean number of transitions with reward ``>= R*`` per episode and the mean return."""

    def hits(params: Any, task: Any, key: Array) -> Array:
        st = jax.vmap(play, (None, None, 0, None))(
            params, task, jax.random.split(key, cfg.eval_episodes), False)
        return jnp.stack([jnp.mean(jnp.sum((st.reward >= cfg.threshold) & st.alive, -1)),
                          jnp.mean(jnp.sum(st.reward, -1))])

    return hits


def _test_coverage(play: Callable[..., EpisodeStats], cfg: MESAConfig) -> Callable[..., Any]:
    """``(ds, task, key) -> (inside [], total [])``: of the high-reward pairs that
    ``coverage_episodes`` random episodes of a test task meet, how many lie within ``eps`` of
    ``M_*`` (does the meta-trained subspace contain the test task's high-reward pairs?)."""

    def cover(ds: mc.HighRewardDataset, task: Any, key: Array,
              eps: Array) -> tuple[Array, Array]:
        st = jax.vmap(play, (None, None, 0, None))(
            None, task, jax.random.split(key, cfg.coverage_episodes), False)
        sa = st.sa.reshape(-1, st.sa.shape[-1])
        high = ((st.reward >= cfg.threshold) & st.alive).reshape(-1)
        near = mc.min_distance(ds, sa, scan_chunk(*sa.shape)) < eps
        return jnp.sum(high & near), jnp.sum(high)

    return cover


def feature_dim(cfg: MESAConfig, env: MultiAgentEnv, task: Any) -> int:
    """``D``, the size of :func:`features` of ``env`` (one unbatched ``task``)."""
    obs = jax.eval_shape(lambda k: env.reset_to(k, task)[1].observation, jax.random.PRNGKey(0))
    act = jax.ShapeDtypeStruct((env.max_agents, ActionSpace.of(env).dim), jnp.float32)
    return int(jax.eval_shape(functools.partial(features, cfg), obs, act).shape[0])


def subspace_like(cfg: MESAConfig, dim: int) -> dict:
    """The structure of the ``subspace`` stage checkpoint: ``{"ds": M_* [S] (capacity
    n_train * dataset_capacity), "centers": [S, K, D]}`` (to restore it)."""
    cap = cfg.n_train * cfg.dataset_capacity
    return {"ds": jax.vmap(lambda _: mc.dataset_init(cap, dim))(jnp.arange(cfg.seeds)),
            "centers": jnp.zeros((cfg.seeds, cfg.num_clusters, dim))}


def _updates(steps: int, learner: Learner) -> int:
    return max(1, math.ceil(steps / learner.env_steps_per_update))


def run_mesa(
    cfg: MESAConfig,
    run_dir: str | Path,
    resume: bool = False,
    wandb_mode: str = "disabled",
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> MESAResult:
    """Run MESA and its baselines (``cfg.methods``) into ``run_dir`` (see module docstring).

    ``wandb_mode``/``progress`` are accepted for the CLI; MESA logs progress lines and
    ``metrics_<stage>.jsonl`` files (wandb is not used).
    """
    del wandb_mode, progress
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dict = {"algo_config": to_dict(cfg), "pipeline": "mesa"}
    stages = _Stages(run_dir, config_dict)
    if not resume and stages.root.exists() and any(stages.root.iterdir()):
        raise CheckpointError(f"{run_dir} already holds a MESA run; pass --resume to continue "
                              "it or choose another --out")
    (run_dir / "config.json").write_text(json.dumps(config_dict, indent=1))
    lg = _Log(run_dir, log)
    env = envs.make(cfg.env, **cfg.env_config)
    train, test = seed_task_sets(env, cfg)
    space = ActionSpace.of(env)
    n_agents = env.max_agents
    S, B, K = cfg.seeds, cfg.n_train, cfg.n_test
    lg.say(f"{cfg.name}: env {env!r}, {S} seed(s), {B} training and {K} test tasks per seed, "
           f"methods {', '.join(cfg.methods)}")
    seen = seen_in_training(train, test)  # [S, K]
    results: dict = {"name": cfg.name, "env": cfg.env, "seeds": S, "n_train": B, "n_test": K,
                     "methods": {}, "timing": {}, "test_in_train": seen.tolist(),
                     "tasks": {"train": task_record(train), "test": task_record(test)}}
    if seen.any():
        lg.say(f"{int(seen.sum())} of {seen.size} (seed, test task) pairs are also training "
               "tasks of their seed (split.overlap)")
    base_key = jax.random.PRNGKey(cfg.seed)
    seed_keys = jax.random.split(base_key, S)

    def stage_keys(tag: int) -> Array:
        return jax.vmap(lambda k: jax.random.fold_in(k, tag))(seed_keys)

    dim = feature_dim(cfg, env, _take(_take(train, 0), 0))
    need_explorers = "mesa" in cfg.methods

    # ---- stage 1: high-reward dataset -------------------------------------------------------
    cap_total = B * cfg.dataset_capacity
    like_sub = subspace_like(cfg, dim)
    if need_explorers and resume and stages.has("subspace"):
        sub, meta = stages.load("subspace", like_sub)
        _resumed_time(results, "collect_s", meta)
        if "size_per_task" in meta:
            results["dataset_size_per_task"] = meta["size_per_task"]
        eps_list = meta.get("eps", [cfg.eps] * S)
        lg.say(f"resumed: high-reward subspace ({meta.get('size')} pairs per seed)")
    elif need_explorers:
        t0 = time.perf_counter()
        ccfg = cfg.collect_config
        collector = make_maddpg(ccfg, env, _tile(_take(_take(train, 0), 0), ccfg.num_envs),
                                hooks=collect_hooks(cfg, ccfg.num_envs, ccfg.rollout_steps, dim))

        def c_init(key: Array, task: Any) -> MADDPGState:
            return collector.init(key, _tile(task, ccfg.num_envs))

        def c_update(state: MADDPGState, t: Array):
            state, m = collector.update(state, t)
            return state.replace(aux=flush_rollout(state.aux, cfg)), m

        keys = jax.vmap(lambda k: jax.random.split(k, B))(stage_keys(1))
        state = jax.jit(_nest(c_init, 2, (0, 0)), compiler_options=ONCE)(keys, train)
        n_up = _updates(cfg.collect_steps, collector)
        state = _run_stage(lg, "collect", _chunk_fn(c_update, min(cfg.chunk_updates, n_up), 2,
                                                   cfg.xla_fast),
                           state, n_up, min(cfg.chunk_updates, n_up),
                           collector.env_steps_per_update, allow_nonfinite=cfg.allow_nonfinite)
        ds = jax.vmap(mc.dataset_merge)(state.aux.ds)
        per_task = np.asarray(jnp.sum(state.aux.ds.mask, -1)).tolist()  # [S, B]
        per_task_ds = state.aux.ds  # [S, B] datasets, for eps_quantile
        del state
        fit = jax.jit(jax.vmap(lambda k, d: fit_kmeans(k, d.data, cfg.num_clusters, d.mask,
                                                       cfg.kmeans_iters, 4).centers),
                      compiler_options=ONCE)
        centers = fit(stage_keys(2), ds)
        sub = {"ds": ds, "centers": centers}
        sizes = np.asarray(jnp.sum(ds.mask, -1))
        eps_list = [cfg.eps] * S
        if cfg.eps_quantile is not None:  # from the training tasks' M_* alone
            radius = jax.jit(jax.vmap(lambda d: mc.radius_from_training(
                d, cfg.eps_quantile, scan_chunk(cfg.dataset_capacity, dim))),
                compiler_options=ONCE)
            # a seed where no pair has a neighbour in another task keeps cfg.eps
            eps_list = [e if math.isfinite(e) else cfg.eps
                        for e in np.asarray(radius(per_task_ds)).tolist()]
        del per_task_ds
        results["timing"]["collect_s"] = round(time.perf_counter() - t0, 1)
        stages.save("subspace", sub, {"size": sizes.tolist(), "size_per_task": per_task,
                                      "eps": eps_list,
                                      "seconds": results["timing"]["collect_s"]})
        results["dataset_size_per_task"] = per_task
        lg.say(f"M_*: {sizes.tolist()} pairs per seed (capacity {cap_total}); "
               f"k-means with {cfg.num_clusters} clusters")
    if need_explorers:
        results["dataset_size"] = np.asarray(jnp.sum(sub["ds"].mask, -1)).tolist()
        results["eps_per_seed"] = eps_list
        eps_seed = jnp.asarray(eps_list, jnp.float32)  # [S]
        if cfg.eps_quantile is not None:
            lg.say(f"eps from the training tasks (quantile {cfg.eps_quantile}): "
                   f"{[round(e, 3) for e in eps_list]}")

    # ---- stage 2: exploration policies ------------------------------------------------------
    ecfg = cfg.explorer_config
    e_games = jax.vmap(lambda t: _cycle(t, ecfg.num_envs))(train)  # [S, N]
    explorer = make_maddpg(ecfg, env, _take(e_games, 0),
                           hooks=coverage_hooks(cfg, ecfg.num_envs, cap_total, dim))
    plain_explorer = make_maddpg(ecfg, env, _take(e_games, 0))
    e_play = make_player(env, explorer, cfg)
    e_actor_like = jax.eval_shape(explorer.init, jax.random.PRNGKey(0)).params.actor
    stacked_like = jax.tree.map(
        lambda x: jnp.zeros((S, cfg.num_explorers, *x.shape), x.dtype), e_actor_like)
    counts_like = jnp.zeros((S, cfg.num_clusters), jnp.int32)
    if need_explorers:
        explorer_s = 0.0  # summed per policy (a resumed policy adds its recorded time)
        e_init = jax.jit(jax.vmap(explorer.init), compiler_options=ONCE)
        e_chunk = None
        n_up = _updates(cfg.explorer_steps, explorer)
        ex_params = stacked_like
        global_counts = counts_like
        counts_after: list = []  # N_hat after each exploration policy [E][S][K]

        @functools.partial(jax.jit, compiler_options=ONCE)
        def visits(params: Any, sub: dict, gcounts: Array, tasks: Any, key: Array,
                   eps: Array) -> Array:
            """``[K]`` visits (within eps unless count_outside) of one explorer over
            ``count_episodes`` episodes of every training task."""
            def per_task(task, k):
                st = jax.vmap(e_play, (None, None, 0, None))(
                    params, task, jax.random.split(k, cfg.count_episodes), False)
                return st
            st = jax.vmap(per_task)(tasks, jax.random.split(key, B))
            sa = st.sa.reshape(-1, dim)
            alive = st.alive.reshape(-1)
            dist = mc.min_distance(sub["ds"], sa, scan_chunk(*sa.shape))
            ok = alive & ((dist < eps) | cfg.count_outside)
            return mc.update_global(gcounts, mc.visit_counts(
                assign(sub["centers"], sa), cfg.num_clusters, ok))

        for i in range(cfg.num_explorers):
            name = f"explorer{i}"
            if resume and stages.has(name):
                saved, meta = stages.load(name, {"params": stacked_like, "counts": counts_like})
                ex_params, global_counts = saved["params"], saved["counts"]
                counts_after.append(np.asarray(global_counts).tolist())
                # a policy saved before stage times were recorded: the total is unknown
                explorer_s += float(meta.get("seconds", float("nan")))
                lg.say(f"resumed: exploration policy {i}")
                continue
            t0 = time.perf_counter()
            state = e_init(jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(stage_keys(3)),
                           e_games)
            # copies: the chunk donates its input state
            state = state.replace(aux=state.aux.replace(
                ds=jax.tree.map(jnp.copy, sub["ds"]), centers=jnp.copy(sub["centers"]),
                global_counts=jnp.copy(global_counts),
                counts=jnp.broadcast_to(global_counts[:, None, :], state.aux.counts.shape),
                eps=jnp.copy(eps_seed)))
            if e_chunk is None:
                e_chunk = _chunk_fn(explorer.update, min(cfg.chunk_updates, n_up), 1,
                                    cfg.xla_fast)
            state = _run_stage(lg, name, e_chunk, state, n_up, min(cfg.chunk_updates, n_up),
                               explorer.env_steps_per_update,
                               allow_nonfinite=cfg.allow_nonfinite)
            p = state.params.actor
            ex_params = jax.tree.map(lambda s, x, i=i: s.at[:, i].set(x), ex_params, p)
            global_counts = jax.vmap(visits)(p, sub, global_counts, train,
                                             stage_keys(100 + i), eps_seed)
            counts_after.append(np.asarray(global_counts).tolist())
            seconds = round(time.perf_counter() - t0, 1)
            explorer_s += seconds
            stages.save(name, {"params": ex_params, "counts": global_counts},
                        {"seconds": seconds})
            lg.say(f"exploration policy {i}: N_hat covers "
                   f"{np.asarray(global_counts > 0).sum(-1).tolist()} of {cfg.num_clusters} "
                   "clusters per seed")
        if math.isfinite(explorer_s):
            results["timing"]["explorers_s"] = round(explorer_s, 1)
        results["global_counts"] = np.asarray(global_counts).tolist()
        results["global_counts_per_explorer"] = counts_after
        if cfg.zero_shot and resume and stages.has("zero_shot"):
            _, meta = stages.load("zero_shot", {"seed_keys": seed_keys})
            results["zero_shot_high_reward"] = meta["zero_shot"]
        elif cfg.zero_shot:
            # Fig. 7 (left): high-reward transitions per test episode, zero-shot
            tk = jax.vmap(lambda k: jax.random.split(k, K))(stage_keys(4))
            hits = jax.jit(jax.vmap(jax.vmap(jax.vmap(  # seeds, explorers, test tasks
                _hits(e_play, cfg), (None, 0, 0)), (0, None, None))), compiler_options=ONCE)
            rand_play = make_player(env, explorer, cfg, random_policy=True)
            rand_hits = jax.jit(jax.vmap(jax.vmap(_hits(rand_play, cfg), (None, 0, 0)),
                                         (None, 0, 0)), compiler_options=ONCE)
            per, ex_ret = np.moveaxis(np.asarray(hits(ex_params, test, tk)), -1, 0)  # [S, E, K]
            covered = jax.jit(jax.vmap(jax.vmap(
                _test_coverage(rand_play, cfg), (None, 0, 0, None)), (0, 0, 0, 0)),
                compiler_options=ONCE)
            inside, total = (np.asarray(x) for x in covered(sub["ds"], test, tk, eps_seed))
            rand_per, rand_ret = np.moveaxis(np.asarray(rand_hits(None, test, tk)), -1, 0)
            zero_shot = {"explorers": per.mean((0, 2)).tolist(),
                         "random": float(np.mean(rand_per)),
                         "test_pairs_in_subspace": float(inside.sum() / max(total.sum(), 1)),
                         "test_pairs_seen": int(total.sum()),
                         # per seed (and explorer) and test task
                         "explorers_per_task": per.tolist(),
                         "random_per_task": rand_per.tolist(),
                         # the trivial-policy references: return per episode of each
                         # explorer and of a uniformly random policy on the test tasks
                         "explorers_return_per_task": ex_ret.tolist(),
                         "random_return_per_task": rand_ret.tolist(),
                         "test_pairs_inside_per_task": inside.tolist(),
                         "test_pairs_seen_per_task": total.tolist()}
            results["zero_shot_high_reward"] = zero_shot
            stages.save("zero_shot", {"seed_keys": seed_keys}, {"zero_shot": zero_shot})
            lg.say("zero-shot high-reward transitions per test episode: explorers "
                   f"{[round(v, 3) for v in zero_shot['explorers']]}, random "
                   f"{zero_shot['random']:.3f}; of {zero_shot['test_pairs_seen']} high-reward "
                   "pairs of the test tasks met by random play, "
                   f"{zero_shot['test_pairs_in_subspace']:.0%} lie within eps of M_*")
    else:
        ex_params = stacked_like

    # ---- pretrained baselines ---------------------------------------------------------------
    pretrained: dict[str, Any] = {}
    for method, goal in (("pretrain", False), ("goal", True)):
        if method not in cfg.methods:
            continue
        name = f"{method}_meta"
        p_env = GoalObservation(env) if goal else env
        p_learner = make_maddpg(ecfg, p_env, _take(e_games, 0))
        like = jax.eval_shape(jax.vmap(p_learner.init), stage_keys(5)).params
        if resume and stages.has(name):
            pretrained[method], meta = stages.load(name, like)
            _resumed_time(results, f"{name}_s", meta)
            lg.say(f"resumed: {method} policy")
            continue
        t0 = time.perf_counter()
        state = jax.jit(jax.vmap(p_learner.init), compiler_options=ONCE)(stage_keys(5), e_games)
        n_up = _updates(cfg.pretrain_budget, p_learner)
        state = _run_stage(lg, name, _chunk_fn(p_learner.update, min(cfg.chunk_updates, n_up), 1,
                                                 cfg.xla_fast),
                           state, n_up, min(cfg.chunk_updates, n_up),
                           p_learner.env_steps_per_update, allow_nonfinite=cfg.allow_nonfinite)
        pretrained[method] = state.params
        results["timing"][f"{name}_s"] = round(time.perf_counter() - t0, 1)
        stages.save(name, state.params, {"seconds": results["timing"][f"{name}_s"]})

    # ---- stage 3: meta-testing --------------------------------------------------------------
    tcfg = cfg.maddpg
    carry_dim = int(plain_explorer.initial_carry().shape[-1])
    one_explorer_like = jax.tree.map(lambda x: x[0], stacked_like)
    test_hooks = exploration_hooks(cfg, plain_explorer, space, tcfg.num_envs, n_agents,
                                   carry_dim, one_explorer_like)
    hooked = make_maddpg(tcfg, env, _tile(_take(_take(test, 0), 0), tcfg.num_envs),
                         hooks=test_hooks)
    n_up = _updates(cfg.test_steps, hooked)
    chunk = min(cfg.chunk_updates, n_up)
    compiled: dict[str, Any] = {}
    curves: dict[str, list] = {}
    eval_keys = jax.vmap(lambda k: jax.random.split(k, K))(stage_keys(6))

    def program(goal: bool) -> dict:
        """The compiled pieces of a meta-test (one set serves every hooked method)."""
        key_c = "goal" if goal else "hooked"
        if key_c in compiled:
            return compiled[key_c]
        m_env = GoalObservation(env) if goal else env
        learner = (make_maddpg(tcfg, m_env, _tile(_take(_take(test, 0), 0), tcfg.num_envs))
                   if goal else hooked)
        metric_fn = task_metrics(m_env, learner, cfg, make_player(m_env, learner, cfg))
        space_m = ActionSpace.of(m_env)
        compiled[key_c] = {
            "learner": learner,
            "evaluate": jax.jit(_nest(metric_fn, 2, (0, 0, 0)), compiler_options=ONCE),
            "init": jax.jit(_nest(lambda k, task: learner.init(k, _tile(task, tcfg.num_envs)),
                                  2, (0, 0)), compiler_options=ONCE),
            "chunk": _chunk_fn(learner.update, chunk, 2, cfg.xla_fast),
            "bc": jax.jit(_nest(lambda st, k: bc_warmup(
                learner, tcfg, space_m, st, k, cfg.bc_steps, cfg.bc_lr), 2, (0, 0))),
        }
        return compiled[key_c]

    for method in cfg.methods:
        name = f"test_{method}"
        goal = method == "goal"
        if resume and stages.has(name):
            _, meta = stages.load(name, {"seed_keys": seed_keys})
            results["methods"][method] = meta["results"]
            curves[method] = meta.get("curve", [])
            _resumed_time(results, f"{name}_s", meta)
            lg.say(f"resumed: meta-test of {method}")
            continue
        t0 = time.perf_counter()
        prog = program(goal)
        learner, evaluate = prog["learner"], prog["evaluate"]
        keys = jax.vmap(lambda k: jax.random.split(k, K))(stage_keys(7))
        state = prog["init"](keys, test)
        if method in ("pretrain", "goal"):
            # every test task of a seed starts from that seed's pretrained networks
            pre = jax.tree.map(lambda x: jnp.broadcast_to(x[:, None], (S, K, *x.shape[1:])),
                               pretrained[method])
            state = state.replace(params=pre)
        if not goal:
            mode = jnp.full((S, K), _HOOKED[method], jnp.int32)
            params_sk = jax.tree.map(lambda x: jnp.broadcast_to(x[:, None], (S, K, *x.shape[1:])),
                                     ex_params)
            state = state.replace(aux=state.aux.replace(mode=mode, params=params_sk))
        curve: list = []
        if cfg.eval_every:
            g0 = np.asarray(jax.device_get(evaluate(state.params.actor, test, eval_keys))[
                "greedy_return"])
            curve.append([0, g0.mean(1).tolist()])
        bc_done = cfg.bc_steps == 0

        def after(state: Any, c: int, learner=learner, evaluate=evaluate, curve=curve,
                  prog=prog, bc_keys=keys) -> tuple[Any, dict]:
            nonlocal bc_done
            out: dict = {}
            steps_now = c * chunk * learner.env_steps_per_update
            if not bc_done and steps_now >= tcfg.learning_starts:
                # Sec. 6.5: clone the (mostly exploration) behaviour stored so far
                bc_done = True
                state = prog["bc"](state, bc_keys)
                out["bc_warmup"] = cfg.bc_steps
            if cfg.eval_every and (c % cfg.eval_every == 0):
                m = jax.device_get(evaluate(state.params.actor, test, eval_keys))
                g = np.asarray(m["greedy_return"])
                curve.append([steps_now, g.mean(1).tolist()])
                out["greedy_return"] = g.mean(1).tolist()
            return state, out

        state = _run_stage(lg, name, prog["chunk"], state, n_up, chunk,
                           learner.env_steps_per_update, after,
                           allow_nonfinite=cfg.allow_nonfinite)
        m = jax.device_get(evaluate(state.params.actor, test, eval_keys))
        final_steps = n_up * learner.env_steps_per_update
        if cfg.eval_every and (not curve or curve[-1][0] != final_steps):
            curve.append([final_steps, np.asarray(m["greedy_return"]).mean(1).tolist()])
        res = summarize(m)
        results["methods"][method] = res
        curves[method] = curve
        results["timing"][f"{name}_s"] = round(time.perf_counter() - t0, 1)
        stages.save(name, {"seed_keys": seed_keys}, {"results": res, "curve": curve,
                                                     "seconds": results["timing"][f"{name}_s"]})
        if method == "mesa":
            (run_dir / "metrics.jsonl").write_text(lg.path(name).read_text())
        lg.say(f"{method}: " + ", ".join(f"{k} {_cell(v)}"
                                         for k, v in res.items() if isinstance(v, dict)))
        del state

    results["curves"] = curves
    results["comparisons"] = compare_methods(results["methods"])
    for res in results["methods"].values():
        found = found_by_seen(res, seen)
        if found is not None:
            res["found_by_seen"] = found
    results["stats"] = run_stats.stats_block(run_stats.mesa_groups(results))
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    table = results_table(results)
    (run_dir / "results.md").write_text(table)
    try:
        if any(curves.values()):
            plot_curves(curves, run_dir / "curves.png", cfg.name)
    except Exception as e:  # plotting must never lose the results
        print(f"warning: no curves.png: {e}", file=sys.stderr)
    lg.say(f"wrote {run_dir / 'results.md'}\n{table}")
    return MESAResult(results=results, run_dir=run_dir)


def summarize(m: dict) -> dict:
    """Per metric ``[S, K]`` -> the mean over seeds of the per-seed mean over test tasks with
    its 95 % stratified bootstrap CI over seeds (:func:`metajax.stats.interval`; ``ci`` is
    None with one seed), the std over seeds, and the raw values."""
    out: dict = {}
    for k, v in m.items():
        v = np.asarray(v, np.float64)
        per_seed = v.mean(1)
        ci = None
        if v.shape[0] >= 2 and np.all(np.isfinite(v)):
            iv = stats.interval(v, "mean")
            ci = [iv["lo"], iv["hi"]]
        out[k] = {"mean": float(per_seed.mean()), "ci": ci, "std": float(per_seed.std()),
                  "per_seed": per_seed.tolist(), "per_task": v.tolist()}
    return out


#: Metrics compared between methods by :func:`compare_methods`.
COMPARED = ("greedy_return", "optimal_found")


def compare_methods(methods: dict, baseline: str = "maddpg") -> dict:
    """Every method against ``baseline`` over shared seeds (:func:`metajax.stats.paired` on the
    ``[S, K]`` per-task values of each metric of :data:`COMPARED`): ``{method: {metric: {"diff":
    ..., "p_value", "prob_improvement", "verdict"}}}``; empty without the baseline or with
    fewer than 2 seeds."""
    out: dict = {}
    if baseline not in methods:
        return out
    for name, res in methods.items():
        if name == baseline:
            continue
        for metric in COMPARED:
            if metric not in res or metric not in methods[baseline]:
                continue
            a = np.asarray(res[metric]["per_task"], np.float64)
            b = np.asarray(methods[baseline][metric]["per_task"], np.float64)
            if a.shape[0] < 2 or a.shape != b.shape:
                continue
            p = stats.paired(a, b)
            p["verdict"] = stats.verdict(a, b)
            out.setdefault(name, {})[metric] = p
    return out


def _cell(r: dict) -> str:
    if r.get("ci") is None:
        return f"{r['mean']:.3f}"
    return f"{r['mean']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"


def found_by_seen(res: dict, seen: np.ndarray) -> dict | None:
    """The ``optimal_found`` fraction of one method's (seed, test task) runs, overall and
    separately for test tasks that are also training tasks of their seed (``seen [S, K]``)
    and for the others: ``{"all"|"seen"|"unseen": {"found": int, "runs": int,
    "fraction": float | None}}``; None when the env has no optimum."""
    if "optimal_found" not in res:
        return None
    f = np.asarray(res["optimal_found"]["per_task"], np.float64) > 0.5
    out = {}
    for part, sel in (("all", np.ones_like(seen, bool)), ("seen", seen), ("unseen", ~seen)):
        n = int(sel.sum())
        hit = int((f & sel).sum())
        out[part] = {"found": hit, "runs": n, "fraction": hit / n if n else None}
    return out


def _frac(d: dict) -> str:
    return "-" if d["fraction"] is None else f"{d['fraction']:.2f} ({d['found']}/{d['runs']})"


def _task_label(results: dict, s: int, j: int) -> str:
    test = results.get("tasks", {}).get("test", {})
    if "k" not in test or "u" not in test:
        return f"{j}"
    ku = f"k={test['k'][s][j]}, u={test['u'][s][j]}"
    # a one-step climb game is its (k, u); other games (layouts, ...) are more than that
    return ku if results.get("env") == "climb" else f"{j} ({ku})"


def results_table(results: dict) -> str:
    """A markdown table: one row per method, one column per metric (when some test task is
    also a training task, the found fraction on those and on the others), then the greedy
    return per (seed, test task) with whether that task is also a training task."""
    methods = results["methods"]
    if not methods:
        return "(no method was run)\n"
    cols = [c for c in ("greedy_return", "stochastic_return", "optimal_found", "nash_conv",
                        "high_reward", "optimal_value") if c in next(iter(methods.values()))]
    seen = np.asarray(results.get("test_in_train", []), bool)
    split = seen.any() and "optimal_found" in cols
    head = cols + (["found: seen in training", "found: unseen"] if split else [])
    lines = [f"{results['name']}: {results['seeds']} seed(s) x {results['n_test']} test tasks "
             "(mean over seeds of the mean over test tasks, 95 % stratified bootstrap CI "
             "over seeds)", "",
             "| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, res in methods.items():
        cells = [_cell(res[c]) for c in cols]
        if split:
            found = found_by_seen(res, seen)
            cells += [_frac(found["seen"]), _frac(found["unseen"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    comp = results.get("comparisons") or compare_methods(methods)
    if comp:
        lines += ["", "Paired by seed against maddpg (difference of means with its 95 % CI; "
                  "exact sign-flip p over seeds; P(improvement)):", "",
                  "| method | metric | difference | p | P(better) | verdict |",
                  "|---|---|---|---|---|---|"]
        for name, per in comp.items():
            for metric, p in per.items():
                lines.append(f"| {name} | {metric} | {stats.fmt(p['diff'])} | "
                             f"{p['p_value']:.3f} | {p['prob_improvement']:.2f} | "
                             f"{p['verdict']} |")
    if seen.size:
        names = [m for m in methods if "greedy_return" in methods[m]]
        lines += ["", f"Per seed and test task ({int(seen.sum())} of {seen.size} test tasks are "
                  "also training tasks of their seed); greedy return:", "",
                  "| seed | test task | in training | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 3) + "|"]
        for s in range(seen.shape[0]):
            for j in range(seen.shape[1]):
                cells = [f"{methods[m]['greedy_return']['per_task'][s][j]:.3f}" for m in names]
                lines.append(f"| {s} | {_task_label(results, s, j)} | "
                             f"{'yes' if seen[s, j] else 'no'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict, out: Path, title: str) -> Path:
    """Greedy return during meta-testing, one line per method (mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, pts in curves.items():
        if not pts:
            continue
        x = np.asarray([p[0] for p in pts], np.float64)
        y = np.asarray([p[1] for p in pts], np.float64)  # [T, S]
        mu, sd = y.mean(1), y.std(1)
        ax.plot(x, mu, marker="o", markersize=3, label=method)
        ax.fill_between(x, mu - sd, mu + sd, alpha=0.2)
    ax.set_xlabel("env steps per test task")
    ax.set_ylabel("greedy return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _no_load(run_dir: Path, cfg: Any, step: int | None) -> Any:
    raise ExperimentError(
        f"{run_dir} is a MESA run: it evaluates every method itself (see results.md and "
        "results.json); `metajax eval/render` work on runs of the train pipeline")


#: The ``"mesa"`` pipeline (:data:`metajax.pipelines.registry.PIPELINES`).
PIPELINE = Pipeline(run_mesa, MESAConfig, load=_no_load)


# --- behaviour cloning warm-up (Sec. 6.5) ---------------------------------------------------


def bc_warmup(learner: Learner, cfg: MADDPGConfig, space: ActionSpace, state: MADDPGState,
              key: Array, steps: int, lr: float) -> MADDPGState:
    """``steps`` Adam steps of behaviour cloning of the learner's actors on its replay (early
    on mostly exploration-policy episodes): cross-entropy to the stored discrete/relaxed
    actions, squared error for continuous ones. Targets are synced to the result."""
    replay = make_replay(cfg.buffer_size, cfg.batch_size)
    opt = optax.adam(lr)

    def loss(params: Any, batch: Any) -> Array:
        out, _ = jax.vmap(learner.outputs, (None, 0, 0))(params, batch.obs, batch.carry)
        mask = batch.obs.agent_mask.astype(jnp.float32)
        if space.kind == "continuous":
            per = jnp.mean((jnp.tanh(out) - batch.action) ** 2, -1)
        else:
            per = -jnp.sum(batch.action * jax.nn.log_softmax(out, -1), -1)
        return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    def step(carry, k):
        params, opt_state = carry
        batch = replay.sample(state.buffer, k)
        g = jax.grad(loss)(params, batch)
        upd, opt_state = opt.update(g, opt_state, params)
        return (optax.apply_updates(params, upd), opt_state), None

    params = state.params.actor
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
    return state.replace(params=state.params.replace(actor=params, target_actor=params))


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
    )
    return dataclasses.replace(cfg, **overrides)


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
    "dataset_capacity": 4096,
    "chunk_updates": 100,
}

"""The training runner: one jitted chunk of updates, vmapped over seeds and sharded over devices;
a thin host loop for progress, metrics, wandb, checkpoints, resume and evaluation.

``train(config, run_dir)`` builds the env and the learner (:data:`ALGOS`), then

* ``init``: ``vmap(learner.init)`` over ``config.seeds`` keys, placed with the seed axis sharded
  over a 1-D :class:`jax.sharding.Mesh` of the local devices;
* each chunk: ``jit(vmap(scan(learner.update, length=chunk_updates)))`` (compiled once), which
  returns per-seed metrics ``[seeds, chunk_updates]``;
* between chunks (host): ``metrics.jsonl`` (one line per chunk, every metric per seed), wandb
  (offline by default, disabled in tests), progress bar (env steps, SPS, ETA, mean return),
  Orbax checkpoint every ``checkpoint_every`` chunks and at the end, evaluation every
  ``eval_every`` chunks and at the end (``results.json``).

The host loop itself is :func:`run_chunks` over a :class:`Program` (a learner batched over
members, its init, its evaluation, its config): :func:`train` builds the program of one config
(members = seeds); :mod:`metajax.pipelines.sweep` builds one per group of a grid (members = points x
seeds, with traced hyperparameters, :data:`TRACEABLE`).

A run directory holds ``config.json``, ``metrics.jsonl``, ``results.json`` (the last
evaluation: per task and mode the mean return per agent of each seed and episode, and its
``"stats"``: IQM, mean, median, optimality gap, performance profile with 95 % stratified
bootstrap CIs over seeds, :mod:`metajax.train.run_stats`) and ``checkpoints/``; ``resume=True``
continues from the latest checkpoint, bit for bit, also to a larger ``total_env_steps``
(:func:`resume_conflicts`).

Reliability: :meth:`TrainConfig.validate` and :func:`check_task_spec` reject a config before
anything is built; after every chunk the host checks every float metric and the parameters of
every seed, and a NaN or an infinity stops the run (:class:`NonFiniteError`) before that state is
evaluated or checkpointed (unless ``allow_nonfinite``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

import envs
from envs.core import MultiAgentEnv
from metajax.algos.maddpg import MADDPGConfig
from metajax.algos.ppo import PPOConfig
from metajax.algos.qmix import QMixConfig
from metajax.config import ConfigError, resolve, to_dict
from metajax.core.interfaces import Learner, Traceable
from metajax.core.taskspec import build_tasks, check_task_spec, distinct_tasks
from metajax.pipelines.registry import ALGOS, TRACEABLE, Pipeline
from metajax.train.checkpoint import Checkpointer
from metajax.train.distributed import to_host
from metajax.train.evaluation import evaluate_params, make_evaluator
from metajax.train.loop import Program, RunResult, restore_batched, resume_conflicts, run_chunks

#: The algorithms that read the ``ppo`` section instead of ``maddpg``.
PPO_ALGOS = ("ippo", "mappo")
#: The algorithms that read the ``qmix`` section instead of ``maddpg``.
Q_ALGOS = ("qmix", "vdn")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """An experiment of one learner on a batch of games.

    * ``algo``: a learner of :data:`metajax.pipelines.registry.ALGOS`; ``maddpg`` holds the
      hyperparameters of the off-policy ones (MADDPG, MRA's actor-critic), ``ppo`` those of
      IPPO and MAPPO (:data:`PPO_ALGOS`), ``qmix`` those of QMIX and VDN (:data:`Q_ALGOS`);
    * ``env``/``env_config``: registry name and static config (maxima, episode length, ...);
    * ``tasks``: ``make_task`` keyword dicts, cycled over the learner's parallel games;
    * ``eval_tasks``: games to evaluate on (default: the distinct training tasks);
    * ``total_env_steps``: env steps per seed; ``chunk_updates``: updates per jitted chunk;
    * ``eval_every``/``checkpoint_every``: in chunks (0 = only at the end);
    * ``seeds``: seeds trained in parallel (vmapped), from ``seed``;
    * ``allow_nonfinite``: keep training when a chunk leaves a NaN or an infinity in a float
      metric or in the parameters (default: stop with :class:`NonFiniteError`, see
      :func:`train`).

    Fields are checked one by one when the config is built (so a dotted override can set them
    one at a time); :meth:`validate` checks them against each other (:func:`train` calls it
    before building anything).
    """

    name: str = "run"
    env: str = "treasure"
    env_config: dict = dataclasses.field(default_factory=dict)
    tasks: tuple[dict, ...] = ({},)
    eval_tasks: tuple[dict, ...] = ()
    algo: str = "maddpg"
    maddpg: MADDPGConfig = dataclasses.field(default_factory=MADDPGConfig)
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    qmix: QMixConfig = dataclasses.field(default_factory=QMixConfig)
    total_env_steps: int = 100_000
    chunk_updates: int = 50
    eval_every: int = 0
    eval_episodes: int = 10
    checkpoint_every: int = 1
    seed: int = 0
    seeds: int = 1
    allow_nonfinite: bool = False

    def __post_init__(self) -> None:
        for field in ("seeds", "chunk_updates", "total_env_steps", "eval_episodes"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        for field in ("eval_every", "checkpoint_every"):
            if getattr(self, field) < 0:
                raise ValueError(
                    f"{field} must be >= 0 (in chunks; 0 = only at the end), "
                    f"got {getattr(self, field)}")
        if not self.tasks:
            raise ValueError("tasks must list at least one task")
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; known: {', '.join(sorted(ALGOS))}")

    def validate(self) -> None:
        """The checks between fields: those of :meth:`MADDPGConfig.validate
        <metajax.algos.maddpg.MADDPGConfig.validate>`, and the first gradient step (at
        ``max(learning_starts, batch_size)`` env steps) within ``total_env_steps``.

        Raises:
          ConfigError: one line naming the fields and their values.
        """
        if self.algo in PPO_ALGOS + Q_ALGOS:  # the maddpg section is not read
            return
        m = self.maddpg
        m.validate("maddpg.")
        first = max(m.learning_starts, m.batch_size)
        if first > self.total_env_steps:
            field = "learning_starts" if m.learning_starts >= m.batch_size else "batch_size"
            raise ConfigError(
                f"maddpg.{field}={first} is beyond total_env_steps={self.total_env_steps}: "
                "the run would end before its first gradient step")



def learner_factory(algo: str) -> Callable[..., Learner]:
    """The factory of :data:`ALGOS` for ``algo`` (raises ``ValueError`` if unknown)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; known: {', '.join(sorted(ALGOS))}")
    return resolve(ALGOS[algo])



def traceable(algo: str) -> Traceable | None:
    """The :class:`Traceable` of ``algo`` (:data:`TRACEABLE`), ``None`` if it has none."""
    ref = TRACEABLE.get(algo)
    return resolve(ref) if ref else None


def build_env(cfg: TrainConfig) -> MultiAgentEnv:
    return envs.make(cfg.env, **cfg.env_config)


def build_learner(cfg: TrainConfig, env: MultiAgentEnv, traced: bool = False) -> Learner:
    """The learner of ``cfg.algo`` (:data:`ALGOS`); ``traced=True`` (a sweep): one that takes
    its :class:`Traceable` hyperparameters as traced ``hypers=`` arguments."""
    factory = learner_factory(cfg.algo)
    tasks = build_tasks(env, cfg.tasks, cfg.maddpg.num_envs)
    if traced:
        return factory(cfg, env, tasks, traced=True)
    return factory(cfg, env, tasks)


def restore_state(
    learner: Learner, n_seeds: int, seed: int, ckpt: Checkpointer, step: int | None = None
) -> tuple[Any, dict, dict]:
    """Restore ``(state [S], config, meta)`` from ``ckpt``, placed on the seed mesh.

    The abstract target (structure, shapes, dtypes, shardings) comes from ``eval_shape`` of
    the vmapped init, so the state comes back with its exact types.
    """
    keys = jax.random.split(jax.random.PRNGKey(seed), n_seeds)
    return restore_batched(jax.eval_shape(jax.vmap(learner.init), keys), n_seeds, ckpt, step)


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    wandb_mode: str = "offline",
    progress: bool | None = None,
    max_chunks: int | None = None,
    log: Callable[[str], None] = print,
    pipeline: str = "train",
) -> RunResult:
    """Train ``cfg`` into ``run_dir`` (see module docstring).

    ``max_chunks`` stops after that many chunks in this call (the run stays resumable), which
    is how an interruption is simulated in tests.

    ``resume=True`` continues from the latest checkpoint; ``cfg`` may differ from the saved
    config only in a larger ``total_env_steps`` (the run is extended: chunks continue where it
    stopped, exactly as one longer run) and :data:`RESUMABLE_FIELDS`.

    After every chunk the host checks every float metric and (one jitted reduction) the
    parameters of every seed: a NaN or an infinity raises :class:`NonFiniteError` (naming the
    metric, the chunk and the seed indices) before that state is evaluated or checkpointed, so
    the latest checkpoint stays the last finite state; its metrics row is still written.
    ``cfg.allow_nonfinite`` logs one warning instead and keeps going.

    Raises:
      ConfigError: ``cfg`` fails :meth:`TrainConfig.validate` or names unknown task fields.
      CheckpointError: ``run_dir`` holds another run, or one whose config cannot be resumed.
      NonFiniteError: see above.
    """
    cfg.validate()
    env = build_env(cfg)
    for spec in (*cfg.tasks, *cfg.eval_tasks):
        check_task_spec(env, dict(spec))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    learner = build_learner(cfg, env)
    eval_tasks = build_tasks(env, cfg.eval_tasks or distinct_tasks(cfg.tasks))
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)
    evaluator = make_evaluator(learner, env, cfg.eval_episodes)
    program = Program(
        learner=learner,
        members=cfg.seeds,
        init=jax.vmap(learner.init),
        init_args=(keys,),
        evaluate=lambda state, chunk: _evaluate(evaluator, learner, state, eval_tasks, env,
                                                cfg, chunk),
        config={"algo_config": to_dict(cfg), "pipeline": pipeline},
        conflicts=lambda saved: resume_conflicts((saved or {}).get("algo_config"), cfg),
    )
    return run_chunks(cfg, program, run_dir, resume, wandb_mode, progress, max_chunks, log)


def _evaluate(evaluator, learner, state, tasks, env, cfg, chunk) -> dict:
    return evaluate_params(evaluator, learner.policy_params(state),
                           int(to_host(state.env_steps)[0]), tasks, env, cfg, chunk)


#: The ``"train"`` pipeline (:data:`metajax.pipelines.registry.PIPELINES`): :func:`train`.
PIPELINE = Pipeline(train, TrainConfig)

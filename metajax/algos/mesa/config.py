"""MESA's configuration (:class:`MESAConfig`) and what may change when a run is resumed
(:func:`config_changes`)."""

from __future__ import annotations

import dataclasses
import itertools
import json

from metajax.algos.maddpg import MADDPGConfig
from metajax.algos.mesa import core as mc
from metajax.algos.ppo import PPOConfig
from metajax.algos.qmix import QMixConfig

#: The default methods of meta-testing: MESA and the baselines that share its MADDPG learner.
METHODS = ("mesa", "maddpg", "random", "pretrain", "goal")
#: Methods that train another learner from scratch on each test task
#: (:mod:`metajax.algos.mesa.learners`: MESA's Table 2 MAPPO, MAPPO-RND and QMIX rows, and IPPO
#: and VDN); not in the default ``methods`` (see :class:`MESAConfig`).
LEARNER_METHODS = ("mappo", "ippo", "mappo_rnd", "qmix", "vdn")
#: Every method the pipeline can run in meta-testing.
ALL_METHODS = METHODS + LEARNER_METHODS


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
    weight}``) slices of every agent's flat observation
    (:func:`metajax.algos.mesa.features.joint_features`). The radius is
    ``eps``, or, with ``eps_quantile = q``, chosen per seed from the training tasks alone after
    collection: the ``q``-quantile of the distance from each stored pair to the nearest pair of
    another training task (:func:`metajax.algos.mesa.core.radius_from_training`; ``results.json``
    records it as ``eps_per_seed``).

    Learners: ``maddpg`` is the off-policy learner ``f`` of meta-testing; ``collect`` (default:
    ``maddpg``) the per-task learner of the data collection; ``explorer`` (default: ``maddpg``)
    the exploration policies and the pretrained baselines (its ``num_envs`` parallel games
    cycle over the training tasks, so it must be ``>= n_train``).

    Other learners (``methods`` among :data:`LEARNER_METHODS`, MESA's Table 2 rows MAPPO,
    MAPPO-RND and QMIX, App. B.3, and IPPO and VDN): each trains from scratch on every test task
    for ``test_steps`` env steps, with no meta-training and no exploration policy; ``ppo`` holds
    the hyperparameters of ``mappo``, ``ippo`` and ``mappo_rnd`` (its ``rnd_coef`` must stay 0:
    ``mappo_rnd`` adds the RND bonus ``rnd_coef`` of this config), ``qmix`` those of ``qmix``
    and ``vdn``. They take discrete actions; on a continuous env QMIX/VDN play the env's own
    11-point discretization where it has one (the Swimmer, App. B.3), and PPO is refused. They
    are not in the default ``methods``: each adds a compile and a full meta-test to every run
    (presets ``learners`` of the Table 2 experiment files select them).

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
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    qmix: QMixConfig = dataclasses.field(default_factory=QMixConfig)
    rnd_coef: float = 0.1
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
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be a non-empty subset of {ALL_METHODS} without "
                             f"repeats, got {self.methods!r}")
        if self.ppo.rnd_coef != 0:
            raise ValueError(f"ppo.rnd_coef={self.ppo.rnd_coef}: the ppo section is RND-free "
                             "(mappo, ippo); the mappo_rnd method takes rnd_coef")
        if "mappo_rnd" in self.methods and not self.rnd_coef > 0:
            raise ValueError(f"rnd_coef must be > 0 for mappo_rnd, got {self.rnd_coef}")
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


#: :class:`MESAConfig` fields that may change on ``--resume`` (they do not change what is
#: trained).
RESUMABLE_FIELDS = ("allow_nonfinite",)


#: The config sections :func:`config_changes` compares field by field.
_SECTIONS = {"maddpg": MADDPGConfig, "collect": MADDPGConfig, "explorer": MADDPGConfig,
             "ppo": PPOConfig, "qmix": QMixConfig}


def _defaults(cls: type) -> dict:
    """``{field: default}`` of ``cls`` in ``to_dict`` form (a default factory's value
    included)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            v = f.default
        elif f.default_factory is not dataclasses.MISSING:
            v = f.default_factory()
        else:
            continue
        v = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
        out[f.name] = json.loads(json.dumps(v, default=str))
    return out


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
            if k not in defaults or defaults[k] != current[k]:
                out.append(k)
        elif k in _SECTIONS and cls is MESAConfig and isinstance(saved[k], dict) and (
                isinstance(current.get(k), dict)):
            out += [f"{k}.{c}" for c in config_changes(saved[k], current[k], _SECTIONS[k])]
        elif saved[k] != current.get(k):
            out.append(k)
    return out

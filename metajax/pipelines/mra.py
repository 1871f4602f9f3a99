"""The ``"mra"`` pipeline: :class:`MRAConfig` (a :class:`~metajax.pipelines.runner.TrainConfig` with
an ``mra`` section) trained by :func:`~metajax.pipelines.runner.train` with the MRA learner of
:mod:`metajax.algos.mra`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from envs.core import MultiAgentEnv
from metajax.algos import mra
from metajax.algos.maddpg import MADDPGConfig
from metajax.algos.mra import MRA_SMALL, MRAOptions
from metajax.core import taskspec
from metajax.core.interfaces import Learner
from metajax.pipelines import runner
from metajax.pipelines.experiment import load_run as _load_run
from metajax.pipelines.registry import Pipeline
from metajax.pipelines.runner import TrainConfig
from metajax.train import loop

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MRAConfig(runner.TrainConfig):
    """A run of the MRA learner (``algo="mra"``) or of a baseline (``algo="maddpg"``) through
    the runner. ``tasks`` are the training games (each gets ``maddpg.num_envs`` parallel games);
    ``eval_tasks`` may hold unseen populations (zero-shot evaluation)."""

    name: str = "mra"
    env: str = "resource"
    algo: str = "mra"
    maddpg: MADDPGConfig = MRA_SMALL
    mra: MRAOptions = dataclasses.field(default_factory=MRAOptions)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algo == "mra" and self.maddpg.param_sharing != "team":
            raise ValueError("MRA shares parameters within teams: maddpg.param_sharing must be "
                             f"'team', got {self.maddpg.param_sharing!r}")


def run_mra(cfg: MRAConfig, run_dir: str | Path, **kwargs: Any) -> loop.RunResult:
    """The ``"mra"`` pipeline: :func:`metajax.pipelines.runner.train` with this module's config."""
    return runner.train(cfg, run_dir, pipeline="mra", **kwargs)


#: The ``"mra"`` pipeline (:data:`metajax.pipelines.registry.PIPELINES`).
PIPELINE = Pipeline(run_mra, MRAConfig)


#: Parameters an adaptation run takes from its trained run (``xi`` is trained per game set).
ADAPT_FIELDS = ("actor", "target_actor", "critic", "target_critic", "prior")


def _load_init(cfg: Any) -> Callable[[Array], dict]:
    """``init_params`` for :func:`make_mra` from ``cfg.mra.init_from``: seed ``s`` of this run
    starts from seed ``s`` of the trained run (found by matching the runner's init keys)."""
    src = _load_run(cfg.mra.init_from)
    if getattr(src.config, "algo", None) != "mra":
        raise ValueError(f"mra.init_from={cfg.mra.init_from!r} is not an MRA run")
    if src.config.seeds < cfg.seeds:
        raise ValueError(
            f"mra.init_from has {src.config.seeds} seed(s); this run asks for {cfg.seeds}")
    params = jax.device_get(src.state.params)
    loaded = {f: jax.tree.map(jnp.asarray, getattr(params, f)) for f in ADAPT_FIELDS}
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)

    def init_params(key: Array) -> dict:
        idx = jnp.argmax(jnp.all(keys == key[None], axis=-1))
        return {f: jax.tree.map(lambda x: x[idx], v) for f, v in loaded.items()}

    return init_params


def make_from_config(cfg: TrainConfig, env: MultiAgentEnv, tasks: Any,
                      traced: bool = False) -> Learner:
    """The ``"mra"`` factory of :data:`metajax.pipelines.registry.ALGOS`: the ``[G]`` distinct
    training games of ``cfg.tasks`` (the runner's cycled ``tasks`` are not used)."""
    if not hasattr(cfg, "mra"):  # an MRAConfig (metajax.pipelines.mra)
        raise ValueError(f"algo 'mra' needs an MRAConfig, got {type(cfg).__name__}")
    games = taskspec.build_tasks(env, taskspec.distinct_tasks(cfg.tasks))
    init_params = _load_init(cfg) if cfg.mra.init_from else None
    return mra.make_mra(cfg.maddpg, cfg.mra, env, games, init_params, traced)

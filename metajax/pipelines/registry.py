"""The three literal tables that name what the framework can run, each ``name ->
"module:attribute"``, imported on first use (:func:`metajax.config.resolve`): nothing registers
itself on import, and the CLI does not pay for every algorithm at start-up.

* :data:`PIPELINES`: a :class:`Pipeline` per experiment file's ``PIPELINE`` name;
* :data:`ALGOS`: a learner factory ``factory(config, env, tasks, traced=False) -> Learner``
  per ``TrainConfig.algo``;
* :data:`TRACEABLE`: the :class:`~metajax.core.interfaces.Traceable` hyperparameters of an
  algorithm that ``metajax sweep`` may trace (an algorithm without an entry cannot be swept).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """How to run an experiment and how to read its config back.

    * ``run(config, run_dir, *, resume, wandb_mode, progress) -> result``;
    * ``config_type``: the dataclass of its config (``from_dict`` target for ``config.json``);
    * ``load(run_dir, config, step) -> TrainedRun`` (optional): rebuild env and learner and
      restore a checkpoint of a run directory it wrote, for ``eval``/``render``; ``None`` =
      the runner's layout (:func:`metajax.pipelines.experiment.load_run`'s default).
    """

    run: Callable[..., Any]
    config_type: type
    load: Callable[..., Any] | None = None


PIPELINES: dict[str, str] = {
    "train": "metajax.pipelines.runner:PIPELINE",
    "mra": "metajax.pipelines.mra:PIPELINE",
    "mra_compare": "metajax.pipelines.mra_compare:PIPELINE",
    "mesa": "metajax.pipelines.mesa:PIPELINE",
}

ALGOS: dict[str, str] = {
    "maddpg": "metajax.algos.maddpg:make_from_config",
    "mra": "metajax.pipelines.mra:make_from_config",
    "ippo": "metajax.algos.ppo:make_ippo",
    "mappo": "metajax.algos.ppo:make_mappo",
    "qmix": "metajax.algos.qmix:make_qmix_learner",
    "vdn": "metajax.algos.qmix:make_vdn_learner",
}

TRACEABLE: dict[str, str] = {
    "maddpg": "metajax.algos.maddpg:TRACEABLE",
    "mra": "metajax.algos.mra:TRACEABLE",
    # nothing traced: every grid point of a sweep is its own group (one compiled program each)
    "ippo": "metajax.core.interfaces:NOTHING_TRACED",
    "mappo": "metajax.core.interfaces:NOTHING_TRACED",
    "qmix": "metajax.core.interfaces:NOTHING_TRACED",
    "vdn": "metajax.core.interfaces:NOTHING_TRACED",
}

"""Experiment files, the pipelines that run them, and the run directories they leave behind.

An experiment file is a Python module (``experiments/<name>.py``) that defines

* ``CONFIG``: the typed config of the run (a dataclass, e.g.
  :class:`metajax.pipelines.runner.TrainConfig`);
* ``PRESETS`` (optional): ``{name: {dotted.key: value}}`` override sets, e.g. ``"paper"`` with the
  papers' step counts;
* ``PIPELINE`` (optional, default ``"train"``): the key in :data:`PIPELINES` that runs it.

``metajax run FILE`` loads it with :func:`load_experiment`, applies presets and ``--set``
overrides with :func:`configure`, and calls the pipeline. A pipeline writes ``config.json``
(``{"algo_config": to_dict(config), "pipeline": name}``) into its run directory, which is how
:func:`load_run` rebuilds the config, env and learner to evaluate or render a trained run from its
latest Orbax checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax

from metajax.config import ConfigError, from_dict, override, resolve
from metajax.core import taskspec
from metajax.core.episode import play_episode, with_reset
from metajax.pipelines import runner
from metajax.pipelines.registry import PIPELINES, Pipeline
from metajax.train import loop
from metajax.train.checkpoint import Checkpointer, CheckpointError

#: Modules that moved when the learning layer was split into layers (issue 14): an experiment
#: file that imports an old path fails with the new one named.
MOVED = {
    "metajax.runner": "metajax.pipelines.runner (TrainConfig, train), metajax.train.loop, "
                      "metajax.train.evaluation, metajax.core.taskspec",
    "metajax.maddpg": "metajax.algos.maddpg (MADDPGConfig, ORIGINAL, make_maddpg), "
                      "metajax.core.interfaces (Learner), metajax.core.ops",
    "metajax.mra": "metajax.pipelines.mra (MRAConfig), metajax.algos.mra (MRAOptions, MRA_SMALL)",
    "metajax.mra_experiments": "metajax.pipelines.mra_compare",
    "metajax.mesa": "metajax.pipelines.mesa",
    "metajax.mesa_core": "metajax.algos.mesa.core",
    "metajax.mesa_report": "metajax.pipelines.mesa_report",
    "metajax.kmeans": "metajax.algos.mesa.kmeans",
    "metajax.experiment": "metajax.pipelines.experiment",
    "metajax.sweep": "metajax.pipelines.sweep",
    "metajax.reference": "metajax.algos.reference",
    "metajax.networks": "metajax.core.networks",
    "metajax.replay": "metajax.core.replay",
    "metajax.checkpoint": "metajax.train.checkpoint",
    "metajax.killpoint": "metajax.train.killpoint",
    "metajax.run_stats": "metajax.train.run_stats",
}

#: Name of the copy of the experiment file kept in a run directory.
EXPERIMENT_COPY = "experiment.py"


class ExperimentError(ValueError):
    """A missing or malformed experiment file, an unknown preset or pipeline, or a directory
    that is not a run directory."""


def get_pipeline(name: str) -> Pipeline:
    """The :class:`Pipeline` of ``name`` (:data:`PIPELINES`).

    Raises:
      ExperimentError: an unknown name, listing the known ones.
    """
    if name not in PIPELINES:
        raise ExperimentError(
            f"unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}")
    return resolve(PIPELINES[name])


# --- experiment files -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A loaded experiment file: its ``CONFIG``, ``PRESETS``, ``PIPELINE`` and docstring."""

    path: Path
    config: Any
    presets: dict[str, dict[str, Any]]
    pipeline: str
    doc: str


def load_experiment(path: str | Path) -> Experiment:
    """Import the experiment file at ``path`` (any location) as a fresh module.

    Raises:
      ExperimentError: the file does not exist, is not a ``.py`` file, fails to import, or
        lacks a dataclass ``CONFIG``; ``PRESETS``/``PIPELINE`` are malformed or unknown.
    """
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"experiment file {str(path)!r} does not exist")
    if path.suffix != ".py":
        raise ExperimentError(f"experiment file {str(path)!r} is not a Python (.py) file")
    name = f"metajax_experiment_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - .py files always have a loader
        raise ExperimentError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    # Registered (and kept) so that dataclasses defined in the file resolve their type hints.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        if isinstance(e, ModuleNotFoundError) and e.name in MOVED:
            raise ExperimentError(f"{path}: imports {e.name}, which has moved: import from "
                                  f"{MOVED[e.name]}") from e
        raise ExperimentError(f"{path}: failed to import: {type(e).__name__}: {e}") from e
    if not hasattr(module, "CONFIG"):
        raise ExperimentError(f"{path} defines no CONFIG (the experiment's config dataclass)")
    config = module.CONFIG
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ExperimentError(
            f"{path}: CONFIG must be a dataclass instance, got {type(config).__name__}"
        )
    presets = getattr(module, "PRESETS", {})
    if not isinstance(presets, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in presets.items()
    ):
        raise ExperimentError(f"{path}: PRESETS must be a dict of name -> {{key: value}} dicts")
    pipeline = getattr(module, "PIPELINE", "train")
    p = get_pipeline(pipeline)
    if not isinstance(config, p.config_type):
        raise ExperimentError(
            f"{path}: pipeline {pipeline!r} needs CONFIG of type {p.config_type.__name__}, "
            f"got {type(config).__name__}"
        )
    return Experiment(path, config, dict(presets), pipeline, (module.__doc__ or "").strip())


def configure(
    exp: Experiment,
    presets: list[str] | tuple[str, ...] = (),
    overrides: dict[str, Any] | None = None,
    seeds: int | None = None,
) -> Any:
    """``exp.config`` with the named presets applied in order, then ``overrides`` (dotted keys),
    then ``seeds``.

    Raises:
      ExperimentError: an unknown preset. ConfigError: an unknown key or a bad value.
    """
    cfg = exp.config
    for name in presets:
        if name not in exp.presets:
            known = ", ".join(sorted(exp.presets)) or "none"
            raise ExperimentError(f"{exp.path}: unknown preset {name!r} (presets: {known})")
        try:
            cfg = override(cfg, exp.presets[name])
        except ConfigError as e:
            raise ConfigError(f"preset {name!r}: {e}") from e
    cfg = override(cfg, overrides or {})
    if seeds is not None:
        cfg = override(cfg, {"seeds": seeds})
    return cfg


# --- run directories ------------------------------------------------------------------------------


def read_run_config(run_dir: str | Path) -> tuple[Any, str]:
    """``(config, pipeline name)`` of a run directory, from its ``config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ExperimentError(f"{run_dir} is not a run directory (no config.json)")
    try:
        saved = json.loads(path.read_text())
        pipeline = saved.get("pipeline", "train")
        cfg = from_dict(get_pipeline(pipeline).config_type, saved["algo_config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ExperimentError(f"{path} cannot be read back into a config: {e}") from e
    return cfg, pipeline


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds at least one finished checkpoint (creates nothing)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return False
    ckpt = Checkpointer(run_dir)
    try:
        return ckpt.latest_step() is not None
    finally:
        ckpt.close()


@dataclasses.dataclass
class TrainedRun:
    """A run directory read back: config, env, learner and the restored seed-batched state."""

    run_dir: Path
    config: Any
    pipeline: str
    env: Any
    learner: Any
    state: Any
    step: int
    meta: dict

    def params(self, seed_index: int | None = None) -> Any:
        """The policy parameters ``[S, ...]``, or those of one seed."""
        p = self.learner.policy_params(self.state)
        if seed_index is None:
            return p
        n = self.config.seeds
        if not 0 <= seed_index < n:
            raise ExperimentError(f"seed index {seed_index} out of range: the run has {n} seeds")
        return jax.tree.map(lambda x: x[seed_index], p)

    @property
    def eval_specs(self) -> tuple[dict, ...]:
        """The run's evaluation task specs (default: its distinct training tasks)."""
        return tuple(self.config.eval_tasks or taskspec.distinct_tasks(self.config.tasks))


def load_run(run_dir: str | Path, step: int | None = None) -> TrainedRun:
    """Rebuild env and learner from ``config.json`` and restore the latest intact (or
    ``step``) checkpoint.

    Without ``step``, damaged checkpoints newer than the latest intact one are skipped with a
    one-line warning on stderr (see :mod:`metajax.train.checkpoint`); ``TrainedRun.step`` is the
    step read.

    Raises:
      ExperimentError: not a run directory. CheckpointError (one line): no checkpoint, none
        intact, ``step`` missing or damaged, or one that does not fit the learner the config
        builds.
    """
    run_dir = Path(run_dir)
    cfg, pipeline = read_run_config(run_dir)
    custom = get_pipeline(pipeline).load
    if custom is not None:
        return custom(run_dir, cfg, step)
    if not has_checkpoint(run_dir):
        raise CheckpointError(f"no checkpoint under {run_dir.absolute() / 'checkpoints'}")
    env = runner.build_env(cfg)
    learner = runner.build_learner(cfg, env)
    ckpt = Checkpointer(run_dir)
    try:
        state, _, meta = runner.restore_state(learner, cfg.seeds, cfg.seed, ckpt, step)
        step = ckpt.restored_step
    finally:
        ckpt.close()
    return TrainedRun(run_dir, cfg, pipeline, env, learner, state, int(step), dict(meta))


class Episode(NamedTuple):
    """One episode of a trained policy: ``states`` ``[T + 1]`` (reset state first),
    ``actions`` ``[T, A, ...]``, ``rewards`` ``[T, A]``, ``agent_mask`` ``[A]``,
    ``done`` ``[T]``."""

    states: Any
    actions: Any
    rewards: Any
    agent_mask: Any
    done: Any


def play(
    run: TrainedRun,
    task: Any,
    key: jax.Array,
    seed_index: int = 0,
    greedy: bool = True,
    steps: int | None = None,
    episodes: int | None = None,
) -> Episode:
    """Play ``steps`` (default one episode) of ``task`` with seed ``seed_index``'s policy under
    jit, without auto-reset; the actor's recurrent carry is threaded through. With
    ``episodes``, that many independent episodes (a leading ``[episodes]`` axis, vmapped)."""
    env, learner = run.env, run.learner
    params = run.params(seed_index)
    steps = env.episode_length if steps is None else int(steps)

    def episode(params: Any, key: jax.Array) -> Episode:
        out = play_episode(lambda p, obs, carry, k: learner.policy(p, obs, carry, k, greedy),
                           env, params, task, key, learner.initial_carry(), steps,
                           record=lambda s: (s.state, s.action, s.ts.reward, s.ts.done))
        states, acts, rewards, done = out.trace
        return Episode(with_reset(out.reset_state, states), acts, rewards,
                       out.reset_obs.agent_mask, done)

    if episodes is None:
        return jax.device_get(jax.jit(episode, compiler_options=loop.ONCE)(params, key))
    many = jax.jit(jax.vmap(episode, (None, 0)), compiler_options=loop.ONCE)
    return jax.device_get(many(params, jax.random.split(key, episodes)))

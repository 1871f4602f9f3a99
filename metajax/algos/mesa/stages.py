"""The host side of MESA's stages: chunks of compiled updates with per-stage logs
(:func:`run_stage`, ``metrics_<stage>.jsonl``), Orbax checkpoints of finished stages
(:class:`StageStore`, ``stages/<name>``) and the run every stage reads (:class:`Context`)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import MultiAgentEnv
from metajax.algos.mesa.config import RESUMABLE_FIELDS, MESAConfig, config_changes
from metajax.core.interfaces import Learner
from metajax.core.ops import ONCE
from metajax.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from metajax.train.loop import (
    HostLog,
    NonFiniteError,
    make_chunk,
    nonfinite_metrics,
    nonfinite_report,
)

Array = jax.Array


class StageLog:
    """Progress lines and per-stage ``metrics_<stage>.jsonl`` files of a MESA run; ``show``:
    progress bars on the terminal, ``wb``: the run's wandb run (each stage's rows under
    ``<stage>/``), both handed to :class:`metajax.train.loop.HostLog`."""

    def __init__(self, run_dir: Path, log: Callable[[str], None], show: bool = False,
                 wb: Any = None):
        self.run_dir, self.log, self.show, self.wb = run_dir, log, show, wb
        self.t0 = time.perf_counter()

    def path(self, stage: str) -> Path:
        return self.run_dir / f"metrics_{stage}.jsonl"

    def row(self, stage: str, row: dict) -> None:
        with self.path(stage).open("a") as f:
            f.write(json.dumps(row) + "\n")

    def say(self, text: str) -> None:
        self.log(f"[{time.perf_counter() - self.t0:7.1f}s] {text}")


def per_seed(m: dict) -> dict:
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


def run_stage(log: StageLog, stage: str, step: Callable, state: Any, n_updates: int, chunk: int,
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
    host = HostLog(stage, n_chunks, chunk * steps_per_update, 0, n_chunks, log.show, log.wb,
                   log.say, prefix=f"{stage}/")
    warned = False
    try:
        for c in range(n_chunks):
            state, m = step(state, jnp.int32(c))
            m = jax.device_get(m)
            warned = _check_finite(log, stage, m, c, n_chunks, allow_nonfinite, warned)
            row = {"stage": stage, "chunk": c + 1, **per_seed(m)}
            if after is not None:
                state, more = after(state, c + 1)
                row.update(more)
            log.row(stage, row)
            host.chunk(c, row)
    finally:
        host.close()
    return state


def _check_finite(log: StageLog, stage: str, m: dict, c: int, n_chunks: int,
                  allow_nonfinite: bool, warned: bool) -> bool:
    """Raise :class:`NonFiniteError` for a chunk whose float metrics hold a NaN or an
    infinity, or warn once (``allow_nonfinite``); returns whether it has warned."""
    bad = nonfinite_metrics(m)
    if not bad:
        return warned
    seeds = len(np.asarray(next(iter(m.values()))))
    msg = f"MESA stage {stage}: " + nonfinite_report(bad, np.ones(seeds, bool), c + 1, n_chunks)
    if not allow_nonfinite:
        raise NonFiniteError(f"{msg}; the finished stages are checkpointed (--resume "
                             "continues from them; --allow-nonfinite goes on)")
    if not warned:
        log.say(f"warning: {msg} (allow_nonfinite: going on)")
    return True


class StageStore:
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


def resumed_time(results: dict, key: str, meta: dict) -> None:
    """A stage reloaded on resume keeps the wall-clock it took when it ran (stages saved
    before this was recorded have none)."""
    if "seconds" in meta:
        results["timing"][key] = meta["seconds"]


def updates(steps: int, learner: Learner) -> int:
    """Updates of ``learner`` that collect at least ``steps`` env steps (at least 1)."""
    return max(1, math.ceil(steps / learner.env_steps_per_update))


def stage_chunk(learner: Learner, chunk: int, levels: int = 1,
                fast: bool = False) -> Callable[[Any, Array], tuple[Any, dict]]:
    """The compiled chunk of a stage: :func:`metajax.train.loop.make_chunk` of ``learner``
    (``state [S, ...]``, chunk index ``c``) -> ``(state, metrics [S, ..., chunk])``.

    ``levels = 2``: the state is batched over tasks within each seed (``[S, B, ...]``):
    ``learner.update`` is vmapped over the tasks inside the scan (``vmap`` over seeds of
    ``scan`` of ``vmap`` over tasks, the same program as ``vmap(vmap(scan))``), and the metrics
    come back ``[S, B, chunk]`` as :func:`per_seed` reads them. ``fast``: compiled at XLA's
    cheap optimisation level (:data:`metajax.core.ops.ONCE`) on the first call."""
    update = learner.update
    for _ in range(levels - 1):
        update = jax.vmap(update, in_axes=(0, None))
    fn = make_chunk(learner._replace(update=update), chunk)
    compiled: list = []

    def step(state: Any, c: Array) -> tuple[Any, dict]:
        if not fast:
            state, m = fn(state, c)
        else:
            if not compiled:
                compiled.append(fn.lower(state, c).compile(compiler_options=ONCE))
            state, m = compiled[0](state, c)
        if levels > 1:  # scan stacks the updates inside the task axes: [S, chunk, B...]
            m = {k: jnp.moveaxis(v, 1, -1) for k, v in m.items()}
        return state, m

    return step


@dataclasses.dataclass
class Context:
    """One MESA run as every stage reads it.

    * ``cfg``, ``env``; ``train`` ``[S, n_train]`` and ``test`` ``[S, n_test]`` task stacks;
    * ``seed_keys`` ``[S]``: the run's keys (:meth:`keys` derives each stage's);
    * ``dim``: ``D``, the size of a joint (state, action) vector;
    * ``store``: the finished stages' checkpoints; ``log``: progress and metrics files;
    * ``resume``: whether finished stages are reloaded instead of run again;
    * ``results``: ``results.json`` as the stages fill it (each records its own entries, and
      its wall-clock under ``"timing"``).
    """

    cfg: MESAConfig
    env: MultiAgentEnv
    train: Any
    test: Any
    seed_keys: Array
    dim: int
    store: StageStore
    log: StageLog
    resume: bool
    results: dict

    def keys(self, tag: int) -> Array:
        """``[S]`` keys of the stage ``tag``: each seed's key folded with it."""
        return jax.vmap(lambda k: jax.random.fold_in(k, tag))(self.seed_keys)

    def finished(self, name: str) -> bool:
        """Whether the stage ``name`` is reloaded from its checkpoint (resuming, and saved)."""
        return self.resume and self.store.has(name)

    def timed(self, key: str, t0: float) -> float:
        """Record the wall-clock since ``t0`` as ``results["timing"][key]``; returns it."""
        self.results["timing"][key] = round(time.perf_counter() - t0, 1)
        return self.results["timing"][key]

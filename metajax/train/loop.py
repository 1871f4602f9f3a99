"""The host loop every pipeline trains with, and the compiled chunk it drives.

* :func:`make_chunk`: ``jit(vmap(scan(learner.update, length=chunk_updates)))`` over the
  members (seeds, or grid points x seeds), with the seed axis sharded over a 1-D mesh of the
  local devices (:func:`seed_mesh`, :func:`shard_seeds`), compiled once;
* :func:`run_chunks`: over a :class:`Program` (a learner batched over members, its init, its
  evaluation, its config): ``metrics.jsonl`` (one line per chunk, every metric per member),
  wandb (offline by default, disabled in tests), a progress bar (env steps, SPS, ETA, mean
  return), the non-finite check after every chunk (:class:`NonFiniteError`), evaluations
  (``results.json``), Orbax checkpoints and ``--resume`` (bit for bit, also to a larger
  ``total_env_steps``, :func:`resume_conflicts`).

It knows no algorithm: the config it reads is any object with ``name``, ``total_env_steps``,
``chunk_updates``, ``eval_every``, ``checkpoint_every`` and ``allow_nonfinite`` (a
:class:`~metajax.pipelines.runner.TrainConfig`, a MESA stage's config).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from metajax.config import ConfigError, flat_diff, from_dict, to_dict
from metajax.core.interfaces import Learner
from metajax.core.ops import ONCE
from metajax.train import killpoint
from metajax.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from metajax.train.distributed import host_inputs, is_primary, primary_only, to_host
from metajax.train.evaluation import _flat_eval

Array = jax.Array



def restore_batched(
    shapes: Any, members: int, ckpt: Checkpointer, step: int | None = None
) -> tuple[Any, dict, dict]:
    """Restore ``(state [members], config, meta)`` from ``ckpt``, placed on the seed mesh;
    ``shapes``: the state's structure, shapes and dtypes (``jax.eval_shape`` of its init)."""
    mesh = seed_mesh(members)
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=leaf_sharding(s, mesh)),
        abstract_like(shapes))
    return ckpt.restore(abstract, step)


def seed_mesh(n_seeds: int) -> Mesh:
    """1-D mesh ``("seeds",)``: in one process, over as many local devices as evenly divide
    ``n_seeds``; in a multi-process run (:mod:`metajax.train.distributed`), over every device
    of every process, which ``n_seeds`` must fill evenly.

    Raises:
      ConfigError: a multi-process run whose ``n_seeds`` is not a multiple of the global device
        count (padding with extra members would change what each process trains and what
        the results average over, so it is refused rather than done silently).
    """
    if jax.process_count() > 1:
        devices = jax.devices()
        if n_seeds % len(devices):
            raise ConfigError(
                f"{n_seeds} members (seeds x grid points) do not divide over the "
                f"{len(devices)} devices of {jax.process_count()} processes; use a multiple "
                f"of {len(devices)} (e.g. --seeds {len(devices) * -(-n_seeds // len(devices))}"
                ")")
        return Mesh(np.asarray(devices), ("seeds",))
    devices = jax.local_devices()
    d = math.gcd(n_seeds, len(devices))
    return Mesh(np.asarray(devices[:d]), ("seeds",))


def leaf_sharding(x: Any, mesh: Mesh) -> NamedSharding:
    """The seed sharding of one leaf: leading axis split over ``mesh``; zero-size leaves (e.g.
    an absent recurrent state ``[S, A, 0]``) replicated, which is how XLA returns them, so
    that a chunk's output state has exactly its input's layout (no second compilation)."""
    empty = any(d == 0 for d in getattr(x, "shape", ()))
    return NamedSharding(mesh, PartitionSpec() if empty else PartitionSpec("seeds"))


def shard_seeds(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf with its leading (seed) axis split over ``mesh``
    (see :func:`leaf_sharding`)."""
    return jax.tree.map(lambda x: jax.device_put(x, leaf_sharding(x, mesh)), tree)


def make_chunk(
    learner: Learner, chunk_updates: int, sharding: NamedSharding | None = None
) -> Callable[[Any, Array], tuple[Any, dict]]:
    """``(state [S], chunk index c) -> (state [S], metrics {k: [S, chunk_updates]})``, jitted
    once. Update ``i`` of chunk ``c`` is told its run-wide index ``c * chunk_updates + i``
    (unbatched), so per-update branches such as "learning has started" stay real branches.

    ``sharding`` (the state's seed sharding, see :func:`shard_seeds`): the returned state is
    constrained to it, so the next chunk receives exactly the input layout it was compiled for
    (without it, the partitioner may lay some leaves out differently and every later call would
    recompile once)."""

    def one_seed(state: Any, c: Array) -> tuple[Any, dict]:
        ts = c * chunk_updates + jnp.arange(chunk_updates)
        return jax.lax.scan(lambda s, t: learner.update(s, t), state, ts)

    batched = jax.vmap(one_seed, in_axes=(0, None))
    if sharding is None:
        return jax.jit(batched, donate_argnums=0)

    def constrained(state: Any, c: Array) -> tuple[Any, dict]:
        state, metrics = batched(state, c)
        state = jax.tree.map(
            lambda x: jax.lax.with_sharding_constraint(x, leaf_sharding(x, sharding.mesh)),
            state)
        return state, metrics

    return jax.jit(constrained, donate_argnums=0)


def wandb_run(mode: str, run_dir: Path, cfg: Any) -> Any:
    """A wandb run named ``cfg.name`` with ``to_dict(cfg)`` as its config (``mode``: offline,
    online or disabled; ``None`` when disabled)."""
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return None
    return wandb.init(
        project="metajax", name=cfg.name, dir=str(run_dir), mode=mode,
        config=to_dict(cfg), reinit="finish_previous",
    )


class _Progress:
    """Progress line on stderr: env steps, SPS, ETA, mean return (tqdm when interactive)."""

    def __init__(self, total_steps: int, start_steps: int, enabled: bool):
        self.total, self.start, self.enabled = total_steps, start_steps, enabled
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_steps, unit="step",
                            unit_scale=True, dynamic_ncols=True, file=sys.stderr)

    def update(self, steps: int, ret: float) -> None:
        if self.bar is not None:
            self.bar.n = steps
            self.bar.set_postfix(ret=f"{ret:.3f}", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class HostLog:
    """The host side of every chunked loop (:func:`run_chunks`, MESA's stages): the progress
    bar on a terminal (``show``), else a log line every tenth of the chunks with env steps,
    steps/s, ETA and mean return; and the chunk's row in wandb (``wb``, keys after
    ``prefix``, per-member values as ``<key>/<unit><i>``)."""

    def __init__(self, name: str, n_chunks: int, per_chunk: int, start_chunk: int, end_chunk: int,
                 show: bool, wb: Any, log: Callable[[str], None], unit: str = "seed",
                 prefix: str = ""):
        self.name, self.n_chunks, self.per_chunk = name, n_chunks, per_chunk
        self.end_chunk, self.show, self.wb, self.log = end_chunk, show, wb, log
        self.unit, self.prefix = unit, prefix
        self.bar = _Progress(n_chunks * per_chunk, start_chunk * per_chunk, show)
        self.t_start = time.perf_counter()
        self.steps_done = 0  # env steps per member in this call

    def chunk(self, c: int, row: dict) -> None:
        """Chunk ``c`` (0-based) ended; ``row``: its metrics, lists over the members (and
        ``sps`` if measured)."""
        self.steps_done += self.per_chunk
        ret = float(np.mean(row["episode_return"]))
        self.bar.update((c + 1) * self.per_chunk, ret)
        n = self.n_chunks
        if not self.show and ((c + 1) % max(1, n // 10) == 0 or c + 1 == self.end_chunk):
            rate = self.steps_done / (time.perf_counter() - self.t_start)
            eta = (n - c - 1) * self.per_chunk / max(rate, 1e-9)
            sps = row.get("sps", rate)
            self.log(f"[{self.name}] chunk {c + 1}/{n}  env steps {(c + 1) * self.per_chunk:,}"
                     f"  {sps:,.0f} steps/s  ETA {eta:,.0f}s  return {ret:.3f}")
        if self.wb is not None:
            m = {k: v for k, v in row.items() if isinstance(v, list)}
            env_steps = m["env_steps"][0] if "env_steps" in m else (c + 1) * self.per_chunk
            p = self.prefix
            self.wb.log({f"{p}env_steps": env_steps, f"{p}sps": row.get("sps", 0.0),
                         f"{p}episode_return": ret,
                         **{f"{p}{k}/{self.unit}{i}": v for k, vals in m.items()
                            for i, v in enumerate(vals)}})

    def close(self) -> None:
        self.bar.close()


@dataclasses.dataclass
class RunResult:
    """What :func:`train` returns: final state, per-chunk metrics, evaluation results."""

    state: Any
    metrics: list[dict]
    results: dict
    run_dir: Path


def _to_host(metrics: dict) -> dict:
    """Chunk metrics ``[S, U]`` -> per-seed values: last for counters/returns, mean for losses."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v)
        if k in ("env_steps", "grad_steps", "episode_return"):
            out[k] = v[:, -1].tolist()
        elif k == "episodes":
            out[k] = v.sum(-1).tolist()
        else:
            out[k] = v.mean(-1).tolist()
    return out


class NonFiniteError(RuntimeError):
    """A chunk left a NaN or an infinity in a float metric or in the parameters (and the
    config does not allow it, see :attr:`TrainConfig.allow_nonfinite`)."""


def nonfinite_metrics(metrics: dict) -> dict[str, list[int]]:
    """``{name: [seed indices]}`` of the float metrics (``[S, ...]`` arrays, e.g. a chunk's
    ``[S, chunk_updates]``) that hold a NaN or an infinity for those seeds, in metric order."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v)
        if v.ndim and np.issubdtype(v.dtype, np.floating):
            bad = ~np.isfinite(v.reshape(v.shape[0], -1)).all(-1)
            if bad.any():
                out[k] = np.flatnonzero(bad).tolist()
    return out


def make_finite_check(learner: Learner) -> Callable[[Any], np.ndarray]:
    """``finite(state [S]) -> [S]`` bool: whether every float leaf of the seed's parameters
    (``state.params``, else ``learner.policy_params(state)``) is finite; one jitted
    reduction over the parameter leaves."""

    def all_finite(params: Any) -> Array:
        leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)
                  if jnp.issubdtype(x.dtype, jnp.inexact)]
        return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)

    reduce = jax.jit(jax.vmap(all_finite), compiler_options=ONCE)

    def finite(state: Any) -> np.ndarray:
        params = getattr(state, "params", None)
        params = learner.policy_params(state) if params is None else params
        return np.asarray(to_host(reduce(params)), bool)

    return finite


def nonfinite_report(bad_metrics: dict[str, list[int]], finite_params: np.ndarray,
                     chunk: int, n_chunks: int, unit: str = "seed") -> str | None:
    """``"non-finite <what> in chunk c/n (seed index(es) ...; also ...)"``, naming the first
    non-finite metric (or ``parameters``) and every seed index with one; ``None`` if all
    finite. ``unit``: what the batch axis holds (``"member"`` in a sweep)."""
    what = list(bad_metrics) + (["parameters"] if not finite_params.all() else [])
    if not what:
        return None
    seeds = sorted({*(i for v in bad_metrics.values() for i in v),
                    *np.flatnonzero(~finite_params).tolist()})
    also = f"; also {', '.join(what[1:])}" if len(what) > 1 else ""
    label = f"{unit} index" if len(seeds) == 1 else f"{unit} indices"
    return (f"non-finite {what[0]} in chunk {chunk}/{n_chunks} "
            f"({label} {', '.join(map(str, seeds))}{also})")


#: Config fields that may change when a run is resumed, because none of them changes what is
#: trained: when evaluations run between chunks (the final one is the same), how often the state
#: is checkpointed, whether a non-finite chunk stops the run. ``total_env_steps`` may grow too.
RESUMABLE_FIELDS = ("eval_every", "checkpoint_every", "allow_nonfinite")


def resume_conflicts(saved: dict | None, cfg: Any) -> list[str]:
    """Why ``cfg`` cannot continue a run saved with the config ``saved`` (its ``to_dict``):
    ``"key: old -> new"`` for every differing dotted field, except ``total_env_steps`` growing
    (a longer run) and :data:`RESUMABLE_FIELDS`; empty if it can. Fields that ``saved`` lacks
    (added to the config since) count as their defaults."""
    try:
        old = to_dict(from_dict(type(cfg), dict(saved or {})))
    except (ConfigError, TypeError, ValueError) as e:
        return [f"the saved config does not read back as {type(cfg).__name__}: {e}"]
    out = []
    for k, (a, b) in flat_diff(old, to_dict(cfg)).items():
        if k in RESUMABLE_FIELDS:
            continue
        if k == "total_env_steps":
            if isinstance(a, int) and isinstance(b, int) and b > a:
                continue
            out.append(f"{k}: {a!r} -> {b!r} (a resumed run can only grow)")
            continue
        out.append(f"{k}: {a!r} -> {b!r}")
    return out


def resume_refusal(run_dir: Path, conflicts: list[str]) -> str:
    """The one-line message of a refused resume (see :func:`resume_conflicts`)."""
    return (f"{run_dir} was trained with a different config; refusing to resume (differences: "
            f"{'; '.join(conflicts)}; only a larger total_env_steps and "
            f"{', '.join(RESUMABLE_FIELDS)} may change)")


def num_chunks(cfg: Any, learner: Learner) -> int:
    """Chunks of a run: ``ceil(total_env_steps / (env steps per update * chunk_updates))``,
    at least 1."""
    per_chunk = learner.env_steps_per_update * cfg.chunk_updates
    return max(1, math.ceil(cfg.total_env_steps / per_chunk))


@dataclasses.dataclass
class Program:
    """What :func:`run_chunks` trains into a run directory: one learner batched over
    ``members`` (the seeds of a run; the grid points x seeds of a sweep group).

    * ``learner``: ``update`` of one member (vmapped by :func:`make_chunk`);
      ``env_steps_per_update``; ``policy_params`` for the parameter check of a state without
      ``params`` (:func:`make_finite_check`);
    * ``init(*init_args) -> state [members]``: the fresh batched state, a pure function
      (:func:`run_chunks` jits it and places the state); its ``jax.eval_shape`` is the
      template checkpoints are restored into;
    * ``evaluate(state, chunk) -> dict``: the evaluation written to ``results.json``;
    * ``config``: written to ``config.json`` and saved with every checkpoint; its
      ``"algo_config"`` is the :func:`~metajax.config.to_dict` of the config;
    * ``conflicts(saved config.json dict or None) -> [str]``: why a saved run cannot be
      continued by this one (empty: it can, see :func:`resume_conflicts`);
    * ``unit``: what a member is called in messages (``"seed"``, ``"member"``).
    """

    learner: Learner
    members: int
    init: Callable[..., Any]
    init_args: tuple
    evaluate: Callable[[Any, int], dict]
    config: dict
    conflicts: Callable[[dict | None], list[str]]
    unit: str = "seed"


def run_chunks(
    cfg: Any,
    program: Program,
    run_dir: str | Path,
    resume: bool = False,
    wandb_mode: str = "offline",
    progress: bool | None = None,
    max_chunks: int | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """The host loop of :func:`train` (and of each group of a sweep) over ``program``: chunks
    of ``cfg.chunk_updates`` updates until ``cfg.total_env_steps``, ``metrics.jsonl`` (every
    metric a list over the members), progress, wandb, the non-finite check, evaluations
    (``cfg.eval_every`` and at the end, ``results.json``), checkpoints
    (``cfg.checkpoint_every``, at the end and at the last chunk of this call) and resume; the
    arguments are :func:`train`'s.

    Raises:
      CheckpointError: ``run_dir`` holds another run, or one ``program.conflicts`` refuses.
      NonFiniteError: a NaN or an infinity (unless ``cfg.allow_nonfinite``).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = primary_only(log)
    primary = is_primary()
    learner, members = program.learner, program.members
    per_chunk = learner.env_steps_per_update * cfg.chunk_updates
    n_chunks = num_chunks(cfg, learner)
    mesh = seed_mesh(members)
    ckpt = Checkpointer(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    state, start_chunk = _start(cfg, program, run_dir, ckpt, mesh, resume, n_chunks, log)
    saved_chunk = start_chunk if start_chunk else None  # the latest (finite) checkpoint
    if primary:
        write_atomic(run_dir / "config.json", json.dumps(program.config, indent=1))

    chunk = make_chunk(learner, cfg.chunk_updates, NamedSharding(mesh, PartitionSpec("seeds")))
    finite = make_finite_check(learner)
    wb = wandb_run(wandb_mode if primary else "disabled", run_dir, cfg)
    show = primary and (sys.stderr.isatty() if progress is None else progress)
    history: list[dict] = []
    results: dict = {}
    warned = False
    end_chunk = n_chunks if max_chunks is None else min(n_chunks, start_chunk + max_chunks)
    host = HostLog(cfg.name, n_chunks, per_chunk, start_chunk, end_chunk, show, wb, log,
                   program.unit)
    try:
        for c in range(start_chunk, end_chunk):
            t0 = time.perf_counter()
            with killpoint.compiling(chunk):  # test-only kill points, inert by default
                state, m = chunk(state, jnp.int32(c))
            killpoint.kill_at(f"chunk:{c + 1}")
            m = to_host(m)
            bad = nonfinite_report(nonfinite_metrics(m), finite(state), c + 1, n_chunks,
                                   program.unit)
            row = {"chunk": c + 1, "time": 0.0, "sps": 0.0, **_to_host(m)}
            dt = time.perf_counter() - t0
            row.update(time=round(dt, 4), sps=per_chunk * members / dt)
            _append_row(history, row, metrics_path if primary else None)
            host.chunk(c, row)
            if bad is not None:
                warned = _diverged(cfg, bad, run_dir, saved_chunk, warned, log)
            last = c + 1 == n_chunks
            if (cfg.eval_every and (c + 1) % cfg.eval_every == 0) or last:
                results = _evaluate(program, state, c + 1, run_dir if primary else None, wb)
            periodic = cfg.checkpoint_every and (c + 1) % cfg.checkpoint_every == 0
            if periodic or last or c + 1 == end_chunk:
                ckpt.save(c + 1, state, program.config,
                          {"chunk": c + 1, "processes": jax.process_count()})
                saved_chunk = c + 1
    finally:
        host.close()
        ckpt.close()
        if wb is not None:
            wb.finish()
    if history:
        _log_total(cfg.name, history, len(history) * per_chunk * members, host.t_start, log)
    return RunResult(state=state, metrics=history, results=results, run_dir=run_dir)


def _append_row(history: list[dict], row: dict, path: Path | None) -> None:
    """``row`` appended to ``history`` and, when ``path`` is given, to that jsonl file."""
    history.append(row)
    if path is not None:
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _evaluate(program: Program, state: Any, done: int, run_dir: Path | None,
              wb: Any) -> dict:
    """``program.evaluate`` after ``done`` chunks, written to ``run_dir/results.json`` (when
    given: the primary process) and logged to wandb (when ``wb`` is a run)."""
    results = program.evaluate(state, done)
    if run_dir is not None:
        write_atomic(run_dir / "results.json", json.dumps(results, indent=1))
    if wb is not None:
        wb.log({f"eval/{k}": v for k, v in _flat_eval(results).items()})
    return results


def _log_total(name: str, history: list[dict], steps: int, t_start: float,
               log: Callable[[str], None]) -> None:
    elapsed = time.perf_counter() - t_start
    log(f"{name}: {steps:,} env steps in {elapsed:.1f}s ({steps / elapsed:,.0f}/s incl. "
        f"compile), return {float(np.mean(history[-1]['episode_return'])):.3f}")


def _start(cfg: Any, program: Program, run_dir: Path, ckpt: Checkpointer, mesh: Mesh,
           resume: bool, n_chunks: int, log: Callable[[str], None]) -> tuple[Any, int]:
    """``(state [members], first chunk)``: restored from the latest checkpoint when resuming
    (after ``program.conflicts`` allowed it; ``metrics.jsonl`` cut back to that chunk), else
    the program's fresh init (an existing run is refused unless resuming)."""
    metrics_path = run_dir / "metrics.jsonl"
    if resume and ckpt.latest_step() is not None:
        saved_cfg, saved_meta = ckpt.read_config()
        saved_algo = (saved_cfg or {}).get("algo_config")
        conflicts = program.conflicts(saved_cfg)
        procs = int(saved_meta.get("processes", 1))
        if procs != jax.process_count():
            ckpt.close()
            raise CheckpointError(
                f"{run_dir} was trained by {procs} process(es); refusing to resume it with "
                f"{jax.process_count()} (resume with the same process count)")
        if conflicts:
            ckpt.close()
            raise CheckpointError(resume_refusal(run_dir, conflicts))
        shapes = jax.eval_shape(program.init, *program.init_args)
        state, _, meta = restore_batched(shapes, program.members, ckpt)
        start_chunk = int(meta["chunk"])
        if is_primary():
            _truncate_metrics(metrics_path, start_chunk)
        old_total = (saved_algo or {}).get("total_env_steps", cfg.total_env_steps)
        grown = (f", total_env_steps {old_total:,} -> {cfg.total_env_steps:,}"
                 if old_total != cfg.total_env_steps else "")
        log(f"resumed {run_dir} at chunk {start_chunk}/{n_chunks}{grown}")
        return state, start_chunk
    if resume:
        log(f"no checkpoint in {run_dir}; starting from scratch")
    elif ckpt.latest_step() is not None:
        ckpt.close()
        raise CheckpointError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose "
            "another --out")
    shapes = jax.eval_shape(program.init, *program.init_args)
    init = jax.jit(program.init, out_shardings=jax.tree.map(lambda s: leaf_sharding(s, mesh),
                                                            shapes), compiler_options=ONCE)
    state = init(*host_inputs(program.init_args))  # each device computes its own members
    if is_primary():
        metrics_path.write_text("")
    return state, 0


def _diverged(cfg: Any, bad: str, run_dir: Path, saved_chunk: int | None, warned: bool,
              log: Callable[[str], None]) -> bool:
    """A non-finite chunk: raise :class:`NonFiniteError` (the latest checkpoint is the last
    finite state), or warn once when ``cfg.allow_nonfinite``; returns whether it warned."""
    if not cfg.allow_nonfinite:
        kept = (f"{run_dir} keeps its last finite checkpoint (chunk {saved_chunk})"
                if saved_chunk is not None else "no checkpoint was saved before it")
        raise NonFiniteError(
            f"training diverged: {bad}; {kept}; lower the learning rates, or set "
            "allow_nonfinite=true (metajax run --allow-nonfinite) to keep going")
    if not warned:
        log(f"[{cfg.name}] warning: {bad}; continuing (allow_nonfinite)")
    return True


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename: a process killed at
    any point leaves the old file or the new one, never a truncated one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _truncate_metrics(path: Path, chunk: int) -> None:
    """Drop metric lines written after checkpoint ``chunk`` (an interrupted run's tail),
    including a last line cut short (a run killed while appending it, after that checkpoint)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = []
    for i, ln in enumerate(lines):
        try:
            row = json.loads(ln)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
        if row["chunk"] <= chunk:
            keep.append(ln)
    write_atomic(path, "".join(ln + "\n" for ln in keep))

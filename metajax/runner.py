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
(members = seeds); :mod:`metajax.sweep` builds one per group of a grid (members = points x
seeds, with traced hyperparameters, :data:`TRACEABLE`).

A run directory holds ``config.json``, ``metrics.jsonl``, ``results.json`` (the last
evaluation: per task and mode the mean return per agent of each seed and episode, and its
``"stats"``: IQM, mean, median, optimality gap, performance profile with 95 % stratified
bootstrap CIs over seeds, :mod:`metajax.run_stats`) and ``checkpoints/``; ``resume=True``
continues from the latest checkpoint, bit for bit, also to a larger ``total_env_steps``
(:func:`resume_conflicts`).

Reliability: :meth:`TrainConfig.validate` and :func:`check_task_spec` reject a config before
anything is built; after every chunk the host checks every float metric and the parameters of
every seed, and a NaN or an infinity stops the run (:class:`NonFiniteError`) before that state is
evaluated or checkpointed (unless ``allow_nonfinite``).
"""

from __future__ import annotations

import dataclasses
import inspect
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

import envs
from envs.core import MultiAgentEnv
from envs.wrappers import stack_tasks
from metajax import killpoint, run_stats
from metajax.checkpoint import Checkpointer, CheckpointError, abstract_like
from metajax.config import ConfigError, flat_diff, from_dict, resolve, to_dict
from metajax.maddpg import Hypers, Learner, MADDPGConfig, make_maddpg

Array = jax.Array

#: XLA options for programs that run once or a few times per run (initialisation, evaluation,
#: playing an episode): a cheap optimisation level compiles several times faster, and on a CPU
#: compilation dominates these programs. The training chunks keep XLA's default.
ONCE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """An experiment of one off-policy learner on a batch of games.

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
        <metajax.maddpg.MADDPGConfig.validate>`, and the first gradient step (at
        ``max(learning_starts, batch_size)`` env steps) within ``total_env_steps``.

        Raises:
          ConfigError: one line naming the fields and their values.
        """
        m = self.maddpg
        m.validate("maddpg.")
        first = max(m.learning_starts, m.batch_size)
        if first > self.total_env_steps:
            field = "learning_starts" if m.learning_starts >= m.batch_size else "batch_size"
            raise ConfigError(
                f"maddpg.{field}={first} is beyond total_env_steps={self.total_env_steps}: "
                "the run would end before its first gradient step")


def _make_maddpg(cfg: TrainConfig, env: MultiAgentEnv, tasks: Any,
                 traced: bool = False) -> Learner:
    return make_maddpg(cfg.maddpg, env, tasks, traced=traced)


#: Learners the runner can drive: ``name -> "module:factory"``, the factory being
#: ``factory(config, env, tasks, traced=False) -> Learner`` (``traced``: see
#: :class:`Traceable`); imported on first use (:func:`learner_factory`).
ALGOS: dict[str, str] = {
    "maddpg": "metajax.runner:_make_maddpg",
    "mra": "metajax.mra:make_from_config",
}


def learner_factory(algo: str) -> Callable[..., Learner]:
    """The factory of :data:`ALGOS` for ``algo`` (raises ``ValueError`` if unknown)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; known: {', '.join(sorted(ALGOS))}")
    return resolve(ALGOS[algo])


@dataclasses.dataclass(frozen=True)
class Traceable:
    """The hyperparameters of an algorithm that a sweep may trace (:mod:`metajax.sweep`): one
    compiled program trains every value, vmapped.

    * ``keys``: the dotted config keys the learner reads as numbers only (its ``Hypers``);
    * ``hypers(config) -> Hypers``: their values in ``config`` (Python floats), the pytree a
      learner built with ``traced=True`` takes as ``init(key, hypers=)`` /
      ``update(state, t, hypers=)`` / ``policy(..., hypers=)``;
    * ``structure(config) -> tuple``: what of those values still shapes the program (e.g.
      whether MRA's ``mi_coef`` is 0, which drops a step): configs that differ there are
      compiled apart.
    """

    keys: tuple[str, ...]
    hypers: Callable[[Any], Any]
    structure: Callable[[Any], tuple] = lambda cfg: ()


MADDPG_TRACEABLE = Traceable(tuple(f"maddpg.{f.name}" for f in dataclasses.fields(Hypers)),
                             lambda cfg: Hypers.of(cfg.maddpg))

#: :class:`Traceable` hyperparameters by algorithm name: ``name -> "module:attribute"``,
#: imported on first use (:func:`traceable`); an algorithm without an entry cannot be swept.
TRACEABLE: dict[str, str] = {
    "maddpg": "metajax.runner:MADDPG_TRACEABLE",
    "mra": "metajax.mra:TRACEABLE",
}


def traceable(algo: str) -> Traceable | None:
    """The :class:`Traceable` of ``algo`` (:data:`TRACEABLE`), ``None`` if it has none."""
    ref = TRACEABLE.get(algo)
    return resolve(ref) if ref else None


# --- building blocks ------------------------------------------------------------------------------


def build_env(cfg: TrainConfig) -> MultiAgentEnv:
    return envs.make(cfg.env, **cfg.env_config)


def task_fields(env: MultiAgentEnv) -> tuple[MultiAgentEnv, inspect.Signature | None]:
    """``(env, signature of its make_task)``, followed through wrappers that pass ``**fields``
    on to the ``env`` they wrap; the signature is ``None`` if it only takes ``**fields``."""
    while True:
        sig = inspect.signature(env.make_task)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return env, sig
        inner = getattr(env, "env", None)
        if inner is None or inner is env:
            return env, None
        env = inner


def check_task_spec(env: MultiAgentEnv, spec: dict) -> None:
    """Raise :class:`ConfigError` if ``env.make_task(**spec)`` would not accept the keys of
    ``spec`` (an unknown field, or a required one missing), listing the env's task fields."""
    env, sig = task_fields(env)
    if sig is None:
        return
    params = sig.parameters
    unknown = [k for k in spec if k not in params]
    missing = [k for k, p in params.items()
               if p.default is p.empty and p.kind is not p.VAR_POSITIONAL and k not in spec]
    if not (unknown or missing):
        return
    fields = ", ".join(params) or "none"
    what = (f"unknown task field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}" if unknown else
            f"missing task field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}")
    raise ConfigError(f"{what} for {type(env).__name__} (task fields: {fields})")


def make_task(env: MultiAgentEnv, spec: dict) -> Any:
    """``env.make_task(**spec)`` after :func:`check_task_spec`."""
    spec = dict(spec)
    check_task_spec(env, spec)
    return env.make_task(**spec)


def build_tasks(env: MultiAgentEnv, specs: tuple[dict, ...], n: int | None = None) -> Any:
    """Stack ``env.make_task(**spec)`` for each spec (cycled to ``n`` entries if given).

    Raises:
      ConfigError: a spec with an unknown (or without a required) task field.
    """
    for s in specs:
        check_task_spec(env, dict(s))
    made = [env.make_task(**dict(s)) for s in specs]
    if n is not None:
        made = [made[i % len(made)] for i in range(n)]
    return stack_tasks(made)


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
    """1-D mesh ``("seeds",)`` over as many local devices as evenly divide ``n_seeds``."""
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


# --- evaluation --------------------------------------------------------------------------------


def make_evaluator(
    learner: Learner, env: MultiAgentEnv, episodes: int, stats: bool = False
) -> Callable[[Any, Any, Array, bool], Any]:
    """``evaluate(params [S], tasks [K], key, greedy, carry0=None) -> returns
    [S, K, episodes, A]``.

    ``greedy`` is traced: greedy and stochastic evaluation share one compilation. ``carry0``
    (optional, ``[A, h]``): the policy's carry at every episode start instead of
    ``learner.initial_carry()`` (e.g. MRA's latent carry that fixes every agent's ``z``,
    :func:`metajax.mra.fixed_latent_carry`).

    Plays whole episodes (no auto-reset): per-agent undiscounted returns, accumulated until
    the episode ends; padded agents return 0.

    ``stats=True``: ``evaluate`` returns ``(returns, stats)`` with ``stats`` a dict of
    ``[S, K, episodes]`` float32 arrays from the same episodes: ``"length"``, the number of steps
    until the episode ended (``env.episode_length`` if it never did), and, for every scalar
    float entry of the timestep ``extras`` that ``env.step`` returns (e.g. Pac-Man's ``caught``
    and ``eaten``), its sum over the steps of the episode (non-scalar extras are skipped).
    """
    extra_keys = _scalar_extras(env) if stats else ()

    def episode(params: Any, task: Any, key: Array, greedy: bool, carry0: Array) -> Any:
        k_reset, k_run = jax.random.split(key)
        state, ts = env.reset_to(k_reset, task)

        def step(c, k):
            state, obs, carry, ret, alive, acc = c
            act, carry = learner.policy(params, obs, carry, k, greedy)
            state, ts = env.step(state, act)
            ret = ret + jnp.where(alive, ts.reward, 0.0)
            if stats:
                live = alive.astype(jnp.float32)
                acc = {"length": acc["length"] + live,
                       **{n: acc[n] + live * ts.extras[n].astype(jnp.float32)
                          for n in extra_keys}}
            alive = alive & ~ts.done
            return (state, ts.observation, carry, ret, alive, acc), None

        a = env.max_agents
        acc0 = {n: jnp.zeros((), jnp.float32) for n in ("length", *extra_keys)} if stats else {}
        init = (state, ts.observation, carry0, jnp.zeros((a,)), jnp.asarray(True), acc0)
        (_, _, _, ret, _, acc), _ = jax.lax.scan(
            step, init, jax.random.split(k_run, env.episode_length))
        return (ret, acc) if stats else ret

    def evaluate(params: Any, tasks: Any, key: Array, greedy: bool,
                 carry0: Array | None = None) -> Any:
        n_seeds = jax.tree.leaves(params)[0].shape[0]
        n_tasks = jax.tree.leaves(tasks)[0].shape[0]
        keys = jax.random.split(key, n_seeds * n_tasks * episodes).reshape(
            n_seeds, n_tasks, episodes, -1)
        carry0 = learner.initial_carry() if carry0 is None else carry0
        f = jax.vmap(episode, (None, None, 0, None, None))  # episodes
        f = jax.vmap(f, (None, 0, 0, None, None))  # tasks
        f = jax.vmap(f, (0, None, 0, None, None))  # seeds
        return f(params, tasks, keys, greedy, carry0)

    return jax.jit(evaluate, compiler_options=ONCE)


def _scalar_extras(env: MultiAgentEnv) -> tuple[str, ...]:
    """Names of the scalar float entries of the ``extras`` that ``env.step`` returns (found
    from shapes only, with :func:`jax.eval_shape`), sorted."""

    def extras(key: Array) -> dict:
        state, _ = env.reset(key)
        _, ts = env.step(state, env.action_spec.generate_value())
        return ts.extras

    shapes = jax.eval_shape(extras, jax.random.PRNGKey(0))
    return tuple(sorted(
        n for n, v in shapes.items()
        if isinstance(v, jax.ShapeDtypeStruct) and v.shape == ()
        and jnp.issubdtype(v.dtype, jnp.floating)))


def team_returns(returns: Any, team: Any, mask: Any) -> dict[int, np.ndarray]:
    """Mean return per agent of each team.

    Args:
      returns: ``[..., A]`` per-agent returns (e.g. ``[S, K, E, A]`` from the evaluator).
      team: ``[A]`` int team of each slot (``obs.team``).
      mask: ``[A]`` bool (or broadcastable to ``returns``, e.g. ``[K, 1, A]``), agents in the
        game.

    Returns:
      ``{t: [...]}`` for every team with an agent in ``mask``: the mean of ``returns`` over
      that team's agents in the game (NaN where a row has none); ``[]`` for ``[A]`` returns.
    """
    r = np.asarray(returns, np.float64)
    team = np.asarray(team)
    mask = np.broadcast_to(np.asarray(mask, bool), r.shape)
    out = {}
    for t in np.unique(team[mask.reshape(-1, r.shape[-1]).any(0)]):
        sel = mask & (team == t)
        n = sel.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[int(t)] = np.where(sel, r, 0.0).sum(-1) / n
    return out


def summarize_returns(returns: np.ndarray, tasks: Any, env: MultiAgentEnv) -> list[dict]:
    """Per task of ``returns [S, K, E, A]``: the mean return per active agent of each episode
    (``per_episode [S][E]``) and of each seed (``per_seed [S]``, the mean over its episodes),
    their mean and std over seeds, and the same per team (multi-team games)."""
    mask = np.asarray(jax.vmap(_agent_mask_of(env))(tasks))  # [K, A]
    team = np.asarray(_team_ids(env))
    out = []
    for k in range(returns.shape[1]):
        r = returns[:, k]  # [S, E, A]
        m = mask[k]
        per_episode = r[..., m].mean(-1)  # [S, E]
        per_seed = per_episode.mean(-1)  # [S]
        entry = {"mean": float(per_seed.mean()), "std": float(per_seed.std()),
                 "per_seed": per_seed.tolist(), "per_episode": per_episode.tolist()}
        if env.num_teams > 1:
            for t, per_ep in team_returns(r, team, m).items():  # [S, E]
                team_seed = per_ep.mean(-1)
                entry[f"team{t}"] = float(team_seed.mean())
                entry[f"team{t}_per_seed"] = team_seed.tolist()
        out.append(entry)
    return out


def _agent_mask_of(env: MultiAgentEnv) -> Callable[[Any], Array]:
    def f(task: Any) -> Array:
        _, ts = env.reset_to(jax.random.PRNGKey(0), task)
        return ts.observation.agent_mask

    return f


def _team_ids(env: MultiAgentEnv) -> Array:
    task = env.sample_task(jax.random.PRNGKey(0))
    _, ts = env.reset_to(jax.random.PRNGKey(0), task)
    return ts.observation.team


# --- logging -----------------------------------------------------------------------------------


def _wandb_run(mode: str, run_dir: Path, cfg: TrainConfig):
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


# --- the loop ----------------------------------------------------------------------------------


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
        return np.asarray(jax.device_get(reduce(params)), bool)

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


def resume_conflicts(saved: dict | None, cfg: TrainConfig) -> list[str]:
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


def num_chunks(cfg: TrainConfig, learner: Learner) -> int:
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


def run_chunks(
    cfg: TrainConfig,
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
    learner, members = program.learner, program.members
    per_chunk = learner.env_steps_per_update * cfg.chunk_updates
    n_chunks = num_chunks(cfg, learner)
    mesh = seed_mesh(members)
    ckpt = Checkpointer(run_dir)
    config_dict = program.config

    start_chunk = 0
    saved_chunk: int | None = None  # the latest checkpoint (every saved state is finite)
    metrics_path = run_dir / "metrics.jsonl"
    if resume and ckpt.latest_step() is not None:
        saved_cfg, _ = ckpt.read_config()
        saved_algo = (saved_cfg or {}).get("algo_config")
        conflicts = program.conflicts(saved_cfg)
        if conflicts:
            ckpt.close()
            raise CheckpointError(resume_refusal(run_dir, conflicts))
        shapes = jax.eval_shape(program.init, *program.init_args)
        state, _, meta = restore_batched(shapes, members, ckpt)
        start_chunk = saved_chunk = int(meta["chunk"])
        _truncate_metrics(metrics_path, start_chunk)
        old_total = (saved_algo or {}).get("total_env_steps", cfg.total_env_steps)
        grown = (f", total_env_steps {old_total:,} -> {cfg.total_env_steps:,}"
                 if old_total != cfg.total_env_steps else "")
        log(f"resumed {run_dir} at chunk {start_chunk}/{n_chunks}{grown}")
    else:
        if resume:
            log(f"no checkpoint in {run_dir}; starting from scratch")
        elif ckpt.latest_step() is not None:
            ckpt.close()
            raise CheckpointError(
                f"{run_dir} already holds a run; pass --resume to continue it or choose "
                "another --out")
        init = jax.jit(program.init, compiler_options=ONCE)
        state = shard_seeds(init(*program.init_args), mesh)
        metrics_path.write_text("")
    write_atomic(run_dir / "config.json", json.dumps(config_dict, indent=1))

    chunk = make_chunk(learner, cfg.chunk_updates, NamedSharding(mesh, PartitionSpec("seeds")))
    finite = make_finite_check(learner)
    wb = _wandb_run(wandb_mode, run_dir, cfg)
    show = sys.stderr.isatty() if progress is None else progress
    bar = _Progress(n_chunks * per_chunk, start_chunk * per_chunk, show)
    history: list[dict] = []
    results: dict = {}
    t_start = time.perf_counter()
    steps_done = 0
    warned = False
    end_chunk = n_chunks if max_chunks is None else min(n_chunks, start_chunk + max_chunks)
    try:
        for c in range(start_chunk, end_chunk):
            t0 = time.perf_counter()
            with killpoint.compiling(chunk):  # test-only kill points, inert by default
                state, m = chunk(state, jnp.int32(c))
            killpoint.kill_at(f"chunk:{c + 1}")
            m = jax.device_get(m)
            bad = nonfinite_report(nonfinite_metrics(m), finite(state), c + 1, n_chunks,
                                   program.unit)
            m = _to_host(m)
            dt = time.perf_counter() - t0
            steps_done += per_chunk
            row = {"chunk": c + 1, "time": round(dt, 4),
                   "sps": per_chunk * members / dt, **m}
            history.append(row)
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            ret = float(np.mean(m["episode_return"]))
            bar.update((c + 1) * per_chunk, ret)
            if not show and ((c + 1) % max(1, n_chunks // 10) == 0 or c + 1 == end_chunk):
                rate = steps_done / (time.perf_counter() - t_start)
                eta = (n_chunks - c - 1) * per_chunk / max(rate, 1e-9)
                log(f"[{cfg.name}] chunk {c + 1}/{n_chunks}  env steps {(c + 1) * per_chunk:,}"
                    f"  {row['sps']:,.0f} steps/s  ETA {eta:,.0f}s  return {ret:.3f}")
            if wb is not None:
                wb.log({"env_steps": m["env_steps"][0], "sps": row["sps"],
                        "episode_return": ret,
                        **{f"{k}/{program.unit}{s}": v for k, vals in m.items()
                           for s, v in enumerate(vals)}})
            if bad is not None:
                if not cfg.allow_nonfinite:
                    kept = (f"{run_dir} keeps its last finite checkpoint (chunk {saved_chunk})"
                            if saved_chunk is not None else "no checkpoint was saved before it")
                    raise NonFiniteError(
                        f"training diverged: {bad}; {kept}; lower the learning rates, or set "
                        "allow_nonfinite=true (metajax run --allow-nonfinite) to keep going")
                if not warned:
                    log(f"[{cfg.name}] warning: {bad}; continuing (allow_nonfinite)")
                    warned = True
            last = c + 1 == n_chunks
            if (cfg.eval_every and (c + 1) % cfg.eval_every == 0) or last:
                results = program.evaluate(state, c + 1)
                write_atomic(run_dir / "results.json", json.dumps(results, indent=1))
                if wb is not None:
                    wb.log({f"eval/{k}": v for k, v in _flat_eval(results).items()})
            periodic = cfg.checkpoint_every and (c + 1) % cfg.checkpoint_every == 0
            if periodic or last or c + 1 == end_chunk:
                ckpt.save(c + 1, state, config_dict, {"chunk": c + 1})
                saved_chunk = c + 1
    finally:
        bar.close()
        ckpt.close()
        if wb is not None:
            wb.finish()
    elapsed = time.perf_counter() - t_start
    if history:
        log(f"{cfg.name}: {steps_done * members:,} env steps in {elapsed:.1f}s "
            f"({steps_done * members / elapsed:,.0f}/s incl. compile), "
            f"return {float(np.mean(history[-1]['episode_return'])):.3f}")
    return RunResult(state=state, metrics=history, results=results, run_dir=run_dir)


def _evaluate(evaluator, learner, state, tasks, env, cfg, chunk) -> dict:
    return evaluate_params(evaluator, learner.policy_params(state),
                           int(np.asarray(state.env_steps)[0]), tasks, env, cfg, chunk)


def evaluate_params(
    evaluator: Callable[..., Any], params: Any, env_steps: int, tasks: Any, env: MultiAgentEnv,
    cfg: TrainConfig, chunk: int,
) -> dict:
    """The ``results.json`` of a run at ``chunk``: ``evaluator`` (:func:`make_evaluator`) on
    the policy parameters ``params [S]`` of its ``S`` seeds, greedy and stochastic, with the
    run's evaluation key for that chunk; :func:`summarize_returns` per task, and the
    statistics of :func:`add_stats` (method name: ``cfg.name``)."""
    key = jax.random.PRNGKey(cfg.seed + 10_007 * chunk)
    out: dict = {"chunk": chunk, "env_steps": env_steps,
                 "tasks": list(cfg.eval_tasks or distinct_tasks(cfg.tasks))}
    for greedy in (True, False):
        r = np.asarray(evaluator(params, tasks, key, greedy))
        out["greedy" if greedy else "stochastic"] = summarize_returns(r, tasks, env)
    return add_stats(out, env, tasks, cfg.name)


def optimal_values(env: MultiAgentEnv, tasks: Any) -> list[float] | None:
    """``[K]`` the best return of each task where the env knows it (``optimal_value`` of the
    climb games, ``optimal_return`` of the multi-stage one), else None."""
    fn = getattr(env, "optimal_value", None) or getattr(env, "optimal_return", None)
    if not callable(fn):
        return None
    return np.asarray(jax.vmap(fn)(tasks), np.float64).reshape(-1).tolist()


def add_stats(results: dict, env: MultiAgentEnv, tasks: Any, label: str) -> dict:
    """``results`` (the evaluation of :func:`summarize_returns` per mode) with the env's
    ``optimal_value`` per task (where known) and the ``"stats"`` block of
    :func:`metajax.run_stats.train_groups` (``label``: the method's name, the run's config
    name, so that a run and its copy in another directory have the same results)."""
    opt = optimal_values(env, tasks)
    if opt is not None:
        results["optimal_value"] = opt
    results["stats"] = run_stats.stats_block(run_stats.train_groups(results, label))
    return results


def _flat_eval(results: dict) -> dict:
    flat = {}
    for mode in ("greedy", "stochastic"):
        for i, entry in enumerate(results.get(mode, [])):
            flat[f"{mode}/task{i}"] = entry["mean"]
    return flat


def distinct_tasks(specs: tuple[dict, ...]) -> tuple[dict, ...]:
    """The task specs with duplicates removed, in order."""
    seen, out = set(), []
    for s in specs:
        k = json.dumps(s, sort_keys=True)
        if k not in seen:
            seen.add(k)
            out.append(s)
    return tuple(out)


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

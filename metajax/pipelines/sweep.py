"""Hyperparameter sweeps: every (grid point x seed) of a ``train`` experiment in one compiled
program, vmapped over traced hyperparameters (``metajax sweep``).

A grid is ``{dotted config key: [values]}``; its points are the Cartesian product (first key
slowest). Each point is the experiment's config with those values, trained with the same
``seeds`` as ``metajax run --seeds S`` of that config would be (the same init keys, the same
evaluation keys).

**What is traced.** The hyperparameters an algorithm reads as numbers only
(:data:`metajax.pipelines.registry.TRACEABLE`: for MADDPG :class:`metajax.algos.maddpg.Hypers`, the
learning rates, ``gamma``, ``tau``, the exploration noise, the Gumbel-softmax temperature, the
regularisers and ``reward_scale``; for MRA :class:`metajax.algos.mra.MRAHypers`, with its
learning rates, loss coefficients, Reptile ``alpha`` and the prior's temperature) become a
``[M]`` stack of arrays, one per member, carried with the learner state (:class:`Member`); the
learner is built with ``traced=True`` (learning rates in the Adam states through
``optax.inject_hyperparams``). One ``jit(vmap(scan(update)))`` trains all ``M`` members.

**Groups.** Any other grid key (batch size, widths, buffer size, ``num_envs``, an ``algo``
or an actor type, ...) changes shapes or Python control flow, so it cannot be traced: the
sweep splits the points into *groups*, one compiled program per distinct value of those keys
(and of what a traced value still decides, e.g. MRA's ``mi_coef = 0``), trained one after the
other and listed before training. Grouping rather than refusing: a width or batch-size sweep is
common, and a group costs exactly what a separate run of it would. ``seeds``, ``seed`` and
``name`` are refused (``--seeds`` gives the seeds; one sweep has one name).

Members of a group: point ``i`` of the group (in grid order) and seed ``s`` are member
``i * seeds + s``.

A sweep directory holds

* ``sweep.json``: the spec (base config, grid, seeds) and the plan (points, groups, members);
* ``groups/g<k>/``: one compiled program, in the runner's layout (``metrics.jsonl`` with every
  metric a list over the group's members, ``results.json`` with the evaluation of each point
  as a run's ``results.json``, ``checkpoints/`` of the whole vmapped state, ``config.json``);
* ``results.json`` / ``results.md``: per point the final greedy return of every seed and task
  (``scores [S, K]``), its IQM with a 95 % stratified bootstrap CI over seeds
  (:func:`metajax.stats.interval`) and its mean; ``best``: the point with the highest IQM;
* ``heatmap.png`` for 2-D grids (the IQM of each point).

``resume=True`` continues every group from its latest checkpoint, as ``metajax run --resume``
does (the spec must match; ``total_env_steps`` may grow).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metajax import plots, stats
from metajax.config import ConfigError, flat_diff, override, parse_value, to_dict
from metajax.core import taskspec
from metajax.core.interfaces import Learner
from metajax.pipelines import runner
from metajax.train import distributed, evaluation, loop
from metajax.train.checkpoint import CheckpointError

#: Grid keys a sweep refuses: the seeds come from ``--seeds``; one sweep has one name.
REFUSED_KEYS = ("seeds", "seed", "name")
#: Pipelines whose experiments a sweep can run (their ``run`` is
#: :func:`metajax.pipelines.runner.train`).
PIPELINES = ("train", "mra")
SPEC_FILE = "sweep.json"
GROUPS_DIR = "groups"


# --- the grid and the plan --------------------------------------------------------------------


def parse_grid(items: Sequence[str]) -> dict[str, list]:
    """``["a.b=1,2", "c=x,y"] -> {"a.b": [1, 2], "c": ["x", "y"]}``.

    The values after ``=`` are read as a JSON list when they form one (``[8],[16,16]`` gives
    two tuples), else split at commas, each read by :func:`metajax.config.parse_value`.

    Raises:
      ConfigError: no ``=``, no value, or a key given twice.
    """
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid expects key=v1,v2,..., got {item!r}")
        key, text = (x.strip() for x in item.split("=", 1))
        if key in grid:
            raise ConfigError(f"--grid {key} given twice; list its values once: {key}=v1,v2")
        try:
            values = json.loads(f"[{text}]")
        except json.JSONDecodeError:
            values = [parse_value(v.strip()) for v in text.split(",")]
        if not key or not values or any(v == "" for v in values):
            raise ConfigError(f"--grid {item!r}: a key and at least one value are needed")
        grid[key] = values
    return grid


@dataclasses.dataclass(frozen=True)
class Group:
    """One compiled program of a sweep.

    * ``index``; ``points``: indices (into :attr:`Plan.points`) of its grid points, in grid
      order;
    * ``static``: the grid values it fixes (keys that cannot be traced), ``{}`` if none;
      ``structure``: what its traced values decide of the program (:class:`interfaces.Traceable`);
    * ``traced``: the grid keys its members differ in (vmapped);
    * ``config``: the config it is built from (its first point's; seeds = the sweep's).
    """

    index: int
    points: tuple[int, ...]
    static: dict
    structure: tuple
    traced: tuple[str, ...]
    config: Any

    @property
    def name(self) -> str:
        return f"g{self.index}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """A sweep: the ``grid``, ``seeds`` per point, the ``points`` (``{key: value}`` in grid
    order) with their ``configs``, and the ``groups`` that train them."""

    base: Any
    grid: dict[str, list]
    seeds: int
    points: tuple[dict, ...]
    configs: tuple[Any, ...]
    groups: tuple[Group, ...]

    def group_of(self, point: int) -> Group:
        return next(g for g in self.groups if point in g.points)

    def describe(self) -> list[str]:
        """Lines listing the groups before training."""
        n = len(self.points)
        lines = [f"sweep: {n} grid point{'s' * (n != 1)} x {self.seeds} seed"
                 f"{'s' * (self.seeds != 1)} = {n * self.seeds} members in "
                 f"{len(self.groups)} compiled program{'s' * (len(self.groups) != 1)}"]
        for g in self.groups:
            fixed = " ".join(f"{k}={v}" for k, v in g.static.items()) or "(no static key)"
            traced = ", ".join(g.traced) or "none"
            lines.append(f"  group {g.name}: {fixed}; traced: {traced}; "
                         f"{len(g.points)} point(s) x {self.seeds} seed(s) = "
                         f"{len(g.points) * self.seeds} members")
        return lines


def plan_sweep(cfg: runner.TrainConfig, grid: dict[str, list], seeds: int) -> Plan:
    """Expand ``grid`` over ``cfg`` and split its points into compiled groups.

    A key is traced when it is in :data:`runner.TRACEABLE` of the point's algorithm; points
    that agree on every other grid key (and on :attr:`interfaces.Traceable.structure`) share a
    group.

    Raises:
      ConfigError: an empty grid, a refused or unknown key, a value the config rejects, or a
        point that fails :meth:`TrainConfig.validate` (one line, naming the point).
    """
    if not grid:
        raise ConfigError("a sweep needs at least one --grid key=v1,v2,...")
    for key in grid:
        if key in REFUSED_KEYS:
            raise ConfigError(
                f"--grid {key}: cannot be swept (the seeds come from --seeds; one sweep has "
                "one name)")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    base = override(cfg, {"seeds": seeds})
    keys = list(grid)
    points = tuple(dict(zip(keys, vals, strict=True))
                   for vals in itertools.product(*(grid[k] for k in keys)))
    configs = []
    for p in points:
        c = override(base, p)
        try:
            c.validate()
        except ConfigError as e:
            raise ConfigError(f"grid point {point_label(p)}: {e}") from None
        configs.append(c)
    # normalise the values as the config holds them (e.g. 1 -> 1.0 for a float field)
    points = tuple({k: _get(c, k) for k in keys} for c in configs)
    groups: dict[tuple, list[int]] = {}
    for i, (p, c) in enumerate(zip(points, configs, strict=True)):
        tr = runner.traceable(c.algo)
        traced = set(tr.keys) if tr else set()
        sig = (tuple((k, _hashable(v)) for k, v in p.items() if k not in traced),
               tr.structure(c) if tr else ())
        groups.setdefault(sig, []).append(i)
    out = []
    for g, (sig, members) in enumerate(groups.items()):
        c = configs[members[0]]
        tr = runner.traceable(c.algo)
        traced = tuple(k for k in keys if tr and k in tr.keys
                       and len({_hashable(points[i][k]) for i in members}) > 1)
        static = {k: points[members[0]][k] for k, _ in sig[0]}
        out.append(Group(g, tuple(members), static, sig[1], traced, c))
    return Plan(base, dict(grid), seeds, points, tuple(configs), tuple(out))


def _get(cfg: Any, key: str) -> Any:
    obj = cfg
    for part in key.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True, default=str)


def point_label(point: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())


# --- one group as a runner program ------------------------------------------------------------


@struct.dataclass
class Member:
    """What a sweep carries per member: the learner's ``state`` and its traced ``hypers``
    (the learner's ``Hypers`` pytree of ``[]`` float32 arrays; ``[M]`` when batched)."""

    state: Any
    hypers: Any

    @property
    def params(self) -> Any:
        """The learner state's parameters (for the runner's non-finite check)."""
        return getattr(self.state, "params", None)

    @property
    def env_steps(self) -> Any:
        return self.state.env_steps


def member_learner(learner: Learner) -> Learner:
    """``learner`` (built with ``traced=True``) over :class:`Member` states: ``update`` passes
    each member's hyperparameters; ``policy_params`` is ``(policy params, hypers)``, so that
    the runner's evaluator acts with each member's (exploration noise, temperatures)."""

    def update(m: Member, t: Any = None) -> tuple[Member, dict]:
        state, metrics = learner.update(m.state, t, hypers=m.hypers)
        return m.replace(state=state), metrics

    def policy(ph: Any, obs: Any, carry: Any, key: Any, greedy: Any = False):
        params, hypers = ph
        return learner.policy(params, obs, carry, key, greedy, hypers=hypers)

    return Learner(
        init=learner.init,
        update=update,
        policy=policy,
        policy_params=lambda m: (learner.policy_params(m.state), m.hypers),
        initial_carry=learner.initial_carry,
        env_steps_per_update=learner.env_steps_per_update,
        tasks=learner.tasks,
        hypers=learner.hypers,
    )


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.asarray(np.asarray(xs, np.float32)), *trees)


def group_program(plan: Plan, group: Group, pipeline: str) -> loop.Program:
    """The :class:`loop.Program` of ``group``: members ``[len(points) * seeds]``, each
    initialised with seed ``s``'s key of a run of its point and its point's hyperparameters;
    evaluated per point exactly as that run (:func:`evaluation.evaluate_params`)."""
    cfg = group.config
    env = runner.build_env(cfg)
    for spec in (*cfg.tasks, *cfg.eval_tasks):
        taskspec.check_task_spec(env, dict(spec))
    tr = runner.traceable(cfg.algo)
    if tr is None:
        raise ConfigError(f"algo {cfg.algo!r} has no runner.TRACEABLE entry (its traceable "
                          "hyperparameters); add one to sweep it")
    base = runner.build_learner(cfg, env, traced=True)
    learner = member_learner(base)
    s = plan.seeds
    n = len(group.points) * s
    hypers = _stack([tr.hypers(plan.configs[p]) for p in group.points for _ in range(s)])
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(cfg.seed), s), (len(group.points), 1))
    eval_tasks = taskspec.build_tasks(env, cfg.eval_tasks or taskspec.distinct_tasks(cfg.tasks))
    evaluator = evaluation.make_evaluator(learner, env, cfg.eval_episodes)

    def evaluate(state: Member, chunk: int) -> dict:
        # gathered to every process first (a multi-process sweep): slices of host arrays
        params, steps = distributed.to_host((learner.policy_params(state), state.env_steps))
        out = []
        for i, p in enumerate(group.points):
            sl = slice(i * s, (i + 1) * s)
            res = evaluation.evaluate_params(
                evaluator, jax.tree.map(lambda x, sl=sl: x[sl], params), int(steps[sl][0]),
                eval_tasks, env, plan.configs[p], chunk)
            out.append({"point": p, "values": plan.points[p], **res})
        return {"chunk": chunk, "points": out}

    spec = _spec(plan)

    def conflicts(saved: dict | None) -> list[str]:
        saved = saved or {}
        if saved.get("sweep", {}).get("grid") != spec["grid"] or (
                saved.get("sweep", {}).get("seeds") != plan.seeds):
            return ["the sweep's grid or seeds"]
        return loop.resume_conflicts(saved.get("algo_config"), cfg)

    return loop.Program(
        learner=learner,
        members=n,
        init=jax.vmap(lambda k, h: Member(base.init(k, hypers=h), h)),
        init_args=(keys, hypers),
        evaluate=evaluate,
        config={"algo_config": to_dict(cfg), "pipeline": "sweep",
                "sweep": {**spec, "group": group.index, "points": list(group.points),
                          "traced": list(group.traced), "pipeline": pipeline}},
        conflicts=conflicts,
        unit="member",
    )


# --- the sweep ------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` returns: the plan, each group's :class:`loop.RunResult`, the
    summary (``results.json``; ``{}`` while a group is unfinished) and the directory."""

    plan: Plan
    runs: list[loop.RunResult]
    summary: dict
    run_dir: Path


def _spec(plan: Plan) -> dict:
    return {"grid": json.loads(json.dumps(plan.grid, default=str)), "seeds": plan.seeds}


def _check_resume(run_dir: Path, plan: Plan, resume: bool) -> None:
    path = run_dir / SPEC_FILE
    exists = path.exists() or (run_dir / GROUPS_DIR).exists()
    if not exists:
        return
    if not resume:
        raise CheckpointError(f"{run_dir} already holds a sweep; pass --resume to continue it "
                              "or choose another --out")
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    diffs = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in flat_diff(
        {k: saved.get(k) for k in ("grid", "seeds")}, _spec(plan)).items()]
    diffs += loop.resume_conflicts(saved.get("base"), plan.base)
    if diffs:
        raise CheckpointError(f"{run_dir} holds a different sweep; refusing to resume "
                              f"(differences: {'; '.join(diffs)})")


def run_sweep(
    cfg: runner.TrainConfig,
    grid: dict[str, list],
    seeds: int,
    run_dir: str | Path,
    resume: bool = False,
    wandb_mode: str = "offline",
    progress: bool | None = None,
    max_chunks: int | None = None,
    log: Callable[[str], None] = print,
    pipeline: str = "train",
) -> SweepResult:
    """Train every point of ``grid`` over ``cfg`` with ``seeds`` seeds into ``run_dir`` (see
    the module docstring); the keyword arguments are :func:`metajax.pipelines.runner.train`'s
    (``max_chunks``: per group, to simulate an interruption).

    Raises:
      ConfigError: see :func:`plan_sweep`. CheckpointError: ``run_dir`` holds another sweep,
        or one that cannot be resumed. NonFiniteError: a member diverged (unless
        ``allow_nonfinite``).
    """
    plan = plan_sweep(cfg, grid, seeds)
    run_dir = Path(run_dir)
    _check_resume(run_dir, plan, resume)
    # every process checks before process 0 writes sweep.json (else a later one refuses it)
    distributed.barrier("metajax sweep: directory checked")
    run_dir.mkdir(parents=True, exist_ok=True)
    primary = distributed.is_primary()  # the one process that writes files (multi-process)
    log = distributed.primary_only(log)
    for line in plan.describe():
        log(line)
    spec = {**_spec(plan), "pipeline": pipeline, "base": to_dict(plan.base),
            "points": [{"point": i, "values": p, "group": plan.group_of(i).index}
                       for i, p in enumerate(plan.points)],
            "groups": [{"group": g.index, "dir": f"{GROUPS_DIR}/{g.name}",
                        "static": g.static, "traced": list(g.traced),
                        "points": list(g.points),
                        "members": [{"member": i * seeds + s, "point": p, "seed_index": s}
                                    for i, p in enumerate(g.points) for s in range(seeds)]}
                       for g in plan.groups]}
    if primary:
        loop.write_atomic(run_dir / SPEC_FILE, json.dumps(spec, indent=1, default=str))
    runs, n_chunks = [], []
    for g in plan.groups:
        program = group_program(plan, g, pipeline)
        gcfg = dataclasses.replace(g.config, name=f"{g.config.name}/{g.name}")
        runs.append(loop.run_chunks(gcfg, program, run_dir / GROUPS_DIR / g.name, resume,
                                      wandb_mode, progress, max_chunks, log))
        n_chunks.append(loop.num_chunks(gcfg, program.learner))
    summary = summarize(plan, run_dir, n_chunks) if primary else {}
    if summary:
        loop.write_atomic(run_dir / "results.json", json.dumps(summary, indent=1))
        (run_dir / "results.md").write_text(results_table(summary) + "\n")
        if len(plan.grid) == 2:
            heatmap(summary, run_dir / "heatmap.png")
    return SweepResult(plan, runs, summary, run_dir)


def summarize(plan: Plan, run_dir: str | Path, n_chunks: Sequence[int]) -> dict:
    """The sweep's table from its groups' final ``results.json`` (``{}`` while a group has
    not reached its last chunk, ``n_chunks[g]``): per point ``scores [S, K]`` (final greedy
    return per seed and eval task), ``iqm`` (:func:`metajax.stats.interval`, 95 % CI;
    ``None`` with one seed or a non-finite score), ``mean``; ``best``: the point of highest
    IQM (of highest mean when some point has no IQM), the first in grid order on a tie;
    ``best_ties``: the other points with the same figure."""
    run_dir = Path(run_dir)
    by_point: dict[int, dict] = {}
    for g in plan.groups:
        path = run_dir / GROUPS_DIR / g.name / "results.json"
        if not path.exists():
            return {}
        res = json.loads(path.read_text())
        if res.get("chunk") != n_chunks[g.index]:
            return {}
        for entry in res["points"]:
            by_point[entry["point"]] = entry
    points = []
    for i, values in enumerate(plan.points):
        entry = by_point[i]
        scores = np.asarray([t["per_seed"] for t in entry["greedy"]], np.float64).T  # [S, K]
        try:
            iqm = stats.interval(scores, "iqm")
        except ValueError:
            iqm = None
        points.append({"point": i, "values": values, "group": plan.group_of(i).index,
                       "scores": scores.tolist(), "mean": float(np.mean(scores)),
                       "iqm": iqm, "env_steps": entry["env_steps"]})
    key = (lambda p: p["iqm"]["point"]) if all(p["iqm"] for p in points) else (
        lambda p: p["mean"])
    finite = [p for p in points if math.isfinite(key(p))]
    best = max(finite, key=key) if finite else None
    ties = [p["point"] for p in finite if best is not None and p is not best
            and key(p) == key(best)]
    return {"grid": _spec(plan)["grid"], "seeds": plan.seeds,
            "stat": "iqm" if all(p["iqm"] for p in points) else "mean",
            "score": "final greedy evaluation return per seed and eval task (mean per agent)",
            "points": points, "best": best, "best_ties": ties}


def results_table(summary: dict) -> str:
    """The sweep's Markdown table: one row per grid point (its values, IQM [95 % CI], mean,
    group), the best point marked."""
    keys = list(summary["grid"])
    head = [*keys, "IQM [95 % CI]", "mean", "group"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    best = (summary.get("best") or {}).get("point")
    for p in summary["points"]:
        iqm = stats.fmt(p["iqm"]) if p["iqm"] else "-"
        mark = " **best**" if p["point"] == best else ""
        lines.append("| " + " | ".join([*(str(p["values"][k]) for k in keys), iqm + mark,
                                        f"{p['mean']:.3f}", f"g{p['group']}"]) + " |")
    return "\n".join(lines)


def heatmap(summary: dict, out: str | Path) -> Path:
    """``out``: the IQM (or mean) of each point of a 2-D grid, CI in each cell."""
    (rk, rv), (ck, cv) = list(summary["grid"].items())
    v = np.full((len(rv), len(cv)), np.nan)
    labels = [["" for _ in cv] for _ in rv]
    stat = summary["stat"]
    for p in summary["points"]:
        i, j = divmod(p["point"], len(cv))
        if stat == "iqm" and p["iqm"]:
            v[i, j] = p["iqm"]["point"]
            labels[i][j] = f"{p['iqm']['point']:.3f}\n[{p['iqm']['lo']:.3f}, {p['iqm']['hi']:.3f}]"
        else:
            v[i, j] = p["mean"]
            labels[i][j] = f"{p['mean']:.3f}"
    fig = plots.grid_heatmap(v, (rk, rv), (ck, cv), labels,
                             title=f"{stat.upper()} of the final greedy return over "
                             f"{summary['seeds']} seeds (95 % CI)", colorbar=stat)
    out = Path(out)
    fig.savefig(out, dpi=100)
    return out

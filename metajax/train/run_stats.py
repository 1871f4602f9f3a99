"""The statistics of :mod:`metajax.stats` for the run directories of every pipeline.

A run's evaluation returns are gathered into *score groups* (:class:`ScoreGroup`): one kind of
score (e.g. the stochastic evaluation's mean return per agent, or the same normalised) of one
or several methods on the same tasks, each method a ``[seeds, tasks]`` matrix. Which groups a
pipeline has:

* ``train`` and ``mra`` (``results.json``; one method, the run): ``greedy`` and
  ``stochastic``, the mean return per agent of each seed's evaluation episodes on each
  evaluation task; ``<mode>_team<t>`` per team in multi-team games; ``<mode>_normalized``
  (the return divided by the env's optimal value of the task, threshold 1) where the env knows
  it (climb games; ``results.json``'s ``optimal_value``).
* ``mra_compare`` (``summary.json``; the arms, and the reference policies as ``ref:random`` and
  ``ref:scripted``): ``stochastic`` over the report tasks, for the arms evaluated on all of
  them (the stochastic evaluation is the one the comparison reports), and ``stochastic @
  <task>`` for a task with arms evaluated on it alone (single-game baselines);
  ``<group>_normalized`` with the random policy at 0 and the scripted one at 1 on each task
  (threshold 1: the scripted policy's level), when both references were played;
  ``stochastic_team<t>`` per team in multi-team games. Each arm's own ``results.json`` has the
  ``train`` groups.
* ``mesa`` (``results.json``; the meta-test methods): ``greedy_return``,
  ``stochastic_return``, ``greedy_normalized`` (greedy return over the task's optimal value,
  threshold 1) and ``optimal_found`` (threshold 1: the optimality gap is the fraction of runs
  that miss the optimum) where the env knows its optimum. MESA draws its test tasks per seed,
  so task ``k`` is the ``k``-th test task of each seed (``test task k``), not one game.

:func:`stats_block` turns groups into the ``"stats"`` entry that every pipeline's
``results.json`` (``summary.json`` for ``mra_compare``) carries; :func:`load_run` reads the
groups of a finished run directory back, :func:`merge_runs` lines up several runs for
``metajax compare``, :func:`compare_table` prints them, and :func:`marl_eval_export` writes
the evaluation returns in marl-eval's JSON layout.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metajax import stats

#: Bootstrap replicates and seed of every ``"stats"`` block.
REPS = 2000
SEED = 0

#: Prefix of the reference policies among an ``mra_compare`` run's methods.
REF_PREFIX = "ref:"

#: Score groups whose scores are mean returns of the greedy / stochastic evaluations.
MODES = ("greedy", "stochastic")


class RunError(ValueError):
    """A directory that is not a finished run, or runs that cannot be compared."""


@dataclasses.dataclass
class ScoreGroup:
    """One kind of score of several methods on the same tasks.

    ``methods``: ``{name: [S, K]}`` float64 (``S`` may differ between methods); ``tasks``:
    the ``K`` task names; ``threshold``: the optimality gap's threshold (None: scores not
    normalised, no gap); ``normalization``: how the scores were normalised (``"none"``, ...);
    ``what``: one line saying what a score is."""

    name: str
    tasks: list[str]
    methods: dict[str, np.ndarray]
    threshold: float | None = None
    normalization: str = "none"
    what: str = ""


def task_key(spec: dict) -> str:
    """``"n_agents=3 n_treasures=2"`` (fields sorted) for a task spec; ``"(default)"`` for
    ``{}``."""
    return " ".join(f"{k}={v}" for k, v in sorted(spec.items())) or "(default)"


def _matrix(columns: Sequence[Sequence[float]]) -> np.ndarray:
    """``[S, K]`` from ``K`` per-seed lists."""
    return np.asarray(columns, np.float64).T


# --- the groups of each pipeline -------------------------------------------------------------


def train_groups(results: dict, method: str) -> list[ScoreGroup]:
    """The groups of a ``train`` / ``mra`` ``results.json`` (module docstring); ``method``
    names the run."""
    tasks = [task_key(s) for s in results.get("tasks", [])]
    out = []
    for mode in MODES:
        entries = results.get(mode) or []
        if not entries:
            continue
        what = f"mean return per agent, {mode} evaluation ({_episodes(entries)})"
        out.append(ScoreGroup(mode, tasks, {method: _matrix([e["per_seed"] for e in entries])},
                              what=what))
        for t in _teams(entries):
            out.append(ScoreGroup(f"{mode}_team{t}", tasks, {method: _matrix(
                [e[f"team{t}_per_seed"] for e in entries])},
                what=f"mean return per agent of team {t}, {mode} evaluation"))
        opt = results.get("optimal_value")
        if opt is not None and len(opt) == len(entries) and all(o > 0 for o in opt):
            out.append(ScoreGroup(
                f"{mode}_normalized", tasks,
                {method: _matrix([e["per_seed"] for e in entries]) / np.asarray(opt)},
                threshold=1.0, normalization="optimal value of each task = 1",
                what=f"mean return per agent over the task's optimal value, {mode} evaluation"))
    return out


def _episodes(entries: list[dict]) -> str:
    per = entries[0].get("per_episode")
    return (f"{len(per[0])} episodes per seed and task" if per
            else "over each seed's episodes")


def _teams(entries: list[dict]) -> list[int]:
    """Teams whose per-seed returns every entry has."""
    teams = sorted(int(k[4:-9]) for k in entries[0] if k.startswith("team")
                   and k.endswith("_per_seed"))
    return [t for t in teams if all(f"team{t}_per_seed" in e for e in entries)]


def mesa_groups(results: dict) -> list[ScoreGroup]:
    """The groups of a MESA ``results.json`` (module docstring)."""
    methods = results.get("methods") or {}
    if not methods:
        return []
    first = next(iter(methods.values()))
    k = np.asarray(first["greedy_return"]["per_task"]).shape[1]
    tasks = [f"test task {j}" for j in range(k)]

    def per(metric: str) -> dict[str, np.ndarray]:
        return {m: np.asarray(r[metric]["per_task"], np.float64) for m, r in methods.items()
                if metric in r}

    note = "; task k is each seed's k-th test task"
    out = [ScoreGroup("greedy_return", tasks, per("greedy_return"),
                      what="mean shared return of the greedy evaluation episodes" + note),
           ScoreGroup("stochastic_return", tasks, per("stochastic_return"),
                      what="mean shared return of the stochastic evaluation episodes" + note)]
    if all("optimal_value" in r for r in methods.values()):
        opt = per("optimal_value")
        if all(np.all(v > 0) for v in opt.values()):
            out.append(ScoreGroup(
                "greedy_normalized", tasks,
                {m: v / opt[m] for m, v in per("greedy_return").items()}, threshold=1.0,
                normalization="optimal value of each task = 1",
                what="greedy return over the task's optimal value" + note))
    if all("optimal_found" in r for r in methods.values()):
        out.append(ScoreGroup("optimal_found", tasks, per("optimal_found"), threshold=1.0,
                              normalization="a rate in [0, 1]",
                              what="1 where the greedy return reaches the optimum, else 0"
                              + note))
    return out


def compare_groups(summary: dict, aux_arms: Sequence[str] = ()) -> list[ScoreGroup]:
    """The groups of an ``mra_compare`` ``summary.json`` (module docstring); ``aux_arms``
    (the config's) are left out, as in the summary's tables."""
    report = [task_key(s) for s in summary.get("report_tasks", [])]
    rows: dict[str, dict[str, dict]] = {}  # method -> task -> stochastic entry
    for name, e in summary.get("arms", {}).items():
        if name in aux_arms:
            continue
        rows[name] = {t: v["stochastic"] for t, v in e.get("eval", {}).items() if t in report}
    refs = summary.get("reference", {})
    for kind, per_task in refs.items():
        rows[REF_PREFIX + kind] = {t: v["stochastic"] for t, v in per_task.items()
                                   if t in report}
    sets: list[tuple[str, list[str], list[str]]] = []  # (name, tasks, methods)
    full = [m for m, r in rows.items() if all(t in r for t in report)]
    if full and report:
        sets.append(("stochastic", report, full))
    if len(report) > 1 or not full:
        for t in report:
            have = [m for m, r in rows.items() if t in r]
            if have and have != full:
                sets.append((f"stochastic @ {t}", [t], have))
    out = []
    for name, tasks, methods in sets:
        entries = {m: [rows[m][t] for t in tasks] for m in methods}
        what = "mean return per agent, stochastic evaluation"
        out.append(ScoreGroup(name, tasks, {m: _matrix([e["per_seed"] for e in v])
                                            for m, v in entries.items()}, what=what))
        teams = set.intersection(*(set(_teams(v)) for v in entries.values()))
        for t in sorted(teams):
            out.append(ScoreGroup(
                name.replace("stochastic", f"stochastic_team{t}", 1), tasks,
                {m: _matrix([e[f"team{t}_per_seed"] for e in v]) for m, v in entries.items()},
                what=f"mean return per agent of team {t}, stochastic evaluation"))
        lo_hi = _reference_scale(refs, tasks)
        if lo_hi is not None:
            lo, hi = lo_hi
            out.append(ScoreGroup(
                name.replace("stochastic", "stochastic_normalized", 1), tasks,
                {m: (_matrix([e["per_seed"] for e in v]) - lo) / (hi - lo)
                 for m, v in entries.items()},
                threshold=1.0, normalization="random policy = 0, scripted policy = 1 per task",
                what="(return - random) / (scripted - random), stochastic evaluation"))
    return out


def _reference_scale(refs: dict, tasks: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(random, scripted)`` mean returns ``[K]`` on ``tasks``, when both were played on
    every task and differ on each."""
    try:
        lo = np.asarray([refs["random"][t]["stochastic"]["mean"] for t in tasks], np.float64)
        hi = np.asarray([refs["scripted"][t]["stochastic"]["mean"] for t in tasks], np.float64)
    except KeyError:
        return None
    if np.any(np.abs(hi - lo) < 1e-9):
        return None
    return lo, hi


# --- the "stats" block -------------------------------------------------------------------------


def group_stats(group: ScoreGroup, threshold: float | None = None, reps: int = REPS,
                seed: int = SEED) -> dict:
    """:func:`metajax.stats.summary` of one group, with its ``what`` and ``normalization``;
    ``threshold`` overrides the group's."""
    th = group.threshold if threshold is None else threshold
    return {"what": group.what, "normalization": group.normalization,
            **stats.summary(group.methods, group.tasks, th, reps, seed)}


def stats_block(groups: Sequence[ScoreGroup], reps: int = REPS, seed: int = SEED) -> dict:
    """``{group: group_stats}`` (see :func:`metajax.stats.summary`); a group whose scores
    cannot be summarized (one seed, a NaN) is ``{"skipped": reason}`` instead, so that a
    pipeline never fails on its statistics."""
    out: dict[str, Any] = {}
    for g in groups:
        try:
            out[g.name] = group_stats(g, reps=reps, seed=seed)
        except ValueError as e:
            out[g.name] = {"skipped": str(e)}
    return out


# --- finished runs -----------------------------------------------------------------------------


@dataclasses.dataclass
class RunScores:
    """What :func:`load_run` reads from a finished run directory."""

    run_dir: Path
    pipeline: str
    name: str
    env: str
    groups: list[ScoreGroup]
    results: dict  # results.json (summary.json for mra_compare)
    config: dict  # config.json's algo_config

    @property
    def label(self) -> str:
        return self.run_dir.name


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON ({e.msg}, line {e.lineno})") from None


def load_run(run_dir: str | Path) -> RunScores:
    """The score groups of a finished run of any pipeline; raises :class:`RunError` (one
    line) for a directory that is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a directory")
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir} is not a run directory (no config.json)")
    saved = _read_json(run_dir / "config.json")
    pipeline = saved.get("pipeline", "train")
    cfg = saved.get("algo_config") or {}
    name = str(cfg.get("name", run_dir.name))
    if pipeline == "mra_compare":
        path = run_dir / "summary.json"
        if not path.is_file():
            raise RunError(f"{run_dir} is not a finished run (no summary.json)")
        summary = _read_json(path)
        env = str((cfg.get("base") or {}).get("env", ""))
        groups = compare_groups(summary, cfg.get("aux_arms", ()))
        return RunScores(run_dir, pipeline, name, env, groups, summary, cfg)
    path = run_dir / "results.json"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a finished run (no results.json)")
    results = _read_json(path)
    if pipeline == "mesa":
        if not results.get("methods"):
            raise RunError(f"{run_dir} is not a finished MESA run (no method in results.json)")
        groups = mesa_groups(results)
        env = str(results.get("env", cfg.get("env", "")))
    elif pipeline in ("train", "mra"):
        if not any(results.get(m) for m in MODES):
            raise RunError(f"{run_dir} is not a finished run (no evaluation in results.json)")
        groups = train_groups(results, name)
        env = str(cfg.get("env", ""))
    else:
        raise RunError(f"{run_dir}: no statistics for pipeline {pipeline!r}")
    return RunScores(run_dir, pipeline, name, env, groups, results, cfg)


def merge_runs(runs: Sequence[RunScores]) -> tuple[list[ScoreGroup], list[str]]:
    """The groups of one run, or of several lined up: for every group name that each run has
    on the same tasks, one group whose methods are the runs (``label``, or ``label/method``
    for a run with several methods in it). Returns ``(groups, notes)``; ``notes`` say which
    groups were left out and why."""
    if len(runs) == 1:
        return list(runs[0].groups), []
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        labels = [str(r.run_dir) for r in runs]
    notes: list[str] = []
    out = []
    by_run = [{g.name: g for g in r.groups} for r in runs]
    for gname in by_run[0]:
        if not all(gname in b for b in by_run):
            missing = [lab for lab, b in zip(labels, by_run, strict=True) if gname not in b]
            notes.append(f"{gname}: not in {', '.join(missing)}")
            continue
        gs = [b[gname] for b in by_run]
        if any(g.tasks != gs[0].tasks for g in gs):
            notes.append(f"{gname}: the runs were evaluated on different tasks")
            continue
        methods = {}
        for lab, g in zip(labels, gs, strict=True):
            for m, v in g.methods.items():
                methods[lab if len(g.methods) == 1 else f"{lab}/{m}"] = v
        first = gs[0]
        out.append(ScoreGroup(gname, first.tasks, methods, first.threshold, first.normalization,
                              first.what))
    return out, notes


# --- the compare table -------------------------------------------------------------------------


def _cell(iv: dict | None, digits: int = 3) -> str:
    return "-" if iv is None else stats.fmt(iv, digits)


def group_table(summary: dict, name: str, per_task: bool = False) -> str:
    """A text table of one :func:`group_stats` result: one row per method (and per task with
    ``per_task``): seeds, IQM, mean, median and optimality gap with their 95 % CIs; then the
    probability of improvement of each pair."""
    th = summary["threshold"]
    cols = ["iqm", "mean", "median"] + (["optimality_gap"] if th is not None else [])
    heads = {"iqm": "IQM [95% CI]", "mean": "mean [95% CI]", "median": "median [95% CI]",
             "optimality_gap": f"opt. gap @ {th:g} [95% CI]" if th is not None else ""}
    rows = []
    for m, e in summary["methods"].items():
        rows.append([m, "all", str(e["seeds"])] + [_cell(e["aggregate"].get(c)) for c in cols])
        if per_task:
            for t, v in e["per_task"].items():
                rows.append(["", t, str(e["seeds"])] + [_cell(v.get(c)) for c in cols])
    head = ["method", "tasks", "seeds"] + [heads[c] for c in cols]
    if not per_task:
        head.pop(1)
        rows = [r[:1] + r[2:] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    k = len(summary["tasks"])
    norm = summary.get("normalization", "none")
    lines = [f"== {name}: {summary.get('what', '')}",
             f"   {k} task(s); normalization: {norm}; 95 % stratified bootstrap CIs over seeds "
             f"({summary['reps']} resamples, seed {summary['seed']})",
             line(head), line(["-" * w for w in widths]), *map(line, rows)]
    if summary["prob_improvement"]:
        lines.append("probability of improvement P(X > Y) [95% CI] (0.5: no difference):")
        for pair, iv in summary["prob_improvement"].items():
            lines.append(f"  P({pair}) = {stats.fmt(iv, 2)}")
    return "\n".join(lines)


def compare_table(groups: Sequence[ScoreGroup], threshold: float | None = None,
                  per_task: bool = False, reps: int = REPS, seed: int = SEED) -> str:
    """:func:`group_table` of every group (a group that cannot be summarized says why)."""
    parts = []
    for g in groups:
        try:
            parts.append(group_table(group_stats(g, threshold, reps, seed), g.name, per_task))
        except ValueError as e:
            parts.append(f"== {g.name}: skipped: {e}")
    return "\n\n".join(parts)


# --- marl-eval export --------------------------------------------------------------------------


def _episode_lists(entry: dict, s: int) -> list[float]:
    """Seed ``s``'s per-episode values of a ``train`` evaluation entry (its mean, as one
    value, when the run predates per-episode returns)."""
    per = entry.get("per_episode")
    return [float(v) for v in per[s]] if per else [float(entry["per_seed"][s])]


def _train_records(results: dict) -> dict[str, dict[str, dict[int, dict[str, list]]]]:
    """``{task: {metric: {seed: values}}}`` of a ``train`` ``results.json``."""
    out: dict = {}
    for mode in MODES:
        for spec, entry in zip(results.get("tasks", []), results.get(mode) or [], strict=False):
            rec = out.setdefault(task_key(spec), {}).setdefault(f"{mode}_return", {})
            for s in range(len(entry["per_seed"])):
                rec[s] = _episode_lists(entry, s)
    return out


def _run_records(run: RunScores) -> tuple[dict, dict]:
    """``({algo: {task: {metric: {seed: values}}}}, {algo: env steps})`` of one run."""
    if run.pipeline in ("train", "mra"):
        return ({run.label: _train_records(run.results)},
                {run.label: int(run.results.get("env_steps", 0))})
    if run.pipeline == "mesa":
        recs: dict = {}
        steps = int((run.results.get("budgets") or {}).get("test_steps", 0))
        for m, res in run.results["methods"].items():
            for metric, v in res.items():
                if not isinstance(v, dict) or "per_task" not in v:
                    continue
                a = np.asarray(v["per_task"], np.float64)  # [S, K]
                for k in range(a.shape[1]):
                    rec = recs.setdefault(m, {}).setdefault(f"test task {k}", {})
                    rec[metric] = {s: [float(a[s, k])] for s in range(a.shape[0])}
        return recs, dict.fromkeys(recs, steps)
    # mra_compare: the arms and the references
    recs, steps = {}, {}
    for name, e in run.results.get("arms", {}).items():
        if name in run.config.get("aux_arms", ()):
            continue
        steps[name] = int(e.get("env_steps", 0))
        for t, ev in e.get("eval", {}).items():
            for mode in MODES:
                if mode in ev:
                    recs.setdefault(name, {}).setdefault(t, {})[f"{mode}_return"] = {
                        s: _episode_lists(ev[mode], s) for s in range(len(ev[mode]["per_seed"]))}
    for kind, rows in run.results.get("reference", {}).items():
        steps[REF_PREFIX + kind] = 0
        for t, ev in rows.items():
            st = ev["stochastic"]
            recs.setdefault(REF_PREFIX + kind, {}).setdefault(t, {})["stochastic_return"] = {
                s: _episode_lists(st, s) for s in range(len(st["per_seed"]))}
    return recs, steps


def marl_eval_export(runs: Sequence[RunScores]) -> dict:
    """The evaluation returns of ``runs`` in marl-eval's raw-data layout::

        {env: {task: {algorithm: {"seed_<i>": {
            "step_0": {"step_count": env steps, metric: [values]},
            "absolute_metrics": {metric: [values]}}}}}}

    ``algorithm``: the run's directory name for a one-method run, else the method (prefixed
    with the directory name when several runs are exported); ``seed_<i>``: the ``i``-th seed
    of the run; ``metric``: ``greedy_return`` / ``stochastic_return`` (the per-episode mean
    return per agent of the final evaluation; one value per seed, its episode mean, for runs
    written before per-episode returns were kept) or, for MESA, every per-task metric (one
    value: MESA keeps the means over its evaluation episodes). Only the final evaluation is
    kept by a run, so there is one step, ``step_0``, and ``absolute_metrics`` holds the same
    values (not marl-eval's 10x re-evaluation of the best policy). Environment and task names
    are lower-cased, as marl-eval looks them up."""
    out: dict = {}
    for run in runs:
        recs, steps = _run_records(run)
        for algo, per_task in recs.items():
            label = algo if len(runs) == 1 or run.pipeline in ("train", "mra") \
                else f"{run.label}/{algo}"
            for task, metrics in per_task.items():
                node = out.setdefault(run.env.lower() or "env", {}).setdefault(
                    task.lower(), {})
                if label in node:
                    raise RunError(f"two exported runs are both called {label!r}; export them "
                                   "separately or rename a directory")
                seeds = sorted({s for v in metrics.values() for s in v})
                node[label] = {
                    f"seed_{s}": {
                        "step_0": {"step_count": steps.get(algo, 0),
                                   **{m: v[s] for m, v in metrics.items() if s in v}},
                        "absolute_metrics": {m: v[s] for m, v in metrics.items() if s in v}}
                    for s in seeds}
    return out


def select_groups(groups: Sequence[ScoreGroup], names: Sequence[str] | None) -> list[ScoreGroup]:
    """The groups named in ``names`` (all when empty or None), in ``names``' order; raises
    :class:`RunError` for a name no group has, listing those there are."""
    if not names:
        return list(groups)
    by = {g.name: g for g in groups}
    unknown = [n for n in names if n not in by]
    if unknown:
        raise RunError(f"no score group {', '.join(map(repr, unknown))}; available: "
                       f"{', '.join(by) or '(none)'}")
    return [by[n] for n in names]


"""MESA's results: per-metric summaries with bootstrap CIs (:func:`summarize`), paired
comparisons with plain MADDPG (:func:`compare_methods`), the markdown table
(:func:`results_table`), the meta-test curves (:func:`plot_curves`) and the files of a finished
run (:func:`write_results`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from metajax import stats
from metajax.train import run_stats


def summarize(m: dict) -> dict:
    """Per metric ``[S, K]`` -> the mean over seeds of the per-seed mean over test tasks with
    its 95 % stratified bootstrap CI over seeds (:func:`metajax.stats.interval`; ``ci`` is
    None with one seed), the std over seeds, and the raw values."""
    out: dict = {}
    for k, v in m.items():
        v = np.asarray(v, np.float64)
        per_seed = v.mean(1)
        ci = None
        if v.shape[0] >= 2 and np.all(np.isfinite(v)):
            iv = stats.interval(v, "mean")
            ci = [iv["lo"], iv["hi"]]
        out[k] = {"mean": float(per_seed.mean()), "ci": ci, "std": float(per_seed.std()),
                  "per_seed": per_seed.tolist(), "per_task": v.tolist()}
    return out


#: Metrics compared between methods by :func:`compare_methods`.
COMPARED = ("greedy_return", "optimal_found")


def compare_methods(methods: dict, baseline: str = "maddpg") -> dict:
    """Every method against ``baseline`` over shared seeds (:func:`metajax.stats.paired` on the
    ``[S, K]`` per-task values of each metric of :data:`COMPARED`): ``{method: {metric: {"diff":
    ..., "p_value", "prob_improvement", "verdict"}}}``; empty without the baseline or with
    fewer than 2 seeds."""
    out: dict = {}
    if baseline not in methods:
        return out
    for name, res in methods.items():
        if name == baseline:
            continue
        for metric in COMPARED:
            if metric not in res or metric not in methods[baseline]:
                continue
            a = np.asarray(res[metric]["per_task"], np.float64)
            b = np.asarray(methods[baseline][metric]["per_task"], np.float64)
            if a.shape[0] < 2 or a.shape != b.shape:
                continue
            p = stats.paired(a, b)
            p["verdict"] = stats.verdict(a, b)
            out.setdefault(name, {})[metric] = p
    return out


def fmt_cell(r: dict) -> str:
    if r.get("ci") is None:
        return f"{r['mean']:.3f}"
    return f"{r['mean']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"


def found_by_seen(res: dict, seen: np.ndarray) -> dict | None:
    """The ``optimal_found`` fraction of one method's (seed, test task) runs, overall and
    separately for test tasks that are also training tasks of their seed (``seen [S, K]``)
    and for the others: ``{"all"|"seen"|"unseen": {"found": int, "runs": int,
    "fraction": float | None}}``; None when the env has no optimum."""
    if "optimal_found" not in res:
        return None
    f = np.asarray(res["optimal_found"]["per_task"], np.float64) > 0.5
    out = {}
    for part, sel in (("all", np.ones_like(seen, bool)), ("seen", seen), ("unseen", ~seen)):
        n = int(sel.sum())
        hit = int((f & sel).sum())
        out[part] = {"found": hit, "runs": n, "fraction": hit / n if n else None}
    return out


def _frac(d: dict) -> str:
    return "-" if d["fraction"] is None else f"{d['fraction']:.2f} ({d['found']}/{d['runs']})"


def _task_label(results: dict, s: int, j: int) -> str:
    test = results.get("tasks", {}).get("test", {})
    if "k" not in test or "u" not in test:
        return f"{j}"
    ku = f"k={test['k'][s][j]}, u={test['u'][s][j]}"
    # a one-step climb game is its (k, u); other games (layouts, ...) are more than that
    return ku if results.get("env") == "climb" else f"{j} ({ku})"


def results_table(results: dict) -> str:
    """A markdown table: one row per method, one column per metric (when some test task is
    also a training task, the found fraction on those and on the others), then the greedy
    return per (seed, test task) with whether that task is also a training task."""
    methods = results["methods"]
    if not methods:
        return "(no method was run)\n"
    cols = [c for c in ("greedy_return", "stochastic_return", "optimal_found", "nash_conv",
                        "high_reward", "optimal_value") if c in next(iter(methods.values()))]
    seen = np.asarray(results.get("test_in_train", []), bool)
    split = seen.any() and "optimal_found" in cols
    head = cols + (["found: seen in training", "found: unseen"] if split else [])
    lines = [f"{results['name']}: {results['seeds']} seed(s) x {results['n_test']} test tasks "
             "(mean over seeds of the mean over test tasks, 95 % stratified bootstrap CI "
             "over seeds)", "",
             "| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, res in methods.items():
        cells = [fmt_cell(res[c]) for c in cols]
        if split:
            found = found_by_seen(res, seen)
            cells += [_frac(found["seen"]), _frac(found["unseen"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    comp = results.get("comparisons") or compare_methods(methods)
    if comp:
        lines += ["", "Paired by seed against maddpg (difference of means with its 95 % CI; "
                  "exact sign-flip p over seeds; P(improvement)):", "",
                  "| method | metric | difference | p | P(better) | verdict |",
                  "|---|---|---|---|---|---|"]
        for name, per in comp.items():
            for metric, p in per.items():
                lines.append(f"| {name} | {metric} | {stats.fmt(p['diff'])} | "
                             f"{p['p_value']:.3f} | {p['prob_improvement']:.2f} | "
                             f"{p['verdict']} |")
    if seen.size:
        names = [m for m in methods if "greedy_return" in methods[m]]
        lines += ["", f"Per seed and test task ({int(seen.sum())} of {seen.size} test tasks are "
                  "also training tasks of their seed); greedy return:", "",
                  "| seed | test task | in training | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 3) + "|"]
        for s in range(seen.shape[0]):
            for j in range(seen.shape[1]):
                cells = [f"{methods[m]['greedy_return']['per_task'][s][j]:.3f}" for m in names]
                lines.append(f"| {s} | {_task_label(results, s, j)} | "
                             f"{'yes' if seen[s, j] else 'no'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict, out: Path, title: str) -> Path:
    """Greedy return during meta-testing, one line per method (mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, pts in curves.items():
        if not pts:
            continue
        x = np.asarray([p[0] for p in pts], np.float64)
        y = np.asarray([p[1] for p in pts], np.float64)  # [T, S]
        mu, sd = y.mean(1), y.std(1)
        ax.plot(x, mu, marker="o", markersize=3, label=method)
        ax.fill_between(x, mu - sd, mu + sd, alpha=0.2)
    ax.set_xlabel("env steps per test task")
    ax.set_ylabel("greedy return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_results(run_dir: Path, results: dict, curves: dict, seen: np.ndarray,
                  title: str) -> str:
    """Finish ``results`` (the curves, :func:`compare_methods`, :func:`found_by_seen` per
    method with ``seen [S, K]``, the statistics block of
    :func:`metajax.train.run_stats.mesa_groups`) and write ``results.json``, ``results.md``
    and ``curves.png`` into ``run_dir``; returns the table."""
    results["curves"] = curves
    results["comparisons"] = compare_methods(results["methods"])
    for res in results["methods"].values():
        found = found_by_seen(res, seen)
        if found is not None:
            res["found_by_seen"] = found
    results["stats"] = run_stats.stats_block(run_stats.mesa_groups(results))
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    table = results_table(results)
    (run_dir / "results.md").write_text(table)
    try:
        if any(curves.values()):
            plot_curves(curves, run_dir / "curves.png", title)
    except Exception as e:  # plotting must never lose the results
        print(f"warning: no curves.png: {e}", file=sys.stderr)
    return table

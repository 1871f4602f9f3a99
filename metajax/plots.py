"""Learning curves of a run directory, from its ``metrics.jsonl``.

``metrics.jsonl`` holds one JSON object per chunk; every metric is a list with one value per
seed, and ``env_steps`` counts each seed's env steps. :func:`learning_curves` draws each seed
as a thin line and the mean over seeds with a +-1 std band, one panel per metric.

Matplotlib is used through :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``: no global state, safe in headless runs and tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Keys of a metrics row that are not per-seed learning metrics.
NON_METRICS = ("chunk", "time", "sps")


class PlotError(ValueError):
    """Missing or empty metrics, or an unknown metric name."""


def load_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file (a run directory or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"no metrics file {path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise PlotError(f"{path} is empty (no chunk finished yet)")
    return rows


def metric_names(rows: list[dict]) -> list[str]:
    """Per-seed metrics present in every row (lists), excluding ``env_steps``."""
    names = [k for k, v in rows[0].items() if isinstance(v, list) and k not in NON_METRICS]
    return [k for k in names if k != "env_steps" and all(k in r for r in rows)]


def series(rows: list[dict], metric: str, x: str = "env_steps") -> tuple[np.ndarray, np.ndarray]:
    """``(x [chunks, seeds], y [chunks, seeds])`` of ``metric`` against ``x``.

    ``x`` may be a per-seed list (``env_steps``, ``grad_steps``) or a scalar (``chunk``).
    """
    known = metric_names(rows)
    if metric not in known:
        raise PlotError(f"unknown metric {metric!r}; available: {', '.join(known)}")
    y = np.asarray([r[metric] for r in rows], np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if x not in rows[0]:
        raise PlotError(f"unknown x axis {x!r}; available: chunk, {', '.join(known)}")
    xs = np.asarray([r[x] for r in rows], np.float64)
    xs = np.broadcast_to(xs[:, None] if xs.ndim == 1 else xs, y.shape)
    return xs, y


def learning_curves(
    rows: list[dict],
    metrics: Sequence[str] = ("episode_return",),
    x: str = "env_steps",
    title: str | None = None,
) -> Figure:
    """One panel per metric: each seed as a thin line, mean over seeds with a +-1 std band."""
    if not metrics:
        raise PlotError("no metric to plot")
    fig = Figure(figsize=(5.0 * len(metrics), 3.4))
    FigureCanvasAgg(fig)
    for i, metric in enumerate(metrics):
        xs, y = series(rows, metric, x)
        ax = fig.add_subplot(1, len(metrics), i + 1)
        n_seeds = y.shape[1]
        for s in range(n_seeds):
            ax.plot(xs[:, s], y[:, s], color="tab:blue", linewidth=0.7, alpha=0.35,
                    gid="seed")
        mean, std = y.mean(1), y.std(1)
        x_mean = xs.mean(1)
        ax.fill_between(x_mean, mean - std, mean + std, color="tab:blue", alpha=0.2,
                        linewidth=0, gid="band")
        ax.plot(x_mean, mean, color="tab:blue", linewidth=2.0, gid="mean",
                label=f"mean ± std ({n_seeds} seed{'s' if n_seeds > 1 else ''})")
        ax.set_xlabel(x.replace("_", " "))
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    metrics: Sequence[str] = ("episode_return",),
    x: str = "env_steps",
    dpi: int = 100,
) -> Path:
    """Write the learning curves of ``run_dir`` to ``out`` (default ``run_dir/<metric>.png``)."""
    run_dir = Path(run_dir)
    rows = load_metrics(run_dir)
    fig = learning_curves(rows, metrics, x, title=_run_name(run_dir))
    out = Path(out) if out else run_dir / f"{'_'.join(metrics)}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def _run_name(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "config.json").read_text())["algo_config"]["name"]
    except (OSError, KeyError, json.JSONDecodeError):
        return run_dir.name


def action_distribution(
    counts: np.ndarray,
    greedy: Sequence[int] | None = None,
    title: str | None = None,
) -> Figure:
    """Bar chart of each agent's empirical action distribution.

    Args:
      counts: ``[agents, actions]`` how often each agent played each action.
      greedy: optional ``[agents]`` greedy action of each agent, drawn in a second colour.
      title: figure title.
    """
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 2:
        raise PlotError(f"counts must have shape [agents, actions], got {counts.shape}")
    n_agents, n_actions = counts.shape
    freq = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    fig = Figure(figsize=(max(4.0, 0.35 * n_actions + 1.5), 1.8 * n_agents + 0.6))
    FigureCanvasAgg(fig)
    for i in range(n_agents):
        ax = fig.add_subplot(n_agents, 1, i + 1)
        colors = ["tab:blue"] * n_actions
        if greedy is not None:
            colors[int(greedy[i])] = "tab:orange"
        ax.bar(np.arange(n_actions), freq[i], color=colors, gid="actions")
        ax.set_xticks(np.arange(n_actions))
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel(f"agent {i}", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.axes[-1].set_xlabel("action (orange: greedy)" if greedy is not None else "action")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- statistics (metajax.stats summaries) ------------------------------------------------------

#: Panel titles of :func:`aggregate_intervals`.
_STAT_TITLES = {"iqm": "IQM", "mean": "mean", "median": "median",
                "optimality_gap": "optimality gap"}


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def aggregate_intervals(summary: dict, title: str | None = None) -> Figure:
    """One panel per aggregate statistic (IQM, mean, median, and the optimality gap when the
    summary has a threshold) of a :func:`metajax.stats.summary`: each method's 95 % CI as a
    horizontal bar with its point estimate as a tick (after rliable's
    ``plot_interval_estimates``)."""
    methods = list(summary["methods"])
    if not methods:
        raise PlotError("the summary has no method")
    stats_ = [s for s in ("iqm", "mean", "median", "optimality_gap")
              if s in summary["methods"][methods[0]]["aggregate"]]
    fig = Figure(figsize=(3.2 * len(stats_) + 1.2, 0.45 * len(methods) + 1.4))
    FigureCanvasAgg(fig)
    colors = _colors(len(methods))
    for i, s in enumerate(stats_):
        ax = fig.add_subplot(1, len(stats_), i + 1)
        for j, m in enumerate(methods):
            iv = summary["methods"][m]["aggregate"][s]
            y = len(methods) - 1 - j
            ax.barh(y, iv["hi"] - iv["lo"], left=iv["lo"], height=0.6, color=colors[j],
                    alpha=0.75, gid="ci")
            ax.vlines(iv["point"], y - 0.3, y + 0.3, color="black", linewidth=1.5,
                      gid="point")
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels(methods[::-1] if i == 0 else [""] * len(methods), fontsize=8)
        ax.set_title(_STAT_TITLES[s] + (f" (@ {summary['threshold']:g})"
                                         if s == "optimality_gap" else ""), fontsize=9)
        for patch in ax.patches:  # bars stick to their base; keep a margin around 0 too
            patch.sticky_edges.x.clear()
        ax.margins(x=0.15)
        ax.autoscale_view()
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    fig.supxlabel("score (95 % stratified bootstrap CI over seeds)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def performance_profile(summary: dict, title: str | None = None) -> Figure:
    """The score distributions of a :func:`metajax.stats.summary`: for each method, the
    fraction of its (seed, task) scores above ``tau``, with its pointwise 95 % CI as a band."""
    prof = summary["profile"]
    tau = np.asarray(prof["tau"])
    fig = Figure(figsize=(5.2, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for (m, p), c in zip(prof["methods"].items(), _colors(len(prof["methods"])), strict=True):
        ax.fill_between(tau, p["lo"], p["hi"], color=c, alpha=0.2, linewidth=0, gid="band")
        ax.plot(tau, p["point"], color=c, linewidth=1.8, label=m, gid="profile")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("score threshold tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def grid_heatmap(
    values: np.ndarray,
    rows: tuple[str, Sequence[object]],
    cols: tuple[str, Sequence[object]],
    labels: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    colorbar: str = "",
) -> Figure:
    """Heatmap of a 2-D hyperparameter grid (a sweep's figure).

    Args:
      values: ``[len(row values), len(col values)]`` the figure of each grid point (NaN: none).
      rows, cols: ``(key, values)`` of the grid's first and second key.
      labels: optional ``[rows][cols]`` text written in each cell (e.g. the IQM and its CI).
      title: figure title; colorbar: label of the colour bar.
    """
    v = np.asarray(values, np.float64)
    (rk, rv), (ck, cv) = rows, cols
    if v.shape != (len(rv), len(cv)):
        raise PlotError(f"values must have shape {(len(rv), len(cv))}, got {v.shape}")
    fig = Figure(figsize=(1.6 * len(cv) + 2.4, 0.9 * len(rv) + 1.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(v), cmap="viridis", aspect="auto", gid="heatmap")
    ax.set_xticks(np.arange(len(cv)), [str(x) for x in cv])
    ax.set_yticks(np.arange(len(rv)), [str(x) for x in rv])
    ax.set_xlabel(ck)
    ax.set_ylabel(rk)
    finite = v[np.isfinite(v)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(len(rv)):
        for j in range(len(cv)):
            text = labels[i][j] if labels is not None else f"{v[i, j]:.3g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="black" if np.isfinite(v[i, j]) and v[i, j] > mid else "white")
    fig.colorbar(im, ax=ax, label=colorbar)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def file_stem(name: str) -> str:
    """A score group's name as part of a file name: ``"stochastic @ n_agents=3"`` ->
    ``"stochastic_at_n_agents=3"``."""
    return "".join(c if c.isalnum() or c in "_.=-" else "_" for c in name.replace(" @ ", "_at_"))


def plot_stats(summaries: dict[str, dict], out_dir: str | Path, title: str = "",
               dpi: int = 100) -> list[Path]:
    """For each ``{name: summary}``, ``out_dir/stats_<name>.png`` (:func:`aggregate_intervals`)
    and ``out_dir/profile_<name>.png`` (:func:`performance_profile`); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, s in summaries.items():
        stem = file_stem(name)
        head = f"{title}: {name}" if title else name
        for kind, fn in (("stats", aggregate_intervals), ("profile", performance_profile)):
            path = out_dir / f"{kind}_{stem}.png"
            fn(s, head).savefig(path, dpi=dpi)
            paths.append(path)
    return paths

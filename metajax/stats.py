"""Statistics over seeds for experiment reports (``../shared/EVIDENCE.md``), after ``rliable``.

Scores are arrays ``[S, K]``: ``S`` seeds (independent runs) by ``K`` tasks (test tasks of a
seed, or 1). Every interval is a 95 % *stratified* bootstrap confidence interval over seeds
(rliable's ``StratifiedBootstrap``: in each replicate the seeds are resampled with replacement
within each task, independently per task), percentile method.

Aggregates over ``[S, K]`` (rliable's definitions, Agarwal et al. 2021):

* ``mean``: the mean over tasks of each task's mean over seeds;
* ``median``: the median over tasks of each task's mean over seeds (with one task, the mean);
* ``iqm``: the interquartile mean, the mean of the middle 50 % of all ``S * K`` scores
  (``scipy.stats.trim_mean(..., 0.25)``: ``floor(S K / 4)`` scores cut at each end);
* ``optimality_gap``: ``threshold - mean(min(score, threshold))`` over all ``S * K`` scores,
  how far the scores fall short of ``threshold`` (scores above it count as ``threshold``).
  Lower is better. ``threshold`` is in the scores' units: ``1`` for scores normalised so that
  ``1`` is the optimum or a reference policy, and there is no default for raw returns.

Per task (:func:`per_task`) the same four statistics are taken over that task's seeds alone
(its ``median`` is the median over seeds). Comparisons and distributions:

* :func:`probability_of_improvement` - ``P(X > Y)``, the probability that a run of ``x`` beats
  a run of ``y`` on a task (ties count 1/2, the Mann-Whitney U statistic over ``S_x S_y``),
  averaged over tasks, with a CI from resampling each method's seeds independently (rliable's
  ``StratifiedIndependentBootstrap``);
* :func:`performance_profile` - the score distribution: for each threshold ``tau``, the
  fraction of all ``S * K`` scores above ``tau``, with pointwise CIs;
* :func:`summary` - all of the above for several methods on the same tasks: the ``"stats"``
  block of ``results.json``;
* :func:`paired` / :func:`verdict` - two arms that share seeds: the mean per-seed difference
  with its CI, an exact sign-flip permutation test (``scipy``), and the one word EVIDENCE.md
  allows (``"holds"`` only when the paired test rejects equality at 5 % or the intervals
  separate).

The bootstrap replicates rliable 1.2's exactly (the same resampled indices from the same
seeded ``RandomState``, the same percentiles; ``tests/test_stats.py`` checks the numbers
against ``rliable.library``), vectorized over replicates with numpy: a ``results.json`` with
five methods and a dozen groups costs about a second instead of minutes. The figures are
deterministic (``seed``) and the global numpy random state is left alone.

Bad input raises a one-line ``ValueError``: NaN or infinite scores, fewer than 2 seeds, arrays
of another rank, methods or names that do not match in shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

# rliable and scipy.stats are imported where they are used: together they take about a second
# to import, which every ``metajax`` command (and ``--help``) would otherwise pay.

#: Size of every confidence interval.
CI = 0.95

#: The aggregate statistics, in report order.
STATISTICS = ("mean", "median", "iqm", "optimality_gap")

#: Aggregates over one ``[S, K]`` score matrix, by name (rliable's functions; the point
#: estimates of :func:`interval`).
def _rliable(name: str) -> Callable[[np.ndarray], float]:
    def aggregate(scores: np.ndarray) -> float:
        from rliable import metrics

        return getattr(metrics, name)(scores)

    aggregate.__name__ = aggregate.__qualname__ = name
    aggregate.__doc__ = f"``rliable.metrics.{name}`` (imported on first use)."
    return aggregate


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": _rliable("aggregate_mean"),
    "iqm": _rliable("aggregate_iqm"),
    "median": _rliable("aggregate_median"),
}

#: Performance-profile thresholds per method and group in :func:`summary`.
PROFILE_POINTS = 41


def as_scores(x: object, name: str = "scores") -> np.ndarray:
    """``x`` as a float64 ``[S, K]`` matrix: ``[S]`` becomes ``[S, 1]``; raises
    ``ValueError`` for fewer than 2 seeds, other ranks or non-finite values."""
    a = np.asarray(x, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [seeds] or [seeds, tasks], got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"a confidence interval over seeds needs >= 2 seeds, got {a.shape[0]}"
                         + (f" ({name})" if name != "scores" else ""))
    if a.shape[1] < 1:
        raise ValueError(f"{name} have no task (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} hold NaN or inf")
    return a


# --- the bootstrap ---------------------------------------------------------------------------


def _resample(a: np.ndarray, reps: int, seed: int) -> np.ndarray:
    """``[reps, S, K]``: ``reps`` stratified resamples of ``a [S, K]`` (seeds drawn with
    replacement within each task), the ones rliable draws from a global state seeded with
    ``seed``."""
    s, k = a.shape
    idx = np.random.RandomState(seed).choice(s, (reps, s, k), replace=True)
    return a[idx, np.arange(k)]


def _resample_pair(a: np.ndarray, b: np.ndarray, reps: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent stratified resamples of ``a [Sa, K]`` and ``b [Sb, K]`` (per replicate
    ``a``'s indices first, as rliable's ``StratifiedIndependentBootstrap`` draws them)."""
    rs = np.random.RandomState(seed)
    if a.shape == b.shape:  # one draw gives the same stream as the interleaved ones
        idx = rs.randint(0, a.shape[0], (reps, 2, *a.shape))
        ia, ib = idx[:, 0], idx[:, 1]
    else:  # (``choice(n, shape)`` is ``randint(0, n, shape)``)
        ia = np.empty((reps, *a.shape), np.int64)
        ib = np.empty((reps, *b.shape), np.int64)
        for r in range(reps):
            ia[r] = rs.randint(0, a.shape[0], a.shape)
            ib[r] = rs.randint(0, b.shape[0], b.shape)
    return a[ia, np.arange(a.shape[1])], b[ib, np.arange(b.shape[1])]


def _percentile_ci(boot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` per column of ``boot [reps, m]``: the percentile interval of size
    :data:`CI` (arch's ``conf_int(method="percentile")``)."""
    alpha = 100 * (1 - CI) / 2
    lo, hi = np.percentile(boot, [alpha, 100 - alpha], axis=0)
    return lo, hi


def _interval(point: float, lo: float, hi: float) -> dict:
    return {"point": float(point), "lo": float(lo), "hi": float(hi)}


# --- aggregates, batched over replicates: [B, S, K] -> [B] -------------------------------------


def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1).mean(axis=1)


def _median(x: np.ndarray) -> np.ndarray:
    return np.median(x.mean(axis=1), axis=1)


def _iqm(x: np.ndarray) -> np.ndarray:
    from scipy import stats as sps

    return sps.trim_mean(x.reshape(x.shape[0], -1), 0.25, axis=1)


def _gap(threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    def gap(x: np.ndarray) -> np.ndarray:
        return threshold - np.minimum(x, threshold).reshape(x.shape[0], -1).mean(axis=1)

    return gap


def _seed_median(x: np.ndarray) -> np.ndarray:
    """Per-task median (``K = 1``): the median over seeds."""
    return np.median(x.reshape(x.shape[0], -1), axis=1)


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"the optimality-gap threshold must be finite, got {threshold}")


def _batched(stats: Sequence[str], threshold: float | None,
             per_task: bool = False) -> list[Callable[[np.ndarray], np.ndarray]]:
    fns: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "mean": _mean, "median": _seed_median if per_task else _median, "iqm": _iqm}
    out = []
    for s in stats:
        if s == "optimality_gap":
            if threshold is None:
                raise ValueError("the optimality gap needs a threshold (e.g. 1 for normalised "
                                 "scores)")
            out.append(_gap(threshold))
        elif s in fns:
            out.append(fns[s])
        else:
            raise ValueError(f"stat must be one of {STATISTICS}, got {s!r}")
    return out


def _estimate(a: np.ndarray, fns: Sequence[Callable], reps: int, seed: int) -> list[dict]:
    """Point estimates and CIs of every batched ``fn`` over the stratified resamples of
    ``a [S, K]``."""
    boot = _resample(a, reps, seed)
    points = [float(fn(a[None])[0]) for fn in fns]
    lo, hi = _percentile_ci(np.stack([fn(boot) for fn in fns], 1))
    return [_interval(p, l, h) for p, l, h in zip(points, lo, hi, strict=True)]


def _default_stats(threshold: float | None) -> tuple[str, ...]:
    return STATISTICS if threshold is not None else STATISTICS[:-1]


def aggregate(scores: object, threshold: float | None = None, stats: Sequence[str] | None = None,
              reps: int = 2000, seed: int = 0) -> dict[str, dict]:
    """The aggregate statistics of ``scores [S, K]`` (or ``[S]``) with their 95 % stratified
    bootstrap CIs, from one set of resamples: ``{stat: {"point", "lo", "hi"}}`` for each of
    ``stats`` (default: mean, median, IQM, and the optimality gap when ``threshold`` is
    given; see the module docstring for the definitions)."""
    _check_threshold(threshold)
    a = as_scores(scores)
    stats = tuple(stats) if stats is not None else _default_stats(threshold)
    return dict(zip(stats, _estimate(a, _batched(stats, threshold), reps, seed), strict=True))


def per_task(scores: object, threshold: float | None = None, stats: Sequence[str] | None = None,
             reps: int = 2000, seed: int = 0) -> list[dict[str, dict]]:
    """For each task ``k`` of ``scores [S, K]``, the statistics of its seeds ``scores[:, k]``
    (``median``: the median over seeds) with 95 % bootstrap CIs over seeds: a list of ``K``
    ``{stat: {"point", "lo", "hi"}}``."""
    _check_threshold(threshold)
    a = as_scores(scores)
    stats = tuple(stats) if stats is not None else _default_stats(threshold)
    fns = _batched(stats, threshold, per_task=True)
    return [dict(zip(stats, _estimate(a[:, [k]], fns, reps, seed), strict=True))
            for k in range(a.shape[1])]


def interval(scores: object, stat: str = "mean", reps: int = 2000, seed: int = 0,
             threshold: float | None = None) -> dict:
    """Point estimate and 95 % stratified bootstrap CI of one aggregate ``stat`` (``mean``,
    ``iqm``, ``median`` or ``optimality_gap`` with ``threshold``) over ``scores [S, K]`` (or
    ``[S]``): ``{"stat", "point", "lo", "hi", "seeds", "tasks"}`` (plain floats and ints)."""
    if stat not in STATISTICS:
        raise ValueError(f"stat must be one of {STATISTICS}, got {stat!r}")
    a = as_scores(scores)
    iv = aggregate(a, threshold, (stat,), reps, seed)[stat]
    return {"stat": stat, **iv, "seeds": int(a.shape[0]), "tasks": int(a.shape[1])}


# --- comparisons and distributions -------------------------------------------------------------


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``P(X > Y)`` + ``P(X = Y) / 2`` per replicate, averaged over tasks: ``x [B, Sx, K]``,
    ``y [B, Sy, K]`` -> ``[B]``."""
    gt = (x[:, :, None, :] > y[:, None, :, :]).mean(axis=(1, 2))
    eq = (x[:, :, None, :] == y[:, None, :, :]).mean(axis=(1, 2))
    return (gt + 0.5 * eq).mean(axis=1)


def probability_of_improvement(x: object, y: object, reps: int = 2000, seed: int = 0) -> dict:
    """``P(X > Y)``: the probability that a run of method ``x [Sx, K]`` scores above a run of
    ``y [Sy, K]`` on the same task (ties count 1/2; the seeds need not be shared or equal in
    number), averaged over the ``K`` tasks, with a 95 % CI from resampling each method's seeds
    independently within each task: ``{"point", "lo", "hi"}``. 0.5 means no difference."""
    a, b = as_scores(x, "x"), as_scores(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y need the same tasks, got {a.shape[1]} and {b.shape[1]}")
    bx, by = _resample_pair(a, b, reps, seed)
    lo, hi = _percentile_ci(_improvement(bx, by)[:, None])
    return _interval(_improvement(a[None], b[None])[0], lo[0], hi[0])


def profile_taus(*scores: object, points: int = PROFILE_POINTS) -> np.ndarray:
    """``[points]`` evenly spaced thresholds from the lowest to the highest of all ``scores``
    (a common grid for several methods' :func:`performance_profile`)."""
    vals = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in scores])
    if vals.size == 0 or not np.all(np.isfinite(vals)):
        raise ValueError("profile thresholds need finite scores")
    lo, hi = float(vals.min()), float(vals.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, points)


def performance_profile(scores: object, taus: object | None = None, reps: int = 2000,
                        seed: int = 0) -> dict:
    """The score distribution of ``scores [S, K]``: for each threshold ``tau`` of ``taus``
    (default :func:`profile_taus` of the scores), the fraction of all ``S * K`` run scores
    above ``tau``, with pointwise 95 % stratified bootstrap CIs (rliable's
    ``create_performance_profile`` with ``use_score_distribution=True``):
    ``{"tau": [T], "point": [T], "lo": [T], "hi": [T]}``; non-increasing in ``tau``."""
    a = as_scores(scores)
    t = profile_taus(a) if taus is None else np.asarray(taus, np.float64).reshape(-1)
    if t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError("profile thresholds must be finite and not empty")

    def frac(x: np.ndarray) -> np.ndarray:  # [B, S, K] -> [B, T]
        return (x.reshape(x.shape[0], -1)[:, :, None] > t).mean(axis=1)

    lo, hi = _percentile_ci(frac(_resample(a, reps, seed)))
    return {"tau": t.tolist(), "point": frac(a[None])[0].tolist(), "lo": lo.tolist(),
            "hi": hi.tolist()}


def summary(methods: Mapping[str, object], tasks: Sequence[str], threshold: float | None = None,
            reps: int = 2000, seed: int = 0, points: int = PROFILE_POINTS) -> dict:
    """Every statistic of several methods on the same ``tasks`` (``K`` names), each method's
    scores ``[S, K]`` (seeds may differ in number between methods):

    * ``methods``: ``{name: {"seeds", "aggregate": {stat: {point, lo, hi}},
      "per_task": {task: {stat: {point, lo, hi}}}}}`` (:func:`aggregate`, :func:`per_task`;
      ``optimality_gap`` only with a ``threshold``);
    * ``profile``: ``{"tau": [T], "methods": {name: {"point", "lo", "hi"}}}`` on one grid of
      ``points`` thresholds spanning every method's scores (:func:`performance_profile`);
    * ``prob_improvement``: ``{"a > b": {point, lo, hi}}`` for each pair of methods, ``a``
      listed before ``b`` (:func:`probability_of_improvement`; ``P(b > a) = 1 - P(a > b)``);
    * ``tasks``, ``threshold``, ``reps``, ``seed``, ``ci``.
    """
    if not methods:
        raise ValueError("no method to summarize")
    tasks = [str(t) for t in tasks]
    arrays = {}
    for name, s in methods.items():
        a = as_scores(s, f"scores of {name}")
        if a.shape[1] != len(tasks):
            raise ValueError(f"scores of {name} have {a.shape[1]} task(s), expected "
                             f"{len(tasks)} ({', '.join(tasks)})")
        arrays[str(name)] = a
    taus = profile_taus(*arrays.values(), points=points)
    out: dict = {"tasks": tasks, "threshold": threshold, "ci": CI, "reps": reps, "seed": seed,
                 "methods": {}, "profile": {"tau": taus.tolist(), "methods": {}},
                 "prob_improvement": {}}
    for name, a in arrays.items():
        out["methods"][name] = {
            "seeds": int(a.shape[0]),
            "aggregate": aggregate(a, threshold, reps=reps, seed=seed),
            "per_task": dict(zip(tasks, per_task(a, threshold, reps=reps, seed=seed),
                                 strict=True)),
        }
        prof = performance_profile(a, taus, reps, seed)
        out["profile"]["methods"][name] = {k: prof[k] for k in ("point", "lo", "hi")}
    names = list(arrays)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out["prob_improvement"][f"{a} > {b}"] = probability_of_improvement(
                arrays[a], arrays[b], reps, seed)
    return out


# --- paired arms -------------------------------------------------------------------------------


def sign_flip_pvalue(diff: object) -> float:
    """Two-sided p-value of "the mean per-seed difference is 0": the exact sign-flip
    permutation test over seeds (``scipy.stats.permutation_test``, paired samples) of
    ``diff [S]``. 1.0 when every difference is 0."""
    d = np.asarray(diff, np.float64).reshape(-1)
    if np.all(d == 0):
        return 1.0
    from scipy import stats as sps

    res = sps.permutation_test((d,), np.mean, permutation_type="samples",
                               alternative="two-sided", n_resamples=np.inf)
    return float(res.pvalue)


def paired(a: object, b: object, reps: int = 2000, seed: int = 0) -> dict:
    """Arm ``a`` against arm ``b`` over shared seeds, both ``[S, K]`` (or ``[S]``), seed ``s``
    of one paired with seed ``s`` of the other:

    * ``diff``: the mean of ``a - b`` with its 95 % stratified bootstrap CI (``interval``);
    * ``p_value``: :func:`sign_flip_pvalue` of the per-seed mean differences ``[S]``;
    * ``prob_improvement``: rliable's ``P(a > b)`` (ties count 1/2), averaged over tasks.
    """
    x, y = as_scores(a), as_scores(b)
    if x.shape != y.shape:
        raise ValueError(f"paired arms need the same [seeds, tasks], got {x.shape}, {y.shape}")
    diff = interval(x - y, "mean", reps, seed)
    return {"diff": diff, "p_value": sign_flip_pvalue((x - y).mean(1)),
            "prob_improvement": float(_improvement(x[None], y[None])[0])}


def verdict(a: object, b: object, reps: int = 2000, seed: int = 0) -> str:
    """``"holds"`` (``a`` above ``b``) when the paired test rejects equality at 5 % with a
    positive mean difference, or ``a``'s mean CI lies above ``b``'s; ``"reversed"`` for the
    same with ``b`` above ``a``; else ``"not established"``."""
    p = paired(a, b, reps, seed)
    ia, ib = interval(a, "mean", reps, seed), interval(b, "mean", reps, seed)
    d = p["diff"]["point"]
    if (p["p_value"] < 0.05 and d > 0) or ia["lo"] > ib["hi"]:
        return "holds"
    if (p["p_value"] < 0.05 and d < 0) or ib["lo"] > ia["hi"]:
        return "reversed"
    return "not established"


def fmt(iv: dict, digits: int = 3) -> str:
    """``"0.750 [0.700, 0.800]"`` for an interval (``{"point", "lo", "hi"}``)."""
    return f"{iv['point']:.{digits}f} [{iv['lo']:.{digits}f}, {iv['hi']:.{digits}f}]"

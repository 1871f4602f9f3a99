"""Statistics over seeds for experiment reports (``../shared/EVIDENCE.md``), on ``rliable``.

Scores are arrays ``[S, K]``: ``S`` seeds (independent runs) by ``K`` tasks (test tasks of a
seed, or 1). Every interval is a 95 % *stratified* bootstrap confidence interval over seeds
(rliable's ``StratifiedBootstrap``: seeds are resampled within each task), percentile method.

* :func:`interval` - the mean or the interquartile mean (IQM) with its CI;
* :func:`paired` - two arms that share seeds: the mean per-seed difference with its CI, an exact
  two-sided sign-flip permutation test of "no difference" over seeds (``scipy``), and rliable's
  probability of improvement;
* :func:`verdict` - the one word EVIDENCE.md allows: ``"holds"`` only when the paired test
  rejects equality at 5 % or the two arms' intervals separate, else ``"not established"``.

The figures are deterministic: every bootstrap is seeded (``seed``), and the global numpy
random state is left as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from rliable import library as rly
from rliable import metrics as rlm
from scipy import stats as sps

#: Aggregates over ``[S, K]`` score matrices, by name.
AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": rlm.aggregate_mean,
    "iqm": rlm.aggregate_iqm,
    "median": rlm.aggregate_median,
}


def as_scores(x: object) -> np.ndarray:
    """``x`` as a float64 ``[S, K]`` matrix: ``[S]`` becomes ``[S, 1]``; raises
    ``ValueError`` for fewer than 2 seeds, other ranks or non-finite values."""
    a = np.asarray(x, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"scores must be [seeds] or [seeds, tasks], got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"a confidence interval over seeds needs >= 2 seeds, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError("scores hold NaN or inf")
    return a


def interval(scores: object, stat: str = "mean", reps: int = 2000, seed: int = 0) -> dict:
    """Point estimate and 95 % stratified bootstrap CI of ``stat`` (``mean``, ``iqm`` or
    ``median``) over ``scores [S, K]`` (or ``[S]``): ``{"stat", "point", "lo", "hi",
    "seeds", "tasks"}`` (plain floats and ints)."""
    if stat not in AGGREGATES:
        raise ValueError(f"stat must be one of {tuple(AGGREGATES)}, got {stat!r}")
    a = as_scores(scores)
    fn = AGGREGATES[stat]
    # rliable 1.2 draws its stratified resamples with the global ``np.random.choice`` (its
    # ``random_state`` only reaches arch), so seed the global state for this call and restore it
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch deprecates the RandomState rliable passes it
            warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
            point, ci = rly.get_interval_estimates(
                {"x": a}, lambda s: np.array([fn(s)]), reps=reps,
                random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(saved)
    return {"stat": stat, "point": float(point["x"][0]), "lo": float(ci["x"][0, 0]),
            "hi": float(ci["x"][1, 0]), "seeds": int(a.shape[0]), "tasks": int(a.shape[1])}


def sign_flip_pvalue(diff: object) -> float:
    """Two-sided p-value of "the mean per-seed difference is 0": the exact sign-flip
    permutation test over seeds (``scipy.stats.permutation_test``, paired samples) of
    ``diff [S]``. 1.0 when every difference is 0."""
    d = np.asarray(diff, np.float64).reshape(-1)
    if np.all(d == 0):
        return 1.0
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
            "prob_improvement": float(rlm.probability_of_improvement(x, y))}


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
    """``"0.750 [0.700, 0.800]"`` for an :func:`interval` result."""
    return f"{iv['point']:.{digits}f} [{iv['lo']:.{digits}f}, {iv['hi']:.{digits}f}]"

"""metajax.stats against hand-computed values on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from metajax import stats


def test_iqm_of_a_known_vector():
    # 8 runs, 1 task: the IQM drops the lowest and highest quarter (2 each) -> mean of 2..5
    x = np.arange(8.0)
    iv = stats.interval(x, "iqm", reps=200)
    assert iv["point"] == pytest.approx(np.mean([2, 3, 4, 5]))
    assert iv["seeds"] == 8 and iv["tasks"] == 1
    assert stats.interval(x, "mean", reps=200)["point"] == pytest.approx(3.5)


def test_bootstrap_ci_of_two_seeds_by_hand():
    # seeds scored 0 and 1: resampled means are 0, 0.5, 1 w.p. 1/4, 1/2, 1/4, so the 2.5 %
    # and 97.5 % percentiles are 0 and 1
    iv = stats.interval([0.0, 1.0], reps=4000)
    assert (iv["point"], iv["lo"], iv["hi"]) == (0.5, 0.0, 1.0)
    # a constant score has a zero-width interval
    iv = stats.interval(np.full((5, 3), 0.75), reps=200)
    assert iv["lo"] == iv["hi"] == iv["point"] == 0.75


def test_ci_is_stratified_over_tasks_and_covers_the_truth():
    # task 0 always 0, task 1 always 1: resampling seeds within tasks never mixes them, so the
    # mean over [S, 2] is exactly 0.5 in every replicate
    a = np.stack([np.zeros(6), np.ones(6)], 1)
    iv = stats.interval(a, reps=500)
    assert iv["lo"] == iv["hi"] == 0.5
    # coverage on a synthetic case: N(0, 1) with 16 seeds, 200 repetitions, near 95 %
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        iv = stats.interval(rng.normal(size=16), reps=400, seed=i)
        hits += iv["lo"] <= 0.0 <= iv["hi"]
    assert 0.86 <= hits / 200 <= 0.99


def test_paired_comparison_by_hand():
    b = np.array([0.1, 0.5, 0.2, 0.9, 0.3, 0.4, 0.0, 0.7])
    a = b + 1.0
    p = stats.paired(a, b, reps=500)
    assert p["diff"]["point"] == pytest.approx(1.0)
    assert p["diff"]["lo"] == pytest.approx(1.0) and p["diff"]["hi"] == pytest.approx(1.0)
    # exact sign flips over 8 seeds: only "all +" and "all -" are as extreme -> 2 / 2^8
    assert p["p_value"] == pytest.approx(2 / 256)
    assert p["prob_improvement"] == pytest.approx(1.0)
    assert stats.verdict(a, b) == "holds" and stats.verdict(b, a) == "reversed"
    # identical arms: p = 1, P(improvement) = 1/2 (ties count half), nothing established
    p = stats.paired(b, b, reps=200)
    assert p["p_value"] == 1.0 and p["prob_improvement"] == pytest.approx(0.5)
    assert stats.verdict(b, b) == "not established"
    # one seed of 8 better, the rest tied: half of the sign flips give the same |mean| -> p = 1
    c = b.copy()
    c[0] += 0.5
    assert stats.paired(c, b)["p_value"] == pytest.approx(1.0)


def test_intervals_are_reproducible_and_leave_numpy_alone():
    x = np.random.default_rng(0).normal(size=(8, 5))
    np.random.seed(7)
    before = np.random.random()
    np.random.seed(7)
    a, b = stats.interval(x, reps=300), stats.interval(x, reps=300)
    assert a == b
    assert np.random.random() == before  # the caller's global stream is untouched
    assert stats.interval(x, reps=300, seed=1) != a


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=">= 2 seeds"):
        stats.interval([1.0])
    with pytest.raises(ValueError, match="NaN"):
        stats.interval([1.0, np.nan])
    with pytest.raises(ValueError, match="stat"):
        stats.interval([1.0, 2.0], "mode")
    with pytest.raises(ValueError, match="same"):
        stats.paired(np.zeros(3), np.zeros(4))

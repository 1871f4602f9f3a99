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


# --- the statistics of issue 16: aggregates, per task, P(improvement), profiles -------------


def test_iqm_median_and_optimality_gap_of_a_score_matrix_by_hand():
    # [S=4, K=2]: 8 scores; the IQM cuts floor(8 / 4) = 2 at each end of the sorted scores
    x = np.array([[0.0, 1.2], [0.5, 0.2], [0.8, 0.9], [3.0, 0.4]])
    agg = stats.aggregate(x, threshold=1.0, reps=200)
    assert agg["iqm"]["point"] == pytest.approx(np.mean([0.4, 0.5, 0.8, 0.9]))
    # task means 1.075 and 0.675: mean of the two, median of the two
    assert agg["mean"]["point"] == pytest.approx((1.075 + 0.675) / 2)
    assert agg["median"]["point"] == pytest.approx((1.075 + 0.675) / 2)
    # clipped at 1: 0, 1, 0.5, 0.2, 0.8, 0.9, 1, 0.4 -> mean 0.6, gap 0.4
    assert agg["optimality_gap"]["point"] == pytest.approx(0.4)
    assert stats.interval(x, "optimality_gap", threshold=2.0)["point"] == pytest.approx(
        2.0 - np.minimum(x, 2.0).mean())
    for iv in agg.values():
        assert iv["lo"] <= iv["point"] <= iv["hi"]
    # per task: over that task's seeds; its median is the median over seeds
    t0, t1 = stats.per_task(x, threshold=1.0, reps=200)
    assert t0["median"]["point"] == pytest.approx(0.65)  # median of 0, 0.5, 0.8, 3
    assert t0["iqm"]["point"] == pytest.approx(0.65)  # mean of the middle two
    assert t1["mean"]["point"] == pytest.approx(0.675)
    assert t1["optimality_gap"]["point"] == pytest.approx(1 - np.mean([1.0, 0.2, 0.9, 0.4]))
    # no threshold: no gap, and asking for one is refused
    assert set(stats.aggregate(x, reps=50)) == {"mean", "median", "iqm"}
    with pytest.raises(ValueError, match="threshold"):
        stats.interval(x, "optimality_gap")


def test_probability_of_improvement_by_hand():
    # x = [1, 3], y = [2, 2, 0]: of the 6 pairs, 1 > 0, 3 > 2, 3 > 2, 3 > 0 -> 4 / 6
    p = stats.probability_of_improvement([1.0, 3.0], [2.0, 2.0, 0.0], reps=300)
    assert p["point"] == pytest.approx(4 / 6)
    assert 0.0 <= p["lo"] <= p["point"] <= p["hi"] <= 1.0
    # ties count half: identical methods give exactly 1/2
    z = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    assert stats.probability_of_improvement(z, z, reps=50)["point"] == 0.5
    # every run of x above every run of y, on both tasks: 1 in every replicate
    p = stats.probability_of_improvement(z + 10.0, z, reps=200)
    assert (p["point"], p["lo"], p["hi"]) == (1.0, 1.0, 1.0)
    # averaged over tasks: task 0 always better (1), task 1 always worse (0) -> 1/2
    a = np.stack([np.full(4, 5.0), np.full(4, -5.0)], 1)
    assert stats.probability_of_improvement(a, np.zeros((3, 2)), reps=50)["point"] == 0.5


def test_performance_profile_is_the_fraction_above_tau_and_non_increasing():
    x = np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 2.5]])  # 6 run scores
    prof = stats.performance_profile(x, [-1.0, 0.5, 1.5, 2.0, 2.75, 4.0], reps=300)
    assert prof["point"] == pytest.approx([1.0, 5 / 6, 4 / 6, 2 / 6, 1 / 6, 0.0])
    for k in ("point", "lo", "hi"):
        assert np.all(np.diff(prof[k]) <= 0), k
    assert np.all(np.asarray(prof["lo"]) <= prof["point"])
    assert np.all(np.asarray(prof["point"]) <= prof["hi"])
    # the default grid spans the scores and is non-increasing too
    prof = stats.performance_profile(np.random.default_rng(0).normal(size=(8, 3)), reps=200)
    assert len(prof["tau"]) == stats.PROFILE_POINTS and np.all(np.diff(prof["point"]) <= 0)
    assert prof["point"][0] == pytest.approx(23 / 24) and prof["point"][-1] == 0.0


def test_the_bootstrap_is_rliables_to_the_last_digits():
    """Same resamples and percentiles as ``rliable.library`` (its global-state seeding
    reproduced), for the aggregates, P(improvement) and the profile."""
    import warnings

    from rliable import library as rly
    from rliable import metrics as rlm

    x = np.random.default_rng(0).normal(size=(6, 3))
    y = np.random.default_rng(1).normal(size=(5, 3)) + 0.3
    y6 = np.vstack([y, y[:1]])[:, ::-1] + 0.5  # [6, 3], as x
    taus = np.linspace(-2, 2, 7)
    saved = np.random.get_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.random.seed(4)
            pt, ci = rly.get_interval_estimates(
                {"x": x}, lambda s: np.array([rlm.aggregate_mean(s), rlm.aggregate_median(s),
                                              rlm.aggregate_iqm(s),
                                              rlm.aggregate_optimality_gap(s, 0.5)]), reps=300)
            np.random.seed(4)
            ppt, pci = rly.get_interval_estimates(
                {"xy": (x, y)}, lambda a, b: np.array([rlm.probability_of_improvement(a, b)]),
                reps=100)
            np.random.seed(4)
            qpt, qci = rly.get_interval_estimates(
                {"xy": (x, y6)},
                lambda a, b: np.array([rlm.probability_of_improvement(a, b)]), reps=100)
            np.random.seed(4)
            fpt, fci = rly.create_performance_profile({"x": x}, taus, reps=300)
    finally:
        np.random.set_state(saved)
    ours = stats.aggregate(x, 0.5, reps=300, seed=4)
    for i, s in enumerate(("mean", "median", "iqm", "optimality_gap")):
        got = [ours[s]["point"], ours[s]["lo"], ours[s]["hi"]]
        np.testing.assert_allclose(got, [pt["x"][i], ci["x"][0, i], ci["x"][1, i]], rtol=1e-12)
    p = stats.probability_of_improvement(x, y, reps=100, seed=4)
    np.testing.assert_allclose([p["point"], p["lo"], p["hi"]],
                               [ppt["xy"][0], pci["xy"][0, 0], pci["xy"][1, 0]], rtol=1e-12)
    p = stats.probability_of_improvement(x, y6, reps=100, seed=4)  # equal shapes: one draw
    np.testing.assert_allclose([p["point"], p["lo"], p["hi"]],
                               [qpt["xy"][0], qci["xy"][0, 0], qci["xy"][1, 0]], rtol=1e-12)
    prof = stats.performance_profile(x, taus, reps=300, seed=4)
    np.testing.assert_allclose(prof["point"], fpt["x"], rtol=1e-12)
    np.testing.assert_allclose([prof["lo"], prof["hi"]], fci["x"], rtol=1e-12)
    # the paired P(improvement) is rliable's too
    assert stats.paired(x, x[::-1])["prob_improvement"] == pytest.approx(
        rlm.probability_of_improvement(x, x[::-1]))


def test_aggregate_cis_cover_the_truth_on_synthetic_draws():
    # N(0, 1) over [10 seeds, 3 tasks], 300 draws: mean, median (of task means) and IQM are 0
    # for the population; each 95 % CI should cover 0 in roughly 90-99 % of the draws
    rng = np.random.default_rng(1)
    hits = {"mean": 0, "median": 0, "iqm": 0}
    n = 300
    for i in range(n):
        agg = stats.aggregate(rng.normal(size=(10, 3)), reps=500, seed=i)
        for k in hits:
            hits[k] += agg[k]["lo"] <= 0.0 <= agg[k]["hi"]
    for k, h in hits.items():
        assert 0.88 <= h / n <= 0.99, (k, h / n)


def test_summary_gathers_every_figure_and_is_deterministic():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 2)) + 1.0, rng.normal(size=(3, 2))
    s = stats.summary({"a": a, "b": b}, ["t0", "t1"], threshold=1.0, reps=200)
    assert s == stats.summary({"a": a, "b": b}, ["t0", "t1"], threshold=1.0, reps=200)
    assert s["tasks"] == ["t0", "t1"] and s["threshold"] == 1.0 and s["ci"] == 0.95
    assert set(s["methods"]) == {"a", "b"} and s["methods"]["b"]["seeds"] == 3
    assert set(s["methods"]["a"]["aggregate"]) == set(stats.STATISTICS)
    assert set(s["methods"]["a"]["per_task"]) == {"t0", "t1"}
    assert s["methods"]["a"]["aggregate"]["iqm"] == stats.aggregate(a, 1.0, reps=200)["iqm"]
    assert list(s["prob_improvement"]) == ["a > b"]
    assert s["prob_improvement"]["a > b"] == stats.probability_of_improvement(a, b, reps=200)
    tau = s["profile"]["tau"]
    assert tau[0] == pytest.approx(min(a.min(), b.min()))
    assert tau[-1] == pytest.approx(max(a.max(), b.max()))
    assert s["profile"]["methods"]["b"]["point"][-1] == 0.0
    import json

    json.dumps(s)  # plain JSON
    assert "optimality_gap" not in stats.summary({"a": a}, ["t0", "t1"], reps=50)[
        "methods"]["a"]["aggregate"]


def test_bad_input_is_refused_in_one_line():
    good = np.zeros((3, 2))
    cases = [
        (lambda: stats.aggregate([[1.0, 2.0]]), ">= 2 seeds"),
        (lambda: stats.aggregate([[1.0, np.nan], [0.0, 0.0]]), "NaN"),
        (lambda: stats.per_task(np.zeros((3, 2, 2))), "shape"),
        (lambda: stats.probability_of_improvement(good, np.zeros((3, 3))), "same tasks"),
        (lambda: stats.probability_of_improvement(good, np.zeros((1, 2))), ">= 2 seeds"),
        (lambda: stats.summary({"a": good}, ["t0"]), "expected 1"),
        (lambda: stats.summary({"a": good, "b": [[np.inf, 0.0]] * 2}, ["t0", "t1"]),
         "scores of b hold NaN"),
        (lambda: stats.summary({}, []), "no method"),
        (lambda: stats.aggregate(good, threshold=float("nan")), "finite"),
        (lambda: stats.aggregate(good, stats=("mode",)), "stat"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match) as e:
            fn()
        assert "\n" not in str(e.value)

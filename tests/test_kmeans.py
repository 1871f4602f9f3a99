"""k-means++ / Lloyd / the nearest-center hash against brute force on tiny data."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.algos.mesa.kmeans import assign, fit_kmeans, kmeans_plusplus_init, lloyd


def _blobs(rng: np.random.Generator, means: np.ndarray, per: int, scale: float) -> np.ndarray:
    return np.concatenate([m + scale * rng.standard_normal((per, means.shape[1])) for m in means])


def test_fit_matches_brute_force_optimum():
    """6 points into 2 clusters: every labelling enumerated; k-means reaches the optimum."""
    x = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
    best = np.inf
    for labels in itertools.product((0, 1), repeat=6):
        labels = np.array(labels)
        if labels.min() == labels.max():
            continue
        best = min(
            best, sum(((x[labels == c] - x[labels == c].mean(0)) ** 2).sum() for c in (0, 1))
        )
    km = fit_kmeans(jax.random.key(0), jnp.asarray(x), k=2, iters=20, n_init=8)
    np.testing.assert_allclose(float(km.inertia), best, rtol=1e-5)
    # the reported inertia is that of the returned centers
    d2 = ((x[:, None] - np.asarray(km.centers)[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d2.min(1).sum(), best, rtol=1e-5)


def test_lloyd_from_plusplus_recovers_separated_blobs():
    rng = np.random.default_rng(1)
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    x = _blobs(rng, means, per=5, scale=0.1).astype(np.float32)
    truth = np.repeat(np.arange(3), 5)
    for seed in range(3):
        init = kmeans_plusplus_init(jax.random.key(seed), jnp.asarray(x), 3)
        centers, labels, inertia = lloyd(jnp.asarray(x), init, None, iters=10)
        labels = np.asarray(labels)
        # same partition as the blobs (up to renaming)
        for c in range(3):
            assert len(set(labels[truth == c])) == 1
        assert len(set(labels)) == 3
        expect = np.stack([x[labels == c].mean(0) for c in range(3)])
        np.testing.assert_allclose(np.asarray(centers), expect, atol=1e-5)
        np.testing.assert_allclose(
            float(inertia), ((x - expect[labels]) ** 2).sum(), rtol=1e-4, atol=1e-5
        )


def test_plusplus_d2_sampling_never_repeats_a_point_at_distance_zero():
    """With k = #distinct points, D^2 sampling must pick every point exactly once."""
    x = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    for seed in range(5):
        c = np.asarray(kmeans_plusplus_init(jax.random.key(seed), x, 4))
        assert sorted(map(tuple, c.tolist())) == sorted(map(tuple, np.asarray(x).tolist()))


def test_masked_rows_never_centers_nor_counted():
    rng = np.random.default_rng(2)
    valid = _blobs(rng, np.array([[0.0, 0.0], [4.0, 4.0]]), per=4, scale=0.1)
    junk = np.full((4, 2), 100.0) + rng.standard_normal((4, 2))
    x = jnp.asarray(np.concatenate([valid, junk]).astype(np.float32))
    mask = jnp.arange(12) < 8
    for seed in range(5):
        init = np.asarray(kmeans_plusplus_init(jax.random.key(seed), x, 3, mask))
        assert np.all(np.abs(init) < 50), "a masked row was chosen as a center"
    km = fit_kmeans(jax.random.key(0), x, k=2, mask=mask, iters=10)
    got = np.sort(np.asarray(km.centers), axis=0)
    want = np.sort(np.stack([valid[:4].mean(0), valid[4:].mean(0)]), axis=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    inertia = sum(
        ((valid[i * 4 : i * 4 + 4] - valid[i * 4 : i * 4 + 4].mean(0)) ** 2).sum() for i in range(2)
    )
    np.testing.assert_allclose(float(km.inertia), inertia, rtol=1e-4)


def test_fewer_valid_points_than_k_duplicates_centers():
    x = jnp.array([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0], [8.0, 8.0]])
    mask = jnp.array([True, True, False, False])
    km = fit_kmeans(jax.random.key(3), x, k=4, mask=mask, iters=5)
    c = np.asarray(km.centers)
    assert np.all(np.isfinite(c))
    assert {tuple(r) for r in c.tolist()} == {(1.0, 2.0), (3.0, 4.0)}
    assert float(km.inertia) == pytest.approx(0.0, abs=1e-6)
    # no valid row at all: zeros, no NaN
    empty = kmeans_plusplus_init(jax.random.key(0), x, 2, jnp.zeros(4, bool))
    np.testing.assert_array_equal(np.asarray(empty), 0.0)


def test_empty_cluster_keeps_its_center():
    x = jnp.array([[0.0], [1.0], [2.0]])
    centers = jnp.array([[1.0], [100.0]])
    out, labels, _ = lloyd(x, centers, None, iters=3)
    np.testing.assert_allclose(np.asarray(out), [[1.0], [100.0]])
    np.testing.assert_array_equal(np.asarray(labels), [0, 0, 0])


def test_assign_is_argmin_over_centers():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    centers = rng.standard_normal((5, 3)).astype(np.float32)
    got = np.asarray(assign(jnp.asarray(centers), jnp.asarray(x)))
    want = ((x[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int32

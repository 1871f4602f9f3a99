"""MESA building blocks (Eq. 5, M_*, Eq. 6, pseudo-counts, p_e schedule) by hand and brute force."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.algos.mesa import core as mc


def _np(x):
    return np.asarray(x)


# --- Eq. 5 ---------------------------------------------------------------------------------


def test_relabel_hand_values():
    r = jnp.array([0.0, 0.0, 1.0, 0.0, 2.0, 0.0])
    np.testing.assert_allclose(
        _np(mc.relabel_rewards(r, 0.5)), [0.25, 0.5, 1.0, 1.0, 2.0, 0.0], rtol=1e-6
    )
    # paper value gamma = 0.05
    np.testing.assert_allclose(
        _np(mc.relabel_rewards(r, 0.05)), [0.0025, 0.05, 1.0, 0.1, 2.0, 0.0], rtol=1e-6
    )


def test_relabel_never_crosses_episode_end():
    r = jnp.array([0.0, 0.0, 1.0, 0.0, 2.0, 0.0])
    # episode 1 = steps 0..1 (no reward), episode 2 = steps 2..5
    done = jnp.array([False, True, False, False, False, True])
    np.testing.assert_allclose(
        _np(mc.relabel_rewards(r, 0.5, done)), [0.0, 0.0, 1.0, 1.0, 2.0, 0.0], rtol=1e-6
    )
    # done on the rewarded step itself: the reward is kept, nothing after it leaks back
    done = jnp.array([False, False, True, False, False, False])
    np.testing.assert_allclose(
        _np(mc.relabel_rewards(r, 0.5, done)), [0.25, 0.5, 1.0, 1.0, 2.0, 0.0], rtol=1e-6
    )
    done = jnp.array([False, False, False, True, False, False])
    np.testing.assert_allclose(
        _np(mc.relabel_rewards(r, 0.5, done)), [0.25, 0.5, 1.0, 0.0, 2.0, 0.0], rtol=1e-6
    )
    lab = mc.relabel(r, 0.5, done)
    np.testing.assert_array_equal(_np(lab.has_target), [True, True, True, False, True, False])
    np.testing.assert_allclose(_np(lab.target), [1.0, 1.0, 1.0, 0.0, 2.0, 0.0])
    np.testing.assert_array_equal(_np(lab.steps)[_np(lab.has_target)], [2, 1, 0, 0])


def test_relabel_batched_by_vmap():
    r = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 4.0]])
    out = jax.jit(jax.vmap(mc.relabel_rewards, in_axes=(0, None)))(r, 0.5)
    np.testing.assert_allclose(_np(out), [[0.5, 1.0, 0.0], [1.0, 2.0, 4.0]], rtol=1e-6)


def test_dataset_keep_rule():
    # 0.5 is positive but below R* = 1: not kept, and it shadows the later 1.0 for step 0
    r = jnp.array([0.0, 0.5, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(
        _np(mc.dataset_keep(r, 1.0)), [False, False, True, True, True, False]
    )
    np.testing.assert_array_equal(
        _np(mc.dataset_keep(r, 1.0, window=1)), [False, False, False, True, True, False]
    )
    done = jnp.array([False, False, True, False, False, False])
    np.testing.assert_array_equal(
        _np(mc.dataset_keep(r, 1.0, done)), [False, False, False, True, True, False]
    )
    # far predecessors are kept even when gamma^(t'-t) underflows float32
    long = jnp.zeros(60).at[-1].set(1.0)
    assert float(mc.relabel_rewards(long, 0.05)[0]) == 0.0
    assert bool(jnp.all(mc.dataset_keep(long, 1.0)))


# --- M_* -----------------------------------------------------------------------------------


def test_dataset_ring_add_mask_capacity():
    ds = mc.dataset_init(4, 2)
    assert ds.capacity == 4 and not bool(ds.mask.any())
    add = jax.jit(mc.dataset_add)
    x = jnp.arange(10.0).reshape(5, 2)
    ds = add(ds, x, jnp.array([True, False, True, False, True]))
    np.testing.assert_array_equal(_np(ds.mask), [True, True, True, False])
    np.testing.assert_array_equal(_np(ds.data[:3]), [[0, 1], [4, 5], [8, 9]])
    assert int(ds.count) == 3
    # wraps around: oldest overwritten first
    ds = add(ds, x + 100, jnp.array([True, True, False, False, False]))
    np.testing.assert_array_equal(_np(ds.mask), [True] * 4)
    np.testing.assert_array_equal(_np(ds.data), [[102, 103], [4, 5], [8, 9], [100, 101]])
    assert int(ds.count) == 5
    # more kept rows than capacity in one call: the last C survive (sequential semantics)
    big = jnp.arange(14.0).reshape(7, 2)
    ds = add(mc.dataset_init(4, 2), big, jnp.ones(7, bool))
    np.testing.assert_array_equal(_np(ds.data), [[8, 9], [10, 11], [12, 13], [6, 7]])


def test_dataset_reservoir_is_sequential_algorithm_r():
    key = jax.random.key(7)
    c, b = 3, 8
    x = jnp.arange(b, dtype=jnp.float32)[:, None]
    keep = jnp.array([True, True, False, True, True, True, False, True])
    ds = mc.dataset_add(mc.dataset_init(c, 1), x, keep, key)
    # replay the same random draws one row at a time
    n = np.cumsum(_np(keep)) - 1
    j = _np(jax.random.randint(key, (b,), 0, jnp.asarray(n) + 1))
    ref = np.zeros(c)
    for i in range(b):
        if not keep[i]:
            continue
        slot = n[i] if n[i] < c else j[i]
        if slot < c:
            ref[slot] = i
    np.testing.assert_array_equal(_np(ds.data[:, 0]), ref)
    assert bool(ds.mask.all()) and int(ds.count) == 6


def test_dataset_reservoir_is_uniform():
    """Every pair of a stream of 8 ends up in a 2-slot reservoir with probability 2/8."""
    x = jnp.arange(8, dtype=jnp.float32)[:, None]

    def run(key):
        ds = mc.dataset_init(2, 1)
        k1, k2 = jax.random.split(key)
        ds = mc.dataset_add(ds, x[:4], jnp.ones(4, bool), k1)
        ds = mc.dataset_add(ds, x[4:], jnp.ones(4, bool), k2)
        return jax.nn.one_hot(ds.data[:, 0].astype(jnp.int32), 8).sum(0)

    freq = _np(jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), 4000)).mean(0))
    np.testing.assert_allclose(freq, 0.25, atol=0.03)


# --- Eq. 6 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 1, 3, 16])
def test_min_distance_matches_brute_force(chunk):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((7, 3)).astype(np.float32)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    ds = mc.dataset_init(10, 3)
    ds = mc.dataset_add(ds, jnp.asarray(data), jnp.array([1, 1, 0, 1, 1, 0, 1], bool))
    stored = data[[0, 1, 3, 4, 6]]
    want = np.sqrt(((x[:, None] - stored[None]) ** 2).sum(-1)).min(1)
    got = mc.min_distance(ds, jnp.asarray(x), chunk)
    np.testing.assert_allclose(_np(got), want, rtol=1e-5)
    # exact zero on a stored row, and empty dataset -> inf
    assert float(mc.min_distance(ds, jnp.asarray(stored[:1]))[0]) == 0.0
    assert np.isinf(_np(mc.min_distance(mc.dataset_init(4, 3), jnp.asarray(x)))).all()
    # stored rows scattered over the capacity, the last one in the last slot: every chunk
    # up to it is scanned
    scattered = mc.HighRewardDataset(
        data=jnp.zeros((10, 3)).at[jnp.array([2, 9])].set(jnp.asarray(data[:2])),
        mask=jnp.zeros(10, bool).at[jnp.array([2, 9])].set(True),
        count=jnp.int32(2), value=jnp.ones(10))
    want = np.sqrt(((x[:, None] - data[None, :2]) ** 2).sum(-1))
    dist, idx = mc.nearest(scattered, jnp.asarray(x), chunk)
    np.testing.assert_allclose(_np(dist), want.min(1), rtol=1e-5)
    np.testing.assert_array_equal(_np(idx), np.array([2, 9])[want.argmin(1)])


def test_coverage_reward_hand_values():
    r_hat = jnp.array([2.0, 2.0, 2.0, 2.0, 0.5])
    dist = jnp.array([0.1, 0.1, 0.3, 0.2, 0.0])
    count = jnp.array([1, 2, 1, 1, 3])
    got = mc.coverage_reward(r_hat, dist, 0.2, count)
    np.testing.assert_allclose(_np(got), [2.0, 2.0 / 32, 0.0, 0.0, 0.5 / 243], rtol=1e-6)
    np.testing.assert_allclose(_np(mc.count_decay(jnp.array([0, 1, 2]))), [1.0, 1.0, 1 / 32])


# --- pseudo-counts -------------------------------------------------------------------------


def test_trajectory_counts_start_from_global():
    global_counts = jnp.array([0, 3, 0], jnp.int32)
    seen, final = mc.trajectory_counts(global_counts, jnp.array([0, 1, 0, 0, 2]))
    np.testing.assert_array_equal(_np(seen), [1, 4, 2, 3, 1])
    np.testing.assert_array_equal(_np(final), [3, 4, 1])
    # a restart after each episode end
    done = jnp.array([False, True, False, False, False])
    seen, final = mc.trajectory_counts(global_counts, jnp.array([0, 1, 0, 0, 2]), done)
    np.testing.assert_array_equal(_np(seen), [1, 4, 1, 2, 1])
    np.testing.assert_array_equal(_np(final), [2, 3, 1])
    done = jnp.array([False, False, False, False, True])
    _, final = mc.trajectory_counts(global_counts, jnp.array([0, 1, 0, 0, 2]), done)
    np.testing.assert_array_equal(_np(final), [3, 4, 1])


def test_global_counts_accumulate_over_policies():
    k = 4
    visits_1 = mc.visit_counts(jnp.array([0, 0, 1, 3]), k)
    visits_2 = mc.visit_counts(jnp.array([1, 2, 2, 0, 3]), k, jnp.array([1, 1, 1, 0, 1], bool))
    np.testing.assert_array_equal(_np(visits_2), [0, 1, 2, 1])
    g = mc.update_global(jnp.zeros(k, jnp.int32), visits_1)
    g = mc.update_global(g, visits_2)
    np.testing.assert_array_equal(_np(g), _np(visits_1 + visits_2))
    # the third policy's trajectory starts from them: a cluster visited 3 times before -> f_d(4)
    seen, _ = mc.trajectory_counts(g, jnp.array([1, 1]))
    np.testing.assert_array_equal(_np(seen), [3, 4])


def test_trajectory_coverage_reward_end_to_end():
    ds = mc.dataset_init(4, 2)
    ds = mc.dataset_add(ds, jnp.array([[0.0, 0.0], [5.0, 5.0]]), jnp.ones(2, bool))
    centers = jnp.array([[0.0, 0.0], [5.0, 5.0]])
    g = jnp.array([0, 1], jnp.int32)
    sa = jnp.array([[0.1, 0.0], [0.0, 0.1], [5.0, 5.05], [2.5, 2.5]])
    fn = jax.jit(mc.trajectory_coverage_reward, static_argnames=("eps",))
    got = fn(ds, centers, g, sa, eps=0.5)
    # visit 1 and 2 of cluster 0; cluster 1 already seen once globally; last is too far
    np.testing.assert_allclose(_np(got), [1.0, 1 / 32, 1 / 32, 0.0], rtol=1e-6)


# --- Alg. 2 --------------------------------------------------------------------------------


def test_anneal_values():
    lin = jax.jit(mc.anneal, static_argnames=("decay_steps", "kind"))
    assert float(lin(0, 1.0, 0.0, 100)) == pytest.approx(1.0)
    assert float(lin(50, 1.0, 0.0, 100)) == pytest.approx(0.5)
    assert float(lin(100, 1.0, 0.0, 100)) == pytest.approx(0.0)
    assert float(lin(1000, 0.8, 0.1, 100)) == pytest.approx(0.1)
    mid = (np.exp(-2.5) - np.exp(-5.0)) / (1 - np.exp(-5.0))
    assert float(lin(0, 1.0, 0.0, 100, kind="exponential")) == pytest.approx(1.0)
    assert float(lin(50, 1.0, 0.0, 100, kind="exponential")) == pytest.approx(mid, rel=1e-5)
    assert float(lin(100, 1.0, 0.0, 100, kind="exponential")) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError):
        mc.anneal(0, 1.0, 0.0, 100, kind="cosine")


def test_leave_one_task_out_radius_by_hand():
    # three tasks on a line: task 0 stores 0 and 1, task 1 stores 3, task 2 stores nothing
    ds = jax.vmap(lambda _: mc.dataset_init(2, 1))(jnp.arange(3))
    ds = ds.replace(data=jnp.array([[[0.0], [1.0]], [[3.0], [0.0]], [[0.0], [0.0]]]),
                    mask=jnp.array([[True, True], [True, False], [False, False]]))
    d = np.asarray(mc.leave_one_task_out(ds))
    # 0 -> nearest other-task pair 3 (3); 1 -> 3 (2); 3 -> 1 (2); empty rows inf
    np.testing.assert_allclose(d, [[3.0, 2.0], [2.0, np.inf], [np.inf, np.inf]])
    # quantiles of the finite values {2, 2, 3}: 1/3 -> 2, 1/2 -> 2, 1 -> 3
    assert float(mc.radius_from_training(ds, 1 / 3)) == 2.0
    assert float(mc.radius_from_training(ds, 0.5)) == 2.0
    assert float(mc.radius_from_training(ds, 1.0)) == 3.0
    # a single task has no other task: inf (the pipeline then keeps its eps)
    one = jax.tree.map(lambda x: x[:1], ds)
    assert np.isinf(float(mc.radius_from_training(one, 0.5)))

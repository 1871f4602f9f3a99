"""MADDPG's pure pieces against hand computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.algos import maddpg
from metajax.config import ConfigError, override, parse_overrides
from metajax.core import ops
from metajax.pipelines.runner import TrainConfig


def test_td_target_and_critic_loss():
    r = jnp.array([[1.0, 0.5], [0.0, 2.0]])
    d = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    qn = jnp.array([[2.0, 3.0], [4.0, -1.0]])
    y = ops.td_target(r, d, qn, 0.9)
    np.testing.assert_allclose(np.asarray(y), [[1 + 1.8, 0.5], [3.6, 2 - 0.9]], rtol=1e-6)
    q = jnp.array([[2.0, 1.0], [3.0, 0.0]])
    mask = jnp.array([[True, True], [True, False]])
    want = ((2 - 2.8) ** 2 + (1 - 0.5) ** 2 + (3 - 3.6) ** 2) / 3
    assert float(maddpg.critic_loss(q, y, mask)) == pytest.approx(want, rel=1e-6)
    # the target carries no gradient
    g = jax.grad(lambda n: maddpg.critic_loss(q, ops.td_target(r, d, n, 0.9), mask))(qn)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_actor_loss():
    q_new = jnp.array([[1.0, 3.0], [2.0, 100.0]])
    out = jnp.array([[[1.0, -1.0], [2.0, 0.0]], [[0.0, 0.0], [9.0, 9.0]]])
    mask = jnp.array([[True, True], [True, False]])
    reg = 1e-3
    want = -(1 + 3 + 2) / 3 + reg * ((1 + 1) / 2 + (4 + 0) / 2 + 0) / 3
    assert float(maddpg.actor_loss(q_new, out, mask, reg)) == pytest.approx(want, rel=1e-6)


def test_soft_update():
    t = {"w": jnp.array([1.0, 2.0])}
    o = {"w": jnp.array([3.0, -2.0])}
    np.testing.assert_allclose(np.asarray(ops.soft_update(t, o, 0.25)["w"]), [1.5, 1.0])


def test_gumbel_softmax_sample_and_gradient():
    logits = jnp.array([0.5, -1.0, 2.0, 0.0])
    y = ops.gumbel_softmax(jax.random.PRNGKey(0), logits, 1.0)
    assert float(y.sum()) == pytest.approx(1.0, rel=1e-6) and np.all(np.asarray(y) > 0)
    # with the same key the noise is g, so y = softmax(logits + g)
    g = jax.random.gumbel(jax.random.PRNGKey(0), logits.shape)
    np.testing.assert_allclose(np.asarray(y), np.asarray(jax.nn.softmax(logits + g)),
                               rtol=1e-6)
    # frequencies follow softmax(logits)
    ys = jax.vmap(lambda k: ops.gumbel_softmax(k, logits))(
        jax.random.split(jax.random.PRNGKey(1), 4000))
    freq = np.bincount(np.asarray(ys.argmax(-1)), minlength=4) / 4000
    np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(logits)), atol=0.03)
    # gradients flow to the logits
    grad = jax.grad(lambda lg: ops.gumbel_softmax(jax.random.PRNGKey(0), lg)[2])(logits)
    assert np.abs(np.asarray(grad)).sum() > 1e-3


def test_straight_through_is_one_hot_forward_soft_backward():
    y = jnp.array([0.2, 0.5, 0.3])
    st = ops.straight_through(y)
    np.testing.assert_allclose(np.asarray(st), [0, 1, 0], atol=1e-7)
    w = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(
        np.asarray(jax.grad(lambda v: (ops.straight_through(v) * w).sum())(y)), [1, 2, 3])


def test_config_validation_and_overrides():
    with pytest.raises(ValueError, match="critic"):
        maddpg.MADDPGConfig(critic="transformer")
    cfg = override(TrainConfig(), parse_overrides(["maddpg.actor_lr=0.001", "seeds=3"]))
    assert cfg.maddpg.actor_lr == 0.001 and cfg.seeds == 3
    with pytest.raises(ConfigError, match=r"maddpg\.actor_lrr"):
        override(TrainConfig(), {"maddpg.actor_lrr": 1})
    with pytest.raises(ConfigError, match="seeds"):
        override(TrainConfig(), {"seeds": "many"})
    assert maddpg.MAAC_MRA.actor_lr == 3e-4 and maddpg.MAAC_MRA.updates_per_rollout == 10


def test_unrolled_gumbel_is_jax_gumbel_bit_for_bit():
    # MADDPG draws its noise with ops.gumbel (Threefry rounds written out, faster on the CPU);
    # it must be exactly jax.random.gumbel, or runs change: one key, per-sample keys, typed keys
    for shape in [(5,), (7,), (3, 5), (64, 3, 5)]:
        k = jax.random.PRNGKey(shape[0])
        np.testing.assert_array_equal(np.asarray(jax.jit(ops.threefry_bits, static_argnums=1)(
                                          k, shape)),
                                      np.asarray(jax.random.bits(k, shape)))
        np.testing.assert_array_equal(
            np.asarray(jax.jit(lambda k, s=shape: ops.gumbel(k, s))(k)),
            np.asarray(jax.jit(lambda k, s=shape: jax.random.gumbel(k, s))(k)))
    keys = jax.random.split(jax.random.PRNGKey(3), 256)
    logits = jax.random.normal(jax.random.PRNGKey(4), (256, 3, 5))
    np.testing.assert_array_equal(
        np.asarray(jax.jit(jax.vmap(ops.gumbel_softmax_unrolled))(keys, logits)),
        np.asarray(jax.jit(jax.vmap(ops.gumbel_softmax))(keys, logits)))
    typed = jax.random.key(5)
    assert ops.uses_threefry(typed)
    np.testing.assert_array_equal(
        np.asarray(jax.jit(lambda k: ops.gumbel(k, (4, 5)))(typed)),
        np.asarray(jax.jit(lambda k: jax.random.gumbel(k, (4, 5)))(typed)))
    # another generator falls back to jax.random.gumbel
    rbg = jax.random.key(6, impl="rbg")
    assert not ops.uses_threefry(rbg)
    np.testing.assert_array_equal(np.asarray(jax.jit(ops.gumbel, static_argnums=1)(rbg, (3,))),
                                  np.asarray(jax.random.gumbel(rbg, (3,))))

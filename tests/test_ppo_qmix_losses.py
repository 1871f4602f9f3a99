"""The PPO / RND and VDN / QMIX building blocks against hand-computed values (issue 17)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.algos import ppo, qmix


def test_gae_by_hand_with_a_time_limit_and_a_termination():
    """One game, 4 steps: the episode is truncated after step 1 (its final value bootstrapped,
    the trace cut) and terminated after step 3 (no bootstrap)."""
    r = jnp.array([1.0, 2.0, 0.5, 1.0])
    v = jnp.array([0.5, 1.0, 0.2, 0.4])
    v_next = jnp.array([1.0, 3.0, 0.4, 9.0])  # after step 1: the final observation's value
    disc = jnp.array([1.0, 1.0, 1.0, 0.0])
    ends = jnp.array([False, True, False, True])
    g, lam = 0.9, 0.8
    adv, ret = ppo.gae(r, v, v_next, disc, ends, g, lam)
    d = [1 + 0.9 * 1.0 - 0.5, 2 + 0.9 * 3.0 - 1.0, 0.5 + 0.9 * 0.4 - 0.2, 1.0 - 0.4]
    a3 = d[3]
    a2 = d[2] + g * lam * a3
    a1 = d[1]  # the trace stops at the end of the first episode
    a0 = d[0] + g * lam * a1
    np.testing.assert_allclose(adv, [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(ret, np.asarray([a0, a1, a2, a3]) + np.asarray(v), rtol=1e-6)


def test_gae_broadcasts_over_games_and_agents():
    key = jax.random.PRNGKey(0)
    shape = (5, 3, 2)
    r, v, vn = (jax.random.normal(k, shape) for k in jax.random.split(key, 3))
    ones = jnp.ones(shape)
    adv, _ = ppo.gae(r, v, vn, ones, jnp.zeros(shape, bool), 0.99, 1.0)
    # lambda 1, no ends: A_0 = sum_t g^t r_t + g^T V_T' ... telescoped by hand for game 1, agent 0
    g = 0.99
    want = sum(g**t * r[t, 1, 0] for t in range(5)) + g**5 * vn[4, 1, 0] - v[0, 1, 0]
    want += sum(g**(t + 1) * (vn[t, 1, 0] - v[t + 1, 1, 0]) for t in range(4))
    np.testing.assert_allclose(adv[0, 1, 0], want, rtol=1e-5)


def test_clipped_policy_loss_by_hand():
    logp_old = jnp.log(jnp.array([0.5, 0.5, 0.5, 0.5]))
    logp = jnp.log(jnp.array([0.75, 0.25, 0.75, 0.9]))  # ratios 1.5, 0.5, 1.5, 1.8
    adv = jnp.array([1.0, 1.0, -1.0, 2.0])
    mask = jnp.array([True, True, True, False])  # the last agent is padding
    loss = ppo.clipped_policy_loss(logp, logp_old, adv, mask, 0.2)
    # min(1.5, 1.2) = 1.2; min(0.5, 0.8) = 0.5; min(-1.5, -1.2) = -1.5
    np.testing.assert_allclose(loss, -(1.2 + 0.5 - 1.5) / 3, rtol=1e-6)


def test_clipped_value_loss_and_normalization_by_hand():
    v, v_old, ret = jnp.array([2.0, 0.0]), jnp.array([1.0, 0.0]), jnp.array([3.0, 1.0])
    mask = jnp.array([True, True])
    # agent 0: (2-3)^2 = 1, clipped 1 + 0.5 = 1.5 -> (1.5-3)^2 = 2.25; agent 1: 1 and 1
    np.testing.assert_allclose(ppo.clipped_value_loss(v, v_old, ret, mask, 0.5),
                               0.5 * (2.25 + 1.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(ppo.clipped_value_loss(v, v_old, ret, mask, None),
                               0.5 * (1.0 + 1.0) / 2, rtol=1e-6)
    adv = jnp.array([[1.0, 3.0, 100.0]])
    out = ppo.normalize_advantages(adv, jnp.array([True, True, False]))
    np.testing.assert_allclose(out, [[-1.0, 1.0, 0.0]], rtol=1e-6)


def test_entropy_and_rnd_error_by_hand():
    logits = jnp.log(jnp.array([[0.5, 0.5], [0.9, 0.1], [1.0, 1e-9]]))
    mask = jnp.array([True, True, False])
    want = (np.log(2) - (0.9 * np.log(0.9) + 0.1 * np.log(0.1))) / 2
    dist = ppo.action_distribution(logits)
    np.testing.assert_allclose(ppo.masked_entropy(dist, mask), want, rtol=1e-5)
    # a diagonal Gaussian [3 agents, 2 dims]: entropy 0.5 d (1 + log 2 pi) + sum log_std, the
    # same for every agent (the padded third is left out either way)
    log_std = jnp.array([0.0, np.log(2.0)])
    g = ppo.action_distribution(jnp.zeros((3, 2)), log_std)
    np.testing.assert_allclose(ppo.masked_entropy(g, mask), 1.0 + np.log(2 * np.pi) + np.log(2),
                               rtol=1e-5)
    # log N(x | mu, sigma) summed over dimensions: x = (1, 0), mu = 0, sigma = (1, 2)
    lp = g.log_prob(jnp.array([[1.0, 0.0]] * 3))
    np.testing.assert_allclose(lp, -0.5 - np.log(2 * np.pi) - np.log(2), rtol=1e-5)
    err = ppo.rnd_error(jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.array([[0.0, 0.0], [1.0, 3.0]]))
    np.testing.assert_allclose(err, [2.5, 5.0])
    g = jax.grad(lambda t: ppo.rnd_error(jnp.ones(2), t).sum())(jnp.zeros(2))
    np.testing.assert_array_equal(g, 0.0)  # the target network is not trained


def test_vdn_and_chosen_q():
    qs = jnp.array([1.0, 2.0, 50.0])
    assert float(qmix.vdn_mix(qs, jnp.array([True, True, False]))) == 3.0
    q_all = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(qmix.chosen_q(q_all, jnp.array([1, 0])), [2.0, 3.0])


def test_qmix_is_monotonic_and_blind_to_padded_agents():
    mixer = qmix.QMixer(max_agents=4, embed=8, hyper_hidden=16)
    state = jax.random.normal(jax.random.PRNGKey(1), (6,))
    mask = jnp.array([True, True, True, False])
    qs = jax.random.normal(jax.random.PRNGKey(2), (4,))
    params = mixer.init(jax.random.PRNGKey(0), qs, mask, state)
    f = jax.jit(lambda q, m, s: mixer.apply(params, q, m, s))
    # monotonic: dQ_tot/dQ_a >= 0 everywhere (random points), exactly 0 for the padded agent
    for k in jax.random.split(jax.random.PRNGKey(3), 20):
        q = 3 * jax.random.normal(k, (4,))
        s = jax.random.normal(jax.random.fold_in(k, 1), (6,))
        grad = jax.grad(f)(q, mask, s)
        assert (grad[:3] >= 0).all() and grad[3] == 0.0
    # the padded agent's value does not change Q_tot
    np.testing.assert_array_equal(f(qs, mask, state), f(qs.at[3].set(1e3), mask, state))
    # raising one real agent's value never lowers Q_tot
    assert float(f(qs.at[0].add(1.0), mask, state)) >= float(f(qs, mask, state))


def test_q_td_loss_masks_invalid_steps():
    q, t = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 2.0, 100.0])
    np.testing.assert_allclose(qmix.q_td_loss(q, t, jnp.array([True, True, False])), 0.5)
    g = jax.grad(lambda tt: qmix.q_td_loss(q, tt))(t)
    np.testing.assert_array_equal(g, 0.0)


def test_team_reward_is_the_mean_or_the_sum_of_the_real_agents():
    r = jnp.array([[1.0, 2.0, 60.0], [3.0, -1.0, 5.0]])
    mask = jnp.array([[True, True, False], [True, True, True]])
    np.testing.assert_allclose(qmix.team_reward(r, mask), [1.5, 7.0 / 3.0], rtol=1e-6)
    np.testing.assert_allclose(qmix.team_reward(r, mask, "sum"), [3.0, 7.0], rtol=1e-6)
    with pytest.raises(ValueError, match="team_reward"):
        qmix.QMixConfig(team_reward="max")


def test_qmix_init_scale_gives_orthogonal_kernels_of_that_gain_and_zero_biases():
    state, qs, mask = jnp.ones((6,)), jnp.ones((4,)), jnp.array([True, True, True, False])
    small = qmix.QMixer(max_agents=4, embed=8, hyper_hidden=16, init_scale=0.001).init(
        jax.random.PRNGKey(0), qs, mask, state)["params"]
    default = qmix.QMixer(max_agents=4, embed=8, hyper_hidden=16).init(
        jax.random.PRNGKey(0), qs, mask, state)["params"]
    k = np.asarray(small["w1_hidden"]["kernel"])  # [6, 16]: orthonormal rows times the gain
    np.testing.assert_allclose(k @ k.T, 1e-6 * np.eye(6), atol=1e-9)
    for name in small:
        np.testing.assert_array_equal(small[name]["bias"], 0.0)
        assert np.abs(small[name]["kernel"]).max() <= 1e-3 + 1e-9
        assert np.abs(default[name]["kernel"]).max() > 1e-2

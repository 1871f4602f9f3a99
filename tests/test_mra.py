"""MRA: the pieces against hand computations (Eq. 11, Eq. 13, Reptile, head selection), the
learner's Reptile step and adaptation, and a learning test on an unseen population.

Compile time dominates: one tiny learner config is shared by every learner-level test (a
module-scoped training run whose final state feeds the other tests)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.core import Observation
from metajax import mra
from metajax import networks as nets
from metajax.runner import build_tasks

# --- pure pieces ---------------------------------------------------------------------------------


def test_mi_lower_bound_matches_hand_computation():
    """Eq. 11: log pi(a|g) - log mean_k pi(a|g'_k); pi(a|g) = 0.5, resampled 0.5, 0.1, 0.3."""
    logp = jnp.log(jnp.array([0.5, 0.2]))
    logp_r = jnp.log(jnp.array([[0.5, 0.1, 0.3], [0.2, 0.2, 0.2]]))
    got = np.asarray(mra.mi_lower_bound(logp, logp_r))
    np.testing.assert_allclose(got, [math.log(0.5 / 0.3), 0.0], rtol=1e-6, atol=1e-7)


def test_game_cross_entropy_matches_hand_computation():
    """Eq. 13: -log softmax(logits)[game], averaged over the unmasked agents only."""
    logits = jnp.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [9.0, -9.0, 3.0]])
    game = jnp.array([1, 2, 0])
    mask = jnp.array([True, True, False])
    lse = math.log(math.e + math.e**2 + 1.0)
    want = ((lse - 2.0) + math.log(3.0)) / 2
    got = float(mra.game_cross_entropy(logits, game, mask))
    assert got == pytest.approx(want, rel=1e-6)


def test_reptile_steps_are_the_interpolation():
    theta = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    theta_k = {"w": jnp.array([3.0, 0.0]), "b": jnp.array(-0.5)}
    got = mra.reptile_step(theta, theta_k, 0.25)
    np.testing.assert_allclose(got["w"], [1.5, -1.5])
    np.testing.assert_allclose(got["b"], 0.25)
    ks = {"w": jnp.array([[3.0, 0.0], [1.0, 2.0]]), "b": jnp.array([-0.5, 1.5])}
    got = mra.reptile_batched(theta, ks, 0.5)
    # mean delta: w (2 + 0) / 2 = 1, (2 + 4) / 2 = 3; b (-1 + 1) / 2 = 0
    np.testing.assert_allclose(got["w"], [1.5, -0.5])
    np.testing.assert_allclose(got["b"], 0.5)


def test_policy_gradient_is_eq9_in_expectation():
    """grad of the loss w.r.t. the logits = -sum_a pi(a) grad log pi(a) (Q(a) - E_pi Q)."""
    logits = jnp.array([[[0.3, -0.2, 1.0]]])
    q = jnp.array([[[1.0, 4.0, -2.0]]])
    mask = jnp.array([[True]])
    grad = jax.grad(lambda lg: mra.policy_gradient_loss(lg, q, mask, 0.0, 0.0)[0])(logits)
    pi = np.asarray(jax.nn.softmax(logits[0, 0]))
    adv = np.asarray(q[0, 0]) - (pi * np.asarray(q[0, 0])).sum()
    # d log pi(a) / d logit_b = 1[a = b] - pi(b)
    want = -sum(pi[a] * adv[a] * (np.eye(3)[a] - pi) for a in range(3))
    np.testing.assert_allclose(np.asarray(grad[0, 0]), want, rtol=1e-5, atol=1e-7)


A, M = 4, 3


def _one_obs(key) -> Observation:
    k1, k2, k3 = jax.random.split(key, 3)
    return Observation(
        self=jax.random.normal(k1, (4,)),
        agents=jax.random.normal(k2, (A, 4)),
        agents_mask=jnp.array([False, True, True, False]),
        objects=jax.random.normal(k3, (M, 2)),
        objects_mask=jnp.array([True, True, False]),
        team=jnp.asarray(0),
        agent_mask=jnp.asarray(True),
    )


def test_head_selection_by_z_picks_exactly_that_head():
    """Option architecture: the graph for z = e_h is head h's attention, and the action logits
    do not depend on the other heads' value transforms."""
    cfg = dataclasses.replace(mra.MRA_SMALL, hidden=(8,), num_heads=3, head_dim=4, embed_dim=8)
    actor_mod, actor_agent = mra.actor_functions(cfg, mra.MRAOptions(), 5)
    obs = _one_obs(jax.random.PRNGKey(0))
    params = actor_mod.init(jax.random.PRNGKey(1), obs, jnp.ones(3) / 3)
    enc = nets.RelationalEncoder(3, 4, 8)
    rel = enc.apply({"params": params["params"]["RelationalEncoder_0"]}, obs)
    for h in range(3):
        z = jax.nn.one_hot(h, 3)
        logits, graph = actor_agent(params, obs, z)
        np.testing.assert_allclose(np.asarray(graph), np.asarray(rel.graph[h]), rtol=1e-6)
        assert float(graph[0]) == 0.0 and float(graph[A + 2]) == 0.0  # masked entities
        # scramble the value weights of every other head: the logits stay the same
        v = params["params"]["RelationalEncoder_0"]["value"]["kernel"]
        cols = np.ones(v.shape[-1], bool)
        cols[h * 4:(h + 1) * 4] = False
        noisy = jax.tree.map(lambda x: x, params)
        noisy["params"]["RelationalEncoder_0"]["value"]["kernel"] = jnp.where(
            cols[None], v + 1.0, v)
        logits2, _ = actor_agent(noisy, obs, z)
        np.testing.assert_allclose(np.asarray(logits2), np.asarray(logits), rtol=1e-5)
    theta, phi = mra.split_actor(params)
    names = {"/".join(k) for k in nets_flat(phi)}
    assert names == {f"params/RelationalEncoder_0/{n}/kernel" for n in ("query", "key")}
    back = mra.merge_actor(theta, phi)
    assert jax.tree.structure(back) == jax.tree.structure(params)


def nets_flat(tree):
    from flax import traverse_util

    return traverse_util.flatten_dict(tree).keys()


def test_population_descriptor_counts_teams_and_objects():
    env = envs.make("pacman", max_pacman=3, max_ghosts=2, max_objects=4, episode_length=5)
    _, ts = env.reset_to(jax.random.PRNGKey(0), env.make_task(n_pacman=2, n_ghosts=1, n_food=3))
    d = np.asarray(mra.population_descriptor(ts.observation, 2))
    np.testing.assert_allclose(d, [0.2, 0.1, 0.3])


def test_condition_obs_variants():
    obs = _one_obs(jax.random.PRNGKey(0))
    z = jnp.array([0.0, 1.0])
    c = mra.condition_obs(obs, z, "concat")
    assert c.agents.shape == (A, 6) and c.self.shape == (6,)
    np.testing.assert_allclose(c.objects[:, -2:], np.tile([0.0, 1.0], (M, 1)))
    b = mra.condition_obs(obs, z, "bilinear")
    assert b.objects.shape == (M, 4)
    np.testing.assert_allclose(b.objects.reshape(M, 2, 2)[:, :, 1], obs.objects)
    np.testing.assert_allclose(b.objects.reshape(M, 2, 2)[:, :, 0], 0.0)
    with pytest.raises(ValueError, match="unknown phi variant"):
        mra.condition_obs(obs, z, "sum")


def test_clear_errors():
    with pytest.raises(ValueError, match=r"mra\.phi"):
        mra.MRAOptions(phi="outer")
    with pytest.raises(ValueError, match="init_from"):
        mra.MRAOptions(mode="adapt")
    with pytest.raises(ValueError, match="needs a latent"):
        mra.MRAOptions(latent="none", phi="concat")
    with pytest.raises(ValueError, match="param_sharing"):
        mra.MRAConfig(maddpg=dataclasses.replace(mra.MRA_SMALL, param_sharing="agent"))
    env = envs.make("treasure", max_agents=2, max_objects=2, action_type="relaxed")
    games = build_tasks(env, ({"n_agents": 2},))
    with pytest.raises(ValueError, match="discrete actions"):
        mra.make_mra(mra.MRA_SMALL, mra.MRAOptions(), env, games)


# --- the learner ---------------------------------------------------------------------------------

ENV_CFG = dict(max_agents=4, max_objects=3, episode_length=10)
TRAIN = ({"n_agents": 2, "n_treasures": 3}, {"n_agents": 4, "n_treasures": 3})
UNSEEN = {"n_agents": 3, "n_treasures": 3}
TINY = dataclasses.replace(
    mra.MRA_SMALL, batch_size=64, buffer_size=4000, learning_starts=200, rollout_steps=10,
    num_envs=4, updates_per_rollout=4, hidden=(32,), num_heads=2, head_dim=8, embed_dim=16,
    critic_hidden=32, actor_lr=3e-3, critic_lr=3e-3, reward_scale=10.0)
UPDATES = 400  # 16k env steps per seed, every game visited 200 times
SEEDS = 2


@pytest.fixture(scope="module")
def trained():
    env = envs.make("treasure", **ENV_CFG)
    games = build_tasks(env, TRAIN)
    parts = mra.build_mra(TINY, mra.MRAOptions(), env, games)
    keys = jax.random.split(jax.random.PRNGKey(0), SEEDS)
    state = jax.jit(jax.vmap(parts.learner.init))(keys)

    @jax.jit
    def train(state):
        def one(s):
            return jax.lax.scan(lambda s, t: parts.learner.update(s, t), s,
                                jnp.arange(UPDATES))
        return jax.vmap(one)(state)

    state, metrics = train(state)
    return env, games, parts, state, metrics


def _returns(env, policy, params, task, episodes=64, seed=3):
    """Mean per-agent return of ``policy(params, obs, carry, key) -> (action, carry)``."""
    n = int(task.n_agents)

    def episode(key):
        k0, k1 = jax.random.split(key)
        s, ts = env.reset_to(k0, task)

        def step(c, k):
            s, obs, carry = c
            a, carry = policy(params, obs, carry, k)
            s, ts = env.step(s, a)
            return (s, ts.observation, carry), ts.reward

        carry0 = jnp.zeros((env.max_agents, 1 + TINY.num_heads))
        _, r = jax.lax.scan(step, (s, ts.observation, carry0),
                            jax.random.split(k1, env.episode_length))
        return r.sum(0)[:n].mean()

    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    return float(jnp.mean(jax.jit(jax.vmap(episode))(keys)))


def test_mra_beats_random_on_an_unseen_population(trained):
    """Trained on 2 and 4 collectors, evaluated on 3: random moves return about -0.64 per agent;
    MRA gets to about -0.3. A learner whose actor or critic does not learn stays near random."""
    env, _, parts, state, metrics = trained
    task = env.make_task(**UNSEEN)

    def random_policy(params, obs, carry, key):
        return jax.random.randint(key, (env.max_agents,), 0, 5), carry

    rand = _returns(env, random_policy, None, task)
    pp = parts.learner.policy_params(state)
    for s in range(SEEDS):
        p = jax.tree.map(lambda x, s=s: x[s], pp)
        ret = _returns(env, lambda p, o, c, k: parts.learner.policy(p, o, c, k, False), p, task)
        assert ret > rand + 0.15, (s, ret, rand)
    for k in ("critic_loss", "actor_loss", "mi", "game_ce"):
        assert np.isfinite(np.asarray(metrics[k])).all(), k
    # the games were visited in turn (Alg. 4) and the MI / CE steps ran
    np.testing.assert_array_equal(np.asarray(metrics["game"][0, :4]), [0, 1, 0, 1])
    assert np.all(np.asarray(metrics["game_ce"][:, -10:]) > 0)


def test_learner_reptile_step_is_the_interpolation(trained):
    """learn_sequential with alpha = 0.5 moves theta halfway to where alpha = 1 (the K inner
    steps) takes it; phi (the MI step) does not depend on alpha's value for theta."""
    _, _, parts, state, _ = trained
    s0 = jax.tree.map(lambda x: x[0], state)
    learn = jax.jit(parts.learn_sequential)
    key = jax.random.PRNGKey(7)
    full, _ = learn(s0, jnp.int32(1), key, 1.0)
    half, _ = learn(s0, jnp.int32(1), key, 0.5)
    theta0, _ = mra.split_actor(s0.params.actor)
    theta_k, _ = mra.split_actor(full.params.actor)
    theta_h, _ = mra.split_actor(half.params.actor)
    want = jax.tree.map(lambda a, b: a + 0.5 * (b - a), theta0, theta_k)
    moved = max(float(jnp.abs(a - b).max()) for a, b in
                zip(jax.tree.leaves(theta0), jax.tree.leaves(theta_k), strict=True))
    assert moved > 1e-4
    for got, exp in zip(jax.tree.leaves(theta_h), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(exp), rtol=1e-5, atol=1e-6)


def test_adaptation_updates_only_theta_and_phi(trained):
    """Alg. 5: fine-tuning changes theta, phi (Eq. 10) and the critic; psi and xi stay."""
    env, games, _, state, _ = trained
    opts = mra.MRAOptions(mode="adapt", init_from="(in memory)")
    parts = mra.build_mra(TINY, opts, env, games)
    s0 = jax.tree.map(lambda x: x[0], state)
    s1, _ = jax.jit(parts.learn_sequential)(s0, jnp.int32(0), jax.random.PRNGKey(1))

    def changed(a, b):
        return max(float(jnp.abs(x - y).max()) for x, y in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    th0, ph0 = mra.split_actor(s0.params.actor)
    th1, ph1 = mra.split_actor(s1.params.actor)
    assert changed(th0, th1) > 0 and changed(ph0, ph1) > 0
    assert changed(s0.params.critic, s1.params.critic) > 0
    assert changed(s0.params.prior, s1.params.prior) == 0
    assert changed(s0.params.inference, s1.params.inference) == 0

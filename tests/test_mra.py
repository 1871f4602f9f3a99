"""MRA: the pieces against hand computations (Eq. 11, Eq. 13, Reptile, head selection), the
learner's Reptile step and adaptation, and a learning test on an unseen population.

Compile time dominates: one tiny learner config is shared by every learner-level test (a
module-scoped training run whose compiled ``update`` and final state feed the other tests), and
the programs that run once are compiled with XLA's cheap optimization level (:data:`FAST`)."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_every_leaf_changed, assert_no_leaf_changed

import envs
from envs.core import Observation
from metajax.algos import mra
from metajax.core import networks as nets
from metajax.core.taskspec import build_tasks
from metajax.pipelines import mra as mra_pipeline

pytestmark = pytest.mark.early  # trains whole runs (see conftest.py)

#: Compiler options for programs that run once or twice: quicker to compile, slower to run.
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

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



def test_critic_loss_is_eq8_on_the_taken_action():
    """Eq. 8: (Q(o, a) - y)^2 on the taken action, mean over present agents: agent 0 took
    action 1 (Q = 2, y = 1.5), agent 1 action 0 (Q = -1, y = 0), agent 2 is padding."""
    q = jnp.array([[[0.0, 2.0], [-1.0, 5.0], [9.0, 9.0]]])
    action = jnp.array([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    y = jnp.array([[1.5, 0.0, 0.0]])
    mask = jnp.array([[True, True, False]])
    loss, q_taken = mra.critic_loss(q, action, y, mask)
    np.testing.assert_allclose(float(loss), (0.5**2 + 1.0**2) / 2, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(q_taken), [[2.0, -1.0, 9.0]])


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
    nw = mra.make_networks(cfg, mra.MRAOptions(), envs.make("treasure", **ENV_CFG))
    assert nw.n_actions == 5
    actor_mod = nw.actor
    actor_agent = jax.jit(functools.partial(mra.actor_agent, nw), compiler_options=FAST)
    obs = _one_obs(jax.random.PRNGKey(0))
    params = jax.jit(actor_mod.init, compiler_options=FAST)(jax.random.PRNGKey(1), obs,
                                                           jnp.ones(3) / 3)
    enc = nets.RelationalEncoder(3, 4, 8)
    rel = jax.jit(enc.apply)({"params": params["params"]["RelationalEncoder_0"]}, obs)
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
    task = env.make_task(n_pacman=2, n_ghosts=1, n_food=3)

    @jax.jit(compiler_options=FAST)
    def describe(key):
        return mra.population_descriptor(env.reset_to(key, task)[1].observation, 2)

    d = np.asarray(describe(jax.random.PRNGKey(0)))
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


def test_prior_separation_matches_hand_computation():
    """Two games, one team, two heads: p = (0.2, 0.8) and (0.9, 0.1)."""
    p = np.array([[[0.2, 0.8]], [[0.9, 0.1]]])
    sep = mra.prior_separation(jnp.log(jnp.asarray(p)))
    h = [-(0.2 * math.log(0.2) + 0.8 * math.log(0.8)), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))]
    np.testing.assert_allclose(np.asarray(sep["entropy"]), h, rtol=1e-5)
    m = (0.55, 0.45)
    js = 0.5 * (0.2 * math.log(0.2 / m[0]) + 0.8 * math.log(0.8 / m[1])) + 0.5 * (
        0.9 * math.log(0.9 / m[0]) + 0.1 * math.log(0.1 / m[1]))
    assert float(sep["js"]) == pytest.approx(js, rel=1e-5)
    assert float(sep["tv"]) == pytest.approx(0.7, rel=1e-5)
    assert float(sep["argmax_differs"]) == 1.0
    same = mra.prior_separation(jnp.log(jnp.asarray(np.stack([p[0], p[0], p[0]]))))
    assert float(same["js"]) == pytest.approx(0.0, abs=1e-7)
    assert float(same["tv"]) == 0.0 and float(same["argmax_differs"]) == 0.0


def test_inference_net_counts_the_population_only_when_pooled():
    """``xi_input="graph"``: xi sees o only along g, a convex combination of the entities'
    values, so a population of 1 and of 3 identical other agents (uniform graph) look the same;
    ``pooled`` adds a sum-pool, which tells them apart."""
    def obs(n):
        ag = jnp.zeros((4, 3)).at[:n].set(jnp.array([0.3, -0.2, 1.0]))
        return Observation(self=jnp.ones(2), agents=ag, agents_mask=jnp.arange(4) < n,
                           objects=jnp.zeros((1, 2)), objects_mask=jnp.zeros(1, bool),
                           team=jnp.zeros((), jnp.int32), agent_mask=jnp.ones((), bool))

    def graph(n):
        return jnp.concatenate([(jnp.arange(4) < n) / n, jnp.zeros(1)])

    for pooled, same in ((False, True), (True, False)):
        net = mra.InferenceNet(3, (8,), 8, 4, pooled=pooled)
        p = net.init(jax.random.PRNGKey(0), obs(1), graph(1))
        a, b = net.apply(p, obs(1), graph(1)), net.apply(p, obs(3), graph(3))
        assert np.allclose(a, b, atol=1e-6) == same, (pooled, a, b)


def test_clear_errors():
    with pytest.raises(ValueError, match=r"mra\.phi"):
        mra.MRAOptions(phi="outer")
    with pytest.raises(ValueError, match="init_from"):
        mra.MRAOptions(mode="adapt")
    with pytest.raises(ValueError, match=r"mra\.xi_input"):
        mra.MRAOptions(xi_input="count")
    with pytest.raises(ValueError, match="prior_temperature"):
        mra.MRAOptions(prior_temperature=0.0)
    with pytest.raises(ValueError, match="needs a latent"):
        mra.MRAOptions(latent="none", phi="concat")
    with pytest.raises(ValueError, match="param_sharing"):
        mra_pipeline.MRAConfig(maddpg=dataclasses.replace(mra.MRA_SMALL, param_sharing="agent"))
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
    num_envs=4, updates_per_rollout=8, hidden=(32,), num_heads=2, head_dim=8, embed_dim=16,
    critic_hidden=32, actor_lr=5e-3, critic_lr=5e-3, reward_scale=10.0)
#: The CPU-scale learning rates of Eq. 11 and Eq. 13
#: (metajax.pipelines.mra_compare.MRA_CPU_OPTIONS).
OPTS = mra.MRAOptions(phi_lr=3e-3, prior_lr=3e-3)
UPDATES = 260  # 10.4k env steps, every game visited 130 times
SEEDS = 1


def _build() -> tuple:
    env = envs.make("treasure", **ENV_CFG)
    games = build_tasks(env, TRAIN)
    learner = mra.make_mra(TINY, OPTS, env, games)
    keys = jax.random.split(jax.random.PRNGKey(0), SEEDS)
    update = jax.jit(jax.vmap(learner.update, (0, None, None)))
    return env, games, learner, keys, update


def mra_job(out: str) -> None:
    """Train ``SEEDS`` seeds for ``UPDATES`` updates; writes the final state's leaves and the
    metrics."""
    _, _, learner, keys, update = _build()
    state = jax.jit(jax.vmap(learner.init), compiler_options=FAST)(keys)
    history = []
    for t in range(UPDATES):
        state, m = update(state, jnp.int32(t), 1.0)
        history.append(m)
    metrics = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *history)  # [S, UPDATES]
    Path(out).mkdir(parents=True)
    np.savez(Path(out) / "state.npz", *map(np.asarray, jax.tree.leaves(state)))
    np.savez(Path(out) / "metrics.npz", **metrics)



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The trained state of :func:`mra_job` and the seed-vmapped ``update`` (compiled here
    again, normally a cache hit), which the Reptile test calls with another ``alpha``."""
    out = tmp_path_factory.mktemp("mra_learning") / "out"
    mra_job(str(out))
    env, games, learner, keys, update = _build()
    like = jax.eval_shape(jax.vmap(learner.init), keys)
    with np.load(out / "state.npz") as z:
        leaves = [z[f"arr_{i}"] for i in range(len(z.files))]
    state = jax.tree.unflatten(jax.tree.structure(like), [
        jnp.asarray(x, a.dtype) for x, a in zip(leaves, jax.tree.leaves(like), strict=True)])
    with np.load(out / "metrics.npz") as z:
        metrics = {k: z[k] for k in z.files}
    return env, games, learner, update, state, metrics


def _unseen_returns(env, learner, state, episodes=64):
    """Mean per-agent return on the unseen population: ``(MRA per seed [S], random moves)``,
    both from one compiled program."""
    task = env.make_task(**UNSEEN)
    n = int(task.n_agents)

    def episode(params, key, random):
        k0, k1 = jax.random.split(key)
        s, ts = env.reset_to(k0, task)

        def step(c, k):
            s, obs, carry = c
            a, carry = learner.policy(params, obs, carry, k, False)
            a = jnp.where(random, jax.random.randint(k, a.shape, 0, 5), a)
            s, ts = env.step(s, a)
            return (s, ts.observation, carry), ts.reward

        init = (s, ts.observation, learner.initial_carry())
        _, r = jax.lax.scan(step, init, jax.random.split(k1, env.episode_length))
        return r.sum(0)[:n].mean()

    @jax.jit(compiler_options=FAST)
    def evaluate(pp, keys):
        per_seed = jax.vmap(lambda p: jax.vmap(lambda k: episode(p, k, False))(keys).mean())(pp)
        p0 = jax.tree.map(lambda x: x[0], pp)
        return per_seed, jax.vmap(lambda k: episode(p0, k, True))(keys).mean()

    keys = jax.random.split(jax.random.PRNGKey(3), episodes)
    mra_ret, rand = evaluate(learner.policy_params(state), keys)
    return np.asarray(mra_ret), float(rand)


def test_mra_beats_random_on_an_unseen_population(trained):
    """Trained on 2 and 4 collectors, evaluated on 3: random moves return -0.60 per agent; MRA
    gets to -0.29 to -0.37 (three seeds) after 260 updates. A learner whose actor or critic does
    not learn stays near random."""
    env, _, learner, _, state, metrics = trained
    mra_ret, rand = _unseen_returns(env, learner, state)
    assert np.all(mra_ret > rand + 0.15), (mra_ret, rand)
    for k in ("critic_loss", "actor_loss", "mi", "game_ce"):
        assert np.isfinite(np.asarray(metrics[k])).all(), k
    # the games were visited in turn (Alg. 4) and the MI / CE steps ran
    np.testing.assert_array_equal(np.asarray(metrics["game"][0, :4]), [0, 1, 0, 1])
    # Eq. 11's bound is non-zero (the heads give different actions) and Eq. 13 learned to tell
    # the two games apart from (o, g): below log 2, what guessing scores
    mi = np.asarray(metrics["mi"][:, -40:])
    ce = np.asarray(metrics["game_ce"][:, -40:])
    assert np.all(np.abs(mi).mean(-1) > 1e-3), mi.mean(-1)
    assert np.all(ce.mean(-1) < math.log(2) - 0.05), ce.mean(-1)
    # the prior is logged per game, and its entropy is that of a distribution over the heads
    ent = np.asarray(metrics["prior_entropy_g0"])
    assert np.all((ent > 0) & (ent <= math.log(TINY.num_heads) + 1e-6))
    assert np.all(np.asarray(metrics["prior_tv"]) >= 0)
    print("unseen population returns", mra_ret, "random", rand, "mi", mi.mean(), "ce",
          ce.mean(), "prior tv", np.asarray(metrics["prior_tv"])[:, [0, -1]])


def test_sequential_update_touches_only_the_visited_games_buffer(trained):
    """Alg. 4: update ``t`` rolls out game ``t mod G`` only: its buffer gains the rollout, the
    other game's buffer is bit-for-bit unchanged."""
    _, _, _, update, state, _ = trained
    for t, m in ((UPDATES, 0), (UPDATES + 1, 1)):
        new, _ = update(state, jnp.int32(t), 1.0)
        for a, b in zip(jax.tree.leaves(state.buffer), jax.tree.leaves(new.buffer),
                        strict=True):
            a, b = np.asarray(a), np.asarray(b)  # [S, G, ...]
            np.testing.assert_array_equal(a[:, 1 - m], b[:, 1 - m])
        changed = [not np.array_equal(np.asarray(a)[:, m], np.asarray(b)[:, m]) for a, b in
                   zip(jax.tree.leaves(state.buffer), jax.tree.leaves(new.buffer), strict=True)]
        assert any(changed)


def test_learner_reptile_step_is_the_interpolation(trained):
    """One update with alpha = 0.5 moves theta halfway to where alpha = 1 (the K inner steps on
    the visited game) takes it: ``theta + alpha (theta_K - theta)``."""
    _, _, _, update, state, _ = trained
    t = jnp.int32(UPDATES + 1)  # game 1
    full, _ = update(state, t, 1.0)
    half, _ = update(state, t, 0.5)
    theta0, _ = mra.split_actor(state.params.actor)
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
    env, games, _, _, state, _ = trained
    opts = mra.MRAOptions(mode="adapt", init_from="(in memory)")
    setup = mra.build_mra(TINY, opts, env, games)
    s0 = jax.tree.map(lambda x: x[0], state)
    learn = jax.jit(functools.partial(mra.learn_sequential, setup, h=setup.hypers),
                    compiler_options=FAST)
    s1, _ = learn(s0, jnp.int32(0), jax.random.PRNGKey(1))

    th0, ph0 = mra.split_actor(s0.params.actor)
    th1, ph1 = mra.split_actor(s1.params.actor)
    assert_every_leaf_changed(th0, th1, "theta")
    assert_every_leaf_changed(ph0, ph1, "phi")
    assert_every_leaf_changed(s0.params.critic, s1.params.critic, "critic")
    assert_no_leaf_changed(s0.params.prior, s1.params.prior, "psi")
    assert_no_leaf_changed(s0.params.inference, s1.params.inference, "xi")


def _leaf_changes(a, b) -> list[float]:
    return [float(jnp.abs(x - y).max()) for x, y in
            zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]


def test_phi_trains_through_eq11_in_mra_only(trained):
    """In MRA, phi (the graph's query/key) is trained by Eq. 11 alone: with the MI step off it
    does not move in a learning update, with it on every phi leaf moves."""
    env, games, _, _, state, _ = trained
    s0 = jax.tree.map(lambda x: x[0], state)
    for opts, moves in ((mra.MRAOptions(mi_coef=0.0), False), (mra.MRAOptions(), True)):
        setup = mra.build_mra(TINY, opts, env, games)
        s1, _ = jax.jit(functools.partial(mra.learn_sequential, setup, h=setup.hypers),
                        compiler_options=FAST)(s0, jnp.int32(0), jax.random.PRNGKey(1))
        ch = _leaf_changes(mra.split_actor(s0.params.actor)[1],
                           mra.split_actor(s1.params.actor)[1])
        assert len(ch) >= 2
        assert all(c > 0 for c in ch) if moves else all(c == 0 for c in ch), (opts, ch)
        # theta moves in both (Eq. 9)
        assert all(c > 0 for c in _leaf_changes(mra.split_actor(s0.params.actor)[0],
                                                mra.split_actor(s1.params.actor)[0]))


def test_phi_trains_through_the_policy_gradient_without_a_latent():
    """The Reptile / single-game arms (no latent) train phi with their policy loss: every
    phi leaf moves in the first learning update (it stayed at its random init before)."""
    env = envs.make("treasure", **ENV_CFG)
    games = build_tasks(env, TRAIN)
    learner = mra.make_mra(TINY, mra.MRAOptions(latent="none"), env, games)
    update = jax.jit(learner.update, compiler_options=FAST)
    state = jax.jit(learner.init, compiler_options=FAST)(jax.random.PRNGKey(0))
    before = None
    for t in range(12):  # both games' buffers pass learning_starts by update 10
        prev = state
        state, m = update(state, jnp.int32(t), 1.0)
        if before is None and float(m["critic_loss"]) != 0.0:
            before = prev
            break
    assert before is not None, "no learning update in 12 updates"
    ph0, ph1 = (mra.split_actor(s.params.actor)[1] for s in (before, state))
    ch = _leaf_changes(ph0, ph1)
    assert len(ch) >= 2 and all(c > 0 for c in ch), ch


@pytest.mark.parametrize("env_name, opts", [
    # CI: all three variants in one compiled learner (each phi's arithmetic has its own unit
    # test, test_condition_obs_variants; the learner calls the one it is configured with)
    ("pacman", {"reptile": "batched", "phi": "bilinear"}),
    pytest.param("treasure", {"reptile": "batched", "phi": "concat"}, marks=pytest.mark.slow),
])
def test_learner_variants_run_and_learn(env_name, opts):
    """Batched Reptile, App. E.3's concat / bilinear phi inside the learner, and a two-team
    game (Pac-Man: team parameters [2, ...]): two learning updates run, every loss is finite,
    and theta, the critic and (Eq. 11) phi move."""
    if env_name == "pacman":
        env = envs.make("pacman", max_pacman=2, max_ghosts=2, max_objects=2, episode_length=10)
        games = build_tasks(env, ({"n_pacman": 1, "n_ghosts": 1, "n_food": 2},
                                  {"n_pacman": 2, "n_ghosts": 2, "n_food": 2}))
    else:
        env = envs.make("treasure", **ENV_CFG)
        games = build_tasks(env, TRAIN)
    cfg = dataclasses.replace(TINY, learning_starts=64, updates_per_rollout=2)
    learner = mra.make_mra(cfg, mra.MRAOptions(**opts), env, games)
    update = jax.jit(learner.update, compiler_options=FAST)
    state = jax.jit(learner.init, compiler_options=FAST)(jax.random.PRNGKey(0))
    assert jax.tree.leaves(state.params.actor)[0].shape[0] == max(env.num_teams, 1)
    first = None
    for t in range(8):
        state, m = update(state, jnp.int32(t), 1.0)
        if float(m["critic_loss"]) != 0.0:
            if first is None:
                first = state
            for k in ("critic_loss", "actor_loss", "mi", "game_ce", "prior_tv"):
                assert np.isfinite(float(m[k])), (k, m[k])
    assert first is not None, "no learning update in 8 updates"
    state, _ = update(state, jnp.int32(8), 1.0)
    th0, ph0 = mra.split_actor(first.params.actor)
    th1, ph1 = mra.split_actor(state.params.actor)
    assert max(_leaf_changes(th0, th1)) > 0 and max(_leaf_changes(ph0, ph1)) > 0
    assert max(_leaf_changes(first.params.critic, state.params.critic)) > 0


def test_attention_episode_draws_each_agents_graph_over_the_agents(trained):
    """App. E.6's pictures: one episode of the trained learner with every agent's graph over
    the agents (renormalized; the last frame repeats), and the episode's rewards."""
    env, _, learner, _, state, _ = trained
    task = env.make_task(**UNSEEN)
    params = jax.tree.map(lambda x: x[0], learner.policy_params(state))
    cfg = types.SimpleNamespace(maddpg=TINY, mra=OPTS)
    states, att, rewards = mra.attention_episode(cfg, learner, env, params, task,
                                                 jax.random.PRNGKey(11))
    T, A = env.episode_length, env.max_agents
    assert jax.tree.leaves(states)[0].shape[0] == T + 1
    assert att.shape == (T + 1, A, A) and rewards.shape == (T, A)
    n = int(task.n_agents)
    np.testing.assert_allclose(att[:, :n].sum(-1), 1.0, atol=1e-5)
    assert (att >= 0).all() and np.isfinite(rewards).all()
    np.testing.assert_array_equal(att[-1], att[-2])
    assert np.abs(att[:-1, :n] - att[:1, :n]).max() > 1e-4  # the graph moves with the state

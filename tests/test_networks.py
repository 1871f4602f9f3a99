"""Networks: masked attention, relational graph, head selection, team parameter sharing."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import Observation
from metajax.core import networks as nets

A, M = 4, 3


def _obs(key, n_active=3, m_active=2):
    """One agent's view (agent 0) with ``n_active`` agents and ``m_active`` objects."""
    k1, k2, k3 = jax.random.split(key, 3)
    agents_mask = (jnp.arange(A) < n_active) & (jnp.arange(A) != 0)
    return Observation(
        self=jax.random.normal(k1, (4,)),
        agents=jax.random.normal(k2, (A, 4)),
        agents_mask=agents_mask,
        objects=jax.random.normal(k3, (M, 2)),
        objects_mask=jnp.arange(M) < m_active,
        team=jnp.asarray(0),
        agent_mask=jnp.asarray(True),
    )


def test_masked_softmax_zero_on_masked_and_no_nan():
    logits = jnp.array([[1.0, 2.0, 3.0], [5.0, -1.0, 0.0]])
    mask = jnp.array([[True, False, True], [False, False, False]])
    w = np.asarray(nets.masked_softmax(logits, mask))
    np.testing.assert_allclose(w[0], [np.exp(1) / (np.exp(1) + np.exp(3)), 0,
                                      np.exp(3) / (np.exp(1) + np.exp(3))], rtol=1e-6)
    np.testing.assert_array_equal(w[1], 0.0)
    g = jax.grad(lambda x: nets.masked_softmax(x, mask)[0, 0])(logits)
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.fixture(scope="module")
def encoder():
    mod = nets.RelationalEncoder(num_heads=3, head_dim=8, embed_dim=16)
    params = mod.init(jax.random.PRNGKey(0), _obs(jax.random.PRNGKey(1)))
    return mod, params


def test_relational_graph_ignores_padding(encoder):
    mod, params = encoder
    obs = _obs(jax.random.PRNGKey(2))
    rel = mod.apply(params, obs)
    g = np.asarray(rel.graph)  # [H, A + M]
    assert g.shape == (3, A + M)
    mask = np.concatenate([np.asarray(obs.agents_mask), np.asarray(obs.objects_mask)])
    np.testing.assert_array_equal(g[:, ~mask], 0.0)
    np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-6)
    # changing masked entities' features changes nothing
    junk = obs.replace(
        agents=obs.agents.at[0].set(99.0).at[3].set(-7.0),
        objects=obs.objects.at[2].set(50.0),
    )
    rel2 = mod.apply(params, junk)
    np.testing.assert_allclose(np.asarray(rel2.heads), np.asarray(rel.heads), rtol=1e-6)
    # ...while changing a visible one does
    moved = obs.replace(agents=obs.agents.at[1].add(1.0))
    assert not np.allclose(np.asarray(mod.apply(params, moved).heads), np.asarray(rel.heads))


def test_relational_embedding_is_eq1(encoder):
    """e_h = sum_j g_hj V_h(o_j) with g = softmax over visible j of q.k / sqrt(d)."""
    mod, params = encoder
    obs = _obs(jax.random.PRNGKey(3))
    rel = mod.apply(params, obs)
    p = params["params"]
    lrelu = jax.nn.leaky_relu
    s = lrelu(obs.self @ p["self_enc"]["kernel"] + p["self_enc"]["bias"])
    ag = lrelu(obs.agents @ p["agent_enc"]["kernel"] + p["agent_enc"]["bias"])
    ob = lrelu(obs.objects @ p["object_enc"]["kernel"] + p["object_enc"]["bias"])
    ents = jnp.concatenate([ag, ob])
    mask = np.concatenate([np.asarray(obs.agents_mask), np.asarray(obs.objects_mask)])
    q = (s @ p["query"]["kernel"]).reshape(3, 8)
    k = (ents @ p["key"]["kernel"]).reshape(-1, 3, 8)
    v = lrelu(ents @ p["value"]["kernel"] + p["value"]["bias"]).reshape(-1, 3, 8)
    for h in range(3):
        logits = np.asarray(k[:, h] @ q[h]) / np.sqrt(8)
        w = np.exp(logits - logits[mask].max()) * mask
        w = w / w.sum()
        np.testing.assert_allclose(np.asarray(rel.graph[h]), w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(rel.heads[h]), w @ np.asarray(v[:, h]),
                                   rtol=1e-5, atol=1e-6)


def test_head_selection_by_z_picks_that_head(encoder):
    mod, params = encoder
    rel = mod.apply(params, _obs(jax.random.PRNGKey(4)))
    for h in range(3):
        z = jax.nn.one_hot(h, 3)
        e = np.asarray(nets.combine_heads(rel, z))
        np.testing.assert_allclose(e[16:], np.asarray(rel.heads[h]), rtol=1e-6)
        np.testing.assert_allclose(e[:16], np.asarray(rel.self_emb), rtol=1e-6)
    assert nets.combine_heads(rel, None).shape == (16 + 3 * 8,)


def test_team_parameters_are_shared_within_a_team():
    mod = nets.MLP((8,), 2)
    params = nets.init_team_params(lambda k: mod.init(k, jnp.zeros(3)), jax.random.PRNGKey(0), 2)
    team = jnp.array([0, 0, 1, 1])
    x = jnp.ones((4, 3))
    out = np.asarray(nets.apply_per_agent(mod.apply, params, team, x))
    np.testing.assert_allclose(out[0], out[1])
    np.testing.assert_allclose(out[2], out[3])
    assert not np.allclose(out[0], out[2])
    # gradient of agent 2's output reaches only team 1's parameters
    g = jax.grad(lambda p: nets.apply_per_agent(mod.apply, p, team, x)[2].sum())(params)
    k = np.asarray(g["params"]["Dense_0"]["kernel"])
    assert np.all(k[0] == 0) and np.any(k[1] != 0)


def test_per_team_matches_the_gathered_parameters_on_a_batch():
    """per_team (every team's parameters on every agent, then each agent's own team's output)
    gives the values and gradients of gathering each agent's team parameters, with the team
    read from a batch of data (as obs.team under the learner's batch vmap)."""
    mod = nets.MLP((8,), 2)
    params = nets.init_team_params(lambda k: mod.init(k, jnp.zeros(3)), jax.random.PRNGKey(1), 2)
    team = jnp.array([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]])  # [B, A]
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 4, 3))  # [B, A, d]

    def gathered(p):
        return jax.vmap(lambda t, xb: nets.apply_per_agent(mod.apply, p, t, xb))(team, x)

    def shared(p):
        return jax.vmap(lambda t, xb: nets.per_team(
            lambda q: jax.vmap(mod.apply, (None, 0))(q, xb), p, t))(team, x)

    np.testing.assert_allclose(np.asarray(jax.jit(shared)(params)),
                               np.asarray(jax.jit(gathered)(params)), rtol=1e-5, atol=1e-6)
    g1 = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(gathered(p)))))(params)
    g2 = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(shared(p)))))(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
    # one team: its parameters are used directly
    one = jax.tree.map(lambda v: v[:1], params)
    out = nets.per_team(lambda q: jax.vmap(mod.apply, (None, 0))(q, x[0]), one, team[0] * 0)
    np.testing.assert_allclose(np.asarray(out), np.asarray(
        jax.vmap(mod.apply, (None, 0))(jax.tree.map(lambda v: v[0], params), x[0])), rtol=1e-6)


def test_attention_critic_ignores_padded_agents():
    crit = nets.AttentionCritic(hidden=16, num_heads=2, head_dim=4)
    key = jax.random.PRNGKey(0)
    obs = jax.vmap(lambda k: _obs(k, n_active=3))(jax.random.split(key, A))
    obs = obs.replace(agent_mask=jnp.arange(A) < 3)
    acts = jax.random.normal(jax.random.PRNGKey(1), (A, 5))
    params = jax.jit(crit.init)(key, obs, acts)
    apply = jax.jit(crit.apply)  # one compilation for the three calls (eager is slow)
    q, logits = apply(params, obs, acts)
    q2, _ = apply(params, obs, acts.at[3].set(40.0))  # padded agent
    q3, _ = apply(params, obs, acts.at[2].set(40.0))  # real agent
    q_own, _ = apply(params, obs, acts, acts)  # own actions given: the same values
    np.testing.assert_allclose(np.asarray(q_own), np.asarray(q), rtol=1e-6)
    assert q.shape == (A,)
    assert float(q[1]) == pytest.approx(float(q2[1]), rel=1e-6)
    assert abs(float(q3[1]) - float(q[1])) > 1e-4
    assert logits.shape == (A, 2, A)
    assert float(jnp.abs(logits[1][:, 1]).sum()) == 0.0  # no self
    assert float(jnp.abs(logits[:, :, 3]).sum()) == 0.0  # no padded agent


class _PerAgentAttentionCritic(nn.Module):
    """Reference: the former O(A^2) critic, ``Q_i`` of ONE agent ``i`` re-encoding every agent
    of the game with ``actions`` the joint action seen by agent ``i`` (the formula of
    ``AttentionCritic.__call__(obs, actions, i)`` before it computed every agent at once),
    written with the same parameter names. Returns ``(q [], logits [H, A])``."""

    hidden: int = 128
    num_heads: int = 4
    head_dim: int = 32
    relational: bool = True

    @nn.compact
    def __call__(self, obs, actions, i, z=None):
        act = nn.leaky_relu
        if self.relational:
            enc = nets.RelationalEncoder(self.num_heads, self.head_dim, self.hidden)
            emb = jax.vmap(lambda o: nets.combine_heads(enc(o), z))(obs)
        else:
            emb = jax.vmap(nets._flat_one)(obs)
        sa = act(nn.Dense(self.hidden, name="sa_enc")(jnp.concatenate([emb, actions], -1)))
        s_i = act(nn.Dense(self.hidden, name="s_enc")(emb[i]))
        h, d = self.num_heads, self.head_dim
        q = nn.Dense(h * d, use_bias=False, name="query")(s_i).reshape(h, d)
        k = nn.Dense(h * d, use_bias=False, name="key")(sa).reshape(-1, h, d)
        v = act(nn.Dense(h * d, name="value")(sa)).reshape(-1, h, d)
        n = obs.agent_mask.shape[0]
        mask = obs.agent_mask & (jnp.arange(n) != i)
        logits = jnp.einsum("hd,nhd->hn", q, k) / jnp.sqrt(d)
        w = nets.masked_softmax(logits, mask[None, :])
        att = jnp.einsum("hn,nhd->hd", w, v).reshape(-1)
        qv = nets.MLP((self.hidden,), 1, activation=act)(jnp.concatenate([sa[i], att]))[0]
        return qv, jnp.where(mask[None, :], logits, 0.0)


def _critic_batch(b=3, d=5):
    """``b`` games ``[B, A, ...]`` (agent 3 padded in the second), joint and own actions."""
    keys = jax.random.split(jax.random.PRNGKey(7), b * A).reshape(b, A, 2)
    obs = jax.vmap(jax.vmap(lambda k: _obs(k, n_active=3)))(keys)
    agent_mask = jnp.ones((b, A), bool).at[1, 3].set(False)
    obs = obs.replace(agent_mask=agent_mask)
    acts = jax.random.normal(jax.random.PRNGKey(8), (b, A, d))
    own = jax.random.normal(jax.random.PRNGKey(9), (b, A, d))
    return obs, acts, own


@pytest.mark.parametrize("relational,use_z", [(True, False), (True, True), (False, False)])
def test_attention_critic_equals_the_per_agent_formula(relational, use_z):
    """Every agent at once (each encoded once, shared attention) gives, for every ``i``, the
    former per-agent critic's ``Q_i`` and logits on the joint action with row ``i`` replaced by
    ``own_a_i``; same parameters (names and shapes), same gradients."""
    crit = nets.AttentionCritic(hidden=16, num_heads=2, head_dim=4, relational=relational)
    ref = _PerAgentAttentionCritic(hidden=16, num_heads=2, head_dim=4, relational=relational)
    obs, acts, own = _critic_batch()
    z = jax.nn.one_hot(1, 2) if use_z else None
    o0 = jax.tree.map(lambda x: x[0], obs)
    params = jax.jit(lambda k: crit.init(k, o0, acts[0], own[0], z))(jax.random.PRNGKey(0))
    ref_params = jax.jit(lambda k: ref.init(k, o0, acts[0], jnp.asarray(0), z))(
        jax.random.PRNGKey(0))
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)

    def new(p, own):
        return jax.vmap(lambda o, a, oa: crit.apply(p, o, a, oa, z))(obs, acts, own)

    def old(p, own):
        def game(o, a, oa):
            def agent(i):
                joint = jnp.where((jnp.arange(A) == i)[:, None], oa, a)
                return ref.apply(p, o, joint, i, z)
            return jax.vmap(agent)(jnp.arange(A))
        return jax.vmap(game)(obs, acts, own)

    q, logits = jax.jit(new)(params, own)
    q_ref, logits_ref = jax.jit(old)(params, own)
    assert q.shape == (3, A) and logits.shape == (3, A, 2, A)
    np.testing.assert_allclose(np.asarray(q), np.asarray(q_ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(logits_ref), rtol=1e-5,
                               atol=1e-6)

    def loss(f):
        def fn(p, own):
            qv, lg = f(p, own)
            return jnp.sum(jnp.sin(qv) * obs.agent_mask) + jnp.mean(lg**2)
        return jax.jit(jax.grad(fn, argnums=(0, 1)))

    g_new, g_ref = loss(new)(params, own), loss(old)(params, own)
    for a, b in zip(jax.tree.leaves(g_new), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_attention_critic_with_parameters_per_agent():
    """MAAC's per-agent encoders + shared attention: identical parameters give the shared
    critic; with different ones agent ``j``'s parameters make its keys/values (so they move
    every other agent's Q) and a padded agent's parameters change nothing."""
    crit = nets.AttentionCritic(hidden=16, num_heads=2, head_dim=4)
    obs, acts, own = _critic_batch()
    obs, acts, own = jax.tree.map(lambda x: x[1], (obs, acts, own))  # agent 3 padded
    init = jax.jit(lambda k: crit.init(k, obs, acts, own))
    per_agent = jax.jit(lambda p: nets.attention_critic_per_agent(crit, p, obs, acts, own))
    shared = jax.jit(lambda p: crit.apply(p, obs, acts, own))

    one = init(jax.random.PRNGKey(0))
    same = jax.tree.map(lambda x: jnp.broadcast_to(x, (A, *x.shape)), one)
    for a, b in zip(per_agent(same), shared(one), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

    params = nets.init_team_params(init, jax.random.PRNGKey(1), A)  # [A, ...]
    q, logits = per_agent(params)
    assert q.shape == (A,) and logits.shape == (A, 2, A)
    q0, _ = shared(jax.tree.map(lambda x: x[0], params))
    # every agent attends to the others' keys/values made with their own parameters
    assert np.all(np.abs(np.asarray(q - q0)[:3]) > 1e-4)

    def bump(j):
        return jax.tree.map(lambda x: x.at[j].multiply(1.5), params)

    q2, _ = per_agent(bump(2))  # agent 2's encoder feeds agents 0 and 1's attention
    assert np.all(np.abs(np.asarray(q2 - q)[:3]) > 1e-6)
    q3, lg3 = per_agent(bump(3))  # padded agent
    np.testing.assert_allclose(np.asarray(q3)[:3], np.asarray(q)[:3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lg3)[:3], np.asarray(logits)[:3], rtol=1e-6)

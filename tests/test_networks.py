"""Networks: masked attention, relational graph, head selection, team parameter sharing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import Observation
from metajax import networks as nets

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
    params = jax.jit(crit.init)(key, obs, acts, jnp.asarray(0))
    apply = jax.jit(crit.apply)  # one compilation for the three calls (eager is slow)
    q, logits = apply(params, obs, acts, jnp.asarray(1))
    q2, _ = apply(params, obs, acts.at[3].set(40.0), jnp.asarray(1))  # padded agent
    q3, _ = apply(params, obs, acts.at[2].set(40.0), jnp.asarray(1))  # real agent
    assert float(q) == pytest.approx(float(q2), rel=1e-6)
    assert abs(float(q3) - float(q)) > 1e-4
    assert logits.shape == (2, A) and float(jnp.abs(logits[:, 1]).sum()) == 0.0  # no self

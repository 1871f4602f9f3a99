"""Networks (flax.linen): MLP actors, the relational representation of MRA Eq. 1, a MAAC-style
attention critic, an MLP centralized critic, a GRU actor, and per-team parameter sharing.

Conventions. Modules act on **one agent** (``[d]`` inputs, no agent axis); the learners vmap
them over the agent axis ``A`` and over batches. The observation of one agent is an
:class:`envs.Observation` sliced at that agent (:func:`agent_view`):
``self [d_self]``, ``agents [A, d_agent]``, ``agents_mask [A]``, ``objects [M, d_obj]``,
``objects_mask [M]``, ``team []``, ``agent_mask []``.

Per-team parameters: a team's parameters are one pytree; the ``T`` teams are stacked on a
leading axis ``[T, ...]`` (:func:`init_team_params`). :func:`apply_per_agent` gathers each
agent's team parameters and vmaps the module over agents, so homogeneous agents share
parameters (gradients of all agents of a team add up) and per-agent parameters (original
MADDPG) are the special case ``team = arange(A)``. When ``team`` comes from the data (shared
parameters, ``obs.team`` under a batch vmap) the gather would copy the parameters per sample;
:func:`per_team` instead applies each team's parameters to every agent and keeps each agent's
own team's output (``T`` times the compute, matmuls instead of per-sample matvecs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from envs.core import Observation

Array = jax.Array


def agent_view(obs: Observation, i: int | Array) -> Observation:
    """Slice a padded :class:`Observation` ``[A, ...]`` at agent ``i``."""
    return jax.tree.map(lambda x: x[i], obs)


def masked_softmax(logits: Array, mask: Array, axis: int = -1) -> Array:
    """Softmax over ``axis`` restricted to ``mask``; masked entries get exactly 0 and an
    all-masked row gives all zeros (never NaN)."""
    neg = jnp.finfo(logits.dtype).min
    z = jnp.where(mask, logits, neg)
    z = z - jax.lax.stop_gradient(jnp.max(z, axis=axis, keepdims=True))
    e = jnp.where(mask, jnp.exp(z), 0.0)
    denom = jnp.sum(e, axis=axis, keepdims=True)
    return e / jnp.where(denom > 0, denom, 1.0)


class MLP(nn.Module):
    """``Dense -> act`` for each hidden size, then ``Dense(out)`` (if ``out``) ."""

    hidden: Sequence[int] = (64, 64)
    out: int | None = None
    activation: Callable[[Array], Array] = nn.relu
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for h in self.hidden:
            x = self.activation(nn.Dense(h)(x))
        if self.out is not None:
            init = nn.initializers.variance_scaling(
                self.out_init_scale, "fan_avg", "uniform")
            x = nn.Dense(self.out, kernel_init=init)(x)
        return x


@struct.dataclass
class Relational:
    """Output of :class:`RelationalEncoder` for one agent.

    * ``self_emb``: ``[E]`` embedding of the agent's own features;
    * ``heads``: ``[H, D]`` per-head attended embedding ``e_h = sum_j g_hj V_h(o_j)``;
    * ``graph``: ``[H, N]`` relational graph ``g`` (attention weights over the ``N = A + M``
      entities: other agents, then objects; exactly 0 on masked entities);
    * ``logits``: ``[H, N]`` attention logits (for the ``1e-3 * mean(logits^2)`` regularizer).
    """

    self_emb: Array
    heads: Array
    graph: Array
    logits: Array


class RelationalEncoder(nn.Module):
    """Relational representation (MRA Eq. 1), multi-head.

    Each entity type has its own linear encoder to a common width; agent ``i``'s self
    embedding is the query, the other agents and the objects are keys and values:
    ``g^{ij}_h = softmax_j(Q_h(o_s)^T K_h(o_j) / sqrt(D))`` over unmasked ``j``, and
    ``e_h = sum_j g^{ij}_h V_h(o_j)``. With ``attend_objects=False`` only other agents are
    attended, exactly as in Eq. 1 (objects are then mean-pooled into the self embedding).
    """

    num_heads: int = 4
    head_dim: int = 32
    embed_dim: int = 64
    attend_objects: bool = True

    @nn.compact
    def __call__(self, obs: Observation) -> Relational:
        act = nn.leaky_relu
        s = act(nn.Dense(self.embed_dim, name="self_enc")(obs.self))
        ag = act(nn.Dense(self.embed_dim, name="agent_enc")(obs.agents))  # [A, E]
        ob = act(nn.Dense(self.embed_dim, name="object_enc")(obs.objects))  # [M, E]
        if self.attend_objects:
            ents = jnp.concatenate([ag, ob], axis=0)
            mask = jnp.concatenate([obs.agents_mask, obs.objects_mask], axis=0)
        else:
            ents, mask = ag, obs.agents_mask
            w = obs.objects_mask.astype(ob.dtype)[:, None]
            pooled = jnp.sum(ob * w, 0) / jnp.maximum(jnp.sum(w), 1.0)
            s = act(nn.Dense(self.embed_dim, name="self_obj")(jnp.concatenate([s, pooled])))
        h, d = self.num_heads, self.head_dim
        q = nn.Dense(h * d, use_bias=False, name="query")(s).reshape(h, d)
        k = nn.Dense(h * d, use_bias=False, name="key")(ents).reshape(-1, h, d)
        v = act(nn.Dense(h * d, name="value")(ents)).reshape(-1, h, d)
        logits = jnp.einsum("hd,nhd->hn", q, k) / jnp.sqrt(d)
        g = masked_softmax(logits, mask[None, :])
        heads = jnp.einsum("hn,nhd->hd", g, v)
        return Relational(self_emb=s, heads=heads, graph=g, logits=jnp.where(mask, logits, 0.0))


def combine_heads(rel: Relational, z: Array | None, mode: str = "concat") -> Array:
    """Agent embedding from a :class:`Relational`.

    * ``z`` given (``[H]`` one-hot or relaxed weights): option architecture, the head(s) picked
      by ``z`` (``sum_h z_h e_h``), concatenated with the self embedding -> ``[E + D]``;
    * ``z`` None: ``mode="concat"`` all heads -> ``[E + H*D]``, ``mode="mean"`` -> ``[E + D]``.
    """
    if z is not None:
        e = jnp.einsum("h,hd->d", z, rel.heads)
    elif mode == "concat":
        e = rel.heads.reshape(-1)
    elif mode == "mean":
        e = rel.heads.mean(0)
    else:
        raise ValueError(f"unknown head combination {mode!r}")
    return jnp.concatenate([rel.self_emb, e])


class Actor(nn.Module):
    """Decentralized actor for one agent.

    ``encoder="mlp"``: an MLP on the flat padded observation (original MADDPG).
    ``encoder="relational"``: :class:`RelationalEncoder` then an MLP head.
    Output ``[out]``: logits (discrete) or a pre-tanh action (continuous; the learner applies
    ``tanh``). Returns ``(out, graph)``; ``graph`` is ``[H, N]`` (zeros ``[1, 1]`` for MLP).
    """

    out: int
    hidden: Sequence[int] = (64, 64)
    encoder: str = "mlp"
    num_heads: int = 4
    head_dim: int = 32
    embed_dim: int = 64

    @nn.compact
    def __call__(self, obs: Observation, z: Array | None = None) -> tuple[Array, Array]:
        if self.encoder == "mlp":
            x = _flat_one(obs)
            graph = jnp.zeros((1, 1), x.dtype)
        elif self.encoder == "relational":
            rel = RelationalEncoder(self.num_heads, self.head_dim, self.embed_dim)(obs)
            x, graph = combine_heads(rel, z), rel.graph
        else:
            raise ValueError(f"unknown encoder {self.encoder!r}")
        return MLP(self.hidden, self.out, out_init_scale=0.1)(x), graph


class GRUActor(nn.Module):
    """Recurrent actor (MESA App. B.2: one GRU layer, 64 units) on the flat observation.

    ``__call__(carry [hidden], obs) -> (carry, out)``. Use :meth:`initial_carry` at episode
    starts; the learner stores the carry with each transition (stored-state training).
    """

    out: int
    hidden: int = 64

    @nn.compact
    def __call__(self, carry: Array, obs: Observation) -> tuple[Array, Array]:
        x = nn.relu(nn.Dense(self.hidden)(_flat_one(obs)))
        carry, y = nn.GRUCell(self.hidden)(carry, x)
        init = nn.initializers.variance_scaling(0.1, "fan_avg", "uniform")
        return carry, nn.Dense(self.out, kernel_init=init)(y)

    def initial_carry(self) -> Array:
        return jnp.zeros((self.hidden,), jnp.float32)


def _flat_one(obs: Observation) -> Array:
    """Flat padded view of one agent's observation (see :attr:`Observation.flat`)."""
    a = obs.agents * obs.agents_mask[:, None]
    o = obs.objects * obs.objects_mask[:, None]
    a = jnp.concatenate([a, obs.agents_mask[:, None].astype(a.dtype)], -1).reshape(-1)
    o = jnp.concatenate([o, obs.objects_mask[:, None].astype(o.dtype)], -1).reshape(-1)
    return jnp.concatenate([obs.self, a, o])


class MLPCritic(nn.Module):
    """Centralized MLP critic of original MADDPG, ``Q_i(o_1..o_A, a_1..a_A)``.

    Input: every agent's flat observation and action (padded agents zeroed by
    ``agent_mask``), preceded, when ``own_first``, by agent ``i``'s own observation and action
    (so a critic shared by a team knows whose value it is). Returns a scalar.
    """

    hidden: Sequence[int] = (64, 64)
    own_first: bool = True

    @nn.compact
    def __call__(self, obs: Observation, actions: Array, i: Array) -> Array:
        flat = jax.vmap(_flat_one)(obs)  # [A, D]
        m = obs.agent_mask[:, None].astype(flat.dtype)
        joint = jnp.concatenate([(flat * m).reshape(-1), (actions * m).reshape(-1)])
        x = jnp.concatenate([flat[i], actions[i], joint]) if self.own_first else joint
        return MLP(self.hidden, 1)(x)[0]


@struct.dataclass
class CriticEncoding:
    """Per-agent encodings of :class:`AttentionCritic` (:meth:`AttentionCritic.encode`).

    For one agent ``j`` (a leading ``[A]`` axis when computed for every agent of a game):

    * ``sa_own``: ``[hidden]`` state-action encoding ``f([emb(o_j), own_a_j])`` with the agent's
      own (possibly new, differentiable) action: the input of agent ``j``'s Q head;
    * ``query``: ``[H, D]`` ``W_q s_j``, ``s_j = f(emb(o_j))``: agent ``j``'s attention query;
    * ``key``, ``value``: ``[H, D]`` ``W_k sa_j`` and ``leaky_relu(W_v sa_j)`` of the
      state-action encoding ``sa_j = f([emb(o_j), a_j])`` with the joint (batch) action: what
      the other agents attend to.
    """

    sa_own: Array
    query: Array
    key: Array
    value: Array


def attend_agents(enc: CriticEncoding, agent_mask: Array) -> tuple[Array, Array]:
    """MAAC's shared attention over the agents of one game.

    ``enc`` holds every agent's encodings (``[A, ...]``), ``agent_mask [A]``. Agent ``i``'s
    query attends to the keys/values of the agents ``j != i`` with ``agent_mask[j]``, ``H``
    heads. Returns ``(attended [A, H*D], logits [A, H, A])`` (logits exactly 0 where masked,
    for the ``mean(logits^2)`` regulariser). No parameters: each agent's encodings carry them.
    """
    n, h, d = enc.query.shape
    mask = agent_mask[None, :] & ~jnp.eye(n, dtype=bool)  # [i, j]
    logits = jnp.einsum("ihd,jhd->ihj", enc.query, enc.key) / jnp.sqrt(d)
    w = masked_softmax(logits, mask[:, None, :])
    att = jnp.einsum("ihj,jhd->ihd", w, enc.value).reshape(n, h * d)
    return att, jnp.where(mask[:, None, :], logits, 0.0)


class AttentionCritic(nn.Module):
    """Centralized attention critic in the style of MAAC (Iqbal & Sha 2019), MRA App. E.1.

    Every agent ``j`` of a game is encoded once (:meth:`encode`): ``emb_j`` (a
    :class:`RelationalEncoder` of ``o_j`` when ``relational``, population invariant, else the
    flat observation), state-action encodings ``sa_j = f([emb_j, a_j])`` with the joint action
    and ``sa_own_j = f([emb_j, own_a_j])`` with the agent's own action, state encoding
    ``s_j = f(emb_j)``; ``H`` heads of ``D`` dims: query ``W_q s_j``, key ``W_k sa_j``, value
    ``leaky_relu(W_v sa_j)``. The attention is shared (:func:`attend_agents`): agent ``i``
    attends over the other agents of the game (``j != i``, ``agent_mask[j]``), and
    ``Q_i = MLP([sa_own_i, attended_i])`` (:meth:`head`). Computing every agent's ``Q`` costs
    ``A`` encodings per sample (not ``A^2``).

    ``Q_i`` is the value of the joint action with agent ``i``'s action replaced by
    ``own_actions[i]`` and the others' from ``actions`` (TD loss: ``own_actions = actions``;
    actor loss: ``own_actions`` = the actors' new actions). An optional latent ``z [H]`` (MRA)
    selects the heads of the observation encoder (the same relational graph as the actor), for
    every agent.

    One parameter set for all agents: ``__call__``. One parameter set per agent (MAAC's
    per-agent encoders): :func:`attention_critic_per_agent`.
    """

    hidden: int = 128
    num_heads: int = 4
    head_dim: int = 32
    relational: bool = True

    def setup(self) -> None:
        h, d = self.num_heads, self.head_dim
        # attribute names = parameter names (those of the former compact module)
        if self.relational:
            self.RelationalEncoder_0 = RelationalEncoder(h, d, self.hidden)
        self.sa_enc = nn.Dense(self.hidden)
        self.s_enc = nn.Dense(self.hidden)
        self.query = nn.Dense(h * d, use_bias=False)
        self.key = nn.Dense(h * d, use_bias=False)
        self.value = nn.Dense(h * d)
        self.MLP_0 = MLP((self.hidden,), 1, activation=nn.leaky_relu)

    def encode(
        self,
        obs: Observation,
        action: Array,
        own_action: Array | None = None,
        z: Array | None = None,
    ) -> CriticEncoding:
        """Encodings of **one** agent ``j``: ``obs`` its view (:func:`agent_view`), ``action``
        ``[d]`` its action in the joint action, ``own_action`` ``[d]`` its own action for its
        Q head (``None``: ``action``, encoded once). Returns a :class:`CriticEncoding`
        (``[hidden]`` and ``[H, D]`` fields)."""
        act = nn.leaky_relu
        if self.relational:
            emb = combine_heads(self.RelationalEncoder_0(obs), z)
        else:
            emb = _flat_one(obs)
        if own_action is None:
            sa = sa_own = act(self.sa_enc(jnp.concatenate([emb, action])))
        else:
            x = jnp.stack([jnp.concatenate([emb, action]), jnp.concatenate([emb, own_action])])
            sa, sa_own = act(self.sa_enc(x))
        s = act(self.s_enc(emb))
        h, d = self.num_heads, self.head_dim
        return CriticEncoding(
            sa_own=sa_own,
            query=self.query(s).reshape(h, d),
            key=self.key(sa).reshape(h, d),
            value=act(self.value(sa)).reshape(h, d),
        )

    def head(self, sa_own: Array, attended: Array) -> Array:
        """``Q = MLP([sa_own, attended])``: ``sa_own [..., hidden]``, ``attended [..., H*D]``
        -> ``[...]``."""
        return self.MLP_0(jnp.concatenate([sa_own, attended], -1))[..., 0]

    def __call__(
        self,
        obs: Observation,
        actions: Array,
        own_actions: Array | None = None,
        z: Array | None = None,
    ) -> tuple[Array, Array]:
        """Every agent's ``Q_i`` for one game: ``obs [A, ...]``, ``actions [A, d]`` the joint
        action, ``own_actions [A, d]`` (default ``actions``). Returns ``(q [A], logits
        [A, H, A])``."""
        own_axis = None if own_actions is None else 0
        enc = jax.vmap(self.encode, (0, 0, own_axis, None))(obs, actions, own_actions, z)
        att, logits = attend_agents(enc, obs.agent_mask)
        return self.head(enc.sa_own, att), logits


def attention_critic_per_agent(
    critic: AttentionCritic,
    params: Any,
    obs: Observation,
    actions: Array,
    own_actions: Array | None = None,
    z: Array | None = None,
) -> tuple[Array, Array]:
    """:class:`AttentionCritic` with one parameter set per agent (``params [A, ...]``), O(A).

    MAAC's per-agent encoders with a shared attention: agent ``j``'s encodings (``sa_j``,
    ``sa_own_j``, its key, value and query) are computed once, with agent ``j``'s parameters;
    agent ``i``'s query attends to every other agent's keys/values (each made with that
    agent's parameters) and agent ``i``'s Q head (its parameters) reads the result. So agent
    ``j``'s encoder receives gradients from every agent's loss. With identical parameters for
    all agents this equals ``critic.apply(params[0], ...)``; with different ones it differs
    from the former per-agent critic, which re-encoded every agent with agent ``i``'s own
    parameters (``A^2`` encodings). Shapes as :meth:`AttentionCritic.__call__`:
    ``(q [A], logits [A, H, A])``.
    """

    def encode(p, o, a, oa):
        return critic.apply(p, o, a, oa, z, method=AttentionCritic.encode)

    enc = jax.vmap(encode, (0, 0, 0, None if own_actions is None else 0))(
        params, obs, actions, own_actions)
    att, logits = attend_agents(enc, obs.agent_mask)
    q = jax.vmap(lambda p, s, x: critic.apply(p, s, x, method=AttentionCritic.head))(
        params, enc.sa_own, att)
    return q, logits


# --- per-team parameters ----------------------------------------------------------------------


def init_team_params(
    init_fn: Callable[[Array], Any], key: Array, num_teams: int
) -> Any:
    """Initialise ``num_teams`` independent parameter sets, stacked on a leading ``[T]`` axis."""
    return jax.vmap(init_fn)(jax.random.split(key, num_teams))


def team_slice(params: Any, team: Array) -> Any:
    """Gather per-agent parameters ``[A, ...]`` from team parameters ``[T, ...]``."""
    return jax.tree.map(lambda p: p[team], params)


def apply_per_agent(
    apply_fn: Callable[..., Any], params: Any, team: Array, *args: Any
) -> Any:
    """``apply_fn(params[team[i]], *args_i)`` for every agent ``i`` (args have a leading
    ``[A]`` axis, or are ``None``)."""
    return jax.vmap(apply_fn)(team_slice(params, team), *args)


def per_team(fn: Callable[..., Any], params: Any, team: Array, *args: Any) -> Any:
    """Apply ``fn(params_t, *args)`` with each team's parameters ``[T, ...]`` and keep, for
    every agent, its own team's output. ``fn`` returns arrays whose axis ``team.ndim - 1`` is
    the agent axis ``[..., A, ...]`` matching ``team [..., A]``. No per-agent copy of the
    parameters is made (cheaper than gathering them when batches are large)."""
    n_teams = jax.tree.leaves(params)[0].shape[0]
    if n_teams == 1:
        return fn(jax.tree.map(lambda p: p[0], params), *args)
    outs = jax.vmap(lambda p: fn(p, *args))(params)  # [T, ..., A, ...]
    onehot = jax.nn.one_hot(team, n_teams, dtype=jnp.float32)  # [..., A, T]

    def pick(x: Array) -> Array:
        w = jnp.moveaxis(onehot, -1, 0)  # [T, ..., A]
        w = w.reshape(w.shape + (1,) * (x.ndim - w.ndim))
        return jnp.sum(w.astype(x.dtype) * x, axis=0)

    return jax.tree.map(pick, outs)


def with_slot_ids(x: Array) -> Array:
    """``x [..., A, D] -> [..., A, D + A]``: each agent's input with its one-hot slot index
    appended (agents that share parameters tell themselves apart by it)."""
    a = x.shape[-2]
    return jnp.concatenate([x, jnp.broadcast_to(jnp.eye(a), (*x.shape[:-2], a, a))], -1)


def global_state(obs: Observation) -> Array:
    """``[..., A * D]``: every agent's flat view, padded agents zeroed (what a centralized value
    or mixer reads)."""
    flat = jnp.where(obs.agent_mask[..., None], obs.flat, 0.0)
    return flat.reshape(*flat.shape[:-2], -1)

"""MRA: Meta Representations for Agents (Zhang et al.), Sec. 4 and 6, App. C and D.

Agents that generalize across Markov games of different populations. Each agent acts with a
latent-variable policy ``a ~ pi_theta(. | o, g)``, ``g = phi(o, z)``, ``z ~ p_psi(. | m)``:

* **latent prior** ``p_psi(z | m)`` (:class:`LatentPrior`): categorical over ``|Z|`` = number
  of attention heads, conditioned on the game's description ``m`` (its populations, read off the
  padded observation by :func:`population_descriptor`); sampled per agent per episode with
  (hard) Gumbel-softmax. ``latent="uniform"`` is uni-MRA (``z`` uniform, no ``psi``);
  ``latent="none"`` is a unimodal policy (the Reptile and MAAC-style baselines).
* **relational graph** ``g = phi(o, z)``: the multi-head attention of
  :class:`metajax.core.networks.RelationalEncoder` (MRA Eq. 1) with head ``z`` selected (the
  ``option`` architecture, :func:`select_graph`), or App. E.3's ``concat`` / ``bilinear``
  variants, where ``z`` is concatenated to / outer-multiplied with every observation entity
  (:func:`condition_obs`). ``phi`` is the query and key transforms (they make the graph);
  ``theta`` is everything else of the actor: the entity encoders, the value transform ``V`` of
  Eq. 1 and the policy head (Sec. 4.2: "theta includes the transformation V ... and the
  successive policy network parameters"). :func:`split_actor` / :func:`merge_actor`.
* **policy and centralized critic** (Eq. 8-9): the actor is :class:`metajax.core.networks.Actor`
  (relational encoder, head ``z``); the critic :class:`MRACritic` is MAAC-style (attention over
  the other agents' state-action encodings, ``|A|`` Q-values for the agent's own action) and
  embeds every agent's observation with *the same graph* ``g`` the actor uses
  (:class:`GraphEmbed`: ``sum_j g_j V_zeta(o_j)``, ``g`` detached as in Alg. 5).
  The policy gradient of Eq. 9 is taken with the advantage ``Q - E_pi Q`` (Sec. 6.1 allows
  it) and in expectation over the agent's own action, which the critic's ``|A|`` outputs give
  exactly (:func:`policy_gradient_loss`).
* **Reptile** (Sec. 4.4): ``K`` = ``maddpg.updates_per_rollout`` critic + policy-gradient steps
  on one game's batches inside ``lax.scan``, then ``theta <- theta + alpha (theta_K - theta)``
  (:func:`reptile_step`). ``reptile="sequential"`` visits the games in turn (Alg. 4: update
  ``t`` rolls out and trains on game ``t mod |M|``); ``reptile="batched"`` rolls out every game,
  runs the ``K`` steps on each game from the same parameters (``vmap``) and averages the games'
  deltas (:func:`reptile_batched`).
* **mutual information**: after the Reptile step ``phi`` ascends the lower bound of
  ``I(g; a | o)`` (Eq. 11, :func:`mi_lower_bound`, ``p(a | o)`` from ``n`` resampled latents,
  target policy ``pi_theta_bar``), then ``psi`` and the inference network ``xi``
  (:class:`InferenceNet`, ``p(x | o, g)``) descend the game-index cross-entropy (Eq. 13,
  :func:`game_cross_entropy`, gradient to ``psi`` through the straight-through Gumbel sample).
* **adaptation** to an unseen game (Alg. 5, Eq. 10): ``mode="adapt"`` starts from a trained
  run (``init_from``), fine-tunes ``theta`` *and* ``phi`` by the policy gradient (plus the
  critic), keeps ``psi`` and ``xi`` fixed, no Reptile interpolation and no MI terms; by default
  each agent's ``z`` is drawn once and kept (Alg. 5).
* **zero-shot evaluation**: :func:`latent_returns` plays episodes with ``z`` drawn from
  the prior (expectation over ``z``) or with every agent on one fixed head (best-of-``z``:
  the head that did best on selection episodes, scored on other episodes).

Everything is vmapped over the training games (padded to the env's ``max_agents``: one
compile serves every population) and, by the runner, over seeds.

Configuration: :class:`MRAOptions` (the ``mra`` section of
:class:`metajax.pipelines.mra.MRAConfig`, a :class:`~metajax.pipelines.runner.TrainConfig`, so
the runner's host loop, metrics, checkpoints, resume, evaluation and the CLI's eval/render/plot
work for it). The off-policy machinery shared with MADDPG (network widths, learning rates,
``gamma``, ``tau``, batch, buffer, parallel games per training game ``num_envs``, rollout
length, ``K = updates_per_rollout``, warm-up) stays in the ``maddpg`` section
(:class:`~metajax.algos.maddpg.MADDPGConfig`).

Parameters are shared within a team (role-symmetric games, Sec. 6.1), stacked ``[T, ...]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct, traverse_util
from jumanji import specs

from envs.core import MultiAgentEnv, Observation
from envs.wrappers import AutoReset
from metajax.algos.maddpg import MADDPGConfig
from metajax.core import interfaces
from metajax.core import networks as nets
from metajax.core.episode import play_episode, with_reset
from metajax.core.interfaces import Learner
from metajax.core.ops import (
    gumbel_softmax,
    make_optimizer,
    masked_mean,
    soft_update,
    straight_through,
    td_target,
)
from metajax.core.replay import Transition, make_replay
from metajax.train import evaluation

Array = jax.Array


LATENTS = ("prior", "uniform", "none")


PHI_VARIANTS = ("option", "concat", "bilinear")


REPTILE_MODES = ("sequential", "batched")


MODES = ("train", "adapt")


XI_INPUTS = ("graph", "pooled")


#: Parameter names of the actor's relational encoder that make the graph (``phi``).
PHI_NAMES = ("query", "key")


@dataclasses.dataclass(frozen=True)
class MRAOptions:
    """MRA-specific hyperparameters (the shared off-policy ones live in ``maddpg``).

    * ``latent``: ``prior`` (MRA, ``z ~ p_psi(.|m)``), ``uniform`` (uni-MRA) or ``none``
      (unimodal: Reptile / MAAC-style baselines; no ``psi``, no MI terms);
    * ``phi``: ``option`` (z selects the head), ``concat`` or ``bilinear`` (App. E.3);
    * ``reptile``: ``sequential`` (Alg. 4, games in turn) or ``batched`` (average of the games'
      deltas); ``alpha``: outer step size (paper: 1);
    * ``mi_samples``: ``n`` latents resampled for ``p(a|o)`` in Eq. 11 (authors' code: 5);
      ``mi_coef``: weight of the Eq. 11 step for ``phi`` (0 = off); ``phi_lr``;
    * ``game_ce``: run the Eq. 13 step for ``psi`` and ``xi``; ``prior_lr`` (App. E.1: one
      learning rate, 3e-4, for every network);
      ``prior_hidden`` / ``prior_temperature``: ``p_psi`` is ``log_softmax(MLP(m) / T)``.
      The temperature is ours (the paper gives none): ``T = 1``. With ``T = 4`` the prior
      started within 0.02 of uniform per head in every game and, at ``prior_lr = 3e-4``, had not
      moved after our CPU budgets, so MRA was uni-MRA by construction;
    * ``xi_input``: what the inference network ``xi`` of Eq. 13 sees. ``graph`` (default): the
      agent's observation only as embedded along its graph ``g = phi(o, z)``
      (``[s_i, sum_j g_j V(o_j)]``); ``pooled``: also a sum-pool of the present entities (so
      ``xi`` can count the population and read the game off ``o`` alone, whatever ``g`` says).
      Eq. 12 rewrites ``I(m; g | o)`` as ``E log p(m | o, g) + log |M|``, i.e. it takes
      ``H(m | o) = log |M|``: ``o`` alone must not reveal the game, which ``pooled`` violates
      (see :class:`InferenceNet`); ``inference_hidden``: ``xi``'s MLP;
    * ``entropy_coef``: entropy bonus of the policy (MAAC-style; 0 = Eq. 9 alone);
    * ``latent_per_episode``: draw a new ``z`` at every episode start (Alg. 4) or once per
      parallel game for the whole run (Alg. 5); ``None`` = per episode when training, once
      when adapting;
    * ``mode``: ``train`` (Alg. 4) or ``adapt`` (Alg. 5: fine-tune ``theta`` and ``phi`` on one
      unseen game from ``init_from``, a run directory of a trained MRA run).
    """

    latent: str = "prior"
    phi: str = "option"
    reptile: str = "sequential"
    alpha: float = 1.0
    mi_samples: int = 5
    mi_coef: float = 1.0
    phi_lr: float = 3e-4
    game_ce: bool = True
    prior_lr: float = 3e-4
    prior_hidden: tuple[int, ...] = (8,)
    prior_temperature: float = 1.0
    xi_input: str = "graph"
    inference_hidden: tuple[int, ...] = (64,)
    entropy_coef: float = 0.01
    latent_per_episode: bool | None = None
    mode: str = "train"
    init_from: str = ""

    def __post_init__(self) -> None:
        for field, allowed in (("latent", LATENTS), ("phi", PHI_VARIANTS),
                               ("reptile", REPTILE_MODES), ("mode", MODES),
                               ("xi_input", XI_INPUTS)):
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"mra.{field} must be one of {allowed}, got {getattr(self, field)!r}")
        if self.prior_temperature <= 0:
            raise ValueError(f"mra.prior_temperature must be > 0, got {self.prior_temperature}")
        if self.mi_samples < 1:
            raise ValueError(f"mra.mi_samples must be >= 1, got {self.mi_samples}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"mra.alpha must be in (0, 1], got {self.alpha}")
        if self.latent == "none" and self.phi != "option":
            raise ValueError(f"mra.phi={self.phi!r} needs a latent (mra.latent != 'none')")
        if self.mode == "adapt" and not self.init_from:
            raise ValueError("mra.mode='adapt' needs mra.init_from (a trained MRA run directory)")

    @property
    def uses_latent(self) -> bool:
        return self.latent != "none"

    @property
    def per_episode(self) -> bool:
        if self.latent_per_episode is None:
            return self.mode == "train"
        return bool(self.latent_per_episode)


#: MRA App. E.1 defaults for the shared off-policy machinery (12 parallel rollouts are split
#: over the games; K = 10 gradient steps per update, batch 1024, Adam 3e-4 with weight decay
#: 3e-4 as in the authors' code, gamma 0.95) and a 6-head relational encoder (|Z| = 6).
MRA_PAPER = MADDPGConfig(
    actor="relational",
    critic="attention",
    hidden=(128, 128),
    num_heads=6,
    head_dim=16,
    embed_dim=64,
    critic_hidden=128,
    param_sharing="team",
    actor_lr=3e-4,
    critic_lr=3e-4,
    weight_decay=3e-4,
    gamma=0.95,
    tau=0.005,
    grad_clip=10.0,
    batch_size=1024,
    buffer_size=200_000,
    num_envs=3,
    rollout_steps=20,
    updates_per_rollout=10,
    learning_starts=1024 * 4,
)


#: Laptop-scale defaults: smaller networks and batches, same structure.
MRA_SMALL = dataclasses.replace(
    MRA_PAPER,
    hidden=(64,),
    num_heads=4,
    head_dim=16,
    embed_dim=32,
    critic_hidden=64,
    actor_lr=1e-3,
    critic_lr=1e-3,
    weight_decay=0.0,
    batch_size=128,
    buffer_size=10_000,
    num_envs=4,
    rollout_steps=10,
    updates_per_rollout=4,
    learning_starts=500,
)


def population_descriptor(obs: Observation, num_teams: int) -> Array:
    """``[num_teams + 1]`` description ``m`` of a game from one padded observation ``[A, ...]``:
    the number of agents of each team and the number of objects, divided by 10 (the authors'
    scaling). Generic over every env of the :class:`envs.core.Observation` contract."""
    team = jax.nn.one_hot(obs.team, num_teams, dtype=jnp.float32)  # [A, T]
    counts = jnp.sum(team * obs.agent_mask[:, None], axis=0)
    n_obj = jnp.max(jnp.sum(obs.objects_mask, axis=-1)).astype(jnp.float32)
    return jnp.concatenate([counts, n_obj[None]]) / 10.0


def select_graph(graph: Array, z: Array) -> Array:
    """Option architecture: the graph ``[..., N]`` of head ``z`` from per-head graphs
    ``[..., H, N]`` (``z`` one-hot ``[..., H]``; a relaxed ``z`` mixes the heads)."""
    return jnp.einsum("...h,...hn->...n", z, graph)


def condition_obs(obs: Observation, z: Array, mode: str) -> Observation:
    """App. E.3 variants: ``z [H]`` joined to every entity of one agent's observation.

    ``concat``: ``[x, z]``; ``bilinear``: the outer product ``x z^T`` flattened (``[d * H]``).
    """
    def cond(x: Array) -> Array:
        zb = jnp.broadcast_to(z, (*x.shape[:-1], z.shape[-1]))
        if mode == "concat":
            return jnp.concatenate([x, zb], axis=-1)
        if mode == "bilinear":
            return jnp.einsum("...d,...h->...dh", x, zb).reshape(*x.shape[:-1], -1)
        raise ValueError(f"unknown phi variant {mode!r}; choose from {PHI_VARIANTS}")

    return Observation(
        self=cond(obs.self), agents=cond(obs.agents), agents_mask=obs.agents_mask,
        objects=cond(obs.objects), objects_mask=obs.objects_mask, team=obs.team,
        agent_mask=obs.agent_mask,
    )


def mi_lower_bound(logp: Array, logp_resampled: Array) -> Array:
    """Eq. 11 estimator: ``log pi(a|o,g) - log (1/n sum_k pi(a|o,g'_k))``.

    ``logp`` ``[...]``: log-probability of the action under the graph of the agent's latent;
    ``logp_resampled`` ``[..., n]``: under the graphs of ``n`` resampled latents.
    """
    n = logp_resampled.shape[-1]
    return logp - (jax.nn.logsumexp(logp_resampled, axis=-1) - math.log(n))


def game_cross_entropy(logits: Array, game: Array, mask: Array) -> Array:
    """Eq. 13: ``mean_mask -log p(x = game | o, g; xi)`` from ``logits [..., G]``, integer
    ``game [...]`` and ``mask [...]``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, game[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return masked_mean(nll, mask)


def prior_separation(log_probs: Array) -> dict[str, Array]:
    """How far the latent priors of the games are apart, from ``log p(z | m_g, team t)``
    ``[G, T, H]`` (every training game ``g``, every team ``t``):

    * ``entropy [G]``: entropy of each game's prior (nats, mean over teams; uniform =
      ``log H``);
    * ``js []``: mean over game pairs ``g < g'`` and teams of the Jensen-Shannon divergence
      (nats, ``<= log 2``); ``tv []``: the same mean of the total-variation distance
      (``[0, 1]``: the probability mass that moves); both 0 for one game;
    * ``argmax_differs []``: 1.0 if the most likely head differs between at least two games.
    """
    lp = log_probs
    p = jnp.exp(lp)
    entropy = jnp.mean(-jnp.sum(p * lp, -1), axis=-1)
    g = lp.shape[0]
    if g < 2:
        zero = jnp.zeros(())
        return {"entropy": entropy, "js": zero, "tv": zero, "argmax_differs": zero}
    i, j = np.triu_indices(g, 1)
    pa, pb, la, lb = p[i], p[j], lp[i], lp[j]
    mix = 0.5 * (pa + pb)
    lm = jnp.log(jnp.maximum(mix, 1e-30))
    js = 0.5 * jnp.sum(pa * (la - lm), -1) + 0.5 * jnp.sum(pb * (lb - lm), -1)  # [pairs, T]
    tv = 0.5 * jnp.sum(jnp.abs(pa - pb), -1)
    top = jnp.argmax(lp, -1)  # [G, T]
    differs = jnp.any(top != top[:1]).astype(jnp.float32)
    return {"entropy": entropy, "js": jnp.mean(js), "tv": jnp.mean(tv),
            "argmax_differs": differs}


def policy_gradient_loss(
    logits: Array, q_all: Array, mask: Array, entropy_coef: float, logit_reg: float
) -> tuple[Array, Array]:
    """Eq. 9 with the advantage, in expectation over the agent's own action.

    ``logits [B, A, n]`` of ``pi_theta``; ``q_all [B, A, n]`` the critic's Q-values of every own
    action (others' actions from the batch). The loss
    ``-mean_mask sum_a pi(a) (Q(a) - sum_b pi(b) Q(b))`` has the gradient
    ``-E_{a~pi}[grad log pi(a) A(a)]`` of Eq. 9 exactly; minus ``entropy_coef * H(pi)``, plus
    ``logit_reg * mean(logits^2)``. Returns ``(loss, mean entropy)``.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    pi = jnp.exp(logp)
    q = jax.lax.stop_gradient(q_all)
    baseline = jax.lax.stop_gradient(jnp.sum(pi * q, axis=-1, keepdims=True))
    objective = jnp.sum(pi * (q - baseline), axis=-1)
    entropy = -jnp.sum(pi * logp, axis=-1)
    reg = jnp.mean(logits**2, axis=-1)
    loss = -masked_mean(objective, mask) - entropy_coef * masked_mean(entropy, mask)
    return loss + logit_reg * masked_mean(reg, mask), masked_mean(entropy, mask)


def reptile_step(theta: Any, theta_k: Any, alpha: float | Array) -> Any:
    """Reptile outer step ``theta + alpha (theta_K - theta)`` (Sec. 4.4)."""
    return jax.tree.map(lambda t, k: t + alpha * (k - t), theta, theta_k)


def reptile_batched(theta: Any, theta_ks: Any, alpha: float | Array) -> Any:
    """Batched Reptile: ``theta + alpha mean_m (theta_K^m - theta)`` over a leading game axis of
    ``theta_ks``."""
    return jax.tree.map(lambda t, k: t + alpha * jnp.mean(k - t[None], axis=0), theta, theta_ks)


def _is_phi(path: tuple[str, ...]) -> bool:
    return any(p in PHI_NAMES for p in path) and any("RelationalEncoder" in p for p in path)


def split_actor(params: Any) -> tuple[Any, Any]:
    """``(theta, phi)``: the actor's parameters without / with only the graph makers (the query
    and key transforms of its relational encoder); both are nested dicts."""
    flat = traverse_util.flatten_dict(params)
    theta = {k: v for k, v in flat.items() if not _is_phi(k)}
    phi = {k: v for k, v in flat.items() if _is_phi(k)}
    return traverse_util.unflatten_dict(theta), traverse_util.unflatten_dict(phi)


def merge_actor(theta: Any, phi: Any) -> Any:
    """Inverse of :func:`split_actor`."""
    flat = {**traverse_util.flatten_dict(theta), **traverse_util.flatten_dict(phi)}
    return traverse_util.unflatten_dict(flat)


def sample_latent(key: Array, logits: Array) -> Array:
    """Hard one-hot sample ``[..., H]`` of ``softmax(logits)`` (Gumbel-max)."""
    idx = jnp.argmax(logits + jax.random.gumbel(key, logits.shape, logits.dtype), axis=-1)
    return jax.nn.one_hot(idx, logits.shape[-1], dtype=jnp.float32)


class LatentPrior(nn.Module):
    """``p_psi(z | m)``: ``log_softmax(MLP(m) / temperature)`` over ``num_latents`` values."""

    num_latents: int
    hidden: tuple[int, ...] = (8,)
    temperature: float = 1.0

    @nn.compact
    def __call__(self, desc: Array, temperature: Any = None) -> Array:
        """``desc [T + 1]`` -> ``[num_latents]`` log-probabilities; ``temperature`` (optional,
        may be traced) replaces the module's."""
        out = nets.MLP(self.hidden, self.num_latents, activation=nn.tanh)(desc)
        t = self.temperature if temperature is None else temperature
        return jax.nn.log_softmax(out / t, axis=-1)


class GraphEmbed(nn.Module):
    """An observation embedded along a given relational graph: ``[s, sum_j g_j V(o_j)]``.

    ``obs`` with any leading axes ``[...]``: ``self [..., d_s]``, ``agents [..., A, d_a]``,
    ``objects [..., M, d_o]``; ``graph [..., A + M]`` (other agents, then objects: the layout of
    :class:`metajax.core.networks.RelationalEncoder`). Returns ``[..., embed_dim + value_dim]``.
    """

    embed_dim: int = 64
    value_dim: int = 32

    @nn.compact
    def __call__(self, obs: Observation, graph: Array) -> Array:
        act = nn.leaky_relu
        s = act(nn.Dense(self.embed_dim, name="self_enc")(obs.self))
        ag = act(nn.Dense(self.embed_dim, name="agent_enc")(obs.agents))
        ob = act(nn.Dense(self.embed_dim, name="object_enc")(obs.objects))
        v = act(nn.Dense(self.value_dim, name="value")(jnp.concatenate([ag, ob], axis=-2)))
        return jnp.concatenate([s, jnp.einsum("...n,...nd->...d", graph, v)], axis=-1)


class MRACritic(nn.Module):
    """Centralized MAAC-style critic ``Q_zeta(o, a, g)`` of every agent of one game at once.

    Each agent ``j`` is embedded along its own graph ``g_j`` (:class:`GraphEmbed`); state
    encodings ``s_j`` and state-action encodings ``sa_j = f([emb_j, a_j])``; agent ``i``
    attends (``num_heads`` heads of ``head_dim``) from ``s_i`` over ``sa_j`` of the other
    agents in the game; ``Q_i(., a_i) = MLP([s_i, attended])`` gives the Q-value of every own
    action. Inputs ``obs [A, ...]``, ``actions [A, d]``, ``graph [A, N]``; returns
    ``(q [A, n_actions], attention logits [A, H, A])``.
    """

    n_actions: int
    hidden: int = 128
    num_heads: int = 4
    head_dim: int = 32
    embed_dim: int = 64

    @nn.compact
    def __call__(
        self, obs: Observation, actions: Array, graph: Array
    ) -> tuple[Array, Array]:
        act = nn.leaky_relu
        emb = GraphEmbed(self.embed_dim, self.head_dim)(obs, graph)  # [A, E + D]
        s = act(nn.Dense(self.hidden, name="s_enc")(emb))
        sa = act(nn.Dense(self.hidden, name="sa_enc")(jnp.concatenate([emb, actions], -1)))
        a, h, d = obs.agent_mask.shape[0], self.num_heads, self.head_dim
        q = nn.Dense(h * d, use_bias=False, name="query")(s).reshape(a, h, d)
        k = nn.Dense(h * d, use_bias=False, name="key")(sa).reshape(a, h, d)
        v = act(nn.Dense(h * d, name="value")(sa)).reshape(a, h, d)
        mask = obs.agent_mask[:, None] & obs.agent_mask[None, :] & ~jnp.eye(a, dtype=bool)
        logits = jnp.einsum("ihd,jhd->ihj", q, k) / jnp.sqrt(d)
        w = nets.masked_softmax(logits, mask[:, None, :])
        att = jnp.einsum("ihj,jhd->ihd", w, v).reshape(a, h * d)
        out = nets.MLP((self.hidden,), self.n_actions, activation=act)(
            jnp.concatenate([s, att], -1))
        return out, jnp.where(mask[:, None, :], logits, 0.0)


class InferenceNet(nn.Module):
    """Auxiliary inference network ``xi``: ``p(x | o, g)`` over the ``num_games`` training games
    (Eq. 13). Input: one agent's observation embedded along its graph ``g``
    (:class:`GraphEmbed`: ``[s_i, sum_j g_j V(o_j)]``, a convex combination of the entities'
    values, which does not count them). With ``pooled`` it also sees the present entities
    encoded and sum-pooled (divided by 10), which grows with the population, so the game can be
    read off ``o`` whatever ``g`` is (:attr:`MRAOptions.xi_input`). ``obs`` with leading axes
    ``[...]``, ``graph [..., N]``; returns logits ``[..., num_games]``."""

    num_games: int
    hidden: tuple[int, ...] = (64,)
    embed_dim: int = 32
    value_dim: int = 16
    pooled: bool = False

    @nn.compact
    def __call__(self, obs: Observation, graph: Array) -> Array:
        act = nn.leaky_relu
        x = GraphEmbed(self.embed_dim, self.value_dim)(obs, graph)
        if self.pooled:
            ag = act(nn.Dense(self.value_dim, name="agent_pool")(obs.agents))
            ob = act(nn.Dense(self.value_dim, name="object_pool")(obs.objects))
            pooled = jnp.concatenate([
                jnp.sum(ag * obs.agents_mask[..., None], axis=-2),
                jnp.sum(ob * obs.objects_mask[..., None], axis=-2)], axis=-1) / 10.0
            x = jnp.concatenate([x, pooled], axis=-1)
        return nets.MLP(self.hidden, self.num_games, activation=act)(x)


@struct.dataclass
class MRAParams:
    """Learned parameters; ``actor``/``critic``/``prior`` (and targets) stacked per team
    ``[T, ...]``.

    * ``actor``: :class:`metajax.core.networks.Actor` (``theta`` and ``phi``, see
      :func:`split_actor`); ``critic``: :class:`MRACritic` (``zeta``);
    * ``target_actor`` / ``target_critic``: delayed ``theta_bar, phi_bar`` and ``zeta_bar``;
    * ``prior``: :class:`LatentPrior` (``psi``); ``inference``: :class:`InferenceNet` (``xi``,
      one for all teams).
    """

    actor: Any
    critic: Any
    target_actor: Any
    target_critic: Any
    prior: Any
    inference: Any


@struct.dataclass
class MRAOpt:
    """Adam states: ``theta`` (inner policy steps), ``phi`` (Eq. 11, or Eq. 10 in adaptation),
    ``critic`` (Eq. 8), ``prior`` (``psi`` and ``xi``, Eq. 13)."""

    theta: Any
    phi: Any
    critic: Any
    prior: Any


@struct.dataclass
class PolicyParams:
    """What acting needs: the actor ``[T, ...]`` and the prior ``psi`` ``[T, ...]``."""

    actor: Any
    prior: Any


@struct.dataclass
class Slots:
    """Rollout state of the ``P`` parallel games of each training game ``[G, P, ...]``.

    * ``env_state``: auto-reset env states; ``obs``: current observations ``[G, P, A, ...]``;
    * ``carry``: ``[G, P, A, 1 + H]`` latent carry (flag "z drawn", then ``z`` one-hot);
    * ``ep_return``: ``[G, P, A]`` running episode returns.
    """

    env_state: Any
    obs: Observation
    carry: Array
    ep_return: Array


@struct.dataclass
class MRAState:
    """Everything MRA carries between updates (per seed).

    * ``params`` / ``opt``; ``buffer``: ``[G]`` replay states, one per training game;
    * ``slots``: :class:`Slots`; ``last_return``: ``[G]`` mean per-agent return of each game's
      latest completed episodes;
    * ``key``; ``env_steps`` ``[]``; ``grad_steps`` ``[]``; ``updates`` ``[]``.
    """

    params: MRAParams
    opt: MRAOpt
    buffer: Any
    slots: Slots
    last_return: Array
    key: Array
    env_steps: Array
    grad_steps: Array
    updates: Array


@struct.dataclass
class MRAHypers:
    """The hyperparameters the MRA learner reads as numbers, never as program structure: the
    shared off-policy ones of the ``maddpg`` section (:data:`MADDPG_FIELDS`) and the MRA ones
    of :class:`MRAOptions` (:data:`MRA_FIELDS`), named as there. Python floats (the config's)
    or traced ``[]`` float32 arrays (a sweep, as :class:`metajax.algos.maddpg.Hypers`); the learning
    rates are read by ``init`` of a learner built with ``traced=True`` (into the Adam states).

    ``mi_coef`` weighs the Eq. 11 step; whether that step exists (``mi_coef > 0``) is the
    config's, so ``0`` and a positive value are different programs.
    """

    actor_lr: Any
    critic_lr: Any
    gamma: Any
    tau: Any
    logit_reg: Any
    attention_reg: Any
    reward_scale: Any
    phi_lr: Any
    prior_lr: Any
    entropy_coef: Any
    mi_coef: Any
    alpha: Any
    prior_temperature: Any

    MADDPG_FIELDS: ClassVar[tuple[str, ...]] = (
        "actor_lr", "critic_lr", "gamma", "tau", "logit_reg", "attention_reg", "reward_scale")
    MRA_FIELDS: ClassVar[tuple[str, ...]] = (
        "phi_lr", "prior_lr", "entropy_coef", "mi_coef", "alpha", "prior_temperature")

    @classmethod
    def of(cls, config: MADDPGConfig, options: MRAOptions) -> MRAHypers:
        """The values of ``config`` and ``options`` (Python floats)."""
        return cls(**{f: getattr(config, f) for f in cls.MADDPG_FIELDS},
                   **{f: getattr(options, f) for f in cls.MRA_FIELDS})


def _take(tree: Any, i: Array | int) -> Any:
    return jax.tree.map(lambda x: x[i], tree)


def _put(tree: Any, i: Array | int, value: Any) -> Any:
    return jax.tree.map(lambda x, v: x.at[i].set(v), tree, value)


def _mean0(tree: Any) -> Any:
    return jax.tree.map(lambda x: jnp.mean(x, axis=0).astype(x.dtype), tree)


def num_actions(env: MultiAgentEnv) -> int:
    """Number of discrete actions per agent; MRA's policies are categorical."""
    spec = env.action_spec
    if not isinstance(spec, specs.MultiDiscreteArray | specs.DiscreteArray):
        raise ValueError(
            f"MRA needs discrete actions (categorical policies); {env.name} was built with "
            f"action spec {type(spec).__name__}: build it with action_type='discrete'")
    n = np.asarray(spec.num_values).reshape(-1)
    if not np.all(n == n[0]):
        raise ValueError("agents with different numbers of discrete actions")
    return int(n[0])


def actor_functions(
    config: MADDPGConfig, options: MRAOptions, n_actions: int
) -> tuple[nets.Actor, Callable[[Any, Observation, Array], tuple[Array, Array]]]:
    """The actor module and ``actor_agent(params, obs_i, z_i) -> (logits [n], graph [N])`` for
    one agent: ``pi_theta(a | o, g)`` with ``g = phi(o, z)`` (option: head ``z`` of the encoder;
    concat/bilinear: ``z`` joined to the entities, graph = mean over heads; no latent: all
    heads concatenated, graph = mean over heads)."""
    actor_mod = nets.Actor(n_actions, config.hidden, "relational", config.num_heads,
                           config.head_dim, config.embed_dim)

    def actor_agent(p: Any, obs_i: Observation, z_i: Array) -> tuple[Array, Array]:
        if not options.uses_latent:
            logits, graph = actor_mod.apply(p, obs_i)
            return logits, jnp.mean(graph, axis=0)
        if options.phi == "option":
            logits, graph = actor_mod.apply(p, obs_i, z_i)
            return logits, select_graph(graph, z_i)
        logits, graph = actor_mod.apply(p, condition_obs(obs_i, z_i, options.phi))
        return logits, jnp.mean(graph, axis=0)

    return actor_mod, actor_agent


class MRAParts(NamedTuple):
    """The learner and the pure pieces it is made of (for tests and custom loops).

    * ``learner``: the runner interface (:class:`metajax.core.interfaces.Learner`);
    * ``inner_steps(params, opt, buffer, key) -> (params, opt, metrics)``: ``K`` critic +
      policy steps on one game's buffer;
    * ``learn_sequential(state, m, key) -> (state, metrics)``: Alg. 4's learning on game ``m``
      (inner steps with the key's first split, Reptile step, MI and CE steps);
    * ``learn_batched(state, key)``; ``mi_ce_steps(params, opt, buffers [g], games [g], key)``;
    * ``act(policy_params, obs, carry, key, greedy) -> (action, carry, z, graph)``;
    * ``prior_logits(psi, obs) -> [A, H]``; ``actor_game(actor, obs, z) -> (logits, graph)``.
    """

    learner: Learner
    inner_steps: Callable[..., Any]
    learn_sequential: Callable[..., Any]
    learn_batched: Callable[..., Any]
    mi_ce_steps: Callable[..., Any]
    act: Callable[..., Any]
    prior_logits: Callable[..., Any]
    actor_game: Callable[..., Any]


def make_mra(
    config: MADDPGConfig,
    options: MRAOptions,
    env: MultiAgentEnv,
    games: Any,
    init_params: Callable[[Array], dict] | None = None,
    traced: bool = False,
) -> Learner:
    """The MRA learner (see :func:`build_mra`)."""
    return build_mra(config, options, env, games, init_params, traced).learner


def build_mra(
    config: MADDPGConfig,
    options: MRAOptions,
    env: MultiAgentEnv,
    games: Any,
    init_params: Callable[[Array], dict] | None = None,
    traced: bool = False,
) -> MRAParts:
    """Build the MRA learner for ``env`` trained on the ``[G]`` stack of ``games``.

    ``config``: shared off-policy hyperparameters (``num_envs`` parallel games per training
    game, ``updates_per_rollout = K``, ...); ``options``: :class:`MRAOptions`.
    ``init_params(key)`` (optional, traceable): ``{field: value}`` of :class:`MRAParams` to start
    from (adaptation), given the seed's init key; the other fields are fresh.

    Returns :class:`MRAParts`. Its learner's ``policy`` samples each agent's ``z`` from the
    prior at the first step of an episode (the carry holds it), so the runner's evaluator and
    :func:`metajax.pipelines.experiment.play` work unchanged.

    ``traced=True``: the learning rates live in the Adam states
    (:func:`metajax.core.ops.make_optimizer`), and ``init``/``update``/``policy`` take an
    :class:`MRAHypers` of traced values (``hypers=``, one per member of a sweep). Without
    ``hypers=`` (and in the parts' functions, whose trailing ``h`` defaults to them) every
    function uses the config's (``Learner.hypers``).
    """
    cfg, opt_cfg = config, options
    default = MRAHypers.of(cfg, opt_cfg)
    if cfg.param_sharing != "team":
        raise ValueError("MRA shares parameters within teams (maddpg.param_sharing='team')")
    leaves = jax.tree.leaves(games)
    if not leaves or leaves[0].ndim == 0:
        raise ValueError("games must be a stacked batch of tasks (envs.wrappers.stack_tasks)")
    n_games = int(leaves[0].shape[0])
    n_act = num_actions(env)
    auto = AutoReset(env)
    A = env.max_agents
    T = max(env.num_teams, 1)
    P = cfg.num_envs
    H = cfg.num_heads
    latent = opt_cfg.uses_latent
    zdim = H if latent else 0
    adapt = opt_cfg.mode == "adapt"
    sequential = opt_cfg.reptile == "sequential" and n_games > 1
    K = cfg.updates_per_rollout
    if opt_cfg.phi != "option" and not latent:
        raise ValueError("phi variants need a latent")
    use_mi = latent and opt_cfg.mi_coef > 0 and not adapt
    # phi's policy gradient: when adapting (Eq. 10), and in every arm without a latent (Reptile,
    # single-game), where phi is part of the policy and no Eq. 11 step trains it; in MRA itself
    # phi is trained by Eq. 11 only
    phi_by_policy = adapt or not latent
    use_ce = opt_cfg.latent == "prior" and opt_cfg.game_ce and not adapt

    actor_mod, actor_agent = actor_functions(cfg, opt_cfg, n_act)
    critic_mod = MRACritic(n_act, cfg.critic_hidden, max(1, min(4, H)), cfg.head_dim,
                           cfg.embed_dim)
    prior_mod = LatentPrior(max(H, 1), opt_cfg.prior_hidden, opt_cfg.prior_temperature)
    infer_mod = InferenceNet(n_games, opt_cfg.inference_hidden, cfg.embed_dim, cfg.head_dim,
                             pooled=opt_cfg.xi_input == "pooled")

    # ---- forward passes (one game: obs [A, ...]) -------------------------------------------
    def actor_game(params: Any, obs: Observation, z: Array) -> tuple[Array, Array]:
        """Every agent of one game: ``(logits [A, n], graph [A, N])``; ``z [A, H]``."""
        return nets.per_team(lambda p: jax.vmap(actor_agent, (None, 0, 0))(p, obs, z),
                        params, obs.team)

    def critic_game(params: Any, obs: Observation, actions: Array, graph: Array):
        """``(Q [A, n], mean squared attention logit [])`` of one game."""
        q, logits = nets.per_team(lambda p: critic_mod.apply(p, obs, actions, graph), params,
                             obs.team)
        return q, jnp.mean(logits**2)

    def prior_logits(prior: Any, obs: Observation, h: MRAHypers = default) -> Array:
        """``log p_psi(z | m)`` ``[A, H]`` for every agent of one game (its team's ``psi``)."""
        desc = population_descriptor(obs, T)
        if opt_cfg.latent == "uniform":
            return jnp.full((A, H), -math.log(H))
        logits = jax.vmap(lambda p: prior_mod.apply(p, desc, h.prior_temperature))(prior)
        return logits[obs.team]  # [A, H]

    def draw_latent(prior: Any, obs: Observation, key: Array, h: MRAHypers) -> Array:
        """``z ~ p(. | m)`` ``[A, H]`` (hard one-hot), zeros ``[A, 0]`` without latent."""
        if not latent:
            return jnp.zeros((A, 0))
        return sample_latent(key, prior_logits(prior, obs, h))

    def act(pp: PolicyParams, obs: Observation, carry: Array, key: Array, greedy: Any,
            h: MRAHypers = default):
        """``(action [A] int32, carry [A, 1 + H], z [A, H], graph [A, N])`` for one game."""
        k_z, k_a = jax.random.split(key)
        drawn = carry[:, :1] > 0.5
        z = jnp.where(drawn, carry[:, 1:], draw_latent(pp.prior, obs, k_z, h))
        logits, graph = actor_game(pp.actor, obs, z)
        sampled = jax.random.categorical(k_a, logits, axis=-1)
        action = jnp.where(greedy, jnp.argmax(logits, -1), sampled).astype(jnp.int32)
        carry = jnp.concatenate([jnp.ones((A, 1)), z], axis=-1)
        return action, carry, z, graph

    def policy(pp: PolicyParams, obs: Observation, carry: Array, key: Array,
               greedy: Any = False, hypers: MRAHypers | None = None):
        action, carry, _, _ = act(pp, obs, carry, key, greedy,
                                  default if hypers is None else hypers)
        return action, carry

    # ---- init ------------------------------------------------------------------------------
    example_ts = jax.eval_shape(lambda k: env.reset_to(k, _take(games, 0))[1],
                                jax.random.PRNGKey(0))
    example_obs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), example_ts.observation)
    obs0 = nets.agent_view(example_obs, 0)
    z0 = jax.nn.one_hot(0, H)
    n_ent = example_obs.agents.shape[1] + example_obs.objects.shape[1]
    graph0 = jnp.zeros((A, n_ent))
    act0 = jnp.zeros((A, n_act))

    def init_actor(k: Array) -> Any:
        if latent and opt_cfg.phi != "option":
            return actor_mod.init(k, condition_obs(obs0, z0, opt_cfg.phi))
        return actor_mod.init(k, obs0, z0 if latent else None)

    def init_critic(k: Array) -> Any:
        return critic_mod.init(k, example_obs, act0, graph0)

    def init_prior(k: Array) -> Any:
        return prior_mod.init(k, jnp.zeros((T + 1,)))

    def optimizers(h: MRAHypers) -> tuple[optax.GradientTransformation, ...]:
        """``(theta, phi, critic, prior)`` optimizers (the fields of :class:`MRAOpt`) with the
        learning rates of ``h`` (with ``traced``: kept in their states, read by ``init``)."""
        phi_lr = h.actor_lr if phi_by_policy else h.phi_lr
        return tuple(make_optimizer(lr, cfg, traced)
                     for lr in (h.actor_lr, phi_lr, h.critic_lr, h.prior_lr))

    theta_opt, phi_opt, critic_opt, prior_opt = optimizers(default)
    replay = make_replay(cfg.buffer_size, cfg.batch_size)
    example_item = Transition(
        obs=example_obs, action=act0, reward=jnp.zeros((A,)), discount=jnp.zeros((A,)),
        next_obs=example_obs, carry=jnp.zeros((A, 0)), next_carry=jnp.zeros((A, 0)),
        latent=jnp.zeros((A, zdim)),
    )

    def fresh_params(key: Array) -> MRAParams:
        k_a, k_c, k_p, k_i = jax.random.split(key, 4)
        actor = nets.init_team_params(init_actor, k_a, T)
        critic = nets.init_team_params(init_critic, k_c, T)
        prior = nets.init_team_params(init_prior, k_p, T)
        inference = infer_mod.init(k_i, obs0, graph0[0])
        return MRAParams(actor, critic, actor, critic, prior, inference)

    def init(key: Array, hypers: MRAHypers | None = None) -> MRAState:
        """Initial state; ``hypers`` (learners built with ``traced=True``): their learning
        rates go into the Adam states."""
        if hypers is not None and not traced:
            raise ValueError("init(hypers=...) needs a learner built with traced=True")
        opts = optimizers(hypers) if hypers is not None else (
            theta_opt, phi_opt, critic_opt, prior_opt)
        k_p, k_env, k_next = jax.random.split(key, 3)
        params = fresh_params(k_p)
        if init_params is not None:
            loaded = init_params(key)
            _check_like(loaded, params)
            params = params.replace(**loaded)
        theta, phi = split_actor(params.actor)
        keys = jax.random.split(k_env, n_games * P).reshape(n_games, P, -1)
        tasks = jax.tree.map(lambda x: jnp.broadcast_to(x[:, None], (n_games, P, *x.shape[1:])),
                             games)
        env_state, ts = jax.vmap(jax.vmap(auto.reset_to))(keys, tasks)
        buf = replay.init(example_item)
        return MRAState(
            params=params,
            opt=MRAOpt(opts[0].init(theta), opts[1].init(phi), opts[2].init(params.critic),
                       opts[3].init((params.prior, params.inference))),
            buffer=jax.tree.map(lambda x: jnp.broadcast_to(x, (n_games, *x.shape)), buf),
            slots=Slots(env_state, ts.observation, jnp.zeros((n_games, P, A, 1 + zdim)),
                        jnp.zeros((n_games, P, A))),
            last_return=jnp.zeros((n_games,)),
            key=k_next,
            env_steps=jnp.zeros((), jnp.int32),
            grad_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
        )

    # ---- rollout of one training game's P parallel games -----------------------------------
    def rollout_game(pp: PolicyParams, slots: Slots, key: Array, h: MRAHypers = default):
        """``cfg.rollout_steps`` steps of ``P`` games: ``(slots, items [R * P], stats)``."""
        def step(c, k):
            env_state, obs, carry, ep_ret, done_sum, done_n = c
            keys = jax.random.split(k, P)
            action, carry, z, _ = jax.vmap(functools.partial(act, h=h), (None, 0, 0, 0, None))(
                pp, obs, carry, keys, False)
            env_state, ts = auto.batch_step(env_state, action)
            item = Transition(
                obs=obs, action=jax.nn.one_hot(action, n_act),
                reward=ts.reward * h.reward_scale, discount=ts.discount,
                next_obs=ts.extras["final_observation"], carry=jnp.zeros((P, A, 0)),
                next_carry=jnp.zeros((P, A, 0)), latent=z,
            )
            ep_ret = ep_ret + ts.reward
            mask = ts.observation.agent_mask
            per_game = jnp.sum(ep_ret * mask, -1) / jnp.maximum(jnp.sum(mask, -1), 1)
            done = ts.done
            done_sum = done_sum + jnp.sum(jnp.where(done, per_game, 0.0))
            done_n = done_n + jnp.sum(done)
            ep_ret = jnp.where(done[:, None], 0.0, ep_ret)
            if opt_cfg.per_episode:
                carry = jnp.where(done[:, None, None], 0.0, carry)
            return (env_state, ts.observation, carry, ep_ret, done_sum, done_n), item

        init_c = (slots.env_state, slots.obs, slots.carry, slots.ep_return, jnp.zeros(()),
                  jnp.zeros((), jnp.int32))
        (env_state, obs, carry, ep_ret, done_sum, done_n), items = jax.lax.scan(
            step, init_c, jax.random.split(key, cfg.rollout_steps))
        items = jax.tree.map(lambda x: x.reshape((cfg.rollout_steps * P, *x.shape[2:])), items)
        return Slots(env_state, obs, carry, ep_ret), items, (done_sum, done_n)

    # ---- losses ----------------------------------------------------------------------------
    def batch_graphs(actor: Any, obs: Observation, z: Array):
        """``(logits [B, A, n], graph [B, A, N])`` of a batch."""
        return jax.vmap(actor_game, (None, 0, 0))(actor, obs, z)

    def grad_step(params: MRAParams, opt: MRAOpt, batch: Transition, key: Array,
                  h: MRAHypers = default):
        """One step of Eq. 8 for the critic ``zeta`` and Eq. 9 for ``theta`` (for ``omega =
        (theta, phi)`` when adapting, Eq. 10, and in the arms without a latent, whose ``phi``
        no Eq. 11 step trains), from one forward pass of actor and critic:

        * critic: ``(Q(o, a, g) - r - gamma E_{a' ~ pi_bar} Q_bar(o', a', g'))^2`` with ``g``
          the actor's graph (detached) and ``g'`` the target actor's graph at ``o'``;
        * policy: :func:`policy_gradient_loss` on the same critic's ``|A|`` Q-values (the
          critic before this step's update; the others' actions from the batch).
        """
        mask = batch.obs.agent_mask
        z = batch.latent
        logits_n, graph_n = batch_graphs(params.target_actor, batch.next_obs, z)
        pi_n = jax.nn.softmax(logits_n, -1)
        a_n = jax.nn.one_hot(jax.random.categorical(key, logits_n, -1), n_act)
        q_n, _ = jax.vmap(critic_game, (None, 0, 0, 0))(params.target_critic, batch.next_obs,
                                                        a_n, graph_n)
        y = td_target(batch.reward, batch.discount, jnp.sum(pi_n * q_n, -1), h.gamma)
        theta, phi = split_actor(params.actor)

        def loss_fn(trainable):
            cp, th, ph = trainable
            logits, graph = batch_graphs(merge_actor(th, ph), batch.obs, z)
            q, reg = jax.vmap(critic_game, (None, 0, 0, 0))(
                cp, batch.obs, batch.action, jax.lax.stop_gradient(graph))
            q_taken = jnp.sum(q * batch.action, -1)
            c_loss = masked_mean((q_taken - y) ** 2, mask)
            a_loss, ent = policy_gradient_loss(logits, q, mask, h.entropy_coef, h.logit_reg)
            total = c_loss + h.attention_reg * jnp.mean(reg) + a_loss
            return total, (c_loss, a_loss, ent, masked_mean(q_taken, mask))

        (_, (cl, al, ent, qm)), (g_c, g_t, g_p) = jax.value_and_grad(loss_fn, has_aux=True)(
            (params.critic, theta, phi))
        upd, c_opt = critic_opt.update(g_c, opt.critic, params.critic)
        critic = optax.apply_updates(params.critic, upd)
        upd, t_opt = theta_opt.update(g_t, opt.theta, theta)
        theta = optax.apply_updates(theta, upd)
        opt = opt.replace(critic=c_opt, theta=t_opt)
        if phi_by_policy:
            upd, p_opt = phi_opt.update(g_p, opt.phi, phi)
            phi = optax.apply_updates(phi, upd)
            opt = opt.replace(phi=p_opt)
        params = params.replace(actor=merge_actor(theta, phi), critic=critic)
        return params, opt, (cl, al, qm, ent)

    def inner_steps(params: MRAParams, opt: MRAOpt, buf: Any, key: Array,
                    h: MRAHypers = default):
        """``K`` critic + policy steps on one game's buffer (``lax.scan``)."""
        def step(c, k):
            params, opt = c
            k_s, k_c = jax.random.split(k)
            batch = replay.sample(buf, k_s)
            params, opt, out = grad_step(params, opt, batch, k_c, h)
            params = params.replace(
                target_actor=soft_update(params.target_actor, params.actor, h.tau),
                target_critic=soft_update(params.target_critic, params.critic, h.tau))
            return (params, opt), out

        (params, opt), (cl, al, qm, ent) = jax.lax.scan(step, (params, opt),
                                                         jax.random.split(key, K))
        return params, opt, {"critic_loss": cl[-1], "actor_loss": al[-1], "q_mean": qm[-1],
                             "entropy": ent[-1]}

    def mi_loss(phi: Any, theta: Any, theta_bar: Any, prior: Any, batch: Transition,
                key: Array, h: MRAHypers) -> Array:
        """``-`` Eq. 11 for ``phi``: ``z ~ p(.|m)``, ``a ~ pi_theta(.|o, phi(o, z))``, ``n``
        resampled ``z'``; log-probabilities under ``pi_theta_bar`` with the online ``phi``."""
        mask = batch.obs.agent_mask
        k_z, k_a, k_r = jax.random.split(key, 3)
        b = batch.reward.shape[0]
        lp = jax.vmap(functools.partial(prior_logits, h=h), (None, 0))(prior, batch.obs)
        z = sample_latent(k_z, lp)
        logits_a, _ = batch_graphs(merge_actor(theta, phi), batch.obs, z)
        a = jax.lax.stop_gradient(jax.random.categorical(k_a, logits_a, -1))  # [B, A]
        n = opt_cfg.mi_samples
        z_r = sample_latent(k_r, jnp.broadcast_to(lp[None], (n, b, A, H)))
        actor_bar = merge_actor(theta_bar, phi)

        def logp_of(zz):
            logits, _ = batch_graphs(actor_bar, batch.obs, zz)
            lsm = jax.nn.log_softmax(logits, -1)
            return jnp.take_along_axis(lsm, a[..., None], -1)[..., 0]  # [B, A]

        logp = logp_of(z)
        logp_r = jnp.moveaxis(jax.vmap(logp_of)(z_r), 0, -1)  # [B, A, n]
        return -masked_mean(mi_lower_bound(logp, logp_r), mask)

    def ce_loss(prior_xi: Any, actor: Any, batch: Transition, game: Array, key: Array,
                h: MRAHypers) -> Array:
        """Eq. 13 for ``(psi, xi)``: ``z`` a straight-through Gumbel-softmax sample of
        ``p_psi(.|m)``, ``g = phi(o, z)`` (actor fixed), ``-log p(x = game | o, g; xi)``."""
        prior, xi = prior_xi
        lp = jax.vmap(functools.partial(prior_logits, h=h), (None, 0))(prior, batch.obs)
        z = straight_through(gumbel_softmax(key, lp))
        _, graph = batch_graphs(jax.lax.stop_gradient(actor), batch.obs, z)
        logits = infer_mod.apply(xi, batch.obs, graph)  # [B, A, G]
        return game_cross_entropy(logits, jnp.full(graph.shape[:2], game),
                                  batch.obs.agent_mask)

    def mi_ce_steps(params: MRAParams, opt: MRAOpt, bufs: Any, game_ids: Array, key: Array,
                    h: MRAHypers = default):
        """Eq. 11 step for ``phi`` then Eq. 13 step for ``(psi, xi)``, on one batch of each game
        in ``bufs [g]`` (losses averaged over the games)."""
        metrics = {"mi": jnp.zeros(()), "game_ce": jnp.zeros(())}
        k_s, k_mi, k_ce = jax.random.split(key, 3)
        batches = jax.vmap(replay.sample)(bufs, jax.random.split(k_s, game_ids.shape[0]))
        if use_mi:
            theta, phi = split_actor(params.actor)
            theta_bar, _ = split_actor(params.target_actor)

            def loss(ph):
                per = jax.vmap(
                    lambda bt, k: mi_loss(ph, theta, theta_bar, params.prior, bt, k, h))(
                    batches, jax.random.split(k_mi, game_ids.shape[0]))
                return h.mi_coef * jnp.mean(per), jnp.mean(per)

            (_, val), grads = jax.value_and_grad(loss, has_aux=True)(phi)
            upd, p_opt = phi_opt.update(grads, opt.phi, phi)
            phi = optax.apply_updates(phi, upd)
            params = params.replace(actor=merge_actor(theta, phi))
            opt = opt.replace(phi=p_opt)
            metrics["mi"] = -val
        if use_ce:
            def loss(px):
                per = jax.vmap(lambda bt, g, k: ce_loss(px, params.actor, bt, g, k, h))(
                    batches, game_ids, jax.random.split(k_ce, game_ids.shape[0]))
                return jnp.mean(per)

            px = (params.prior, params.inference)
            val, grads = jax.value_and_grad(loss)(px)
            upd, pr_opt = prior_opt.update(grads, opt.prior, px)
            prior, xi = optax.apply_updates(px, upd)
            params = params.replace(prior=prior, inference=xi)
            opt = opt.replace(prior=pr_opt)
            metrics["game_ce"] = val
        return params, opt, metrics

    def learn_sequential(state: MRAState, m: Array, key: Array, alpha: Any = None,
                         h: MRAHypers = default):
        """Alg. 4 on game ``m``: ``K`` inner steps, Reptile interpolation (``alpha``: default
        ``h.alpha``, the config's ``options.alpha``; may be traced), MI and CE steps."""
        alpha = h.alpha if alpha is None else alpha
        k_in, k_mi = jax.random.split(key)
        buf = _take(state.buffer, m)
        theta0, phi0 = split_actor(state.params.actor)
        params, opt, metrics = inner_steps(state.params, state.opt, buf, k_in, h)
        theta_k, phi = split_actor(params.actor)
        if not adapt:
            if not latent:  # phi was trained with theta in the inner loop: interpolate both
                phi = reptile_step(phi0, phi, alpha)
            params = params.replace(
                actor=merge_actor(reptile_step(theta0, theta_k, alpha), phi))
        bufs = jax.tree.map(lambda x: x[None], buf)
        params, opt, mm = mi_ce_steps(params, opt, bufs, jnp.reshape(m, (1,)), k_mi, h)
        return state.replace(params=params, opt=opt, grad_steps=state.grad_steps + K), {
            **metrics, **mm}

    def learn_batched(state: MRAState, key: Array, alpha: Any = None,
                      h: MRAHypers = default):
        """Batched Reptile: ``K`` inner steps on every game from the same parameters, then
        ``theta <- theta + alpha mean_m (theta_K^m - theta)``; critic, targets and optimizer
        states are the games' averages; MI and CE steps on a batch of every game."""
        alpha = h.alpha if alpha is None else alpha
        k_in, k_mi = jax.random.split(key)
        theta0, phi0 = split_actor(state.params.actor)
        params_g, opt_g, metrics = jax.vmap(functools.partial(inner_steps, h=h),
                                            (None, None, 0, 0))(
            state.params, state.opt, state.buffer, jax.random.split(k_in, n_games))
        theta_ks, phi_g = split_actor(params_g.actor)
        theta = reptile_batched(theta0, theta_ks, alpha)
        phi = reptile_batched(phi0, phi_g, alpha) if not latent else _mean0(phi_g)
        params = _mean0(params_g).replace(actor=merge_actor(theta, phi),
                                          prior=state.params.prior,
                                          inference=state.params.inference)
        opt = _mean0(opt_g)
        params, opt, mm = mi_ce_steps(params, opt, state.buffer, jnp.arange(n_games), k_mi, h)
        metrics = jax.tree.map(jnp.mean, metrics)
        return state.replace(params=params, opt=opt, grad_steps=state.grad_steps + K), {
            **metrics, **mm}

    metric_keys = ("critic_loss", "actor_loss", "q_mean", "entropy", "mi", "game_ce")

    def skip_metrics() -> dict:
        return {k: jnp.zeros(()) for k in metric_keys}

    def game_priors(prior: Any, slots: Slots, h: MRAHypers) -> Array:
        """``log p_psi(z | m_g, t)`` ``[G, T, H]`` of every training game and team (``m_g``
        read off the game's first parallel observation)."""
        obs0 = jax.tree.map(lambda x: x[:, 0], slots.obs)  # [G, A, ...]
        desc = jax.vmap(lambda o: population_descriptor(o, T))(obs0)  # [G, T + 1]
        return jax.vmap(lambda d: jax.vmap(
            lambda p: prior_mod.apply(p, d, h.prior_temperature))(prior))(desc)

    def prior_metrics(state: MRAState, h: MRAHypers) -> dict:
        """The prior's entropy per game and its separation between games
        (:func:`prior_separation`); empty without a learned prior."""
        if opt_cfg.latent != "prior":
            return {}
        sep = prior_separation(game_priors(state.params.prior, state.slots, h))
        return {**{f"prior_entropy_g{g}": sep["entropy"][g] for g in range(n_games)},
                "prior_js": sep["js"], "prior_tv": sep["tv"],
                "prior_argmax_differs": sep["argmax_differs"]}

    spu_game = cfg.rollout_steps * P
    first_ready = max(cfg.learning_starts, cfg.batch_size)

    def update(
        state: MRAState, t: Array | None = None, alpha: Any = None,
        hypers: MRAHypers | None = None,
    ) -> tuple[MRAState, dict]:
        """One update: roll out (game ``t mod G`` when sequential, else every game), store,
        and once the buffers hold ``learning_starts`` items, learn. ``alpha`` (optional, may be
        traced) overrides the Reptile step size of ``hypers``; ``hypers`` (optional, may be
        traced) replaces the config's (:class:`MRAHypers`; the learning rates are those in
        the state)."""
        h = default if hypers is None else hypers
        t_idx = state.updates if t is None else jnp.asarray(t)
        key, k_roll, k_learn = jax.random.split(state.key, 3)
        pp = PolicyParams(state.params.actor, state.params.prior)
        if sequential:
            m = t_idx % n_games
            slots, items, (d_sum, d_n) = rollout_game(pp, _take(state.slots, m), k_roll, h)
            buffer = _put(state.buffer, m, replay.add(_take(state.buffer, m), items))
            last = state.last_return.at[m].set(
                jnp.where(d_n > 0, d_sum / jnp.maximum(d_n, 1), state.last_return[m]))
            state = state.replace(slots=_put(state.slots, m, slots), buffer=buffer,
                                  last_return=last, env_steps=state.env_steps + spu_game)
            visits = t_idx // n_games + 1
            episodes = d_n
        else:
            m = jnp.zeros((), jnp.int32)
            slots, items, (d_sum, d_n) = jax.vmap(functools.partial(rollout_game, h=h),
                                                  (None, 0, 0))(
                pp, state.slots, jax.random.split(k_roll, n_games))
            buffer = jax.vmap(replay.add)(state.buffer, items)
            last = jnp.where(d_n > 0, d_sum / jnp.maximum(d_n, 1), state.last_return)
            state = state.replace(slots=slots, buffer=buffer, last_return=last,
                                  env_steps=state.env_steps + spu_game * n_games)
            visits = t_idx + 1
            episodes = jnp.sum(d_n)
        if t is None:
            ready = jnp.all(jax.vmap(replay.size)(state.buffer) >= first_ready)
        else:
            ready = visits * spu_game >= first_ready

        def learn(s: MRAState, k: Array):
            if sequential:
                return learn_sequential(s, m, k, alpha, h)
            if n_games == 1:
                return learn_sequential(s, jnp.zeros((), jnp.int32), k, alpha, h)
            return learn_batched(s, k, alpha, h)

        def skip(s: MRAState, k: Array):
            return s, skip_metrics()

        state, lm = jax.lax.cond(ready, learn, skip, state, k_learn)
        state = state.replace(key=key, updates=state.updates + 1)
        metrics = {
            "env_steps": state.env_steps,
            "grad_steps": state.grad_steps,
            "episode_return": jnp.mean(state.last_return),
            "episodes": episodes,
            "game": m,
            **lm,
            **{f"return_g{g}": state.last_return[g] for g in range(n_games)},
            **prior_metrics(state, h),
        }
        return state, metrics

    learner = Learner(
        init=init,
        update=update,
        policy=policy,
        policy_params=lambda s: PolicyParams(s.params.actor, s.params.prior),
        initial_carry=lambda: jnp.zeros((A, 1 + zdim)),
        env_steps_per_update=spu_game * (1 if sequential else n_games),
        tasks=games,
        hypers=default,
    )
    return MRAParts(learner, inner_steps, learn_sequential, learn_batched, mi_ce_steps, act,
                    prior_logits, actor_game)


def _check_like(loaded: dict, fresh: MRAParams) -> None:
    """Raise a clear error when loaded parameters do not fit this learner's networks."""
    for name, tree in loaded.items():
        want = getattr(fresh, name)
        same = jax.tree.structure(tree) == jax.tree.structure(want) and all(
            np.shape(a) == np.shape(b)
            for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(want), strict=True))
        if not same:
            raise ValueError(
                f"mra.init_from: the trained {name} parameters do not fit this learner (a "
                "different network size, number of heads, latent or phi variant?)")


#: MRA's entry of :data:`metajax.pipelines.registry.TRACEABLE`.
TRACEABLE = interfaces.Traceable(
    keys=(*(f"maddpg.{f}" for f in MRAHypers.MADDPG_FIELDS),
          *(f"mra.{f}" for f in MRAHypers.MRA_FIELDS)),
    hypers=lambda cfg: MRAHypers.of(cfg.maddpg, cfg.mra),
    structure=lambda cfg: (cfg.mra.mi_coef > 0,),
)


def fixed_latent_carry(num_agents: int, num_latents: int, h: int) -> Array:
    """Carry ``[A, 1 + H]`` that puts every agent on head ``h`` from the first step."""
    z = jax.nn.one_hot(jnp.full((num_agents,), h), num_latents)
    return jnp.concatenate([jnp.ones((num_agents, 1)), z], axis=-1)


def latent_returns(
    learner: Learner, env: MultiAgentEnv, params: Any, tasks: Any, key: Array,
    episodes: int = 20, greedy: bool = False,
) -> dict[str, np.ndarray]:
    """Per-agent mean returns ``[S, K]`` (over active agents and episodes) on ``tasks``, each
    agent's ``z`` drawn (or set) once at the episode start and kept for the episode (Alg. 5):

    * ``expectation``: ``z ~ p_psi(. | m)`` per agent and episode (MRA Fig. 5);
    * ``per_head`` ``[S, K, H]``: every agent on head ``h``, on scoring episodes;
    * ``best_head`` ``[S, K]``: the head with the best return on *selection* episodes (other
      keys than the scoring ones), and ``best_of_z``: that head's return on the scoring
      episodes (enumerated trial-and-error, Sec. 7.3, without selection bias: picking and
      scoring the maximum on the same episodes would overstate it).

    Learners without a latent give ``expectation`` only.
    """
    evaluate = evaluation.make_evaluator(learner, env, episodes)
    width = learner.initial_carry().shape[-1]
    a = env.max_agents
    mask = np.asarray(jax.vmap(lambda t: env.reset_to(jax.random.PRNGKey(0), t)[1]
                               .observation.agent_mask)(tasks))  # [K, A]

    def mean_ret(r: Array) -> np.ndarray:
        r = np.asarray(r)  # [S, K, E, A]
        return (r * mask[None, :, None]).sum(-1).mean(-1) / mask.sum(-1)[None]

    k_score, k_select = jax.random.split(key)
    out = {"expectation": mean_ret(evaluate(params, tasks, k_score, greedy,
                                            jnp.zeros((a, width))))}
    n_heads = width - 1
    if n_heads > 0:
        def per_head(k: Array) -> np.ndarray:
            return np.stack([mean_ret(evaluate(params, tasks, k, greedy,
                                               fixed_latent_carry(a, n_heads, h)))
                             for h in range(n_heads)], axis=-1)  # [S, K, H]

        out["per_head"] = per_head(k_score)
        out["best_head"] = per_head(k_select).argmax(-1)
        out["best_of_z"] = np.take_along_axis(out["per_head"], out["best_head"][..., None],
                                              -1)[..., 0]
    return out


def make_graph_fn(
    config: MADDPGConfig, options: MRAOptions, env: MultiAgentEnv
) -> Callable[[PolicyParams, Observation, Array], Array]:
    """``graph_fn(params, obs, carry) -> [A, N]``: the graph each agent of one game acts on
    (head ``z`` of its carry; mean over heads without latent), for pictures (App. E.6)."""
    _, actor_agent = actor_functions(config, options, num_actions(env))

    def graph_fn(params: PolicyParams, obs: Observation, carry: Array) -> Array:
        z = carry[:, 1:]
        _, g = nets.per_team(lambda p: jax.vmap(actor_agent, (None, 0, 0))(p, obs, z),
                        params.actor, obs.team)
        return g

    return graph_fn


def attention_episode(
    cfg: Any, learner: Learner, env: MultiAgentEnv, params: PolicyParams, task: Any,
    key: Array, greedy: bool = True,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """One episode with the agents' relational graphs (App. E.6, Fig. 11): ``(states [T + 1],
    attention [T + 1, A, A], rewards [T, A])``; ``attention[t, i, j]`` is agent ``i``'s weight
    on agent ``j`` in the graph it acts on in state ``t``, renormalized over the other agents
    (the graph also weighs the objects; the last frame repeats the previous one). ``params`` are
    one seed's :class:`PolicyParams`."""
    graph_fn = make_graph_fn(cfg.maddpg, cfg.mra, env)

    def run(key: Array):
        out = play_episode(lambda p, obs, carry, k: learner.policy(p, obs, carry, k, greedy),
                           env, params, task, key, learner.initial_carry(),
                           record=lambda s: (s.state, graph_fn(params, s.obs, s.carry),
                                             s.ts.reward))
        states, graphs, rewards = out.trace
        return with_reset(out.reset_state, states), graphs, rewards

    states, graphs, rewards = jax.device_get(jax.jit(run)(key))
    att = np.asarray(graphs)[:, :, : env.max_agents]
    # the graph spans agents and objects: draw the agents' share, renormalized over the agents
    att = att / np.maximum(att.sum(-1, keepdims=True), 1e-9)
    return states, np.concatenate([att, att[-1:]], axis=0), np.asarray(rewards)

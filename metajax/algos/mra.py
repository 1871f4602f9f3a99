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

Code layout: :func:`build_mra` makes the static :class:`MRASetup` (the networks
:class:`MRANets`, env, games, replay, optimizers, default :class:`MRAHypers` and the flags
that shape the program); every piece is a module-level function of it (and of the hypers):

* forward passes: :func:`actor_game` (``pi_theta(. | o, phi(o, z))``), :func:`critic_game`
  (``Q_zeta``), :func:`prior_logits` (``p_psi(z | m)``), :func:`act`;
* collecting (Alg. 4 "for time steps in an episode"): :func:`rollout_game` on
  :func:`metajax.core.rollout.rollout`, :func:`collect_game` / :func:`collect_all` (push to
  ``D_m``);
* losses: :func:`critic_targets` and :func:`critic_loss` (Eq. 8), :func:`policy_gradient_loss`
  (Eq. 9), :func:`actor_critic_loss` (both, one forward pass), :func:`mi_loss` (Eq. 11),
  :func:`ce_loss` (Eq. 13);
* steps: :func:`grad_step`, :func:`inner_steps` (``U_m^K``), :func:`reptile_actor`,
  :func:`mi_step`, :func:`ce_step`; :func:`learn_sequential` (Alg. 4 on one game; Alg. 5 when
  adapting), :func:`learn_batched`; :func:`update` (collect, learn, metrics);
* :func:`make_learner` wraps them as a :class:`~metajax.core.interfaces.Learner`;
  :func:`make_mra` = ``make_learner(build_mra(...))``.
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
    mean0,
    put,
    soft_update,
    straight_through,
    take,
    td_target,
)
from metajax.core.replay import Replay, Transition, make_replay
from metajax.core.rollout import Acted, Behaviour, RolloutState, RolloutStats, rollout
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


# ---- the static bundle: networks, then everything a learner is built of ----------------------


@dataclasses.dataclass(frozen=True)
class MRANets:
    """MRA's networks and the (padded) sizes they run at; static.

    * ``actor``: :class:`metajax.core.networks.Actor` (``theta`` and ``phi``, see
      :func:`split_actor`); ``critic``: :class:`MRACritic` (``zeta``); ``prior``:
      :class:`LatentPrior` (``psi``); ``inference``: :class:`InferenceNet` (``xi``);
    * ``n_actions``; ``n_agents`` (``A``, the env's ``max_agents``); ``n_teams`` (``T``);
      ``n_heads`` (``H`` = ``|Z|``);
    * ``latent`` / ``phi``: :attr:`MRAOptions.latent` / :attr:`MRAOptions.phi`.
    """

    actor: nets.Actor
    critic: MRACritic
    prior: LatentPrior
    inference: InferenceNet
    n_actions: int
    n_agents: int
    n_teams: int
    n_heads: int
    latent: str
    phi: str

    @property
    def uses_latent(self) -> bool:
        return self.latent != "none"

    @property
    def latent_dim(self) -> int:
        """Width of ``z`` as stored and carried: ``H``, or 0 without a latent."""
        return self.n_heads if self.uses_latent else 0


def make_networks(
    config: MADDPGConfig, options: MRAOptions, env: MultiAgentEnv, n_games: int = 1
) -> MRANets:
    """The :class:`MRANets` of ``env`` (``n_games``: the classes of ``xi``)."""
    n_act, heads = num_actions(env), config.num_heads
    return MRANets(
        actor=nets.Actor(n_act, config.hidden, "relational", heads, config.head_dim,
                         config.embed_dim),
        critic=MRACritic(n_act, config.critic_hidden, max(1, min(4, heads)), config.head_dim,
                         config.embed_dim),
        prior=LatentPrior(max(heads, 1), options.prior_hidden, options.prior_temperature),
        inference=InferenceNet(n_games, options.inference_hidden, config.embed_dim,
                               config.head_dim, pooled=options.xi_input == "pooled"),
        n_actions=n_act, n_agents=env.max_agents, n_teams=max(env.num_teams, 1),
        n_heads=heads, latent=options.latent, phi=options.phi,
    )


class MRAOptimizers(NamedTuple):
    """The optimizers of the fields of :class:`MRAOpt`: ``theta`` (Eq. 9), ``phi`` (Eq. 11, or
    the policy gradient in adaptation and without a latent), ``critic`` (Eq. 8), ``prior``
    (``psi`` and ``xi``, Eq. 13)."""

    theta: optax.GradientTransformation
    phi: optax.GradientTransformation
    critic: optax.GradientTransformation
    prior: optax.GradientTransformation


def make_optimizers(config: MADDPGConfig, h: MRAHypers, phi_by_policy: bool,
                    traced: bool) -> MRAOptimizers:
    """The optimizers with the learning rates of ``h`` (with ``traced``: kept in their states,
    :func:`metajax.core.ops.make_optimizer`); ``phi`` takes the actor's rate when the policy
    gradient trains it."""
    phi_lr = h.actor_lr if phi_by_policy else h.phi_lr
    return MRAOptimizers(*(make_optimizer(lr, config, traced)
                           for lr in (h.actor_lr, phi_lr, h.critic_lr, h.prior_lr)))


@dataclasses.dataclass(frozen=True)
class MRASetup:
    """What an MRA learner is built of (static; :func:`build_mra`).

    * ``config`` / ``options``: the ``maddpg`` and ``mra`` sections; ``hypers``: their
      :class:`MRAHypers` (the defaults of every ``h``); ``nets``: :class:`MRANets`;
    * ``env``: the auto-reset env; ``games``: the ``[G]`` stack of training games,
      ``n_games = G``; ``replay`` (one buffer per game); ``optimizers`` (of ``hypers``);
    * ``traced``: learning rates in the Adam states (sweeps); ``init_params``: optional
      ``key -> {field: value}`` of :class:`MRAParams` to start from (adaptation);
    * program structure: ``adapt`` (Alg. 5 instead of Alg. 4), ``sequential`` (Reptile visits
      the games in turn; off for one game), ``use_mi`` (the Eq. 11 step), ``use_ce`` (the
      Eq. 13 step), ``phi_by_policy`` (the policy gradient trains ``phi``: when adapting,
      Eq. 10, and in every arm without a latent; in MRA itself only Eq. 11 trains ``phi``).
    """

    config: MADDPGConfig
    options: MRAOptions
    hypers: MRAHypers
    nets: MRANets
    env: AutoReset
    games: Any
    n_games: int
    replay: Replay
    optimizers: MRAOptimizers
    traced: bool
    init_params: Callable[[Array], dict] | None
    adapt: bool
    sequential: bool
    use_mi: bool
    use_ce: bool
    phi_by_policy: bool

    @property
    def steps_per_game(self) -> int:
        """Env steps one rollout of one training game collects (``rollout_steps * P``)."""
        return self.config.rollout_steps * self.config.num_envs

    @property
    def first_ready(self) -> int:
        """Items a game's buffer holds before learning starts."""
        return max(self.config.learning_starts, self.config.batch_size)


def build_mra(
    config: MADDPGConfig,
    options: MRAOptions,
    env: MultiAgentEnv,
    games: Any,
    init_params: Callable[[Array], dict] | None = None,
    traced: bool = False,
) -> MRASetup:
    """The :class:`MRASetup` of an MRA learner for ``env`` trained on the ``[G]`` stack of
    ``games`` (arguments as :func:`make_mra`)."""
    if config.param_sharing != "team":
        raise ValueError("MRA shares parameters within teams (maddpg.param_sharing='team')")
    leaves = jax.tree.leaves(games)
    if not leaves or leaves[0].ndim == 0:
        raise ValueError("games must be a stacked batch of tasks (envs.wrappers.stack_tasks)")
    if options.phi != "option" and not options.uses_latent:
        raise ValueError("phi variants need a latent")
    n_games = int(leaves[0].shape[0])
    latent, adapt = options.uses_latent, options.mode == "adapt"
    hypers = MRAHypers.of(config, options)
    return MRASetup(
        config=config, options=options, hypers=hypers,
        nets=make_networks(config, options, env, n_games), env=AutoReset(env), games=games,
        n_games=n_games, replay=make_replay(config.buffer_size, config.batch_size),
        optimizers=make_optimizers(config, hypers, adapt or not latent, traced),
        traced=traced, init_params=init_params, adapt=adapt,
        sequential=options.reptile == "sequential" and n_games > 1,
        use_mi=latent and options.mi_coef > 0 and not adapt,
        use_ce=options.latent == "prior" and options.game_ce and not adapt,
        phi_by_policy=adapt or not latent,
    )


# ---- forward passes: pi_theta(a | o, phi(o, z)), Q_zeta(o, a, g), p_psi(z | m) ------------------


def actor_agent(nw: MRANets, p: Any, obs_i: Observation, z_i: Array) -> tuple[Array, Array]:
    """``(logits [n], graph [N])`` of one agent: ``pi_theta(a | o, g)`` with ``g = phi(o, z)``
    (option: head ``z`` of the encoder; concat/bilinear: ``z`` joined to the entities, graph =
    mean over heads; no latent: all heads concatenated, graph = mean over heads)."""
    if not nw.uses_latent:
        logits, graph = nw.actor.apply(p, obs_i)
        return logits, jnp.mean(graph, axis=0)
    if nw.phi == "option":
        logits, graph = nw.actor.apply(p, obs_i, z_i)
        return logits, select_graph(graph, z_i)
    logits, graph = nw.actor.apply(p, condition_obs(obs_i, z_i, nw.phi))
    return logits, jnp.mean(graph, axis=0)


def actor_game(nw: MRANets, params: Any, obs: Observation, z: Array) -> tuple[Array, Array]:
    """Every agent of one game (its team's parameters): ``(logits [A, n], graph [A, N])``;
    ``z [A, H]``."""
    agent = functools.partial(actor_agent, nw)
    return nets.per_team(lambda p: jax.vmap(agent, (None, 0, 0))(p, obs, z), params, obs.team)


def actor_batch(nw: MRANets, params: Any, obs: Observation, z: Array) -> tuple[Array, Array]:
    """:func:`actor_game` over a batch: ``(logits [B, A, n], graph [B, A, N])``."""
    return jax.vmap(functools.partial(actor_game, nw), (None, 0, 0))(params, obs, z)


def critic_game(nw: MRANets, params: Any, obs: Observation, actions: Array,
                graph: Array) -> tuple[Array, Array]:
    """``(Q [A, n], mean squared attention logit [])`` of one game."""
    q, logits = nets.per_team(lambda p: nw.critic.apply(p, obs, actions, graph), params,
                              obs.team)
    return q, jnp.mean(logits**2)


def critic_batch(nw: MRANets, params: Any, obs: Observation, actions: Array,
                 graph: Array) -> tuple[Array, Array]:
    """:func:`critic_game` over a batch: ``(Q [B, A, n], [B])``."""
    return jax.vmap(functools.partial(critic_game, nw), (None, 0, 0, 0))(
        params, obs, actions, graph)


def prior_logits(nw: MRANets, prior: Any, obs: Observation, h: MRAHypers) -> Array:
    """``log p_psi(z | m)`` ``[A, H]`` for every agent of one game (its team's ``psi``);
    uniform for uni-MRA."""
    desc = population_descriptor(obs, nw.n_teams)
    if nw.latent == "uniform":
        return jnp.full((nw.n_agents, nw.n_heads), -math.log(nw.n_heads))
    logits = jax.vmap(lambda p: nw.prior.apply(p, desc, h.prior_temperature))(prior)
    return logits[obs.team]  # [A, H]


def draw_latent(nw: MRANets, prior: Any, obs: Observation, key: Array, h: MRAHypers) -> Array:
    """``z ~ p(. | m)`` ``[A, H]`` (hard one-hot), zeros ``[A, 0]`` without latent."""
    if not nw.uses_latent:
        return jnp.zeros((nw.n_agents, 0))
    return sample_latent(key, prior_logits(nw, prior, obs, h))


def act(nw: MRANets, pp: PolicyParams, obs: Observation, carry: Array, key: Array,
        greedy: Any, h: MRAHypers) -> tuple[Array, Array, Array, Array]:
    """``(action [A] int32, carry [A, 1 + H], z [A, H], graph [A, N])`` for one game: each
    agent keeps the ``z`` of its carry, or draws one (carry flag 0, an episode start)."""
    k_z, k_a = jax.random.split(key)
    drawn = carry[:, :1] > 0.5
    z = jnp.where(drawn, carry[:, 1:], draw_latent(nw, pp.prior, obs, k_z, h))
    logits, graph = actor_game(nw, pp.actor, obs, z)
    sampled = jax.random.categorical(k_a, logits, axis=-1)
    action = jnp.where(greedy, jnp.argmax(logits, -1), sampled).astype(jnp.int32)
    carry = jnp.concatenate([jnp.ones((nw.n_agents, 1)), z], axis=-1)
    return action, carry, z, graph


def policy_params(state: MRAState) -> PolicyParams:
    """What acting needs, from the learner's state."""
    return PolicyParams(state.params.actor, state.params.prior)


# ---- initial state ------------------------------------------------------------------------------


def example_transition(setup: MRASetup) -> Transition:
    """A zero :class:`Transition` of one game (the replay's item; ``latent [A, H]``)."""
    nw = setup.nets
    ts = jax.eval_shape(lambda k: setup.env.reset_to(k, take(setup.games, 0))[1],
                        jax.random.PRNGKey(0))
    obs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), ts.observation)
    per_agent, empty = jnp.zeros((nw.n_agents,)), jnp.zeros((nw.n_agents, 0))
    return Transition(
        obs=obs, action=jnp.zeros((nw.n_agents, nw.n_actions)), reward=per_agent,
        discount=per_agent, next_obs=obs, carry=empty, next_carry=empty,
        latent=jnp.zeros((nw.n_agents, nw.latent_dim)),
    )


def fresh_params(setup: MRASetup, key: Array) -> MRAParams:
    """Freshly initialized :class:`MRAParams` (targets equal to the online networks)."""
    nw, ex = setup.nets, example_transition(setup)
    obs0 = nets.agent_view(ex.obs, 0)
    z0 = jax.nn.one_hot(0, nw.n_heads)
    graph0 = jnp.zeros((nw.n_agents, ex.obs.agents.shape[1] + ex.obs.objects.shape[1]))

    def init_actor(k: Array) -> Any:
        if nw.uses_latent and nw.phi != "option":
            return nw.actor.init(k, condition_obs(obs0, z0, nw.phi))
        return nw.actor.init(k, obs0, z0 if nw.uses_latent else None)

    k_a, k_c, k_p, k_i = jax.random.split(key, 4)
    actor = nets.init_team_params(init_actor, k_a, nw.n_teams)
    critic = nets.init_team_params(lambda k: nw.critic.init(k, ex.obs, ex.action, graph0), k_c,
                                   nw.n_teams)
    prior = nets.init_team_params(lambda k: nw.prior.init(k, jnp.zeros((nw.n_teams + 1,))), k_p,
                                  nw.n_teams)
    inference = nw.inference.init(k_i, obs0, graph0[0])
    return MRAParams(actor, critic, actor, critic, prior, inference)


def init_state(setup: MRASetup, key: Array, hypers: MRAHypers | None = None) -> MRAState:
    """The state before the first update: fresh (or ``setup.init_params``) parameters, every
    game's ``P`` parallel games reset, empty buffers. ``hypers`` (learners built with
    ``traced=True``): their learning rates go into the Adam states."""
    nw, g, p = setup.nets, setup.n_games, setup.config.num_envs
    opts = setup.optimizers if hypers is None else make_optimizers(
        setup.config, hypers, setup.phi_by_policy, setup.traced)
    k_p, k_env, k_next = jax.random.split(key, 3)
    params = fresh_params(setup, k_p)
    if setup.init_params is not None:
        loaded = setup.init_params(key)
        _check_like(loaded, params)
        params = params.replace(**loaded)
    theta, phi = split_actor(params.actor)
    keys = jax.random.split(k_env, g * p).reshape(g, p, -1)
    tasks = jax.tree.map(lambda x: jnp.broadcast_to(x[:, None], (g, p, *x.shape[1:])),
                         setup.games)
    env_state, ts = jax.vmap(jax.vmap(setup.env.reset_to))(keys, tasks)
    buf = setup.replay.init(example_transition(setup))
    return MRAState(
        params=params,
        opt=MRAOpt(opts.theta.init(theta), opts.phi.init(phi), opts.critic.init(params.critic),
                   opts.prior.init((params.prior, params.inference))),
        buffer=jax.tree.map(lambda x: jnp.broadcast_to(x, (g, *x.shape)), buf),
        slots=Slots(env_state, ts.observation, jnp.zeros((g, p, nw.n_agents, 1 + nw.latent_dim)),
                    jnp.zeros((g, p, nw.n_agents))),
        last_return=jnp.zeros((g,)),
        key=k_next,
        env_steps=jnp.zeros((), jnp.int32),
        grad_steps=jnp.zeros((), jnp.int32),
        updates=jnp.zeros((), jnp.int32),
    )


# ---- collecting: Alg. 4's "for time steps in an episode" on a training game ---------------------


def behaviour_policy(nw: MRANets, pp: PolicyParams, h: MRAHypers, n_envs: int) -> Behaviour:
    """MRA's behaviour for :func:`metajax.core.rollout.rollout`: :func:`act` (sampled, not
    greedy) on each of the ``n_envs`` games, a key per game; ``z`` is stored with the item."""
    def behaviour(obs: Observation, carry: Array, aux: Any, key: Array,
                  env_steps: Array) -> tuple[Acted, Any]:
        keys = jax.random.split(key, n_envs)
        action, carry, z, _ = jax.vmap(lambda o, c, k: act(nw, pp, o, c, k, False, h))(
            obs, carry, keys)
        return Acted(action, jax.nn.one_hot(action, nw.n_actions), carry, z), aux

    return behaviour


def rollout_game(setup: MRASetup, pp: PolicyParams, slots: Slots, key: Array,
                 h: MRAHypers) -> tuple[Slots, Transition, RolloutStats]:
    """``rollout_steps`` steps of one training game's ``P`` parallel games, every agent acting
    on its ``z`` (redrawn at episode starts when :attr:`MRAOptions.per_episode`):
    ``(slots, items [R * P], stats)``."""
    cfg = setup.config
    games = RolloutState(slots.env_state, slots.obs, slots.carry, slots.ep_return)
    games, items, stats = rollout(
        setup.env.batch_step, behaviour_policy(setup.nets, pp, h, cfg.num_envs), games, key,
        cfg.rollout_steps, reward_scale=h.reward_scale,
        reset_carry=setup.options.per_episode, store_carry=False)
    return Slots(games.env_state, games.obs, games.carry, games.ep_return), items, stats


def collect_game(setup: MRASetup, state: MRAState, m: Array, key: Array,
                 h: MRAHypers) -> tuple[MRAState, Array]:
    """Roll out training game ``m`` and push its items to ``D_m`` (sequential Alg. 4);
    returns ``(state, episodes that ended [])``."""
    slots, items, stats = rollout_game(setup, policy_params(state), take(state.slots, m), key,
                                       h)
    buffer = put(state.buffer, m, setup.replay.add(take(state.buffer, m), items))
    last = state.last_return.at[m].set(stats.mean_return(state.last_return[m]))
    return state.replace(slots=put(state.slots, m, slots), buffer=buffer, last_return=last,
                         env_steps=state.env_steps + setup.steps_per_game), stats.episodes


def collect_all(setup: MRASetup, state: MRAState, key: Array,
                h: MRAHypers) -> tuple[MRAState, Array]:
    """Roll out every training game ``m`` into its ``D_m`` (batched Reptile, one game)."""
    pp = policy_params(state)
    slots, items, stats = jax.vmap(lambda s, k: rollout_game(setup, pp, s, k, h))(
        state.slots, jax.random.split(key, setup.n_games))
    buffer = jax.vmap(setup.replay.add)(state.buffer, items)
    return state.replace(
        slots=slots, buffer=buffer, last_return=stats.mean_return(state.last_return),
        env_steps=state.env_steps + setup.steps_per_game * setup.n_games,
    ), jnp.sum(stats.episodes)


# ---- the critic and policy losses (Eq. 8, Eq. 9) and the Reptile inner loop ---------------------


def critic_targets(nw: MRANets, params: MRAParams, batch: Transition, key: Array,
                   h: MRAHypers) -> Array:
    """Eq. 8's target ``r + gamma E_{a' ~ pi_bar} Q_bar(o', a', g')`` ``[B, A]``, ``g'`` the
    target actor's graph at ``o'`` (the batch's ``z``), the others' ``a'`` sampled."""
    logits_n, graph_n = actor_batch(nw, params.target_actor, batch.next_obs, batch.latent)
    pi_n = jax.nn.softmax(logits_n, -1)
    a_n = jax.nn.one_hot(jax.random.categorical(key, logits_n, -1), nw.n_actions)
    q_n, _ = critic_batch(nw, params.target_critic, batch.next_obs, a_n, graph_n)
    return td_target(batch.reward, batch.discount, jnp.sum(pi_n * q_n, -1), h.gamma)


def critic_loss(q_all: Array, action: Array, target: Array, mask: Array) -> tuple[Array, Array]:
    """Eq. 8: ``mean_mask (Q(o, a, g) - y)^2``, ``Q(o, a, g)`` the taken (one-hot ``action``)
    entry of ``q_all [B, A, n]``. Returns ``(loss, Q of the taken actions [B, A])``."""
    q_taken = jnp.sum(q_all * action, -1)
    return masked_mean((q_taken - target) ** 2, mask), q_taken


def actor_critic_loss(nw: MRANets, trainable: tuple[Any, Any, Any], batch: Transition,
                      target: Array, h: MRAHypers) -> tuple[Array, tuple]:
    """Eq. 8 for the critic ``zeta`` plus Eq. 9 for the actor (``theta``, ``phi``) from one
    forward pass, ``trainable = (zeta, theta, phi)``: the critic sees the actor's graph
    detached (Alg. 5), :func:`policy_gradient_loss` the same critic's ``|A|`` Q-values (the
    others' actions from the batch); plus ``attention_reg`` times the critic's squared
    attention logits. Returns ``(total, (critic loss, actor loss, entropy, mean Q))``."""
    zeta, theta, phi = trainable
    mask = batch.obs.agent_mask
    logits, graph = actor_batch(nw, merge_actor(theta, phi), batch.obs, batch.latent)
    q, reg = critic_batch(nw, zeta, batch.obs, batch.action, jax.lax.stop_gradient(graph))
    c_loss, q_taken = critic_loss(q, batch.action, target, mask)
    a_loss, ent = policy_gradient_loss(logits, q, mask, h.entropy_coef, h.logit_reg)
    total = c_loss + h.attention_reg * jnp.mean(reg) + a_loss
    return total, (c_loss, a_loss, ent, masked_mean(q_taken, mask))


def grad_step(setup: MRASetup, params: MRAParams, opt: MRAOpt, batch: Transition, key: Array,
              h: MRAHypers) -> tuple[MRAParams, MRAOpt, tuple]:
    """One step of Eq. 8 for ``zeta`` and Eq. 9 for ``theta`` (for ``omega = (theta, phi)``
    when ``setup.phi_by_policy``: Eq. 10 in adaptation, and the arms without a latent, whose
    ``phi`` no Eq. 11 step trains). Returns ``(params, opt, (critic loss, actor loss, mean Q,
    entropy))``."""
    o = setup.optimizers
    target = critic_targets(setup.nets, params, batch, key, h)
    theta, phi = split_actor(params.actor)
    loss = functools.partial(actor_critic_loss, setup.nets, batch=batch, target=target, h=h)
    (_, (cl, al, ent, qm)), (g_c, g_t, g_p) = jax.value_and_grad(loss, has_aux=True)(
        (params.critic, theta, phi))
    upd, c_opt = o.critic.update(g_c, opt.critic, params.critic)
    critic = optax.apply_updates(params.critic, upd)
    upd, t_opt = o.theta.update(g_t, opt.theta, theta)
    theta = optax.apply_updates(theta, upd)
    opt = opt.replace(critic=c_opt, theta=t_opt)
    if setup.phi_by_policy:
        upd, p_opt = o.phi.update(g_p, opt.phi, phi)
        phi = optax.apply_updates(phi, upd)
        opt = opt.replace(phi=p_opt)
    params = params.replace(actor=merge_actor(theta, phi), critic=critic)
    return params, opt, (cl, al, qm, ent)


def inner_steps(setup: MRASetup, params: MRAParams, opt: MRAOpt, buf: Any, key: Array,
                h: MRAHypers) -> tuple[MRAParams, MRAOpt, dict]:
    """``U_m^K``: ``K`` = ``updates_per_rollout`` critic + policy steps (:func:`grad_step`) on
    batches of one game's buffer, the delayed ``theta_bar``, ``zeta_bar`` following
    (``lax.scan``); metrics of the last step."""
    def step(c, k):
        params, opt = c
        k_s, k_c = jax.random.split(k)
        batch = setup.replay.sample(buf, k_s)
        params, opt, out = grad_step(setup, params, opt, batch, k_c, h)
        params = params.replace(
            target_actor=soft_update(params.target_actor, params.actor, h.tau),
            target_critic=soft_update(params.target_critic, params.critic, h.tau))
        return (params, opt), out

    (params, opt), (cl, al, qm, ent) = jax.lax.scan(
        step, (params, opt), jax.random.split(key, setup.config.updates_per_rollout))
    return params, opt, {"critic_loss": cl[-1], "actor_loss": al[-1], "q_mean": qm[-1],
                         "entropy": ent[-1]}


def reptile_actor(nw: MRANets, actor0: Any, actor_k: Any, alpha: Any) -> Any:
    """Reptile on the actor: ``theta <- theta + alpha (theta_K - theta)``; ``phi`` too when the
    inner loop trained it (no latent), else ``phi`` as the inner loop left it."""
    theta0, phi0 = split_actor(actor0)
    theta_k, phi = split_actor(actor_k)
    if not nw.uses_latent:
        phi = reptile_step(phi0, phi, alpha)
    return merge_actor(reptile_step(theta0, theta_k, alpha), phi)


# ---- the representation losses: Eq. 11 for phi, Eq. 13 for (psi, xi) ---------------------------


def mi_loss(nw: MRANets, phi: Any, theta: Any, theta_bar: Any, prior: Any, batch: Transition,
            key: Array, h: MRAHypers, n_samples: int) -> Array:
    """``-`` Eq. 11 for ``phi``: ``z ~ p(.|m)``, ``a ~ pi_theta(.|o, phi(o, z))``, ``n_samples``
    resampled ``z'``; log-probabilities under ``pi_theta_bar`` with the online ``phi``
    (:func:`mi_lower_bound`, mean over the batch's agents)."""
    mask = batch.obs.agent_mask
    k_z, k_a, k_r = jax.random.split(key, 3)
    b = batch.reward.shape[0]
    lp = jax.vmap(lambda o: prior_logits(nw, prior, o, h))(batch.obs)
    z = sample_latent(k_z, lp)
    logits_a, _ = actor_batch(nw, merge_actor(theta, phi), batch.obs, z)
    a = jax.lax.stop_gradient(jax.random.categorical(k_a, logits_a, -1))  # [B, A]
    z_r = sample_latent(k_r, jnp.broadcast_to(lp[None], (n_samples, b, *lp.shape[1:])))
    actor_bar = merge_actor(theta_bar, phi)

    def logp_of(zz):
        logits, _ = actor_batch(nw, actor_bar, batch.obs, zz)
        lsm = jax.nn.log_softmax(logits, -1)
        return jnp.take_along_axis(lsm, a[..., None], -1)[..., 0]  # [B, A]

    logp = logp_of(z)
    logp_r = jnp.moveaxis(jax.vmap(logp_of)(z_r), 0, -1)  # [B, A, n]
    return -masked_mean(mi_lower_bound(logp, logp_r), mask)


def ce_loss(nw: MRANets, prior_xi: tuple[Any, Any], actor: Any, batch: Transition, game: Array,
            key: Array, h: MRAHypers) -> Array:
    """Eq. 13 for ``(psi, xi)``: ``z`` a straight-through Gumbel-softmax sample of
    ``p_psi(.|m)``, ``g = phi(o, z)`` (actor fixed), ``-log p(x = game | o, g; xi)``
    (:func:`game_cross_entropy`)."""
    prior, xi = prior_xi
    lp = jax.vmap(lambda o: prior_logits(nw, prior, o, h))(batch.obs)
    z = straight_through(gumbel_softmax(key, lp))
    _, graph = actor_batch(nw, jax.lax.stop_gradient(actor), batch.obs, z)
    logits = nw.inference.apply(xi, batch.obs, graph)  # [B, A, G]
    return game_cross_entropy(logits, jnp.full(graph.shape[:2], game), batch.obs.agent_mask)


def mi_step(setup: MRASetup, params: MRAParams, opt: MRAOpt, batches: Transition, key: Array,
            h: MRAHypers) -> tuple[MRAParams, MRAOpt, Array]:
    """``phi`` ascends ``mi_coef`` times Eq. 11, averaged over the games' ``batches [g]``;
    returns the bound (``mi``)."""
    theta, phi = split_actor(params.actor)
    theta_bar, _ = split_actor(params.target_actor)
    n_batches = jax.tree.leaves(batches)[0].shape[0]

    def loss(ph):
        per = jax.vmap(lambda bt, k: mi_loss(setup.nets, ph, theta, theta_bar, params.prior, bt,
                                             k, h, setup.options.mi_samples))(
            batches, jax.random.split(key, n_batches))
        return h.mi_coef * jnp.mean(per), jnp.mean(per)

    (_, val), grads = jax.value_and_grad(loss, has_aux=True)(phi)
    upd, p_opt = setup.optimizers.phi.update(grads, opt.phi, phi)
    phi = optax.apply_updates(phi, upd)
    return params.replace(actor=merge_actor(theta, phi)), opt.replace(phi=p_opt), -val


def ce_step(setup: MRASetup, params: MRAParams, opt: MRAOpt, batches: Transition,
            game_ids: Array, key: Array, h: MRAHypers) -> tuple[MRAParams, MRAOpt, Array]:
    """``(psi, xi)`` descend Eq. 13, averaged over the games' ``batches [g]`` (of the games
    ``game_ids [g]``); returns the cross-entropy (``game_ce``)."""
    def loss(px):
        per = jax.vmap(lambda bt, g, k: ce_loss(setup.nets, px, params.actor, bt, g, k, h))(
            batches, game_ids, jax.random.split(key, game_ids.shape[0]))
        return jnp.mean(per)

    px = (params.prior, params.inference)
    val, grads = jax.value_and_grad(loss)(px)
    upd, pr_opt = setup.optimizers.prior.update(grads, opt.prior, px)
    prior, xi = optax.apply_updates(px, upd)
    return params.replace(prior=prior, inference=xi), opt.replace(prior=pr_opt), val


def mi_ce_steps(setup: MRASetup, params: MRAParams, opt: MRAOpt, bufs: Any, game_ids: Array,
                key: Array, h: MRAHypers) -> tuple[MRAParams, MRAOpt, dict]:
    """The Eq. 11 step for ``phi`` then the Eq. 13 step for ``(psi, xi)`` (those of them
    ``setup`` runs), on one batch of each game in ``bufs [g]``."""
    metrics = {"mi": jnp.zeros(()), "game_ce": jnp.zeros(())}
    k_s, k_mi, k_ce = jax.random.split(key, 3)
    batches = jax.vmap(setup.replay.sample)(bufs, jax.random.split(k_s, game_ids.shape[0]))
    if setup.use_mi:
        params, opt, metrics["mi"] = mi_step(setup, params, opt, batches, k_mi, h)
    if setup.use_ce:
        params, opt, metrics["game_ce"] = ce_step(setup, params, opt, batches, game_ids, k_ce, h)
    return params, opt, metrics


# ---- learning on the collected data: Alg. 4 (sequential, batched) and Alg. 5 --------------------


def learn_sequential(setup: MRASetup, state: MRAState, m: Array, key: Array,
                     h: MRAHypers) -> tuple[MRAState, dict]:
    """Alg. 4 on game ``m``: ``K`` inner steps on ``D_m``, the Reptile step with ``h.alpha``,
    then the Eq. 11 and Eq. 13 steps. Adapting (Alg. 5): the inner steps alone (Eq. 8 and
    Eq. 10; no interpolation, no representation steps)."""
    k_in, k_mi = jax.random.split(key)
    buf = take(state.buffer, m)
    params, opt, metrics = inner_steps(setup, state.params, state.opt, buf, k_in, h)
    if not setup.adapt:
        params = params.replace(
            actor=reptile_actor(setup.nets, state.params.actor, params.actor, h.alpha))
    bufs = jax.tree.map(lambda x: x[None], buf)
    params, opt, mm = mi_ce_steps(setup, params, opt, bufs, jnp.reshape(m, (1,)), k_mi, h)
    return state.replace(params=params, opt=opt,
                         grad_steps=state.grad_steps + setup.config.updates_per_rollout), {
        **metrics, **mm}


def learn_batched(setup: MRASetup, state: MRAState, key: Array,
                  h: MRAHypers) -> tuple[MRAState, dict]:
    """Batched Reptile: ``K`` inner steps on every game from the same parameters, then
    ``theta <- theta + alpha mean_m (theta_K^m - theta)``; critic, targets and optimizer
    states are the games' averages; the Eq. 11 and Eq. 13 steps on a batch of every game."""
    k_in, k_mi = jax.random.split(key)
    theta0, phi0 = split_actor(state.params.actor)
    params_g, opt_g, metrics = jax.vmap(
        lambda b, k: inner_steps(setup, state.params, state.opt, b, k, h))(
        state.buffer, jax.random.split(k_in, setup.n_games))
    theta_ks, phi_g = split_actor(params_g.actor)
    theta = reptile_batched(theta0, theta_ks, h.alpha)
    phi = mean0(phi_g) if setup.nets.uses_latent else reptile_batched(phi0, phi_g, h.alpha)
    params = mean0(params_g).replace(actor=merge_actor(theta, phi), prior=state.params.prior,
                                      inference=state.params.inference)
    opt = mean0(opt_g)
    params, opt, mm = mi_ce_steps(setup, params, opt, state.buffer, jnp.arange(setup.n_games),
                                  k_mi, h)
    metrics = jax.tree.map(jnp.mean, metrics)
    return state.replace(params=params, opt=opt,
                         grad_steps=state.grad_steps + setup.config.updates_per_rollout), {
        **metrics, **mm}


def learn(setup: MRASetup, state: MRAState, m: Array, key: Array,
          h: MRAHypers) -> tuple[MRAState, dict]:
    """Learn on the collected data: on game ``m`` (sequential, or a single game), else
    batched over the games."""
    if setup.sequential or setup.n_games == 1:
        return learn_sequential(setup, state, m, key, h)
    return learn_batched(setup, state, key, h)


# ---- metrics and the update ---------------------------------------------------------------------

#: What :func:`learn` reports (zeros on updates that do not learn).
LEARN_METRICS = ("critic_loss", "actor_loss", "q_mean", "entropy", "mi", "game_ce")


def game_priors(nw: MRANets, prior: Any, slots: Slots, h: MRAHypers) -> Array:
    """``log p_psi(z | m_g, t)`` ``[G, T, H]`` of every training game and team (``m_g`` read
    off the game's first parallel observation)."""
    obs0 = jax.tree.map(lambda x: x[:, 0], slots.obs)  # [G, A, ...]
    desc = jax.vmap(lambda o: population_descriptor(o, nw.n_teams))(obs0)  # [G, T + 1]
    return jax.vmap(lambda d: jax.vmap(
        lambda p: nw.prior.apply(p, d, h.prior_temperature))(prior))(desc)


def prior_metrics(setup: MRASetup, state: MRAState, h: MRAHypers) -> dict:
    """The prior's entropy per game and its separation between games
    (:func:`prior_separation`); empty without a learned prior."""
    if setup.options.latent != "prior":
        return {}
    sep = prior_separation(game_priors(setup.nets, state.params.prior, state.slots, h))
    return {**{f"prior_entropy_g{g}": sep["entropy"][g] for g in range(setup.n_games)},
            "prior_js": sep["js"], "prior_tv": sep["tv"],
            "prior_argmax_differs": sep["argmax_differs"]}


def update(setup: MRASetup, state: MRAState, t: Array | None,
           h: MRAHypers) -> tuple[MRAState, dict]:
    """One update of Alg. 4 (Alg. 5 when adapting): collect (game ``m = t mod G`` when
    sequential, else every game) into ``D_m``; once the buffers hold ``learning_starts`` items,
    :func:`learn` (``K`` inner steps, the Reptile step, the Eq. 11 step, the Eq. 13 step);
    metrics. ``t`` (optional, unbatched): the update's index, else ``state.updates`` (with
    ``t`` the readiness test is known outside a seed ``vmap``)."""
    t_idx = state.updates if t is None else jnp.asarray(t)
    key, k_roll, k_learn = jax.random.split(state.key, 3)
    if setup.sequential:
        m = t_idx % setup.n_games
        state, episodes = collect_game(setup, state, m, k_roll, h)
        visits = t_idx // setup.n_games + 1
    else:
        m = jnp.zeros((), jnp.int32)
        state, episodes = collect_all(setup, state, k_roll, h)
        visits = t_idx + 1
    if t is None:
        ready = jnp.all(jax.vmap(setup.replay.size)(state.buffer) >= setup.first_ready)
    else:
        ready = visits * setup.steps_per_game >= setup.first_ready

    def skip(s: MRAState, k: Array) -> tuple[MRAState, dict]:
        return s, {name: jnp.zeros(()) for name in LEARN_METRICS}

    state, learned = jax.lax.cond(ready, lambda s, k: learn(setup, s, m, k, h), skip, state,
                                  k_learn)
    state = state.replace(key=key, updates=state.updates + 1)
    return state, {
        "env_steps": state.env_steps,
        "grad_steps": state.grad_steps,
        "episode_return": jnp.mean(state.last_return),
        "episodes": episodes,
        "game": m,
        **learned,
        **{f"return_g{g}": state.last_return[g] for g in range(setup.n_games)},
        **prior_metrics(setup, state, h),
    }


# ---- the learner --------------------------------------------------------------------------------


def make_learner(setup: MRASetup) -> Learner:
    """The runner interface (:class:`metajax.core.interfaces.Learner`) of ``setup``.

    ``update(state, t=None, alpha=None, hypers=None)``: ``alpha`` (optional, may be traced)
    overrides the Reptile step size of ``hypers``; ``hypers`` (optional, may be traced)
    replaces the config's (:class:`MRAHypers`; the learning rates are those in the state).
    ``policy`` samples each agent's ``z`` from the prior at the first step of an episode (the
    carry holds it), so the runner's evaluator and :func:`metajax.pipelines.experiment.play`
    work unchanged."""
    default, nw = setup.hypers, setup.nets

    def init(key: Array, hypers: MRAHypers | None = None) -> MRAState:
        if hypers is not None and not setup.traced:
            raise ValueError("init(hypers=...) needs a learner built with traced=True")
        return init_state(setup, key, hypers)

    def update_fn(state: MRAState, t: Array | None = None, alpha: Any = None,
                  hypers: MRAHypers | None = None) -> tuple[MRAState, dict]:
        h = default if hypers is None else hypers
        return update(setup, state, t, h if alpha is None else h.replace(alpha=alpha))

    def policy(pp: PolicyParams, obs: Observation, carry: Array, key: Array,
               greedy: Any = False, hypers: MRAHypers | None = None):
        action, carry, _, _ = act(nw, pp, obs, carry, key, greedy,
                                  default if hypers is None else hypers)
        return action, carry

    return Learner(
        init=init,
        update=update_fn,
        policy=policy,
        policy_params=policy_params,
        initial_carry=lambda: jnp.zeros((nw.n_agents, 1 + nw.latent_dim)),
        env_steps_per_update=setup.steps_per_game * (1 if setup.sequential else setup.n_games),
        tasks=setup.games,
        hypers=default,
    )


def make_mra(
    config: MADDPGConfig,
    options: MRAOptions,
    env: MultiAgentEnv,
    games: Any,
    init_params: Callable[[Array], dict] | None = None,
    traced: bool = False,
) -> Learner:
    """The MRA learner for ``env`` trained on the ``[G]`` stack of ``games``.

    ``config``: shared off-policy hyperparameters (``num_envs`` parallel games per training
    game, ``updates_per_rollout = K``, ...); ``options``: :class:`MRAOptions`.
    ``init_params(key)`` (optional, traceable): ``{field: value}`` of :class:`MRAParams` to start
    from (adaptation), given the seed's init key; the other fields are fresh.

    ``traced=True``: the learning rates live in the Adam states
    (:func:`metajax.core.ops.make_optimizer`), and ``init``/``update``/``policy`` take an
    :class:`MRAHypers` of traced values (``hypers=``, one per member of a sweep). Without
    ``hypers=`` every function uses the config's (``Learner.hypers``). The pieces are module
    functions of :func:`build_mra`'s :class:`MRASetup` (:func:`make_learner`).
    """
    return make_learner(build_mra(config, options, env, games, init_params, traced))


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
    nw = make_networks(config, options, env)

    def graph_fn(params: PolicyParams, obs: Observation, carry: Array) -> Array:
        return actor_game(nw, params.actor, obs, carry[:, 1:])[1]

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

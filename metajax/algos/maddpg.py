"""MADDPG (Lowe et al. 2017): centralized critics, decentralized actors, off-policy replay.

* Discrete actions: the actor outputs logits; the behaviour action is the relaxed
  Gumbel-softmax sample ``softmax((logits + g) / T)``. Particle worlds built with
  ``action_type="relaxed"`` execute it as in the original MADDPG; envs with integer actions
  execute its argmax and the critic sees the one-hot, with a straight-through relaxed sample in
  the actor loss.
* Continuous actions: deterministic ``tanh`` actor plus Gaussian exploration noise.
* Target networks with soft updates, gradient-norm clipping, uniform replay (flashbax).
* Parameters per team (role-symmetric games: homogeneous agents share parameters) or per
  agent (original MADDPG); see :mod:`metajax.core.networks`.

``make_maddpg(config, env, tasks)`` returns a :class:`Learner` of pure functions:
``init(key) -> MADDPGState`` and ``update(state) -> (state, metrics)``; one ``update`` rolls
out ``rollout_steps`` steps of ``num_envs`` parallel games, stores them, and takes
``updates_per_rollout`` gradient steps once ``learning_starts`` env steps were collected.

The code, in the order of the paper's Algorithm 1: :class:`Networks` and their forward passes
(:func:`actor_outputs`, :func:`explore` = the behaviour policy, :func:`critic_values`);
:func:`collect` (the env rollout, :func:`metajax.core.rollout.rollout`, into the replay); the
losses over a batch (:func:`critic_targets`, :func:`critic_objective`, :func:`actor_objective`);
:func:`learn_on_batch` (one gradient step of every agent's critic and actor, then the targets);
:func:`update`. :func:`make_maddpg` binds them to a config, an env and tasks (:class:`Parts`).

Presets: :data:`ORIGINAL` (Lowe et al. defaults) and :data:`MAAC_MRA` (MRA App. E.1 / MAAC:
lr 3e-4, batch 1024, K = 10 updates, attention critic, relational actor, team sharing).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from envs.core import MultiAgentEnv, Observation
from envs.wrappers import AutoReset
from metajax.config import ConfigError
from metajax.core import networks as nets
from metajax.core.interfaces import ActionSpace, Learner, RolloutHooks, Traceable
from metajax.core.ops import (
    gumbel_softmax_unrolled,
    make_optimizer,
    masked_mean,
    soft_update,
    straight_through,
    take,
    td_target,
    tile,
)
from metajax.core.replay import Replay, Transition, make_replay
from metajax.core.rollout import Acted, Behaviour, RolloutState, rollout

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MADDPGConfig:
    """MADDPG hyperparameters (defaults: the original MADDPG on discrete MPE)."""

    # networks
    actor: str = "mlp"  # mlp | relational | gru
    critic: str = "mlp"  # mlp | attention
    hidden: tuple[int, ...] = (64, 64)
    num_heads: int = 4
    head_dim: int = 32
    embed_dim: int = 64
    critic_hidden: int = 128
    gru_hidden: int = 64
    param_sharing: str = "agent"  # agent (one set per agent) | team (shared within a team)
    # optimisation
    actor_lr: float = 1e-2
    critic_lr: float = 1e-2
    weight_decay: float = 0.0
    gamma: float = 0.95
    tau: float = 0.01
    grad_clip: float = 0.5
    logit_reg: float = 1e-3
    attention_reg: float = 1e-3
    reward_scale: float = 1.0
    # data
    batch_size: int = 1024
    buffer_size: int = 1_000_000
    num_envs: int = 1
    rollout_steps: int = 100
    updates_per_rollout: int = 1
    learning_starts: int = 1024 * 25
    # exploration
    gumbel_temperature: float = 1.0
    exploration_noise: float = 0.1

    def __post_init__(self) -> None:
        choices = {
            "actor": ("mlp", "relational", "gru"),
            "critic": ("mlp", "attention"),
            "param_sharing": ("agent", "team"),
        }
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got {getattr(self, field)!r}")
        for field in ("batch_size", "buffer_size", "num_envs", "rollout_steps",
                      "updates_per_rollout"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {self.learning_starts}")

    def validate(self, prefix: str = "") -> None:
        """Checks between fields (not in ``__post_init__``, so that dotted overrides may set
        related fields one at a time): ``batch_size <= buffer_size``. ``prefix`` (e.g.
        ``"maddpg."``) names the fields in the message.

        Raises:
          ConfigError: one line naming the fields and their values.
        """
        if self.batch_size > self.buffer_size:
            raise ConfigError(
                f"{prefix}batch_size={self.batch_size} exceeds {prefix}buffer_size="
                f"{self.buffer_size}: a batch cannot be larger than the replay buffer")


#: The original MADDPG (Lowe et al. 2017) on discrete MPE.
ORIGINAL = MADDPGConfig()


#: MRA App. E.1 / MAAC defaults: 12 parallel rollouts, ~100 steps between updates, K = 10.
MAAC_MRA = MADDPGConfig(
    actor="relational",
    critic="attention",
    param_sharing="team",
    actor_lr=3e-4,
    critic_lr=3e-4,
    weight_decay=3e-4,
    gamma=0.95,
    tau=1e-3,
    batch_size=1024,
    num_envs=12,
    rollout_steps=8,
    updates_per_rollout=10,
    learning_starts=1024 * 12,
)


@struct.dataclass
class Hypers:
    """The hyperparameters MADDPG reads as numbers, never as program structure (fields named as
    in :class:`MADDPGConfig`). Each is a Python float (the config's: folded into the program,
    as a plain run does) or a traced ``[]`` float32 array (a sweep vmaps a ``[M]`` stack of
    them: one compiled program for every value, :mod:`metajax.pipelines.sweep`).

    The learning rates are read once, by ``init`` of a learner built with ``traced=True``, which
    stores them in the Adam states (``optax.inject_hyperparams``); the other fields by
    ``update`` (and ``exploration_noise`` / ``gumbel_temperature`` by ``policy``).
    """

    actor_lr: Any
    critic_lr: Any
    gamma: Any
    tau: Any
    exploration_noise: Any
    gumbel_temperature: Any
    logit_reg: Any
    attention_reg: Any
    reward_scale: Any

    @classmethod
    def of(cls, cfg: MADDPGConfig) -> Hypers:
        """The values of ``cfg`` (Python floats)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


def critic_loss(q: Array, target: Array, mask: Array) -> Array:
    """MSE ``mean_mask (Q - y)^2`` over ``[B, A]`` with the ``[B, A]`` agent mask."""
    return masked_mean((q - target) ** 2, mask)


def actor_loss(q_new: Array, pre_activation: Array, mask: Array, reg: float) -> Array:
    """``-mean_mask Q_i(o, a_i <- pi_i(o_i), a_-i) + reg * mean_mask(out^2)``.

    ``q_new`` ``[B, A]``; ``pre_activation`` ``[B, A, d]`` actor outputs (logits or pre-tanh).
    """
    reg_term = masked_mean(jnp.mean(pre_activation**2, -1), mask)
    return -masked_mean(q_new, mask) + reg * reg_term


@struct.dataclass
class Params:
    """Actor/critic parameters and their targets, each stacked per team ``[T, ...]``."""

    actor: Any
    critic: Any
    target_actor: Any
    target_critic: Any


@struct.dataclass
class MADDPGState:
    """Everything MADDPG carries between updates (per seed).

    * ``params``/``actor_opt``/``critic_opt``: networks and Adam states;
    * ``buffer``: replay state; ``env_state``: ``[num_envs]`` env states;
    * ``obs``: ``[num_envs]`` current observations; ``carry``: ``[num_envs, A, h]`` actor
      recurrent state; ``ep_return``: ``[num_envs, A]`` running episode returns;
    * ``last_return``: ``[]`` mean return of the latest completed episodes;
    * ``key``; ``env_steps``: ``[]`` env steps (summed over parallel games);
      ``grad_steps``: ``[]`` gradient steps;
    * ``aux``: the state of the :class:`RolloutHooks` (``None`` without hooks).
    """

    params: Params
    actor_opt: Any
    critic_opt: Any
    buffer: Any
    env_state: Any
    obs: Observation
    carry: Array
    ep_return: Array
    last_return: Array
    key: Array
    env_steps: Array
    grad_steps: Array
    aux: Any = None


# ---- networks ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Networks:
    """MADDPG's modules and how they are applied (static, not a pytree).

    * ``actor``: one agent's actor (:class:`~metajax.core.networks.Actor`, or ``GRUActor`` when
      ``recurrent``; ``carry_dim`` its state size ``h``, 0 without one);
    * ``critic``: the centralized critic (``MLPCritic`` when ``critic_kind == "mlp"``, else
      ``AttentionCritic``);
    * ``space``: the action space; ``n_agents`` ``A``; ``n_teams`` parameter sets ``T``;
      ``sharing``: ``agent`` (one set per agent, ``T = A``) or ``team``.
    """

    actor: nn.Module
    critic: nn.Module
    space: ActionSpace
    n_agents: int
    n_teams: int
    sharing: str
    critic_kind: str
    recurrent: bool
    carry_dim: int


def make_networks(cfg: MADDPGConfig, env: MultiAgentEnv) -> Networks:
    """The networks ``cfg`` names for ``env``."""
    space = ActionSpace.of(env)
    recurrent = cfg.actor == "gru"
    if recurrent:
        actor = nets.GRUActor(space.dim, cfg.gru_hidden)
    else:
        actor = nets.Actor(space.dim, cfg.hidden, cfg.actor, cfg.num_heads, cfg.head_dim,
                           cfg.embed_dim)
    if cfg.critic == "mlp":
        # a critic per agent knows whose value it is: no need to put its own input first
        critic = nets.MLPCritic(cfg.hidden, own_first=cfg.param_sharing == "team")
    else:
        critic = nets.AttentionCritic(cfg.critic_hidden, cfg.num_heads, cfg.head_dim)
    n_teams = env.max_agents if cfg.param_sharing == "agent" else max(env.num_teams, 1)
    return Networks(actor, critic, space, env.max_agents, n_teams, cfg.param_sharing,
                    cfg.critic, recurrent, cfg.gru_hidden if recurrent else 0)


def actor_outputs(nw: Networks, params: Any, obs: Observation,
                  carry: Array) -> tuple[Array, Array]:
    """Every agent's pre-activation output ``[A, d]`` (logits or pre-tanh actions) and new
    carry ``[A, h]`` for one game, each agent with its team's parameters ``[T, ...]``."""

    def one(p: Any, o: Observation, c: Array) -> tuple[Array, Array]:
        if nw.recurrent:
            new_c, out = nw.actor.apply(p, c, o)
            return out, new_c
        return nw.actor.apply(p, o)[0], c

    if nw.sharing == "agent":
        return nets.apply_per_agent(one, params, jnp.arange(nw.n_agents), obs, carry)
    return nets.per_team(lambda p: jax.vmap(one, (None, 0, 0))(p, obs, carry), params, obs.team)


def explore(nw: Networks, out: Array, key: Array, greedy: bool | Array,
            h: Hypers) -> tuple[Array, Array]:
    """The behaviour policy: (env action ``[A, ...]``, critic action ``[A, d]``) from actor
    outputs ``[A, d]``. Discrete: a Gumbel-softmax sample (executed as it is for relaxed
    actions, as its argmax for integer ones); continuous: ``tanh`` plus Gaussian noise.
    ``greedy`` (may be traced) drops the noise: the argmax / the plain ``tanh``."""
    space = nw.space
    if space.kind == "continuous":
        noise = h.exploration_noise * jax.random.normal(key, out.shape)
        a = jnp.clip(jnp.tanh(out) + jnp.where(greedy, 0.0, noise), -1.0, 1.0)
        return a.reshape((nw.n_agents, *space.env_shape)), a
    y = jnp.where(
        greedy,
        jax.nn.one_hot(jnp.argmax(out, -1), space.dim),
        gumbel_softmax_unrolled(key, out, h.gumbel_temperature),
    )
    if space.kind == "discrete":
        idx = jnp.argmax(y, -1).astype(jnp.int32)
        return idx, jax.nn.one_hot(idx, space.dim)
    return y, y


def target_action(nw: Networks, out: Array, key: Array, h: Hypers) -> Array:
    """Critic action ``[..., d]`` of the target actors at ``o'``: relaxed samples, as the
    behaviour policy; no exploration noise for continuous actions."""
    if nw.space.kind == "continuous":
        return jnp.tanh(out)
    return explore(nw, out, key, False, h)[1]


def train_action(nw: Networks, out: Array, key: Array, h: Hypers) -> Array:
    """Differentiable critic action ``[..., d]`` from actor outputs (the actor loss): ``tanh``;
    the relaxed sample; straight-through one-hot of it for integer actions."""
    if nw.space.kind == "continuous":
        return jnp.tanh(out)
    y = gumbel_softmax_unrolled(key, out, h.gumbel_temperature)
    return straight_through(y) if nw.space.kind == "discrete" else y


def critic_values(nw: Networks, params: Any, obs: Observation, actions: Array,
                  own_actions: Array | None = None) -> tuple[Array, Array]:
    """``Q_i`` of every agent ``i`` of one game, each with its own critic (parameters
    ``[T, ...]``): agent ``i``'s critic sees the joint action ``actions [A, d]`` with its own
    action replaced by ``own_actions[i]`` (``None``: the joint action itself, the TD loss).
    Returns ``[A]`` values and ``[A]`` regularisers (mean squared attention logit; 0 for the
    MLP critic).

    The attention critic encodes every agent once per call (``T * A`` encodings with ``T``
    shared teams); with per-agent parameters it is
    :func:`~metajax.core.networks.attention_critic_per_agent`."""
    n = nw.n_agents
    if nw.critic_kind == "mlp":
        idx = jnp.arange(n)
        joint = jnp.broadcast_to(actions, (n, *actions.shape))  # [A (critic), A, d]
        if own_actions is not None:
            own = jnp.eye(n, dtype=bool)[:, :, None]
            joint = jnp.where(own, own_actions[None], joint)

        def one(p, i, a):
            return nw.critic.apply(p, obs, a, i)

        if nw.sharing == "agent":
            q = jax.vmap(one)(nets.team_slice(params, idx), idx, joint)
        else:
            q = nets.per_team(lambda p: jax.vmap(one, (None, 0, 0))(p, idx, joint),
                              params, obs.team)
        return q, jnp.zeros_like(q)
    if nw.sharing == "agent":
        q, logits = nets.attention_critic_per_agent(nw.critic, params, obs, actions, own_actions)
    else:
        q, logits = nets.per_team(
            lambda p: nw.critic.apply(p, obs, actions, own_actions), params, obs.team)
    return q, jnp.mean(logits**2, axis=(-2, -1))


# ---- losses over a batch ---------------------------------------------------------------------


def critic_targets(nw: Networks, params: Params, batch: Transition, key: Array,
                   h: Hypers) -> Array:
    """TD targets ``y = r + gamma * discount * Q'(o', a')`` ``[B, A]``, ``a'`` from the target
    actors at ``o'`` (one key per sample, from ``key``)."""
    keys = jax.random.split(key, batch.reward.shape[0])

    def next_action(obs, carry, k):
        out, _ = actor_outputs(nw, params.target_actor, obs, carry)
        return target_action(nw, out, k, h)

    a_next = jax.vmap(next_action)(batch.next_obs, batch.next_carry, keys)
    q_next, _ = jax.vmap(lambda o, a: critic_values(nw, params.target_critic, o, a))(
        batch.next_obs, a_next)
    return td_target(batch.reward, batch.discount, q_next, h.gamma)


def critic_objective(nw: Networks, critic_params: Any, batch: Transition, y: Array,
                     h: Hypers) -> tuple[Array, tuple[Array, Array]]:
    """The critics' objective, :func:`critic_loss` plus ``attention_reg`` times the attention
    regulariser; returns ``(objective, (critic_loss, Q [B, A]))``."""
    mask = batch.obs.agent_mask
    q, att = jax.vmap(lambda o, a: critic_values(nw, critic_params, o, a))(
        batch.obs, batch.action)
    loss = critic_loss(q, y, mask)
    return loss + h.attention_reg * masked_mean(att, mask), (loss, q)


def actor_objective(nw: Networks, actor_params: Any, critic_params: Any, batch: Transition,
                    key: Array, h: Hypers) -> Array:
    """:func:`actor_loss`: each agent's critic sees its own new action ``pi_i(o_i)`` (the
    differentiable :func:`train_action`, one key per sample) and the others' replayed ones."""

    def per_sample(obs, action, carry, k):
        out, _ = actor_outputs(nw, actor_params, obs, carry)  # [A, d]
        new = train_action(nw, out, k, h)
        return critic_values(nw, critic_params, obs, action, new)[0], out

    keys = jax.random.split(key, batch.reward.shape[0])
    q_new, out = jax.vmap(per_sample)(batch.obs, batch.action, batch.carry, keys)
    return actor_loss(q_new, out, batch.obs.agent_mask, h.logit_reg)


# ---- gradient step and update ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Parts:
    """What a MADDPG learner is built of (static): its config, networks, the optimizers its
    ``update`` uses, the replay, the auto-reset env, the rollout hooks, the ``[N]`` tasks."""

    config: MADDPGConfig
    nets: Networks
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    replay: Replay
    env: AutoReset
    hooks: RolloutHooks | None
    tasks: Any


def learn_on_batch(parts: Parts, state: MADDPGState, batch: Transition, key: Array,
                   h: Hypers) -> tuple[MADDPGState, tuple[Array, Array, Array]]:
    """One MADDPG gradient step on ``batch`` (the inner loop of Lowe et al.'s Algorithm 1, for
    every agent at once): the critics descend the TD loss, then the actors ascend the updated
    critics' Q, then the targets move by ``tau``. Returns ``(state, (critic_loss, actor_loss,
    mean Q))``."""
    nw, p = parts.nets, state.params
    k_next, k_new = jax.random.split(key)
    y = critic_targets(nw, p, batch, k_next, h)
    grad_c = jax.grad(lambda cp: critic_objective(nw, cp, batch, y, h), has_aux=True)
    c_grads, (cl, q) = grad_c(p.critic)
    c_upd, c_opt = parts.critic_opt.update(c_grads, state.critic_opt, p.critic)
    critic_p = optax.apply_updates(p.critic, c_upd)
    al, a_grads = jax.value_and_grad(
        lambda ap: actor_objective(nw, ap, critic_p, batch, k_new, h))(p.actor)
    a_upd, a_opt = parts.actor_opt.update(a_grads, state.actor_opt, p.actor)
    actor_p = optax.apply_updates(p.actor, a_upd)
    params = Params(
        actor=actor_p,
        critic=critic_p,
        target_actor=soft_update(p.target_actor, actor_p, h.tau),
        target_critic=soft_update(p.target_critic, critic_p, h.tau),
    )
    state = state.replace(params=params, actor_opt=a_opt, critic_opt=c_opt,
                          grad_steps=state.grad_steps + 1)
    return state, (cl, al, masked_mean(q, batch.obs.agent_mask))


def grad_step(parts: Parts, state: MADDPGState, key: Array,
              h: Hypers) -> tuple[MADDPGState, tuple[Array, Array, Array]]:
    """Sample a batch from the replay and take :func:`learn_on_batch` on it."""
    k_sample, k_learn = jax.random.split(key)
    batch = parts.replay.sample(state.buffer, k_sample)
    return learn_on_batch(parts, state, batch, k_learn, h)


def behaviour_policy(parts: Parts, actor_params: Any, h: Hypers) -> Behaviour:
    """MADDPG's behaviour for :func:`metajax.core.rollout.rollout`: :func:`explore` on every
    game (a key per game), then the ``act`` hook (if any) may replace the action."""
    nw, hooks, n_envs = parts.nets, parts.hooks, parts.config.num_envs

    def behaviour(obs: Observation, carry: Array, aux: Any, key: Array,
                  env_steps: Array) -> tuple[Acted, Any]:
        k, k_hook = jax.random.split(key)
        out, new_carry = jax.vmap(lambda o, c: actor_outputs(nw, actor_params, o, c))(obs, carry)
        env_a, critic_a = jax.vmap(lambda o, k: explore(nw, o, k, False, h))(
            out, jax.random.split(k, n_envs))
        if hooks is not None and hooks.act is not None:
            env_a, critic_a, aux = hooks.act(aux, obs, k_hook, env_steps, env_a, critic_a)
        return Acted(env_a, critic_a, new_carry, jnp.zeros((n_envs, nw.n_agents, 0))), aux

    return behaviour


def collect(parts: Parts, state: MADDPGState, key: Array,
            h: Hypers) -> tuple[MADDPGState, Array]:
    """Roll out ``rollout_steps`` steps of the ``num_envs`` games with the behaviour policy and
    add them to the replay; returns ``(state, episodes that ended [])``."""
    cfg = parts.config
    relabel = None if parts.hooks is None else parts.hooks.reward
    games = RolloutState(state.env_state, state.obs, state.carry, state.ep_return, state.aux)
    games, items, stats = rollout(
        jax.vmap(parts.env.step), behaviour_policy(parts, state.params.actor, h), games, key,
        cfg.rollout_steps, env_steps=state.env_steps, reward_scale=h.reward_scale,
        relabel=relabel)
    state = state.replace(
        env_state=games.env_state, obs=games.obs, carry=games.carry, ep_return=games.ep_return,
        last_return=stats.mean_return(state.last_return),
        buffer=parts.replay.add(state.buffer, items), aux=games.aux,
        env_steps=state.env_steps + cfg.rollout_steps * cfg.num_envs,
    )
    return state, stats.episodes


def update(parts: Parts, state: MADDPGState, t: Array | None,
           h: Hypers) -> tuple[MADDPGState, dict]:
    """One rollout and, once enough data is stored, ``updates_per_rollout`` gradient steps
    (``lax.scan``). ``t`` (optional, unbatched): the index of this update in the run; passing
    it keeps the readiness test out of the seed ``vmap``, so ``lax.cond`` stays a branch and
    the warm-up updates skip the gradient steps instead of computing and discarding them."""
    cfg = parts.config
    key, k_roll, k_train = jax.random.split(state.key, 3)
    state, episodes = collect(parts, state.replace(key=key), k_roll, h)
    if t is None:
        ready = parts.replay.can_sample(state.buffer) & (state.env_steps >= cfg.learning_starts)
    else:
        first_ready = max(cfg.learning_starts, cfg.batch_size)
        ready = (jnp.asarray(t) + 1) * cfg.rollout_steps * cfg.num_envs >= first_ready

    def train(s: MADDPGState, k: Array):
        s, (cl, al, qm) = jax.lax.scan(lambda s, k: grad_step(parts, s, k, h), s,
                                       jax.random.split(k, cfg.updates_per_rollout))
        return s, (cl[-1], al[-1], qm[-1])

    def skip(s: MADDPGState, k: Array):
        return s, (jnp.zeros(()),) * 3

    # h is closed over, not an operand: the config's floats stay constants of the program
    state, (cl, al, qm) = jax.lax.cond(ready, train, skip, state, k_train)
    metrics = {
        "env_steps": state.env_steps,
        "grad_steps": state.grad_steps,
        "episode_return": state.last_return,
        "episodes": episodes,
        "critic_loss": cl,
        "actor_loss": al,
        "q_mean": qm,
    }
    if parts.hooks is not None and parts.hooks.metrics is not None:
        metrics.update(parts.hooks.metrics(state.aux))
    return state, metrics


# ---- initial state ----------------------------------------------------------------------------


def example_transition(parts: Parts) -> Transition:
    """A zero :class:`Transition` of ``parts``' env and networks (the replay's item)."""
    nw = parts.nets
    obs = jax.eval_shape(lambda k: parts.env.reset_to(k, take(parts.tasks, 0))[1].observation,
                         jax.random.PRNGKey(0))
    obs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), obs)
    per_agent = jnp.zeros((nw.n_agents,))
    carry = jnp.zeros((nw.n_agents, nw.carry_dim))
    return Transition(obs=obs, action=jnp.zeros((nw.n_agents, nw.space.dim), jnp.float32),
                      reward=per_agent, discount=per_agent, next_obs=obs, carry=carry,
                      next_carry=carry, latent=jnp.zeros((nw.n_agents, 0)))


def init_params(parts: Parts, k_actor: Array, k_critic: Array) -> tuple[Any, Any]:
    """Fresh ``(actor, critic)`` parameters, each ``[T, ...]`` (one set per team)."""
    nw, ex = parts.nets, example_transition(parts)
    obs0 = nets.agent_view(ex.obs, 0)
    carry0 = jnp.zeros((nw.carry_dim,), jnp.float32)

    def init_actor(k: Array) -> Any:
        return nw.actor.init(k, carry0, obs0) if nw.recurrent else nw.actor.init(k, obs0)

    def init_critic(k: Array) -> Any:
        if nw.critic_kind == "mlp":
            return nw.critic.init(k, ex.obs, ex.action, jnp.asarray(0))
        return nw.critic.init(k, ex.obs, ex.action)

    return (nets.init_team_params(init_actor, k_actor, nw.n_teams),
            nets.init_team_params(init_critic, k_critic, nw.n_teams))


def init_state(parts: Parts, key: Array, games: Any, h: Hypers, traced: bool) -> MADDPGState:
    """The state before the first update, on the ``[N]`` tasks ``games``; ``traced``: the
    Adam states hold ``h``'s learning rates (:func:`make_optimizer`)."""
    cfg, nw, n_envs = parts.config, parts.nets, parts.config.num_envs
    a_opt = make_optimizer(h.actor_lr, cfg, True) if traced else parts.actor_opt
    c_opt = make_optimizer(h.critic_lr, cfg, True) if traced else parts.critic_opt
    k_actor, k_critic, k_env, k_next, k_aux = jax.random.split(key, 5)
    actor_p, critic_p = init_params(parts, k_actor, k_critic)
    env_state, ts = jax.vmap(parts.env.reset_to)(jax.random.split(k_env, n_envs), games)
    return MADDPGState(
        params=Params(actor_p, critic_p, actor_p, critic_p),
        actor_opt=a_opt.init(actor_p),
        critic_opt=c_opt.init(critic_p),
        buffer=parts.replay.init(example_transition(parts)),
        env_state=env_state,
        obs=ts.observation,
        carry=jnp.zeros((n_envs, nw.n_agents, nw.carry_dim)),
        ep_return=jnp.zeros((n_envs, nw.n_agents)),
        last_return=jnp.zeros(()),
        key=k_next,
        env_steps=jnp.zeros((), jnp.int32),
        grad_steps=jnp.zeros((), jnp.int32),
        aux=None if parts.hooks is None else parts.hooks.init(k_aux, games),
    )


# ---- the learner ----------------------------------------------------------------------------


def make_parts(config: MADDPGConfig, env: MultiAgentEnv, tasks: Any,
               hooks: RolloutHooks | None = None, traced: bool = False) -> Parts:
    """The :class:`Parts` of :func:`make_maddpg` (same arguments)."""
    return Parts(
        config=config, nets=make_networks(config, env),
        actor_opt=make_optimizer(config.actor_lr, config, traced),
        critic_opt=make_optimizer(config.critic_lr, config, traced),
        replay=make_replay(config.buffer_size, config.batch_size), env=AutoReset(env),
        hooks=hooks, tasks=_tile_tasks(tasks, config.num_envs),
    )


def make_maddpg(
    config: MADDPGConfig, env: MultiAgentEnv, tasks: Any, hooks: RolloutHooks | None = None,
    traced: bool = False,
) -> Learner:
    """Build MADDPG for ``env`` trained on ``tasks`` (a task, or a ``[num_envs]`` stack).

    A single task is tiled over the ``num_envs`` parallel games. ``hooks`` (optional) plug
    into the rollout; see :class:`RolloutHooks`.

    ``traced=True``: the learning rates live in the Adam states (:func:`make_optimizer`), and
    ``init``/``update``/``policy`` take a :class:`Hypers` of traced values (``hypers=``, one
    per member of a sweep); the same numbers as a learner built from a config holding them.
    Without ``hypers=`` every function uses the config's (``Learner.hypers``).
    """
    cfg, default = config, Hypers.of(config)
    parts = make_parts(cfg, env, tasks, hooks, traced)
    nw = parts.nets

    def init(key: Array, games: Any = None, hypers: Hypers | None = None) -> MADDPGState:
        """Initial state; ``games`` (optional) a ``[num_envs]`` stack of tasks replacing the
        ones the learner was built with (same structure; may be traced). ``hypers`` (learners
        built with ``traced=True``): their learning rates go into the Adam states."""
        if hypers is not None and not traced:
            raise ValueError("init(hypers=...) needs a learner built with traced=True")
        return init_state(parts, key, parts.tasks if games is None else games,
                          default if hypers is None else hypers, traced)

    def act(params: Any, obs: Observation, carry: Array, key: Array, greedy: bool = False,
            hypers: Hypers | None = None):
        out, carry = actor_outputs(nw, params, obs, carry)
        env_action, critic_action = explore(nw, out, key, greedy,
                                            default if hypers is None else hypers)
        return env_action, critic_action, carry

    def policy(params: Any, obs: Observation, carry: Array, key: Array, greedy: bool = False,
               hypers: Hypers | None = None):
        env_action, _, carry = act(params, obs, carry, key, greedy, hypers)
        return env_action, carry

    return Learner(
        init=init,
        update=lambda state, t=None, hypers=None: update(
            parts, state, t, default if hypers is None else hypers),
        policy=policy,
        policy_params=lambda s: s.params.actor,
        initial_carry=lambda: jnp.zeros((nw.n_agents, nw.carry_dim)),
        env_steps_per_update=cfg.rollout_steps * cfg.num_envs,
        tasks=parts.tasks,
        act=act,
        outputs=lambda params, obs, carry: actor_outputs(nw, params, obs, carry),
        hypers=default,
    )


def _tile_tasks(tasks: Any, n: int) -> Any:
    """A ``[n]`` stack of tasks: a single task is tiled; a stack must have ``n`` entries."""
    leaves = jax.tree.leaves(tasks)
    lead = leaves[0].shape[0] if leaves and leaves[0].ndim > 0 else None
    single = _is_single_task(tasks)
    if single:
        return tile(tasks, n)
    if lead != n:
        raise ValueError(f"got a stack of {lead} tasks for num_envs={n}")
    return tasks


def _is_single_task(tasks: Any) -> bool:
    """Whether ``tasks`` is one task (its scalar fields are 0-d)."""
    leaves = jax.tree.leaves(tasks)
    return any(jnp.ndim(x) == 0 for x in leaves) or not leaves


def make_from_config(cfg: Any, env: MultiAgentEnv, tasks: Any, traced: bool = False) -> Learner:
    """The ``"maddpg"`` factory of :data:`metajax.pipelines.registry.ALGOS`: :func:`make_maddpg`
    of a run config's ``maddpg`` section."""
    return make_maddpg(cfg.maddpg, env, tasks, traced=traced)


#: MADDPG's entry of :data:`metajax.pipelines.registry.TRACEABLE`: every :class:`Hypers` field.
TRACEABLE = Traceable(tuple(f"maddpg.{f.name}" for f in dataclasses.fields(Hypers)),
                      lambda cfg: Hypers.of(cfg.maddpg))

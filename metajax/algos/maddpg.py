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

Presets: :data:`ORIGINAL` (Lowe et al. defaults) and :data:`MAAC_MRA` (MRA App. E.1 / MAAC:
lr 3e-4, batch 1024, K = 10 updates, attention critic, relational actor, team sharing).
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
    gumbel_softmax,
    make_optimizer,
    masked_mean,
    soft_update,
    straight_through,
    td_target,
)
from metajax.core.replay import Transition, make_replay

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


def _num_teams(env: MultiAgentEnv, cfg: MADDPGConfig) -> int:
    return env.max_agents if cfg.param_sharing == "agent" else max(env.num_teams, 1)


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
    cfg = config
    default = Hypers.of(cfg)
    auto = AutoReset(env)
    space = ActionSpace.of(env)
    n_agents = env.max_agents
    n_envs = cfg.num_envs
    tasks = _tile_tasks(tasks, n_envs)
    recurrent = cfg.actor == "gru"
    carry_dim = cfg.gru_hidden if recurrent else 0
    n_teams = _num_teams(env, cfg)

    if recurrent:
        actor_mod = nets.GRUActor(space.dim, cfg.gru_hidden)
    else:
        actor_mod = nets.Actor(
            space.dim, cfg.hidden, cfg.actor, cfg.num_heads, cfg.head_dim, cfg.embed_dim
        )
    if cfg.critic == "mlp":
        # a critic per agent knows whose value it is: no need to put its own input first
        critic_mod = nets.MLPCritic(cfg.hidden, own_first=cfg.param_sharing == "team")
    else:
        critic_mod = nets.AttentionCritic(cfg.critic_hidden, cfg.num_heads, cfg.head_dim)

    # ---- forward passes ----------------------------------------------------------------------
    def actor_out(params_i: Any, obs_i: Observation, carry_i: Array) -> tuple[Array, Array]:
        """Per-agent pre-activation output ``[dim]`` and new carry ``[h]``."""
        if recurrent:
            new_carry, out = actor_mod.apply(params_i, carry_i, obs_i)
            return out, new_carry
        out, _ = actor_mod.apply(params_i, obs_i)
        return out, carry_i

    def actor_all(params: Any, obs: Observation, carry: Array) -> tuple[Array, Array]:
        """``[A, dim]`` outputs and ``[A, h]`` carries for one game."""
        if cfg.param_sharing == "agent":
            return nets.apply_per_agent(actor_out, params, jnp.arange(n_agents), obs, carry)
        return nets.per_team(lambda p: jax.vmap(actor_out, (None, 0, 0))(p, obs, carry),
                             params, obs.team)

    def behaviour(out: Array, key: Array, greedy: bool | Array,
                  h: Hypers = default) -> tuple[Array, Array]:
        """(env action ``[A, ...]``, critic action ``[A, dim]``) from outputs ``[A, dim]``.

        ``greedy`` may be traced (one compiled evaluator serves both modes)."""
        if space.kind == "continuous":
            noise = h.exploration_noise * jax.random.normal(key, out.shape)
            a = jnp.clip(jnp.tanh(out) + jnp.where(greedy, 0.0, noise), -1.0, 1.0)
            return a.reshape((n_agents, *space.env_shape)), a
        y = jnp.where(
            greedy,
            jax.nn.one_hot(jnp.argmax(out, -1), space.dim),
            gumbel_softmax(key, out, h.gumbel_temperature),
        )
        if space.kind == "discrete":
            idx = jnp.argmax(y, -1).astype(jnp.int32)
            return idx, jax.nn.one_hot(idx, space.dim)
        return y, y

    def behaviour_target(out: Array, key: Array, h: Hypers) -> Array:
        """Critic action ``[A, dim]`` of the target actors at ``o'`` (relaxed samples, as the
        behaviour policy; no exploration noise for continuous actions)."""
        if space.kind == "continuous":
            return jnp.tanh(out)
        return behaviour(out, key, False, h)[1]

    def train_action(out: Array, key: Array, h: Hypers) -> Array:
        """Differentiable critic action ``[..., dim]`` from actor outputs (actor loss)."""
        if space.kind == "continuous":
            return jnp.tanh(out)
        y = gumbel_softmax(key, out, h.gumbel_temperature)
        return straight_through(y) if space.kind == "discrete" else y

    def critic_q(params: Any, obs: Observation, actions: Array,
                 own_actions: Array | None = None) -> tuple[Array, Array]:
        """``Q_i`` for every agent ``i`` of one sample, each with its own critic (parameters
        ``[T, ...]``): agent ``i``'s critic sees the joint action ``actions [A, dim]`` with its
        own action replaced by ``own_actions[i]`` (``own_actions [A, dim]``; ``None``: the
        joint action itself, as in the TD loss). Returns ``[A]`` values and ``[A]``
        regularisers (mean squared attention logit; 0 for the MLP critic).

        The attention critic encodes every agent once per call (``A`` encodings per sample;
        ``T * A`` with ``T`` teams of shared parameters); with per-agent parameters it is
        :func:`~metajax.core.networks.attention_critic_per_agent` (MAAC's per-agent encoders and
        shared attention). The MLP critic reads one joint action per agent."""
        idx = jnp.arange(n_agents)
        if cfg.critic == "mlp":
            joint = jnp.broadcast_to(actions, (n_agents, *actions.shape))  # [A (critic), A, dim]
            if own_actions is not None:
                own = jnp.eye(n_agents, dtype=bool)[:, :, None]
                joint = jnp.where(own, own_actions[None], joint)

            def one(p, i, a):
                return critic_mod.apply(p, obs, a, i)

            if cfg.param_sharing == "agent":
                q = jax.vmap(one)(nets.team_slice(params, idx), idx, joint)
            else:
                q = nets.per_team(lambda p: jax.vmap(one, (None, 0, 0))(p, idx, joint),
                                  params, obs.team)
            return q, jnp.zeros_like(q)
        if cfg.param_sharing == "agent":
            q, logits = nets.attention_critic_per_agent(
                critic_mod, params, obs, actions, own_actions)
        else:
            q, logits = nets.per_team(
                lambda p: critic_mod.apply(p, obs, actions, own_actions), params, obs.team)
        return q, jnp.mean(logits**2, axis=(-2, -1))

    def act(params: Any, obs: Observation, carry: Array, key: Array, greedy: bool = False,
            hypers: Hypers | None = None):
        out, carry = actor_all(params, obs, carry)
        env_action, critic_action = behaviour(out, key, greedy,
                                              default if hypers is None else hypers)
        return env_action, critic_action, carry

    def policy(params: Any, obs: Observation, carry: Array, key: Array, greedy: bool = False,
               hypers: Hypers | None = None):
        env_action, _, carry = act(params, obs, carry, key, greedy, hypers)
        return env_action, carry

    # ---- init -----------------------------------------------------------------------------
    example_obs = jax.eval_shape(lambda k: env.reset_to(k, _index(tasks, 0))[1].observation,
                                 jax.random.PRNGKey(0))
    example_obs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), example_obs)
    obs0 = nets.agent_view(example_obs, 0)
    carry0 = jnp.zeros((carry_dim,), jnp.float32)
    act0 = jnp.zeros((n_agents, space.dim), jnp.float32)

    def init_actor(k: Array) -> Any:
        if recurrent:
            return actor_mod.init(k, carry0, obs0)
        return actor_mod.init(k, obs0)

    def init_critic(k: Array) -> Any:
        if cfg.critic == "mlp":
            return critic_mod.init(k, example_obs, act0, jnp.asarray(0))
        return critic_mod.init(k, example_obs, act0)

    actor_opt = make_optimizer(cfg.actor_lr, cfg, traced)
    critic_opt = make_optimizer(cfg.critic_lr, cfg, traced)
    replay = make_replay(cfg.buffer_size, cfg.batch_size)
    example_item = Transition(
        obs=example_obs,
        action=act0,
        reward=jnp.zeros((n_agents,)),
        discount=jnp.zeros((n_agents,)),
        next_obs=example_obs,
        carry=jnp.zeros((n_agents, carry_dim)),
        next_carry=jnp.zeros((n_agents, carry_dim)),
        latent=jnp.zeros((n_agents, 0)),
    )

    def init(key: Array, games: Any = None, hypers: Hypers | None = None) -> MADDPGState:
        """Initial state; ``games`` (optional) a ``[num_envs]`` stack of tasks replacing the
        ones the learner was built with (same structure; may be traced). ``hypers`` (learners
        built with ``traced=True``): their learning rates go into the Adam states."""
        games = tasks if games is None else games
        if hypers is not None and not traced:
            raise ValueError("init(hypers=...) needs a learner built with traced=True")
        h = default if hypers is None else hypers
        a_opt = make_optimizer(h.actor_lr, cfg, True) if traced else actor_opt
        c_opt = make_optimizer(h.critic_lr, cfg, True) if traced else critic_opt
        k_a, k_c, k_env, k_next, k_aux = jax.random.split(key, 5)
        actor_p = nets.init_team_params(init_actor, k_a, n_teams)
        critic_p = nets.init_team_params(init_critic, k_c, n_teams)
        env_state, ts = jax.vmap(auto.reset_to)(jax.random.split(k_env, n_envs), games)
        return MADDPGState(
            params=Params(actor_p, critic_p, actor_p, critic_p),
            actor_opt=a_opt.init(actor_p),
            critic_opt=c_opt.init(critic_p),
            buffer=replay.init(example_item),
            env_state=env_state,
            obs=ts.observation,
            carry=jnp.zeros((n_envs, n_agents, carry_dim)),
            ep_return=jnp.zeros((n_envs, n_agents)),
            last_return=jnp.zeros(()),
            key=k_next,
            env_steps=jnp.zeros((), jnp.int32),
            grad_steps=jnp.zeros((), jnp.int32),
            aux=None if hooks is None else hooks.init(k_aux, games),
        )

    # ---- rollout ---------------------------------------------------------------------------
    def rollout(state: MADDPGState, key: Array, h: Hypers):
        def step(carry, inp):
            env_state, obs, rnn, ep_ret, done_sum, done_n, aux = carry
            k, t = inp
            k, k_hook = jax.random.split(k)
            k_act = jax.random.split(k, n_envs)
            out, new_rnn = jax.vmap(actor_all, (None, 0, 0))(state.params.actor, obs, rnn)
            env_a, critic_a = jax.vmap(lambda o, k: behaviour(o, k, False, h))(out, k_act)
            if hooks is not None and hooks.act is not None:
                env_a, critic_a, aux = hooks.act(
                    aux, obs, k_hook, state.env_steps + t * n_envs, env_a, critic_a)
            env_state, ts = jax.vmap(auto.step)(env_state, env_a)
            reward = ts.reward
            if hooks is not None and hooks.reward is not None:
                reward, aux = hooks.reward(aux, obs, critic_a, ts)
            item = Transition(
                obs=obs,
                action=critic_a,
                reward=reward * h.reward_scale,
                discount=ts.discount,
                next_obs=ts.extras["final_observation"],
                carry=rnn,
                next_carry=new_rnn,
                latent=jnp.zeros((n_envs, n_agents, 0)),
            )
            ep_ret = ep_ret + ts.reward
            mask = ts.observation.agent_mask
            per_game = jnp.sum(ep_ret * mask, -1) / jnp.maximum(jnp.sum(mask, -1), 1)
            done = ts.done
            done_sum = done_sum + jnp.sum(jnp.where(done, per_game, 0.0))
            done_n = done_n + jnp.sum(done)
            ep_ret = jnp.where(done[:, None], 0.0, ep_ret)
            new_rnn = jnp.where(done[:, None, None], 0.0, new_rnn)
            return (env_state, ts.observation, new_rnn, ep_ret, done_sum, done_n, aux), item

        init_c = (state.env_state, state.obs, state.carry, state.ep_return,
                  jnp.zeros(()), jnp.zeros((), jnp.int32), state.aux)
        steps = (jax.random.split(key, cfg.rollout_steps), jnp.arange(cfg.rollout_steps))
        (env_state, obs, rnn, ep_ret, done_sum, done_n, aux), items = jax.lax.scan(
            step, init_c, steps)
        n_items = cfg.rollout_steps * n_envs
        items = jax.tree.map(lambda x: x.reshape((n_items, *x.shape[2:])), items)
        last = jnp.where(done_n > 0, done_sum / jnp.maximum(done_n, 1), state.last_return)
        state = state.replace(
            env_state=env_state, obs=obs, carry=rnn, ep_return=ep_ret, last_return=last,
            buffer=replay.add(state.buffer, items), aux=aux,
            env_steps=state.env_steps + cfg.rollout_steps * n_envs,
        )
        return state, done_n

    # ---- learning --------------------------------------------------------------------------
    def losses_and_grads(params: Params, batch: Transition, key: Array, h: Hypers):
        k_next, k_new = jax.random.split(key)
        mask = batch.obs.agent_mask  # [B, A]
        # target actions a' ~ target actors at o' (relaxed samples, as in MADDPG)
        keys_next = jax.random.split(k_next, batch.reward.shape[0])

        def next_action(obs, rnn, k):
            out, _ = actor_all(params.target_actor, obs, rnn)
            return behaviour_target(out, k, h)

        a_next = jax.vmap(next_action)(batch.next_obs, batch.next_carry, keys_next)
        q_next, _ = jax.vmap(critic_q, (None, 0, 0))(params.target_critic, batch.next_obs, a_next)
        y = td_target(batch.reward, batch.discount, q_next, h.gamma)

        def c_loss(cp):
            q, att = jax.vmap(critic_q, (None, 0, 0))(cp, batch.obs, batch.action)
            loss = critic_loss(q, y, mask)
            return loss + h.attention_reg * masked_mean(att, mask), (loss, q)

        (_, (cl, q)), c_grads = jax.value_and_grad(c_loss, has_aux=True)(params.critic)
        return cl, q, c_grads, k_new

    def actor_objective(ap: Any, cp: Any, batch: Transition, key: Array, h: Hypers):
        mask = batch.obs.agent_mask
        keys = jax.random.split(key, batch.reward.shape[0])

        def per_sample(obs, action, rnn, k):
            out, _ = actor_all(ap, obs, rnn)  # [A, dim]
            new = train_action(out, k, h)  # [A, dim]

            # agent i's critic sees its own new action and the others' replayed ones
            return critic_q(cp, obs, action, new)[0], out

        q_new, out = jax.vmap(per_sample)(batch.obs, batch.action, batch.carry, keys)
        return actor_loss(q_new, out, mask, h.logit_reg)

    def grad_step(state: MADDPGState, key: Array, h: Hypers):
        k_s, k_l = jax.random.split(key)
        batch = replay.sample(state.buffer, k_s)
        p = state.params
        cl, q, c_grads, k_a = losses_and_grads(p, batch, k_l, h)
        c_upd, c_opt = critic_opt.update(c_grads, state.critic_opt, p.critic)
        critic_p = optax.apply_updates(p.critic, c_upd)
        al, a_grads = jax.value_and_grad(actor_objective)(p.actor, critic_p, batch, k_a, h)
        a_upd, a_opt = actor_opt.update(a_grads, state.actor_opt, p.actor)
        actor_p = optax.apply_updates(p.actor, a_upd)
        params = Params(
            actor=actor_p,
            critic=critic_p,
            target_actor=soft_update(p.target_actor, actor_p, h.tau),
            target_critic=soft_update(p.target_critic, critic_p, h.tau),
        )
        q_mean = masked_mean(q, batch.obs.agent_mask)
        state = state.replace(params=params, actor_opt=a_opt, critic_opt=c_opt,
                              grad_steps=state.grad_steps + 1)
        return state, (cl, al, q_mean)

    def train(state: MADDPGState, key: Array, h: Hypers):
        state, (cl, al, qm) = jax.lax.scan(
            lambda s, k: grad_step(s, k, h), state,
            jax.random.split(key, cfg.updates_per_rollout))
        return state, (cl[-1], al[-1], qm[-1])

    def skip(state: MADDPGState, key: Array, h: Hypers):
        z = jnp.zeros(())
        return state, (z, z, z)

    spu = cfg.rollout_steps * n_envs
    first_ready = max(cfg.learning_starts, cfg.batch_size)

    def update(state: MADDPGState, t: Array | None = None,
               hypers: Hypers | None = None) -> tuple[MADDPGState, dict]:
        """One rollout and, once enough data is stored, ``updates_per_rollout`` gradient
        steps. ``t`` (optional, unbatched): the index of this update in the run; passing it
        keeps the readiness test out of the seed ``vmap``, so ``lax.cond`` stays a branch and
        the warm-up updates skip the gradient steps instead of computing and discarding them.
        ``hypers`` (optional, may be traced): replaces the config's (:class:`Hypers`; the
        learning rates are those in the state).
        """
        h = default if hypers is None else hypers
        key, k_roll, k_train = jax.random.split(state.key, 3)
        state, episodes = rollout(state.replace(key=key), k_roll, h)
        if t is None:
            ready = replay.can_sample(state.buffer) & (state.env_steps >= cfg.learning_starts)
        else:
            ready = (jnp.asarray(t) + 1) * spu >= first_ready
        # h is closed over, not an operand: the config's floats stay constants of the program
        state, (cl, al, qm) = jax.lax.cond(
            ready, lambda s, k: train(s, k, h), lambda s, k: skip(s, k, h), state, k_train)
        metrics = {
            "env_steps": state.env_steps,
            "grad_steps": state.grad_steps,
            "episode_return": state.last_return,
            "episodes": episodes,
            "critic_loss": cl,
            "actor_loss": al,
            "q_mean": qm,
        }
        if hooks is not None and hooks.metrics is not None:
            metrics.update(hooks.metrics(state.aux))
        return state, metrics

    return Learner(
        init=init,
        update=update,
        policy=policy,
        policy_params=lambda s: s.params.actor,
        initial_carry=lambda: jnp.zeros((n_agents, carry_dim)),
        env_steps_per_update=cfg.rollout_steps * n_envs,
        tasks=tasks,
        act=act,
        outputs=actor_all,
        hypers=default,
    )


def _index(tree: Any, i: int) -> Any:
    return jax.tree.map(lambda x: x[i], tree)


def _tile_tasks(tasks: Any, n: int) -> Any:
    """A ``[n]`` stack of tasks: a single task is tiled; a stack must have ``n`` entries."""
    leaves = jax.tree.leaves(tasks)
    lead = leaves[0].shape[0] if leaves and leaves[0].ndim > 0 else None
    single = _is_single_task(tasks)
    if single:
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), tasks)
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

"""The losses of IPPO / MAPPO (Schulman et al. 2017, "Proximal Policy Optimization Algorithms";
Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games") and of
Random Network Distillation (Burda et al. 2019) as an intrinsic reward, over padded agents.

Pure functions at module level, then the learner built on them (:func:`make_ppo`):

* :func:`gae`: generalized advantage estimation with the time limit told apart from
  termination (``discount`` 0 only at termination, the trace cut at every episode end);
* :func:`normalize_advantages`: over the real (masked) agents of a batch;
* :func:`clipped_policy_loss`: PPO's clipped surrogate, Eq. 7 of Schulman et al.;
* :func:`clipped_value_loss`: MAPPO's clipped value loss (Yu et al., Sec. 4);
* :func:`action_distribution`: the policy's distribution (distrax): categorical over the
  logits of discrete actions, a diagonal Gaussian (learned state-independent ``log_std``) for
  continuous ones;
* :func:`masked_entropy`: the entropy bonus of either, over the real agents;
* :func:`rnd_error`: RND's prediction error, the intrinsic reward of MAPPO-RND.

Shapes: ``[T, N, A]`` for a rollout of ``T`` steps of ``N`` games with ``A`` (padded) agents;
every function broadcasts over leading axes, and ``mask`` (``[..., A]`` bool, the agents in
the game) removes padded agents from every mean.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from envs.core import MultiAgentEnv, Observation
from envs.wrappers import AutoReset
from metajax.core import taskspec
from metajax.core.interfaces import ActionSpace, Learner, ignoring_hypers
from metajax.core.networks import MLP, global_state, with_slot_ids
from metajax.core.ops import cycle, make_optimizer, masked_mean
from metajax.core.rollout import Acted, RolloutState, ends_aux, mark_ends, rollout

Array = jax.Array


def gae(rewards: Array, values: Array, next_values: Array, discounts: Array, ends: Array,
        gamma: float, lam: float) -> tuple[Array, Array]:
    """Generalized advantage estimation, backwards over the leading (time) axis.

    Args:
      rewards: ``[T, ...]`` reward of step ``t``.
      values: ``[T, ...]`` ``V(s_t)``.
      next_values: ``[T, ...]`` ``V`` of the observation after step ``t`` (the episode's final
        observation when it ended at ``t``, not the next episode's first one).
      discounts: ``[T, ...]`` 0 where step ``t`` terminated the episode, else 1 (a time limit
        keeps 1: the value after it is bootstrapped).
      ends: ``[T, ...]`` bool, the episode ended at step ``t`` (terminated or truncated): the
        advantage does not look past it.
      gamma, lam: discount and GAE's lambda.

    Returns:
      ``(advantages [T, ...], returns [T, ...])`` with ``returns = advantages + values``:
      ``delta_t = r_t + gamma d_t V'_t - V_t``,
      ``A_t = delta_t + gamma lam d_t (1 - end_t) A_{t+1}``.
    """
    deltas = rewards + gamma * discounts * next_values - values
    keep = gamma * lam * discounts * (1.0 - ends.astype(deltas.dtype))

    def back(carry: Array, x: tuple[Array, Array]) -> tuple[Array, Array]:
        delta, k = x
        adv = delta + k * carry
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, keep), reverse=True)
    return adv, adv + values


def normalize_advantages(adv: Array, mask: Array, eps: float = 1e-8) -> Array:
    """``(adv - mean) / (std + eps)`` over the real agents (``mask``) of the whole batch; padded
    entries become 0."""
    m = jnp.broadcast_to(mask, adv.shape)
    mean = masked_mean(adv, m)
    var = masked_mean((adv - mean) ** 2, m)
    return jnp.where(m, (adv - mean) / (jnp.sqrt(var) + eps), 0.0)


def clipped_policy_loss(logp: Array, logp_old: Array, adv: Array, mask: Array,
                        clip_eps: float) -> Array:
    """``-mean min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` over the real agents, with
    ``rho = exp(logp - logp_old)`` (all ``[..., A]``); a scalar."""
    ratio = jnp.exp(logp - logp_old)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -masked_mean(jnp.minimum(ratio * adv, clipped * adv), jnp.broadcast_to(mask, adv.shape))


def clipped_value_loss(v: Array, v_old: Array, returns: Array, mask: Array,
                       clip_eps: float | None) -> Array:
    """``0.5 mean max((v - R)^2, (v_old + clip(v - v_old, -eps, eps) - R)^2)`` over the real
    agents; ``clip_eps=None``: the plain ``0.5 mean (v - R)^2``. A scalar."""
    m = jnp.broadcast_to(mask, v.shape)
    err = (v - returns) ** 2
    if clip_eps is not None:
        v_clip = v_old + jnp.clip(v - v_old, -clip_eps, clip_eps)
        err = jnp.maximum(err, (v_clip - returns) ** 2)
    return 0.5 * masked_mean(err, m)


def action_distribution(out: Array, log_std: Array | None = None) -> distrax.Distribution:
    """The policy of every agent: ``log_std is None``: categorical over the logits
    ``out [..., A, n]`` (samples ``[..., A]`` int); else a diagonal Gaussian with mean
    ``out [..., A, d]`` and standard deviation ``exp(log_std [d])`` (samples ``[..., A, d]``).
    ``log_prob`` and ``entropy`` are ``[..., A]``."""
    if log_std is None:
        return distrax.Categorical(logits=out)
    return distrax.MultivariateNormalDiag(out, jnp.broadcast_to(jnp.exp(log_std), out.shape))


def masked_entropy(dist: distrax.Distribution, mask: Array) -> Array:
    """Mean entropy of the per-agent policies ``dist`` (batch ``[..., A]``) over the real
    agents ``mask [..., A]``."""
    ent = dist.entropy()
    return masked_mean(ent, jnp.broadcast_to(mask, ent.shape))


def rnd_error(predicted: Array, target: Array) -> Array:
    """RND's intrinsic reward: ``mean_f (predicted - target)^2`` over the feature axis
    (``[..., A, F] -> [..., A]``); also the predictor's loss before masking."""
    return jnp.mean((predicted - jax.lax.stop_gradient(target)) ** 2, axis=-1)


# ---- the learner (IPPO / MAPPO, discrete or continuous actions) -----------------------------


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """The ``ppo`` section of a run config (``algo="ippo"`` or ``"mappo"``).

    One actor and one value network shared by every agent (parameter sharing, as in MAPPO's
    experiments), the agent's one-hot slot index appended to its observation (``agent_id``).
    IPPO's value reads the agent's own observation; MAPPO's (Yu et al.) the global state, every
    agent's observation in the game (padded agents zeroed) and the agent's index. Each update
    collects ``rollout_steps`` steps of ``num_envs`` auto-reset games, then ``epochs`` passes of
    ``minibatches`` minibatches over them. ``rnd_coef > 0``: MAPPO-RND, a Random Network
    Distillation bonus ``rnd_coef * |f(o') - f_target(o')|^2`` added to the reward.

    Continuous actions: the actor's output is the mean of a diagonal Gaussian whose log standard
    deviation is one learned vector shared by the agents (``params["log_std"] [d]``, starting at
    ``log_std_init``), as in Schulman et al.'s MuJoCo runs and MAPPO's; the env receives the
    sample clipped to its bounds, the loss the unclipped sample's log-probability.
    """

    hidden: tuple[int, ...] = (64, 64)
    lr: float = 5e-4
    num_envs: int = 16
    rollout_steps: int = 32
    epochs: int = 4
    minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    value_clip: float | None = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    grad_clip: float = 0.5
    weight_decay: float = 0.0
    agent_id: bool = True
    rnd_coef: float = 0.0
    rnd_features: int = 32
    rnd_lr: float = 1e-3
    log_std_init: float = 0.0

    def __post_init__(self) -> None:
        for f in ("num_envs", "rollout_steps", "epochs", "minibatches"):
            if getattr(self, f) < 1:
                raise ValueError(f"ppo.{f} must be >= 1, got {getattr(self, f)}")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"ppo.gamma must be in (0, 1] and ppo.gae_lambda in [0, 1], got "
                             f"{self.gamma}, {self.gae_lambda}")
        if (self.num_envs * self.rollout_steps) % self.minibatches:
            raise ValueError(
                f"ppo.minibatches={self.minibatches} must divide num_envs * rollout_steps = "
                f"{self.num_envs * self.rollout_steps}")


@struct.dataclass
class PPOState:
    """One seed's learner state: ``params {"actor", "critic"}`` and their Adam state, the RND
    networks (``{}`` without RND), the ``[N]`` games, the running episode returns ``[N, A]``,
    the mean return of the last finished episodes, the key and the counters."""

    params: Any
    opt_state: Any
    rnd: Any
    env_state: Any
    obs: Observation
    ep_return: Array
    last_return: Array
    key: Array
    env_steps: Array
    grad_steps: Array


@dataclasses.dataclass(frozen=True)
class PPOParts:
    """What the learner's functions share: config, env (auto-reset), networks, optimizers."""

    cfg: PPOConfig
    env: AutoReset
    tasks: Any
    n_agents: int
    n_actions: int
    centralized: bool
    space: ActionSpace
    bounds: tuple[np.ndarray, np.ndarray]
    actor: nn.Module
    critic: nn.Module
    rnd_net: nn.Module
    opt: optax.GradientTransformation
    rnd_opt: optax.GradientTransformation


def agent_inputs(parts: PPOParts, obs: Observation) -> Array:
    """``obs [..., A]`` -> the actor's input ``[..., A, D (+ A)]``: each agent's flat view and
    (``agent_id``) its one-hot slot."""
    return with_slot_ids(obs.flat) if parts.cfg.agent_id else obs.flat


def value_inputs(parts: PPOParts, obs: Observation) -> Array:
    """The value network's input ``[..., A, ...]``: IPPO the actor's input; MAPPO the global
    state (every agent's flat view, padded agents zeroed) with the agent's one-hot slot."""
    if not parts.centralized:
        return agent_inputs(parts, obs)
    state = global_state(obs)
    state = jnp.broadcast_to(state[..., None, :], (*obs.flat.shape[:-1], state.shape[-1]))
    return with_slot_ids(state)


def value_of(parts: PPOParts, params: Any, obs: Observation) -> Array:
    """``[..., A]`` the value of each agent."""
    return parts.critic.apply(params["critic"], value_inputs(parts, obs))[..., 0]


def actor_outputs(parts: PPOParts, params: Any, obs: Observation) -> Array:
    """``obs [..., A]`` -> ``[..., A, d]`` the actor's raw outputs: the categorical policy's
    logits, or the Gaussian's mean."""
    return parts.actor.apply(params["actor"], agent_inputs(parts, obs))


def distribution(parts: PPOParts, params: Any, obs: Observation) -> distrax.Distribution:
    """The actor's policy on ``obs [..., A]`` (:func:`action_distribution`, batch ``[..., A]``)."""
    return action_distribution(actor_outputs(parts, params, obs), params.get("log_std"))


def distribution_and_values(parts: PPOParts, params: Any,
                            obs: Observation) -> tuple[distrax.Distribution, Array]:
    """``(policy (batch [..., A]), values [..., A])``."""
    return distribution(parts, params, obs), value_of(parts, params, obs)


def env_action(parts: PPOParts, action: Array) -> Array:
    """A policy sample as the env takes it: discrete ``[..., A]`` unchanged; continuous
    ``[..., A, d]`` clipped to the action bounds and shaped ``[..., A, *env_shape]``."""
    if parts.space.kind == "discrete":
        return action
    low, high = parts.bounds
    return jnp.clip(action, low, high).reshape((*action.shape[:-1], *parts.space.env_shape))


def stored_action(parts: PPOParts, action: Array) -> Array:
    """``[..., A, d]`` what the rollout stores: the one-hot of a discrete action, the unclipped
    continuous sample (its log-probability is the one the loss needs)."""
    if parts.space.kind == "discrete":
        return jax.nn.one_hot(action, parts.n_actions)
    return action


def sample_of(parts: PPOParts, stored: Array) -> Array:
    """The inverse of :func:`stored_action`: the sample whose log-probability PPO takes."""
    return jnp.argmax(stored, -1) if parts.space.kind == "discrete" else stored


def policy(parts: PPOParts, params: Any, obs: Observation, carry: Array, key: Array,
           greedy: bool | Array) -> tuple[Array, Array]:
    """One game's env actions (``[A]`` int, or ``[A, *env_shape]`` float): the policy's mode
    (most likely action, Gaussian mean) if ``greedy`` (traced), else a sample."""
    dist = distribution(parts, params, obs)
    return env_action(parts, jnp.where(greedy, dist.mode(), dist.sample(seed=key))), carry


def _behaviour(parts: PPOParts, params: Any):
    n, a = parts.cfg.num_envs, parts.n_agents

    def act(obs: Observation, carry: Array, aux: Any, key: Array, env_steps: Array):
        actions = distribution(parts, params, obs).sample(seed=key)  # [N, A(, d)]
        empty = jnp.zeros((n, a, 0))
        return Acted(env_action(parts, actions), stored_action(parts, actions), empty,
                     empty), aux

    return act


def collect(parts: PPOParts, state: PPOState, key: Array) -> tuple[PPOState, Any, Array, Any]:
    """``rollout_steps`` steps of the ``num_envs`` games with the current policy; returns
    ``(state, items [T, N, ...], ends [T, N], stats)``."""
    cfg = parts.cfg
    t, n = cfg.rollout_steps, cfg.num_envs
    games = RolloutState(state.env_state, state.obs, jnp.zeros((n, parts.n_agents, 0)),
                         state.ep_return, ends_aux(t, n))
    games, items, stats = rollout(jax.vmap(parts.env.step), _behaviour(parts, state.params),
                                  games, key, t, env_steps=state.env_steps, relabel=mark_ends,
                                  store_carry=False)
    items = jax.tree.map(lambda x: x.reshape((t, n, *x.shape[1:])), items)
    state = state.replace(env_state=games.env_state, obs=games.obs, ep_return=games.ep_return,
                          last_return=stats.mean_return(state.last_return),
                          env_steps=state.env_steps + t * n)
    return state, items, games.aux[1], stats


def ppo_loss(parts: PPOParts, params: Any, batch: dict) -> tuple[Array, dict]:
    """The clipped surrogate, the clipped value loss and the entropy bonus on a minibatch of
    ``B`` game-steps (``batch``: obs, action [B, A], logp_old, v_old, adv, ret [B, A])."""
    cfg = parts.cfg
    mask = batch["obs"].agent_mask
    dist, v = distribution_and_values(parts, params, batch["obs"])
    logp = dist.log_prob(batch["action"])
    adv = normalize_advantages(batch["adv"], mask)
    pl = clipped_policy_loss(logp, batch["logp_old"], adv, mask, cfg.clip_eps)
    vl = clipped_value_loss(v, batch["v_old"], batch["ret"], mask, cfg.value_clip)
    ent = masked_entropy(dist, mask)
    kl = masked_mean(batch["logp_old"] - logp, mask)
    return pl + cfg.vf_coef * vl - cfg.ent_coef * ent, {
        "policy_loss": pl, "value_loss": vl, "entropy": ent, "approx_kl": kl}


def intrinsic_reward(parts: PPOParts, rnd: Any, obs: Observation) -> Array:
    """RND's bonus ``[..., A]`` of the observations ``obs`` (0 for padded agents)."""
    x = agent_inputs(parts, obs)
    err = rnd_error(parts.rnd_net.apply(rnd["predictor"], x), parts.rnd_net.apply(rnd["target"], x))
    return jnp.where(obs.agent_mask, err, 0.0)


def _learn(parts: PPOParts, state: PPOState, data: dict, key: Array) -> tuple[PPOState, dict]:
    """``epochs`` passes of ``minibatches`` shuffled minibatches over ``data`` (``[T * N]``
    game-steps): PPO's gradient steps, and RND's predictor on the same minibatches."""
    cfg = parts.cfg
    size = cfg.rollout_steps * cfg.num_envs
    grad = jax.value_and_grad(lambda p, b: ppo_loss(parts, p, b), has_aux=True)

    def minibatch(c, idx):
        params, opt_state, rnd = c
        b = jax.tree.map(lambda x: x[idx], data)
        (_, m), g = grad(params, b)
        upd, opt_state = parts.opt.update(g, opt_state, params)
        params = optax.apply_updates(params, upd)
        if cfg.rnd_coef > 0:
            rl, rg = jax.value_and_grad(lambda p: masked_mean(
                intrinsic_reward(parts, {**rnd, "predictor": p}, b["next_obs"]),
                b["next_obs"].agent_mask))(rnd["predictor"])
            r_upd, r_opt = parts.rnd_opt.update(rg, rnd["opt"], rnd["predictor"])
            rnd = {**rnd, "predictor": optax.apply_updates(rnd["predictor"], r_upd),
                   "opt": r_opt}
            m = {**m, "rnd_loss": rl}
        return (params, opt_state, rnd), m

    def epoch(c, k):
        perm = jax.random.permutation(k, size).reshape(cfg.minibatches, -1)
        return jax.lax.scan(minibatch, c, perm)

    (params, opt_state, rnd), m = jax.lax.scan(
        epoch, (state.params, state.opt_state, state.rnd), jax.random.split(key, cfg.epochs))
    steps = cfg.epochs * cfg.minibatches
    state = state.replace(params=params, opt_state=opt_state, rnd=rnd,
                          grad_steps=state.grad_steps + steps)
    return state, jax.tree.map(jnp.mean, m)


def update(parts: PPOParts, state: PPOState, t: Array | None = None) -> tuple[PPOState, dict]:
    """One PPO iteration: collect, advantages (GAE; the RND bonus added to the reward), then
    the clipped-objective epochs. Metrics are scalars."""
    cfg = parts.cfg
    key, k_roll, k_learn = jax.random.split(state.key, 3)
    state, items, ends, stats = collect(parts, state.replace(key=key), k_roll)
    dist, values = distribution_and_values(parts, state.params, items.obs)  # [T, N, A]
    next_values = value_of(parts, state.params, items.next_obs)
    actions = sample_of(parts, items.action)  # [T, N, A(, d)]
    logp = dist.log_prob(actions)
    reward = items.reward
    bonus = jnp.zeros(())
    if cfg.rnd_coef > 0:
        extra = intrinsic_reward(parts, state.rnd, items.next_obs)
        bonus = masked_mean(extra, items.next_obs.agent_mask)
        reward = reward + cfg.rnd_coef * jax.lax.stop_gradient(extra)
    ends_a = jnp.broadcast_to(ends[..., None], reward.shape)
    adv, ret = gae(reward, values, next_values, items.discount, ends_a, cfg.gamma,
                   cfg.gae_lambda)
    data = {"obs": items.obs, "next_obs": items.next_obs, "action": actions, "logp_old": logp,
            "v_old": values, "adv": adv, "ret": ret}
    data = jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), data)
    state, m = _learn(parts, state, data, k_learn)
    return state, {"env_steps": state.env_steps, "grad_steps": state.grad_steps,
                   "episode_return": state.last_return, "episodes": stats.episodes,
                   "intrinsic": bonus, **m}


def init_state(parts: PPOParts, key: Array) -> PPOState:
    cfg, n = parts.cfg, parts.cfg.num_envs
    k_a, k_c, k_env, k_rt, k_rp, k_next = jax.random.split(key, 6)
    env_state, ts = jax.vmap(parts.env.reset_to)(jax.random.split(k_env, n), parts.tasks)
    obs0 = jax.tree.map(lambda x: x[0], ts.observation)
    params = {"actor": parts.actor.init(k_a, agent_inputs(parts, obs0)),
              "critic": parts.critic.init(k_c, value_inputs(parts, obs0))}
    if parts.space.kind == "continuous":
        params["log_std"] = jnp.full((parts.space.dim,), cfg.log_std_init, jnp.float32)
    rnd = {}
    if cfg.rnd_coef > 0:
        x = agent_inputs(parts, obs0)
        pred = parts.rnd_net.init(k_rp, x)
        rnd = {"target": parts.rnd_net.init(k_rt, x), "predictor": pred,
               "opt": parts.rnd_opt.init(pred)}
    return PPOState(params=params, opt_state=parts.opt.init(params), rnd=rnd,
                    env_state=env_state, obs=ts.observation,
                    ep_return=jnp.zeros((n, parts.n_agents)), last_return=jnp.zeros(()),
                    key=k_next, env_steps=jnp.zeros((), jnp.int32),
                    grad_steps=jnp.zeros((), jnp.int32))


def make_ppo(cfg: PPOConfig, env: MultiAgentEnv, tasks: Any, centralized: bool) -> Learner:
    """IPPO (``centralized=False``) or MAPPO on the ``[K]`` tasks (cycled over ``num_envs``
    games). Discrete actions (a categorical policy) or continuous ones (a diagonal Gaussian, see
    :class:`PPOConfig`); raises ``ValueError`` for MADDPG's ``relaxed`` particle actions."""
    space = ActionSpace.of(env)
    if space.kind == "relaxed":
        raise ValueError(f"PPO takes discrete or continuous actions; {type(env).__name__} has "
                         "relaxed ones (set env_config action_type='discrete' or 'continuous')")
    spec = env.action_spec
    bounds = (np.zeros(0), np.zeros(0))
    if space.kind == "continuous":  # per action dimension [d] (the spec's [A, *env_shape])
        bounds = tuple(np.broadcast_to(np.asarray(x, np.float32), spec.shape)[0].reshape(-1)
                       for x in (spec.minimum, spec.maximum))
    games = cycle(tasks, cfg.num_envs)
    parts = PPOParts(
        cfg=cfg, env=AutoReset(env), tasks=games, n_agents=env.max_agents,
        n_actions=space.dim, centralized=centralized, space=space, bounds=bounds,
        actor=MLP(cfg.hidden, space.dim, activation=nn.tanh, out_init_scale=0.01),
        critic=MLP(cfg.hidden, 1, activation=nn.tanh),
        rnd_net=MLP((64,), cfg.rnd_features), opt=make_optimizer(cfg.lr, cfg),
        rnd_opt=optax.adam(cfg.rnd_lr))
    return Learner(
        init=lambda key: init_state(parts, key),
        update=lambda state, t=None: update(parts, state, t),
        policy=lambda params, obs, carry, key, greedy: policy(parts, params, obs, carry, key,
                                                              greedy),
        policy_params=lambda state: state.params,
        initial_carry=lambda: jnp.zeros((env.max_agents, 0)),
        env_steps_per_update=cfg.rollout_steps * cfg.num_envs,
        tasks=games,
        outputs=lambda params, obs, carry: (actor_outputs(parts, params, obs), carry),
    )


def make_ippo(cfg: Any, env: MultiAgentEnv, tasks: Any, traced: bool = False) -> Learner:
    """The ``"ippo"`` factory of :data:`metajax.pipelines.registry.ALGOS` (the run config's
    ``ppo`` section). PPO traces no hyperparameters (:data:`NOTHING_TRACED`): ``traced=True``
    gives the learner that takes an empty ``hypers=()``, so a sweep compiles each point apart."""
    learner = make_ppo(cfg.ppo, env, taskspec.build_tasks(env, cfg.tasks), centralized=False)
    return ignoring_hypers(learner) if traced else learner


def make_mappo(cfg: Any, env: MultiAgentEnv, tasks: Any, traced: bool = False) -> Learner:
    """The ``"mappo"`` factory of :data:`metajax.pipelines.registry.ALGOS` (as
    :func:`make_ippo`)."""
    learner = make_ppo(cfg.ppo, env, taskspec.build_tasks(env, cfg.tasks), centralized=True)
    return ignoring_hypers(learner) if traced else learner

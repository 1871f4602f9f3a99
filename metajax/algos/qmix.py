"""The value factorizations of VDN (Sunehag et al. 2018) and QMIX (Rashid et al. 2018) over
padded agents, their TD loss, and the learner built on them (:func:`make_qmix`).

* :func:`vdn_mix`: ``Q_tot = sum_a Q_a`` over the agents in the game;
* :class:`QMixer`: ``Q_tot = f(Q_1..Q_A; s)``, monotonic in every ``Q_a`` (hypernetwork
  weights through ``abs``, QMIX Eq. 5), with padded agents' ``Q_a`` zeroed and their
  hypernetwork rows masked, so that neither their values nor their existence changes
  ``Q_tot`` (one compile serves every population);
* :func:`chosen_q`: ``Q_a(o_a, u_a)`` of the actions taken;
* :func:`q_td_loss`: the masked squared TD error of ``Q_tot`` against a target built with
  :func:`metajax.core.ops.td_target`.

Shapes: ``qs [..., A]`` per-agent values of the chosen actions, ``mask [..., A]`` bool,
``state [..., S]`` the global state the hypernetworks read.
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
from metajax.core import taskspec
from metajax.core.interfaces import ActionSpace, Learner, ignoring_hypers
from metajax.core.networks import global_state, with_slot_ids
from metajax.core.ops import agent_mean, cycle, make_optimizer, take, td_target, tile
from metajax.core.replay import Replay, make_replay
from metajax.core.rollout import Acted, RolloutState, ends_aux, mark_ends, rollout

Array = jax.Array


def vdn_mix(qs: Array, mask: Array) -> Array:
    """``[..., A] -> [...]``: the sum of the real agents' values."""
    return jnp.sum(jnp.where(mask, qs, 0.0), axis=-1)


def chosen_q(q_all: Array, actions: Array) -> Array:
    """``q_all [..., A, n]``, ``actions [..., A]`` int -> ``[..., A]`` the taken actions'
    values."""
    return jnp.take_along_axis(q_all, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


class QMixer(nn.Module):
    """QMIX's mixing network for ``max_agents`` padded agents: a hidden layer of ``embed``
    units, ``Q_tot = w2 . elu(w1^T q + b1) + b2`` with ``w1 = |W1(s)| [A, embed]`` (rows of
    padded agents zeroed), ``b1 = B1(s)``, ``w2 = |W2(s)| [embed]``, ``b2 = V(s)`` (a 2-layer
    net), as in Rashid et al.'s Fig. 2. ``init_scale > 0``: every layer's kernel orthogonal
    with that gain and its bias zero (JaxMARL's QMIX uses 0.001); else flax's default
    initializers. ``__call__(qs [A], mask [A], state [S]) -> []``; vmap it over batches."""

    max_agents: int
    embed: int = 32
    hyper_hidden: int = 64
    init_scale: float = 0.0

    @nn.compact
    def __call__(self, qs: Array, mask: Array, state: Array) -> Array:
        a, e = self.max_agents, self.embed
        init = ({} if self.init_scale <= 0 else
                {"kernel_init": nn.initializers.orthogonal(self.init_scale),
                 "bias_init": nn.initializers.zeros})

        def dense(n: int, name: str) -> nn.Dense:
            return nn.Dense(n, name=name, **init)

        h1 = nn.relu(dense(self.hyper_hidden, "w1_hidden")(state))
        h2 = nn.relu(dense(self.hyper_hidden, "w2_hidden")(state))
        w1 = jnp.abs(dense(a * e, "w1")(h1)).reshape(a, e)
        w1 = jnp.where(mask[:, None], w1, 0.0)
        b1 = dense(e, "b1")(state)
        w2 = jnp.abs(dense(e, "w2")(h2))
        b2 = dense(1, "v_out")(nn.relu(dense(e, "v_hidden")(state)))[0]
        hidden = nn.elu(jnp.where(mask, qs, 0.0) @ w1 + b1)
        return hidden @ w2 + b2


def team_reward(reward: Array, mask: Array, how: str = "mean") -> Array:
    """``reward [..., A]``, ``mask [..., A]`` -> ``[...]``: the mean (``how="mean"``) or the
    sum (``"sum"``) of the real agents' rewards."""
    if how == "sum":
        return jnp.sum(jnp.where(mask, reward, 0.0), -1)
    return agent_mean(reward, mask)


def q_td_loss(q_tot: Array, target: Array, valid: Array | None = None) -> Array:
    """``mean (Q_tot - stop_gradient(target))^2`` over the entries where ``valid`` (e.g. the
    steps of an episode before it ended, in episode replay); a scalar."""
    err = (q_tot - jax.lax.stop_gradient(target)) ** 2
    if valid is None:
        return jnp.mean(err)
    m = valid.astype(err.dtype)
    return jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0)


# ---- the learner (VDN / QMIX, recurrent agents, sequence replay) ----------------------------


#: how :class:`QMixConfig` ``team_reward`` combines the real agents' rewards into ``r``
TEAM_REWARDS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class QMixConfig:
    """The ``qmix`` section of a run config (``algo="qmix"`` or ``"vdn"``).

    Agents share one recurrent Q-network (a dense layer, a GRU of ``hidden`` units, a head per
    action; the one-hot agent slot appended to the observation, as in PyMARL). Each update
    rolls ``window`` steps (default the env's episode length) of ``num_envs`` auto-reset games
    with epsilon-greedy actions (epsilon annealed linearly from ``eps_start`` to ``eps_end``
    over ``eps_anneal_steps`` env steps) and stores every game's window as one replay item with
    its recurrent state at the window's start; a gradient step samples ``batch_windows``
    windows, unrolls the network through them (the state zeroed after each episode end), and
    regresses ``Q_tot`` on ``r + gamma d Q'_tot`` from a target network copied every
    ``target_every`` updates (double Q: the online network picks the next actions).

    ``r`` is the team reward: the ``team_reward`` (``"mean"`` or ``"sum"``) of the real agents'
    rewards. ``mixer_hidden`` / ``mixer_init_scale``: the hypernetworks' hidden units and
    initialization (:class:`QMixer`). ``learning_starts``: no gradient step before that many
    env steps (besides a full batch stored). ``lr_decay_steps > 0``: the learning rate decays
    linearly to 0 over that many env steps' worth of gradient steps (``lr_decay_steps /
    (window * num_envs)`` of them); 0 keeps it constant.
    """

    hidden: int = 64
    mixer_embed: int = 32
    lr: float = 5e-4
    num_envs: int = 8
    window: int = 0
    buffer_windows: int = 2000
    batch_windows: int = 32
    gamma: float = 0.99
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_anneal_steps: int = 20_000
    target_every: int = 20
    grad_clip: float = 10.0
    weight_decay: float = 0.0
    double_q: bool = True
    team_reward: str = "mean"
    mixer_hidden: int = 64
    mixer_init_scale: float = 0.0
    learning_starts: int = 0
    lr_decay_steps: int = 0

    def __post_init__(self) -> None:
        for f in ("hidden", "num_envs", "buffer_windows", "batch_windows", "target_every",
                  "mixer_hidden"):
            if getattr(self, f) < 1:
                raise ValueError(f"qmix.{f} must be >= 1, got {getattr(self, f)}")
        for f in ("mixer_init_scale", "learning_starts", "lr_decay_steps"):
            if getattr(self, f) < 0:
                raise ValueError(f"qmix.{f} must be >= 0, got {getattr(self, f)}")
        if self.team_reward not in TEAM_REWARDS:
            raise ValueError(f"qmix.team_reward must be one of {TEAM_REWARDS}, "
                             f"got {self.team_reward!r}")
        if self.batch_windows > self.buffer_windows:
            raise ValueError(f"qmix.batch_windows={self.batch_windows} exceeds "
                             f"qmix.buffer_windows={self.buffer_windows}")


class AgentQ(nn.Module):
    """``(carry [A, h], x [A, D]) -> (carry, q [A, n])``: the agents' shared recurrent
    Q-network."""

    n_actions: int
    hidden: int = 64

    @nn.compact
    def __call__(self, carry: Array, x: Array) -> tuple[Array, Array]:
        y = nn.relu(nn.Dense(self.hidden)(x))
        carry, y = nn.GRUCell(self.hidden)(carry, y)
        return carry, nn.Dense(self.n_actions)(y)


@struct.dataclass
class QMixState:
    """One seed's learner state: ``params``/``target`` ``{"q", "mixer"}``, the Adam state,
    the window replay, the ``[N]`` games with their recurrent states, the running returns, the
    counters."""

    params: Any
    target: Any
    opt_state: Any
    buffer: Any
    env_state: Any
    obs: Observation
    carry: Array
    ep_return: Array
    last_return: Array
    key: Array
    env_steps: Array
    updates: Array
    grad_steps: Array


@dataclasses.dataclass(frozen=True)
class QMixParts:
    cfg: QMixConfig
    env: AutoReset
    tasks: Any
    n_agents: int
    n_actions: int
    window: int
    vdn: bool
    qnet: AgentQ
    mixer: QMixer
    opt: optax.GradientTransformation
    replay: Replay


def epsilon(cfg: QMixConfig, env_steps: Array) -> Array:
    frac = jnp.minimum(env_steps / max(cfg.eps_anneal_steps, 1), 1.0)
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def _act(parts: QMixParts, q_params: Any, obs: Observation, carry: Array, key: Array,
         eps: Array) -> tuple[Array, Array]:
    """Epsilon-greedy actions ``[..., A]`` and the new carry, for one game (``[A]``) or many."""
    step = parts.qnet.apply
    for _ in range(obs.flat.ndim - 2):
        step = jax.vmap(step, in_axes=(None, 0, 0))
    carry, q = step(q_params, carry, with_slot_ids(obs.flat))
    k_explore, k_rand = jax.random.split(key)
    rand = jax.random.randint(k_rand, q.shape[:-1], 0, parts.n_actions)
    explore = jax.random.uniform(k_explore, q.shape[:-1]) < eps
    return jnp.where(explore, rand, jnp.argmax(q, -1)), carry


def collect(parts: QMixParts, state: QMixState, key: Array) -> tuple[QMixState, Array]:
    """One window of every game into the replay; returns ``(state, episodes that ended)``."""
    t, n, a = parts.window, parts.cfg.num_envs, parts.n_agents
    eps = epsilon(parts.cfg, state.env_steps)

    def behaviour(obs, carry, aux, k, env_steps):
        actions, carry = _act(parts, state.params["q"], obs, carry, k, eps)
        return Acted(actions, jax.nn.one_hot(actions, parts.n_actions), carry,
                     jnp.zeros((n, a, 0))), aux

    games = RolloutState(state.env_state, state.obs, state.carry, state.ep_return,
                         ends_aux(t, n))
    games, items, stats = rollout(jax.vmap(parts.env.step), behaviour, games, key, t,
                                  env_steps=state.env_steps, relabel=mark_ends)
    items = jax.tree.map(lambda x: jnp.swapaxes(x.reshape((t, n, *x.shape[1:])), 0, 1), items)
    windows = {"obs": items.obs, "next_obs": items.next_obs, "action": jnp.argmax(
        items.action, -1), "reward": items.reward, "discount": items.discount,
        "ends": jnp.swapaxes(games.aux[1], 0, 1), "carry0": items.carry[:, 0]}
    state = state.replace(
        buffer=parts.replay.add(state.buffer, windows), env_state=games.env_state,
        obs=games.obs, carry=games.carry, ep_return=games.ep_return,
        last_return=stats.mean_return(state.last_return), env_steps=state.env_steps + t * n)
    return state, stats.episodes


def _unroll(parts: QMixParts, q_params: Any, w: dict) -> tuple[Array, Array]:
    """One window's ``(Q(o_t) [T, A, n], Q(o'_t) [T, A, n])``: the network run through the
    window from its stored start state, zeroed after each episode end; ``o'_t`` (the final
    observation at an end) is seen from the state after ``o_t``."""
    def step(carry, x):
        obs, nxt, end = x
        carry, q = parts.qnet.apply(q_params, carry, with_slot_ids(obs.flat))
        _, q_next = parts.qnet.apply(q_params, carry, with_slot_ids(nxt.flat))
        return jnp.where(end, 0.0, carry), (q, q_next)

    _, (q, q_next) = jax.lax.scan(step, w["carry0"], (w["obs"], w["next_obs"], w["ends"]))
    return q, q_next


def _mix(parts: QMixParts, mixer_params: Any, qs: Array, obs: Observation) -> Array:
    mask = obs.agent_mask
    if parts.vdn:
        return vdn_mix(qs, mask)
    return jax.vmap(lambda q, m, s: parts.mixer.apply(mixer_params, q, m, s))(
        qs, mask, global_state(obs))


def window_loss(parts: QMixParts, params: Any, target: Any, w: dict) -> Array:
    """The TD loss of ``Q_tot`` over one window (``T`` steps)."""
    cfg = parts.cfg
    q, q_next_online = _unroll(parts, params["q"], w)
    _, q_next_target = _unroll(parts, target["q"], w)
    taken = chosen_q(q, w["action"])  # [T, A]
    if cfg.double_q:
        best = chosen_q(q_next_target, jnp.argmax(q_next_online, -1))
    else:
        best = q_next_target.max(-1)
    mask = w["obs"].agent_mask
    reward = team_reward(w["reward"], mask, cfg.team_reward)
    disc = jnp.min(jnp.where(mask, w["discount"], 1.0), -1)  # 0 after termination
    y = td_target(reward, disc, _mix(parts, target["mixer"], best, w["next_obs"]), cfg.gamma)
    return q_td_loss(_mix(parts, params["mixer"], taken, w["obs"]), y)


def update(parts: QMixParts, state: QMixState, t: Array | None = None) -> tuple[QMixState, dict]:
    """Collect one window per game; once the replay holds a batch (and ``learning_starts``
    env steps are done), one gradient step on ``batch_windows`` sampled windows; the target
    copied every ``target_every`` updates."""
    cfg = parts.cfg
    key, k_roll, k_sample = jax.random.split(state.key, 3)
    state, episodes = collect(parts, state.replace(key=key), k_roll)

    def learn(s: QMixState) -> tuple[QMixState, Array]:
        batch = parts.replay.sample(s.buffer, k_sample)
        loss, g = jax.value_and_grad(lambda p: jnp.mean(jax.vmap(
            lambda w: window_loss(parts, p, s.target, w))(batch)))(s.params)
        upd, opt_state = parts.opt.update(g, s.opt_state, s.params)
        return s.replace(params=optax.apply_updates(s.params, upd), opt_state=opt_state,
                         grad_steps=s.grad_steps + 1), loss

    ready = parts.replay.can_sample(state.buffer) & (state.env_steps >= cfg.learning_starts)
    state, loss = jax.lax.cond(ready, learn, lambda s: (s, jnp.zeros(())), state)
    updates = state.updates + 1
    target = jax.lax.cond(updates % cfg.target_every == 0, lambda: state.params,
                          lambda: state.target)
    state = state.replace(updates=updates, target=target)
    return state, {"env_steps": state.env_steps, "grad_steps": state.grad_steps,
                   "episode_return": state.last_return, "episodes": episodes, "td_loss": loss,
                   "epsilon": epsilon(cfg, state.env_steps)}


def init_state(parts: QMixParts, key: Array) -> QMixState:
    n, a, h = parts.cfg.num_envs, parts.n_agents, parts.cfg.hidden
    k_q, k_m, k_env, k_next = jax.random.split(key, 4)
    env_state, ts = jax.vmap(parts.env.reset_to)(jax.random.split(k_env, n), parts.tasks)
    obs0 = take(ts.observation, 0)
    q_params = parts.qnet.init(k_q, jnp.zeros((a, h)), with_slot_ids(obs0.flat))
    mixer_params = parts.mixer.init(k_m, jnp.zeros((a,)), obs0.agent_mask, global_state(obs0))
    params = {"q": q_params, "mixer": mixer_params}
    t = parts.window
    example = {"obs": tile(obs0, t), "next_obs": tile(obs0, t),
               "action": jnp.zeros((t, a), jnp.int32), "reward": jnp.zeros((t, a)),
               "discount": jnp.zeros((t, a)), "ends": jnp.zeros((t,), bool),
               "carry0": jnp.zeros((a, h))}
    return QMixState(params=params, target=jax.tree.map(jnp.copy, params),
                     opt_state=parts.opt.init(params),
                     buffer=parts.replay.init(example), env_state=env_state,
                     obs=ts.observation, carry=jnp.zeros((n, a, h)),
                     ep_return=jnp.zeros((n, a)), last_return=jnp.zeros(()), key=k_next,
                     env_steps=jnp.zeros((), jnp.int32), updates=jnp.zeros((), jnp.int32),
                     grad_steps=jnp.zeros((), jnp.int32))


def make_qmix(cfg: QMixConfig, env: MultiAgentEnv, tasks: Any, vdn: bool = False) -> Learner:
    """QMIX (or VDN, ``vdn=True``) on the ``[K]`` tasks cycled over ``num_envs`` games;
    discrete actions only (raises ``ValueError`` otherwise)."""
    space = ActionSpace.of(env)
    if space.kind != "discrete":
        raise ValueError(f"QMIX/VDN here take discrete actions; {type(env).__name__} has "
                         f"{space.kind} ones (QMIX discretizes continuous control: not yet)")
    window = cfg.window or env.episode_length
    lr: Any = cfg.lr
    if cfg.lr_decay_steps:
        lr = optax.linear_schedule(cfg.lr, 0.0, max(cfg.lr_decay_steps // (window * cfg.num_envs),
                                                    1))
    parts = QMixParts(
        cfg=cfg, env=AutoReset(env), tasks=cycle(tasks, cfg.num_envs), n_agents=env.max_agents,
        n_actions=space.dim, window=window, vdn=vdn, qnet=AgentQ(space.dim, cfg.hidden),
        mixer=QMixer(env.max_agents, cfg.mixer_embed, cfg.mixer_hidden, cfg.mixer_init_scale),
        opt=make_optimizer(lr, cfg),
        replay=make_replay(cfg.buffer_windows, cfg.batch_windows))
    return Learner(
        init=lambda key: init_state(parts, key),
        update=lambda state, t=None: update(parts, state, t),
        policy=lambda params, obs, carry, key, greedy: _act(
            parts, params["q"], obs, carry, key, jnp.where(greedy, 0.0, cfg.eps_end)),
        policy_params=lambda state: state.params,
        initial_carry=lambda: jnp.zeros((env.max_agents, cfg.hidden)),
        env_steps_per_update=window * cfg.num_envs,
        tasks=parts.tasks,
    )


def make_qmix_learner(cfg: Any, env: MultiAgentEnv, tasks: Any, traced: bool = False) -> Learner:
    """The ``"qmix"`` factory of :data:`metajax.pipelines.registry.ALGOS`; traces no
    hyperparameters (``traced=True``: the learner taking an empty ``hypers=()``)."""
    learner = make_qmix(cfg.qmix, env, taskspec.build_tasks(env, cfg.tasks))
    return ignoring_hypers(learner) if traced else learner


def make_vdn_learner(cfg: Any, env: MultiAgentEnv, tasks: Any, traced: bool = False) -> Learner:
    """The ``"vdn"`` factory of :data:`metajax.pipelines.registry.ALGOS` (as ``"qmix"``)."""
    learner = make_qmix(cfg.qmix, env, taskspec.build_tasks(env, cfg.tasks), vdn=True)
    return ignoring_hypers(learner) if traced else learner

"""Alg. 2 (meta-testing) and the baselines it is compared with.

MADDPG on each unseen test task (vmapped over test tasks and seeds); at the start of every
episode of every parallel game, with probability ``p_e`` (annealed to 0) a uniformly drawn
exploration policy plays the episode instead of the learner; one shared replay buffer.
Optional behaviour-cloning warm-up of the learner on the replay (Sec. 6.5, :func:`bc_warmup`).

Baselines with the same budgets (``MESAConfig.methods``): ``maddpg`` (no exploration policy),
``random`` (uniformly random actions play the episodes MESA's explorers would), ``pretrain``
(an unconditioned policy pretrained on every training task with their reward, then fine-tuned
on the test task), ``goal`` (the same with the goal descriptor ``env.task_description`` in the
observation, :class:`envs.wrappers.GoalObservation`); :func:`pretrain_baselines` trains their
starting points. The other learners (``mappo``, ``ippo``, ``mappo_rnd``, ``qmix``, ``vdn``,
:mod:`metajax.algos.mesa.learners`) train from scratch on each test task with the same budget,
vmapped the same way, and are measured the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from envs.core import Observation
from envs.wrappers import GoalObservation
from metajax.algos.maddpg import MADDPGConfig, MADDPGState, make_maddpg
from metajax.algos.mesa import core as mc
from metajax.algos.mesa.config import LEARNER_METHODS, MESAConfig
from metajax.algos.mesa.explorers import explorer_games, explorer_learner, explorers_like
from metajax.algos.mesa.features import nest
from metajax.algos.mesa.learners import method_config, method_env, method_learner
from metajax.algos.mesa.play import make_player, random_action, task_metrics
from metajax.algos.mesa.report import fmt_cell, summarize
from metajax.algos.mesa.stages import Context, resumed_time, run_stage, stage_chunk, updates
from metajax.core.interfaces import ActionSpace, Learner, RolloutHooks
from metajax.core.ops import ONCE, take, tile
from metajax.core.replay import make_replay

Array = jax.Array

#: Methods that share one compiled meta-test program (same observation, exploration hook).
_HOOKED = {"mesa": 1, "maddpg": 0, "random": 2, "pretrain": 0}


@struct.dataclass
class ExploreAux:
    """Carried by the meta-test learner (``N`` parallel games).

    * ``params``: the ``E`` exploration policies' actor parameters, stacked ``[E, ...]``;
    * ``mode``: ``[]`` int32, 0 = the learner always acts, 1 = MESA's explorers, 2 = uniformly
      random actions (the random-exploration baseline);
    * ``who``: ``[N]`` int32, who plays the current episode (-1 the learner, else the explorer);
    * ``fresh``: ``[N]`` bool, the next step starts an episode; ``carry`` ``[N, A, h]``: the
      explorer's recurrent state; ``explore_ema``: ``[]`` running fraction of explored steps.
    """

    params: Any
    mode: Array
    who: Array
    fresh: Array
    carry: Array
    explore_ema: Array


def exploration_hooks(cfg: MESAConfig, explorer: Learner, space: ActionSpace, n_envs: int,
                      n_agents: int, carry_dim: int, example_params: Any) -> RolloutHooks:
    """Alg. 2 as a behaviour hook: per game and episode, an explorer plays w.p. ``p_e``."""
    e = cfg.num_explorers

    def init(key: Array, games: Any) -> ExploreAux:
        del key, games
        return ExploreAux(
            params=example_params, mode=jnp.zeros((), jnp.int32),
            who=jnp.full((n_envs,), -1, jnp.int32), fresh=jnp.ones((n_envs,), bool),
            carry=jnp.zeros((n_envs, n_agents, carry_dim)), explore_ema=jnp.zeros(()))

    def act(aux: ExploreAux, obs: Observation, key: Array, env_steps: Array,
            env_a: Array, critic_a: Array):
        k_p, k_who, k_act, k_rand = jax.random.split(key, 4)
        p_e = mc.anneal(env_steps, cfg.p_start, cfg.p_end, cfg.anneal_steps, cfg.anneal_kind)
        explore = (jax.random.uniform(k_p, (n_envs,)) < p_e) & (aux.mode > 0)
        pick = jax.random.randint(k_who, (n_envs,), 0, e, jnp.int32)
        who = jnp.where(aux.fresh, jnp.where(explore, pick, -1), aux.who)
        carry = jnp.where(aux.fresh[:, None, None], 0.0, aux.carry)

        def one(w, o, c, k):
            p = jax.tree.map(lambda x: x[jnp.clip(w, 0, e - 1)], aux.params)
            return explorer.act(p, o, c, k, False)

        ex_env, ex_critic, new_carry = jax.vmap(one)(
            who, obs, carry, jax.random.split(k_act, n_envs))
        r_env, r_critic = jax.vmap(lambda k: random_action(space, k, n_agents))(
            jax.random.split(k_rand, n_envs))
        use_random = aux.mode == 2
        ex_env = jnp.where(use_random, r_env, ex_env)
        ex_critic = jnp.where(use_random, r_critic, ex_critic)
        on = who >= 0

        def sel(a, b):
            return jnp.where(on.reshape(on.shape + (1,) * (a.ndim - 1)), a, b)

        rate = 0.01
        aux = aux.replace(who=who, fresh=jnp.zeros_like(aux.fresh), carry=new_carry,
                          explore_ema=(1 - rate) * aux.explore_ema
                          + rate * jnp.mean(on.astype(jnp.float32)))
        return sel(ex_env, env_a), sel(ex_critic, critic_a), aux

    def reward(aux: ExploreAux, obs: Observation, action: Array, ts: Any):
        del obs, action
        return ts.reward, aux.replace(fresh=ts.done)

    def metrics(aux: ExploreAux) -> dict:
        return {"explored": aux.explore_ema}

    return RolloutHooks(init=init, act=act, reward=reward, metrics=metrics)


def bc_warmup(learner: Learner, cfg: MADDPGConfig, space: ActionSpace, state: MADDPGState,
              key: Array, steps: int, lr: float) -> MADDPGState:
    """``steps`` Adam steps of behaviour cloning of the learner's actors on its replay (early
    on mostly exploration-policy episodes): cross-entropy to the stored discrete/relaxed
    actions, squared error for continuous ones. Targets are synced to the result."""
    replay = make_replay(cfg.buffer_size, cfg.batch_size)
    opt = optax.adam(lr)

    def loss(params: Any, batch: Any) -> Array:
        out, _ = jax.vmap(learner.outputs, (None, 0, 0))(params, batch.obs, batch.carry)
        mask = batch.obs.agent_mask.astype(jnp.float32)
        if space.kind == "continuous":
            per = jnp.mean((jnp.tanh(out) - batch.action) ** 2, -1)
        else:
            per = -jnp.sum(batch.action * jax.nn.log_softmax(out, -1), -1)
        return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    def step(carry, k):
        params, opt_state = carry
        batch = replay.sample(state.buffer, k)
        g = jax.grad(loss)(params, batch)
        upd, opt_state = opt.update(g, opt_state, params)
        return (optax.apply_updates(params, upd), opt_state), None

    params = state.params.actor
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
    return state.replace(params=state.params.replace(actor=params, target_actor=params))


# --- the pretrained baselines ----------------------------------------------------------------


def pretrain_baselines(ctx: Context) -> dict[str, Any]:
    """``{method: params [S, ...]}`` for ``pretrain`` and ``goal`` (those of ``cfg.methods``):
    MADDPG (``cfg.explorer_config``) trained on the exploration policies' games with the env
    reward for ``cfg.pretrain_budget`` env steps (stage ``<method>_meta``; reloaded when
    resuming), the goal baseline observing :class:`envs.wrappers.GoalObservation`."""
    out = {}
    for method, goal in (("pretrain", False), ("goal", True)):
        if method in ctx.cfg.methods:
            out[method] = _pretrain(ctx, f"{method}_meta", goal)
    return out


def _pretrain(ctx: Context, name: str, goal: bool) -> Any:
    cfg = ctx.cfg
    env = GoalObservation(ctx.env) if goal else ctx.env
    games = explorer_games(ctx)
    learner = make_maddpg(cfg.explorer_config, env, take(games, 0))
    if ctx.finished(name):
        like = jax.eval_shape(jax.vmap(learner.init), ctx.keys(5)).params
        params, meta = ctx.store.load(name, like)
        resumed_time(ctx.results, f"{name}_s", meta)
        ctx.log.say(f"resumed: {name.removesuffix('_meta')} policy")
        return params
    t0 = time.perf_counter()
    state = jax.jit(jax.vmap(learner.init), compiler_options=ONCE)(ctx.keys(5), games)
    n_up = updates(cfg.pretrain_budget, learner)
    chunk = min(cfg.chunk_updates, n_up)
    state = run_stage(ctx.log, name, stage_chunk(learner, chunk, 1, cfg.xla_fast), state, n_up,
                      chunk, learner.env_steps_per_update, allow_nonfinite=cfg.allow_nonfinite)
    seconds = ctx.timed(f"{name}_s", t0)
    ctx.store.save(name, state.params, {"seconds": seconds})
    return state.params


# --- Alg. 2 ----------------------------------------------------------------------------------


class MetaTestProgram(NamedTuple):
    """The compiled pieces of a meta-test, batched over seeds and test tasks ``[S, K]`` (one
    serves every MADDPG method on the plain observation, another the goal baseline, one each
    learner method of :mod:`metajax.algos.mesa.learners`).

    * ``learner``: MADDPG (``cfg.maddpg``) on a test task, with :func:`exploration_hooks`
      unless it plays the goal observation, or the learner method's own learner;
      ``n_updates`` of it (``test_steps`` env steps) in ``chunk_updates`` chunks;
    * ``init(keys [S, K], tasks [S, K]) -> state``; ``step``: the chunk (:func:`stage_chunk`);
    * ``evaluate(policy params, tasks, keys) -> {metric: [S, K]}``
      (:func:`metajax.algos.mesa.play.task_metrics`); ``bc(state, keys) -> state``: the
      behaviour-cloning warm-up (:func:`bc_warmup`; ``None`` for the other learners).
    """

    learner: Learner
    n_updates: int
    chunk_updates: int
    init: Callable
    step: Callable
    evaluate: Callable
    bc: Callable | None


def meta_test_programs(ctx: Context) -> Callable[[str], MetaTestProgram]:
    """``program(method) -> MetaTestProgram``, each built and compiled on first use."""
    cfg, tcfg = ctx.cfg, ctx.cfg.maddpg
    first = take(take(ctx.test, 0), 0)
    built: dict[str, MetaTestProgram] = {}

    def hooked() -> Learner:
        plain = explorer_learner(ctx)
        example = jax.tree.map(lambda x: x[0], explorers_like(ctx, plain).params)  # [E, ...]
        hooks = exploration_hooks(cfg, plain, ActionSpace.of(ctx.env), tcfg.num_envs,
                                  ctx.env.max_agents, int(plain.initial_carry().shape[-1]),
                                  example)
        return make_maddpg(tcfg, ctx.env, tile(first, tcfg.num_envs), hooks=hooks)

    def program(method: str) -> MetaTestProgram:
        key = method if method in LEARNER_METHODS + ("goal",) else "hooked"
        if key not in built:
            if method in LEARNER_METHODS:
                env = method_env(cfg, ctx.env, method)
                learner = method_learner(cfg, env, method, tile(first, 1))
                n_envs, bc = method_config(cfg, method).num_envs, False
            else:
                env = GoalObservation(ctx.env) if key == "goal" else ctx.env
                learner = (make_maddpg(tcfg, env, tile(first, tcfg.num_envs)) if key == "goal"
                           else hooked())
                n_envs, bc = tcfg.num_envs, True
            built[key] = _compile(cfg, env, learner, n_envs, bc)
        return built[key]

    return program


def _compile(cfg: MESAConfig, env: Any, learner: Learner, n_envs: int,
             bc: bool) -> MetaTestProgram:
    """The :class:`MetaTestProgram` of ``learner`` (``n_envs`` parallel games of one task;
    ``bc``: with the behaviour-cloning warm-up of a MADDPG learner)."""
    # chunks of equal size, as few as chunk_updates allows: at most one update per chunk
    # beyond test_steps (0 when chunk_updates divides the updates, as for every MADDPG config)
    n_chunks = math.ceil(updates(cfg.test_steps, learner) / cfg.chunk_updates)
    chunk = math.ceil(updates(cfg.test_steps, learner) / n_chunks)
    n_up = n_chunks * chunk
    metric_fn = task_metrics(env, learner, cfg, make_player(env, learner, cfg))
    space = ActionSpace.of(env)
    return MetaTestProgram(
        learner=learner, n_updates=n_up, chunk_updates=chunk,
        init=jax.jit(nest(lambda k, task: learner.init(k, tile(task, n_envs)), 2,
                          (0, 0)), compiler_options=ONCE),
        step=stage_chunk(learner, chunk, 2, cfg.xla_fast),
        evaluate=jax.jit(nest(metric_fn, 2, (0, 0, 0)), compiler_options=ONCE),
        bc=jax.jit(nest(lambda st, k: bc_warmup(learner, cfg.maddpg, space, st, k, cfg.bc_steps,
                                                cfg.bc_lr), 2, (0, 0))) if bc else None)


def meta_test(ctx: Context, explorer_params: Any, pretrained: dict[str, Any]) -> dict:
    """Alg. 2 and the baselines: every method of ``cfg.methods`` on every test task of every
    seed (stage ``test_<method>``; reloaded when resuming), with ``explorer_params``
    ``[S, E, ...]`` exploring for ``mesa`` and ``pretrained`` (:func:`pretrain_baselines`)
    starting ``pretrain`` and ``goal``. Records ``results["methods"]``; returns the greedy
    return curves ``{method: [[env steps, [S] mean over test tasks], ...]}``."""
    program = meta_test_programs(ctx)
    eval_keys = jax.vmap(lambda k: jax.random.split(k, ctx.cfg.n_test))(ctx.keys(6))
    curves: dict[str, list] = {}
    for method in ctx.cfg.methods:
        res, curves[method] = _meta_test_method(ctx, method, program, eval_keys,
                                                explorer_params, pretrained.get(method))
        ctx.results["methods"][method] = res
    return curves


def _meta_test_method(ctx: Context, method: str, program: Callable[[str], MetaTestProgram],
                      eval_keys: Array, explorer_params: Any,
                      pretrained: Any) -> tuple[dict, list]:
    """``(summary of every metric, curve)`` of one method (see :func:`meta_test`)."""
    cfg, name = ctx.cfg, f"test_{method}"
    if ctx.finished(name):
        _, meta = ctx.store.load(name, {"seed_keys": ctx.seed_keys})
        resumed_time(ctx.results, f"{name}_s", meta)
        ctx.log.say(f"resumed: meta-test of {method}")
        return meta["results"], meta.get("curve", [])
    t0 = time.perf_counter()
    prog = program(method)
    keys = jax.vmap(lambda k: jax.random.split(k, cfg.n_test))(ctx.keys(7))
    state = _initial_state(ctx, method, prog.init(keys, ctx.test), explorer_params, pretrained)

    def evaluate(state: Any) -> dict:
        return jax.device_get(prog.evaluate(prog.learner.policy_params(state), ctx.test,
                                            eval_keys))

    curve: list = []
    if cfg.eval_every:
        curve.append([0, np.asarray(evaluate(state)["greedy_return"]).mean(1).tolist()])
    state = run_stage(ctx.log, name, prog.step, state, prog.n_updates, prog.chunk_updates,
                      prog.learner.env_steps_per_update,
                      _between_chunks(cfg, prog, keys, curve, evaluate),
                      allow_nonfinite=cfg.allow_nonfinite)
    m = evaluate(state)
    final_steps = prog.n_updates * prog.learner.env_steps_per_update
    if cfg.eval_every and (not curve or curve[-1][0] != final_steps):
        curve.append([final_steps, np.asarray(m["greedy_return"]).mean(1).tolist()])
    res = summarize(m)
    res["env_steps"] = final_steps  # per test task: test_steps rounded up to whole updates
    seconds = ctx.timed(f"{name}_s", t0)
    ctx.store.save(name, {"seed_keys": ctx.seed_keys},
                   {"results": res, "curve": curve, "seconds": seconds})
    if method == "mesa":
        (ctx.log.run_dir / "metrics.jsonl").write_text(ctx.log.path(name).read_text())
    ctx.log.say(f"{method}: " + ", ".join(f"{k} {fmt_cell(v)}"
                                          for k, v in res.items() if isinstance(v, dict)))
    return res, curve


def _initial_state(ctx: Context, method: str, state: Any, explorer_params: Any,
                   pretrained: Any) -> Any:
    """The fresh meta-test state ``[S, K]`` set up for ``method``: every test task of a seed
    starts from that seed's pretrained networks (``pretrain``, ``goal``); the exploration
    hook gets the seed's exploration policies and the method's mode (:data:`_HOOKED`); the
    other learners (:data:`LEARNER_METHODS`) start fresh."""
    if method in LEARNER_METHODS:
        return state
    shape = (ctx.cfg.seeds, ctx.cfg.n_test)

    def per_task(x: Array) -> Array:
        return jnp.broadcast_to(x[:, None], (*shape, *x.shape[1:]))

    if method in ("pretrain", "goal"):
        state = state.replace(params=jax.tree.map(per_task, pretrained))
    if method != "goal":
        state = state.replace(aux=state.aux.replace(
            mode=jnp.full(shape, _HOOKED[method], jnp.int32),
            params=jax.tree.map(per_task, explorer_params)))
    return state


def _between_chunks(cfg: MESAConfig, prog: MetaTestProgram, bc_keys: Array, curve: list,
                    evaluate: Callable[[Any], dict]) -> Callable[[Any, int], tuple[Any, dict]]:
    """``after(state, chunks done) -> (state, extra metrics)`` of a meta-test: the
    behaviour-cloning warm-up once ``learning_starts`` env steps are stored (Sec. 6.5: clone
    the mostly exploration behaviour stored so far), and every ``eval_every`` chunks the greedy
    return (appended to ``curve``)."""
    bc_done = cfg.bc_steps == 0 or prog.bc is None

    def after(state: Any, c: int) -> tuple[Any, dict]:
        nonlocal bc_done
        out: dict = {}
        steps_now = c * prog.chunk_updates * prog.learner.env_steps_per_update
        if not bc_done and steps_now >= cfg.maddpg.learning_starts:
            bc_done = True
            state = prog.bc(state, bc_keys)
            out["bc_warmup"] = cfg.bc_steps
        if cfg.eval_every and (c % cfg.eval_every == 0):
            g = np.asarray(evaluate(state)["greedy_return"])
            curve.append([steps_now, g.mean(1).tolist()])
            out["greedy_return"] = g.mean(1).tolist()
        return state, out

    return after

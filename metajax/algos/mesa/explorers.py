"""Alg. 1 lines 7-20: the exploration policies.

``E`` MADDPG policies are trained one after another over the training tasks on the coverage
reward of Eq. 6 (:class:`CoverageAux`): a visit within ``eps`` of ``M_*`` earns the stored
``r_hat`` of the nearest pair, times ``f_d(N) = 1/N^5`` of the trajectory-level pseudo-count of
its cluster, started from the global count ``N_hat``. After each policy, ``N_hat`` grows by
that policy's visits. :func:`zero_shot` then measures the policies on the test tasks before
meta-testing (Fig. 7, left).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.core import Observation
from metajax.algos.maddpg import make_maddpg
from metajax.algos.mesa import core as mc
from metajax.algos.mesa.config import MESAConfig
from metajax.algos.mesa.features import features, scan_chunk
from metajax.algos.mesa.kmeans import assign
from metajax.algos.mesa.play import high_reward_hits, make_player, subspace_coverage
from metajax.algos.mesa.stages import Context, run_stage, stage_chunk, updates
from metajax.algos.mesa.subspace import Subspace
from metajax.core.interfaces import Learner, RolloutHooks
from metajax.core.ops import ONCE, cycle, take

Array = jax.Array


@struct.dataclass
class CoverageAux:
    """Carried by an exploration policy in training (``N`` parallel games).

    * ``ds``: ``M_*`` (the union over training tasks); ``centers`` ``[K, D]``: its k-means;
    * ``global_counts`` ``[K]``: ``N_hat``; ``counts`` ``[N, K]``: each game's trajectory
      count ``N``, reset to ``N_hat`` when its episode ends;
    * ``reward_ema``, ``inside_ema``: ``[]`` running means of the coverage reward and of the
      fraction of visits within ``eps`` of ``M_*`` (metrics); ``eps``: ``[]`` the radius.
    """

    ds: mc.HighRewardDataset
    centers: Array
    global_counts: Array
    counts: Array
    reward_ema: Array
    inside_ema: Array
    eps: Array


def coverage_step(aux: CoverageAux, sa: Array, done: Array,
                  power: float) -> tuple[Array, CoverageAux]:
    """:func:`metajax.algos.mesa.core.coverage_step` (Eq. 6, radius ``aux.eps``) on the carried
    state of ``N`` games: ``sa [N, D]`` visited pairs, ``done [N]`` episode ends after this step.
    Returns ``(reward [N], aux)`` with the counts advanced and the running metrics updated."""
    r, inside, counts = mc.coverage_step(aux.ds, aux.centers, aux.counts, aux.global_counts,
                                         sa, done, aux.eps, power, scan_chunk(*sa.shape))
    rate = 0.01
    return r, aux.replace(
        counts=counts,
        reward_ema=(1 - rate) * aux.reward_ema + rate * jnp.mean(r),
        inside_ema=(1 - rate) * aux.inside_ema + rate * jnp.mean(inside.astype(jnp.float32)))


def coverage_hooks(cfg: MESAConfig, n_envs: int, capacity: int, dim: int) -> RolloutHooks:
    """Hooks replacing the env reward by the coverage reward (the state of ``M_*``, the hash
    and ``N_hat`` is set after ``init``)."""

    def init(key: Array, games: Any) -> CoverageAux:
        del key, games
        k = cfg.num_clusters
        return CoverageAux(
            ds=mc.dataset_init(capacity, dim), centers=jnp.zeros((k, dim)),
            global_counts=jnp.zeros((k,), jnp.int32), counts=jnp.zeros((n_envs, k), jnp.int32),
            reward_ema=jnp.zeros(()), inside_ema=jnp.zeros(()),
            eps=jnp.asarray(cfg.eps, jnp.float32))

    def reward(aux: CoverageAux, obs: Observation, action: Array, ts: Any):
        sa = jax.vmap(functools.partial(features, cfg))(obs, action)
        r, aux = coverage_step(aux, sa, ts.done, cfg.decay_power)
        return r[:, None] * obs.agent_mask.astype(jnp.float32), aux

    def metrics(aux: CoverageAux) -> dict:
        return {"coverage_reward": aux.reward_ema, "in_subspace": aux.inside_ema}

    return RolloutHooks(init=init, reward=reward, metrics=metrics)


class Explorers(NamedTuple):
    """The exploration policies of every seed: ``params`` ``[S, E, ...]`` their actors'
    parameters, ``counts`` ``[S, K]`` the global pseudo-count ``N_hat`` after the last."""

    params: Any
    counts: Array


def explorer_games(ctx: Context) -> Any:
    """``[S, N]`` games of an exploration policy (or a pretrained baseline): its ``N``
    parallel games cycle over each seed's training tasks."""
    n_envs = ctx.cfg.explorer_config.num_envs
    return jax.vmap(lambda t: cycle(t, n_envs))(ctx.train)


def explorer_learner(ctx: Context, hooks: RolloutHooks | None = None) -> Learner:
    """MADDPG with ``cfg.explorer_config`` on the exploration policies' games (``hooks``:
    :func:`coverage_hooks` to train one; without, its ``act`` plays a trained one)."""
    return make_maddpg(ctx.cfg.explorer_config, ctx.env, take(explorer_games(ctx), 0),
                       hooks=hooks)


def explorers_like(ctx: Context, learner: Learner) -> Explorers:
    """Zeros of the structure of :class:`Explorers` (the ``explorer<i>`` checkpoints)."""
    cfg = ctx.cfg
    actor = jax.eval_shape(learner.init, jax.random.PRNGKey(0)).params.actor
    params = jax.tree.map(
        lambda x: jnp.zeros((cfg.seeds, cfg.num_explorers, *x.shape), x.dtype), actor)
    return Explorers(params=params, counts=jnp.zeros((cfg.seeds, cfg.num_clusters), jnp.int32))


def train_explorers(ctx: Context, sub: Subspace) -> Explorers:
    """Alg. 1 lines 7-20 for every seed: ``E`` policies one after another, each on the
    coverage reward from the global count ``N_hat`` so far (lines 8-18), then ``N_hat`` grown
    by its visits (line 19). Policy ``i`` is the stage ``explorer<i>`` (reloaded when
    resuming). Records ``global_counts`` and ``global_counts_per_explorer`` ``[E][S][K]``."""
    cfg = ctx.cfg
    explorer = explorer_learner(ctx, coverage_hooks(
        cfg, cfg.explorer_config.num_envs, cfg.n_train * cfg.dataset_capacity, ctx.dim))
    like = explorers_like(ctx, explorer)
    train_one = _policy_trainer(ctx, explorer, sub)
    visits = _visit_counter(ctx, explorer, sub)
    params, counts = like
    counts_after: list = []  # N_hat after each exploration policy [E][S][K]
    total_s = 0.0  # summed per policy (a resumed policy adds its recorded time)
    for i in range(cfg.num_explorers):
        name = f"explorer{i}"
        if ctx.finished(name):
            saved, meta = ctx.store.load(name, like._asdict())
            params, counts = saved["params"], saved["counts"]
            # a policy saved before stage times were recorded: the total is unknown
            total_s += float(meta.get("seconds", float("nan")))
            ctx.log.say(f"resumed: exploration policy {i}")
        else:
            t0 = time.perf_counter()
            p = train_one(i, counts)
            params = jax.tree.map(lambda s, x, i=i: s.at[:, i].set(x), params, p)
            counts = visits(p, counts, ctx.keys(100 + i))
            seconds = round(time.perf_counter() - t0, 1)
            total_s += seconds
            ctx.store.save(name, {"params": params, "counts": counts}, {"seconds": seconds})
            ctx.log.say(f"exploration policy {i}: N_hat covers "
                        f"{np.asarray(counts > 0).sum(-1).tolist()} of {cfg.num_clusters} "
                        "clusters per seed")
        counts_after.append(np.asarray(counts).tolist())
    if math.isfinite(total_s):
        ctx.results["timing"]["explorers_s"] = round(total_s, 1)
    ctx.results["global_counts"] = np.asarray(counts).tolist()
    ctx.results["global_counts_per_explorer"] = counts_after
    return Explorers(params=params, counts=counts)


def _policy_trainer(ctx: Context, explorer: Learner,
                    sub: Subspace) -> Callable[[int, Array], Any]:
    """``train_one(i, counts [S, K]) -> actor params [S, ...]``: lines 8-18 for policy ``i``
    of every seed, its counts started from ``N_hat = counts`` (one compiled chunk serves every
    policy)."""
    cfg = ctx.cfg
    games = explorer_games(ctx)
    init = jax.jit(jax.vmap(explorer.init), compiler_options=ONCE)
    n_up = updates(cfg.explorer_steps, explorer)
    chunk = min(cfg.chunk_updates, n_up)
    step = stage_chunk(explorer, chunk, 1, cfg.xla_fast)

    def train_one(i: int, counts: Array) -> Any:
        state = init(jax.vmap(lambda k: jax.random.fold_in(k, i))(ctx.keys(3)), games)
        # copies: the chunk donates its input state
        state = state.replace(aux=state.aux.replace(
            ds=jax.tree.map(jnp.copy, sub.ds), centers=jnp.copy(sub.centers),
            global_counts=jnp.copy(counts),
            counts=jnp.broadcast_to(counts[:, None, :], state.aux.counts.shape),
            eps=jnp.copy(sub.eps)))
        state = run_stage(ctx.log, f"explorer{i}", step, state, n_up, chunk,
                          explorer.env_steps_per_update, allow_nonfinite=cfg.allow_nonfinite)
        return state.params.actor

    return train_one


def _visit_counter(ctx: Context, explorer: Learner,
                   sub: Subspace) -> Callable[[Any, Array, Array], Array]:
    """``visits(params [S, ...], counts [S, K], keys [S]) -> counts [S, K]``: Alg. 1 line 19,
    ``N_hat`` plus the visits (within ``eps`` of ``M_*`` unless ``count_outside``) of one
    policy over ``count_episodes`` episodes of every training task."""
    cfg, dim = ctx.cfg, ctx.dim
    play = make_player(ctx.env, explorer, cfg)

    @functools.partial(jax.jit, compiler_options=ONCE)
    def one_seed(params: Any, ds: mc.HighRewardDataset, centers: Array, counts: Array,
                 tasks: Any, key: Array, eps: Array) -> Array:
        def per_task(task, k):
            return jax.vmap(play, (None, None, 0, None))(
                params, task, jax.random.split(k, cfg.count_episodes), False)

        st = jax.vmap(per_task)(tasks, jax.random.split(key, cfg.n_train))
        sa = st.sa.reshape(-1, dim)
        alive = st.alive.reshape(-1)
        dist = mc.min_distance(ds, sa, scan_chunk(*sa.shape))
        ok = alive & ((dist < eps) | cfg.count_outside)
        return mc.update_global(counts, mc.visit_counts(
            assign(centers, sa), cfg.num_clusters, ok))

    def visits(params: Any, counts: Array, keys: Array) -> Array:
        return jax.vmap(one_seed)(params, sub.ds, sub.centers, counts, ctx.train, keys, sub.eps)

    return visits


def zero_shot(ctx: Context, sub: Subspace, explorers: Explorers) -> dict:
    """Fig. 7 (left), before meta-testing: high-reward transitions per test episode of each
    exploration policy and of uniformly random actions, and how many of the test tasks'
    high-reward pairs lie within ``eps`` of ``M_*`` (stage ``zero_shot``; reloaded when
    resuming). Recorded as ``results["zero_shot_high_reward"]``."""
    if ctx.finished("zero_shot"):
        _, meta = ctx.store.load("zero_shot", {"seed_keys": ctx.seed_keys})
        ctx.results["zero_shot_high_reward"] = meta["zero_shot"]
        return meta["zero_shot"]
    out = _zero_shot_measure(ctx, sub, explorers)
    ctx.results["zero_shot_high_reward"] = out
    ctx.store.save("zero_shot", {"seed_keys": ctx.seed_keys}, {"zero_shot": out})
    ctx.log.say("zero-shot high-reward transitions per test episode: explorers "
                f"{[round(v, 3) for v in out['explorers']]}, random {out['random']:.3f}; of "
                f"{out['test_pairs_seen']} high-reward pairs of the test tasks met by random "
                f"play, {out['test_pairs_in_subspace']:.0%} lie within eps of M_*")
    return out


def _zero_shot_measure(ctx: Context, sub: Subspace, explorers: Explorers) -> dict:
    cfg = ctx.cfg
    learner = explorer_learner(ctx)
    play = make_player(ctx.env, learner, cfg)
    rand_play = make_player(ctx.env, learner, cfg, random_policy=True)
    tk = jax.vmap(lambda k: jax.random.split(k, cfg.n_test))(ctx.keys(4))
    hits = jax.jit(jax.vmap(jax.vmap(jax.vmap(  # seeds, explorers, test tasks
        high_reward_hits(play, cfg), (None, 0, 0)), (0, None, None))), compiler_options=ONCE)
    rand_hits = jax.jit(jax.vmap(jax.vmap(high_reward_hits(rand_play, cfg), (None, 0, 0)),
                                 (None, 0, 0)), compiler_options=ONCE)
    per, ex_ret = np.moveaxis(np.asarray(hits(explorers.params, ctx.test, tk)), -1, 0)
    covered = jax.jit(jax.vmap(jax.vmap(
        subspace_coverage(rand_play, cfg), (None, 0, 0, None)), (0, 0, 0, 0)),
        compiler_options=ONCE)
    inside, total = (np.asarray(x) for x in covered(sub.ds, ctx.test, tk, sub.eps))
    rand_per, rand_ret = np.moveaxis(np.asarray(rand_hits(None, ctx.test, tk)), -1, 0)
    return {"explorers": per.mean((0, 2)).tolist(),  # [S, E, K] -> [E]
            "random": float(np.mean(rand_per)),
            "test_pairs_in_subspace": float(inside.sum() / max(total.sum(), 1)),
            "test_pairs_seen": int(total.sum()),
            # per seed (and explorer) and test task
            "explorers_per_task": per.tolist(),
            "random_per_task": rand_per.tolist(),
            # the trivial-policy references: return per episode of each explorer and of a
            # uniformly random policy on the test tasks
            "explorers_return_per_task": ex_ret.tolist(),
            "random_return_per_task": rand_ret.tolist(),
            "test_pairs_inside_per_task": inside.tolist(),
            "test_pairs_seen_per_task": total.tolist()}

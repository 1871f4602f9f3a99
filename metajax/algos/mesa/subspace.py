"""Alg. 1 lines 1-6: the high-reward subspace ``M_*`` and its hash.

MADDPG is trained on each training task (one learner per task, vmapped over tasks and seeds);
every rollout's joint (state, action) vectors with reward ``>= R*``, and their zero-reward
predecessors relabelled with Eq. 5, enter a fixed-capacity dataset (reservoir sampled per
task, then the union over tasks). k-means on ``M_*`` gives the hash ``phi``
(:mod:`metajax.algos.mesa.kmeans`); with ``eps_quantile`` the radius of Eq. 6 is chosen per
seed from the training tasks alone.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.core import Observation
from metajax.algos.maddpg import MADDPGState, make_maddpg
from metajax.algos.mesa import core as mc
from metajax.algos.mesa.config import MESAConfig
from metajax.algos.mesa.features import features, nest, scan_chunk, shared_reward
from metajax.algos.mesa.kmeans import fit_kmeans
from metajax.algos.mesa.stages import Context, resumed_time, run_stage, stage_chunk, updates
from metajax.core.interfaces import RolloutHooks
from metajax.core.ops import ONCE, take, tile

Array = jax.Array


@struct.dataclass
class CollectAux:
    """Carried by the collecting learner (one training task, ``N`` parallel games).

    * ``ds``: this task's ``M_*`` (capacity ``C``);
    * ``sa`` ``[R, N, D]``, ``reward`` ``[R, N]``, ``done`` ``[R, N]``: the latest rollout of
      ``R`` steps (written by the reward hook, flushed into ``ds`` after the rollout);
    * ``t``: ``[]`` int32 step within the rollout; ``key``: reservoir sampling key.
    """

    ds: mc.HighRewardDataset
    sa: Array
    reward: Array
    done: Array
    t: Array
    key: Array


def collect_hooks(cfg: MESAConfig, n_envs: int, steps: int, dim: int) -> RolloutHooks:
    """Hooks that record each rollout's joint features, shared rewards and episode ends."""

    def init(key: Array, games: Any) -> CollectAux:
        del games
        return CollectAux(
            ds=mc.dataset_init(cfg.dataset_capacity, dim),
            sa=jnp.zeros((steps, n_envs, dim)), reward=jnp.zeros((steps, n_envs)),
            done=jnp.zeros((steps, n_envs), bool), t=jnp.zeros((), jnp.int32), key=key)

    def reward(aux: CollectAux, obs: Observation, action: Array, ts: Any):
        sa = jax.vmap(functools.partial(features, cfg))(obs, action)
        r = shared_reward(ts.reward, obs.agent_mask)
        t = aux.t % steps
        aux = aux.replace(sa=aux.sa.at[t].set(sa), reward=aux.reward.at[t].set(r),
                          done=aux.done.at[t].set(ts.done), t=aux.t + 1)
        return ts.reward, aux

    def metrics(aux: CollectAux) -> dict:
        return {"dataset_size": jnp.sum(aux.ds.mask), "dataset_offered": aux.ds.count}

    return RolloutHooks(init=init, reward=reward, metrics=metrics)


def flush_rollout(aux: CollectAux, cfg: MESAConfig) -> CollectAux:
    """Add the recorded rollout's valuable pairs and relabelled predecessors to ``M_*``
    (:func:`metajax.algos.mesa.core.dataset_keep`; values from Eq. 5). Relabelling looks ahead only
    within the rollout, so a rollout of whole episodes is exact (a predecessor more than a
    rollout away from its valuable pair would get ``gamma^(t'-t) ~ 0`` anyway)."""
    r, done = aux.reward.T, aux.done.T  # [N, R]
    done = done.at[:, -1].set(True)  # nothing beyond this rollout is known
    keep = jax.vmap(lambda rr, dd: mc.dataset_keep(rr, cfg.threshold, dd, cfg.relabel_window))(
        r, done)
    value = jax.vmap(lambda rr, dd: mc.relabel_rewards(rr, cfg.relabel_gamma, dd))(r, done)
    sa = jnp.swapaxes(aux.sa, 0, 1)  # [N, R, D]
    key, k_add = jax.random.split(aux.key)
    ds = mc.dataset_add(aux.ds, sa.reshape(-1, sa.shape[-1]), keep.reshape(-1), k_add,
                        value.reshape(-1))
    return aux.replace(ds=ds, t=jnp.zeros((), jnp.int32), key=key)


def subspace_like(cfg: MESAConfig, dim: int) -> dict:
    """The structure of the ``subspace`` stage checkpoint: ``{"ds": M_* [S] (capacity
    n_train * dataset_capacity), "centers": [S, K, D]}`` (to restore it)."""
    cap = cfg.n_train * cfg.dataset_capacity
    return {"ds": jax.vmap(lambda _: mc.dataset_init(cap, dim))(jnp.arange(cfg.seeds)),
            "centers": jnp.zeros((cfg.seeds, cfg.num_clusters, dim))}


class Subspace(NamedTuple):
    """What Alg. 1 lines 1-6 give the later stages, per seed: ``ds`` ``M_*`` ``[S]`` (capacity
    ``n_train * dataset_capacity``), ``centers`` ``[S, K, D]`` its k-means (the hash ``phi``),
    ``eps`` ``[S]`` float32 the radius of Eq. 6."""

    ds: mc.HighRewardDataset
    centers: Array
    eps: Array


def collect_subspace(ctx: Context) -> Subspace:
    """Alg. 1 lines 1-6 for every seed: collect ``M_*`` on the training tasks, fit k-means and
    choose the radius (stage ``subspace``; reloaded when resuming). Records
    ``dataset_size_per_task``, ``dataset_size`` and ``eps_per_seed`` in ``ctx.results``."""
    cfg = ctx.cfg
    if ctx.finished("subspace"):
        tree, meta = ctx.store.load("subspace", subspace_like(cfg, ctx.dim))
        resumed_time(ctx.results, "collect_s", meta)
        if "size_per_task" in meta:
            ctx.results["dataset_size_per_task"] = meta["size_per_task"]
        eps_list = meta.get("eps", [cfg.eps] * cfg.seeds)
        ctx.log.say(f"resumed: high-reward subspace ({meta.get('size')} pairs per seed)")
    else:
        tree, eps_list = _collect_and_fit(ctx)
    ctx.results["dataset_size"] = np.asarray(jnp.sum(tree["ds"].mask, -1)).tolist()
    ctx.results["eps_per_seed"] = eps_list
    if cfg.eps_quantile is not None:
        ctx.log.say(f"eps from the training tasks (quantile {cfg.eps_quantile}): "
                    f"{[round(e, 3) for e in eps_list]}")
    return Subspace(ds=tree["ds"], centers=tree["centers"],
                    eps=jnp.asarray(eps_list, jnp.float32))


def _collect_and_fit(ctx: Context) -> tuple[dict, list[float]]:
    """Lines 2-6 (:func:`collect_datasets`), the union over tasks, k-means and the radius;
    saved as the stage ``subspace``. Returns ``({"ds", "centers"}, eps per seed)``."""
    cfg = ctx.cfg
    t0 = time.perf_counter()
    per_task_ds = collect_datasets(ctx)  # [S, B] datasets
    ds = jax.vmap(mc.dataset_merge)(per_task_ds)
    per_task = np.asarray(jnp.sum(per_task_ds.mask, -1)).tolist()  # [S, B]
    fit = jax.jit(jax.vmap(lambda k, d: fit_kmeans(k, d.data, cfg.num_clusters, d.mask,
                                                   cfg.kmeans_iters, 4).centers),
                  compiler_options=ONCE)
    tree = {"ds": ds, "centers": fit(ctx.keys(2), ds)}
    sizes = np.asarray(jnp.sum(ds.mask, -1))
    eps_list = training_radius(cfg, per_task_ds, ctx.dim)
    del per_task_ds
    seconds = ctx.timed("collect_s", t0)
    ctx.store.save("subspace", tree, {"size": sizes.tolist(), "size_per_task": per_task,
                                      "eps": eps_list, "seconds": seconds})
    ctx.results["dataset_size_per_task"] = per_task
    ctx.log.say(f"M_*: {sizes.tolist()} pairs per seed (capacity "
                f"{cfg.n_train * cfg.dataset_capacity}); k-means with {cfg.num_clusters} "
                "clusters")
    return tree, eps_list


def collect_datasets(ctx: Context) -> mc.HighRewardDataset:
    """Alg. 1 lines 2-5: MADDPG (``cfg.collect_config``) trained on every training task of
    every seed for ``collect_steps``, each rollout flushed into that task's ``M_*``
    (:func:`flush_rollout`); the ``[S, B]`` datasets (stage ``collect``'s metrics file)."""
    cfg, n_tasks = ctx.cfg, ctx.cfg.n_train
    ccfg = cfg.collect_config
    collector = make_maddpg(ccfg, ctx.env, tile(take(take(ctx.train, 0), 0), ccfg.num_envs),
                            hooks=collect_hooks(cfg, ccfg.num_envs, ccfg.rollout_steps, ctx.dim))

    def init(key: Array, task: Any) -> MADDPGState:
        return collector.init(key, tile(task, ccfg.num_envs))

    def update(state: MADDPGState, t: Array) -> tuple[MADDPGState, dict]:
        state, m = collector.update(state, t)
        return state.replace(aux=flush_rollout(state.aux, cfg)), m

    keys = jax.vmap(lambda k: jax.random.split(k, n_tasks))(ctx.keys(1))
    state = jax.jit(nest(init, 2, (0, 0)), compiler_options=ONCE)(keys, ctx.train)
    n_up = updates(cfg.collect_steps, collector)
    chunk = min(cfg.chunk_updates, n_up)
    step = stage_chunk(collector._replace(update=update), chunk, 2, cfg.xla_fast)
    state = run_stage(ctx.log, "collect", step, state, n_up, chunk,
                      collector.env_steps_per_update, allow_nonfinite=cfg.allow_nonfinite)
    return state.aux.ds


def training_radius(cfg: MESAConfig, per_task_ds: mc.HighRewardDataset,
                    dim: int) -> list[float]:
    """Eq. 6's radius per seed: ``cfg.eps``, or with ``eps_quantile`` the quantile of the
    distances between the ``[S, B]`` training tasks' pairs
    (:func:`metajax.algos.mesa.core.radius_from_training`); a seed where no pair has a
    neighbour in another task keeps ``cfg.eps``."""
    if cfg.eps_quantile is None:
        return [cfg.eps] * cfg.seeds
    radius = jax.jit(jax.vmap(lambda d: mc.radius_from_training(
        d, cfg.eps_quantile, scan_chunk(cfg.dataset_capacity, dim))), compiler_options=ONCE)
    return [e if math.isfinite(e) else cfg.eps
            for e in np.asarray(radius(per_task_ds)).tolist()]

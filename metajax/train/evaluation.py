"""Evaluation of a trained policy: whole episodes of every task for every seed (greedy and
stochastic), per-task and per-team summaries, the statistics block of ``results.json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import MultiAgentEnv
from metajax.core.episode import Step, play_episode
from metajax.core.interfaces import Learner
from metajax.core.ops import ONCE
from metajax.core.taskspec import distinct_tasks
from metajax.train import run_stats
from metajax.train.distributed import host_inputs, to_host

Array = jax.Array


def make_evaluator(
    learner: Learner, env: MultiAgentEnv, episodes: int, stats: bool = False
) -> Callable[[Any, Any, Array, bool], Any]:
    """``evaluate(params [S], tasks [K], key, greedy, carry0=None) -> returns
    [S, K, episodes, A]``.

    ``greedy`` is traced: greedy and stochastic evaluation share one compilation. ``carry0``
    (optional, ``[A, h]``): the policy's carry at every episode start instead of
    ``learner.initial_carry()`` (e.g. MRA's latent carry that fixes every agent's ``z``,
    :func:`metajax.algos.mra.fixed_latent_carry`).

    Plays whole episodes (no auto-reset): per-agent undiscounted returns, accumulated until
    the episode ends; padded agents return 0.

    ``stats=True``: ``evaluate`` returns ``(returns, stats)`` with ``stats`` a dict of
    ``[S, K, episodes]`` float32 arrays from the same episodes: ``"length"``, the number of steps
    until the episode ended (``env.episode_length`` if it never did), and, for every scalar
    float entry of the timestep ``extras`` that ``env.step`` returns (e.g. Pac-Man's ``caught``
    and ``eaten``), its sum over the steps of the episode (non-scalar extras are skipped).
    """
    extra_keys = _scalar_extras(env) if stats else ()

    def accumulate(step: Step) -> dict:  # the episode's length and its scalar extras' sums
        return {"length": jnp.float32(1.0),
                **{n: step.ts.extras[n].astype(jnp.float32) for n in extra_keys}}

    def episode(params: Any, task: Any, key: Array, greedy: bool, carry0: Array) -> Any:
        def policy(p, obs, carry, k):
            return learner.policy(p, obs, carry, k, greedy)

        out = play_episode(policy, env, params, task, key, carry0,
                           accumulate=accumulate if stats else None)
        return (out.returns, out.sums) if stats else out.returns

    def evaluate(params: Any, tasks: Any, key: Array, greedy: bool,
                 carry0: Array | None = None) -> Any:
        n_seeds = jax.tree.leaves(params)[0].shape[0]
        n_tasks = jax.tree.leaves(tasks)[0].shape[0]
        keys = jax.random.split(key, n_seeds * n_tasks * episodes).reshape(
            n_seeds, n_tasks, episodes, -1)
        carry0 = learner.initial_carry() if carry0 is None else carry0
        f = jax.vmap(episode, (None, None, 0, None, None))  # episodes
        f = jax.vmap(f, (None, 0, 0, None, None))  # tasks
        f = jax.vmap(f, (0, None, 0, None, None))  # seeds
        return f(params, tasks, keys, greedy, carry0)

    return jax.jit(evaluate, compiler_options=ONCE)


def _scalar_extras(env: MultiAgentEnv) -> tuple[str, ...]:
    """Names of the scalar float entries of the ``extras`` that ``env.step`` returns (found
    from shapes only, with :func:`jax.eval_shape`), sorted."""

    def extras(key: Array) -> dict:
        state, _ = env.reset(key)
        _, ts = env.step(state, env.action_spec.generate_value())
        return ts.extras

    shapes = jax.eval_shape(extras, jax.random.PRNGKey(0))
    return tuple(sorted(
        n for n, v in shapes.items()
        if isinstance(v, jax.ShapeDtypeStruct) and v.shape == ()
        and jnp.issubdtype(v.dtype, jnp.floating)))


def team_returns(returns: Any, team: Any, mask: Any) -> dict[int, np.ndarray]:
    """Mean return per agent of each team.

    Args:
      returns: ``[..., A]`` per-agent returns (e.g. ``[S, K, E, A]`` from the evaluator).
      team: ``[A]`` int team of each slot (``obs.team``).
      mask: ``[A]`` bool (or broadcastable to ``returns``, e.g. ``[K, 1, A]``), agents in the
        game.

    Returns:
      ``{t: [...]}`` for every team with an agent in ``mask``: the mean of ``returns`` over
      that team's agents in the game (NaN where a row has none); ``[]`` for ``[A]`` returns.
    """
    r = np.asarray(returns, np.float64)
    team = np.asarray(team)
    mask = np.broadcast_to(np.asarray(mask, bool), r.shape)
    out = {}
    for t in np.unique(team[mask.reshape(-1, r.shape[-1]).any(0)]):
        sel = mask & (team == t)
        n = sel.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[int(t)] = np.where(sel, r, 0.0).sum(-1) / n
    return out


def summarize_returns(returns: np.ndarray, tasks: Any, env: MultiAgentEnv) -> list[dict]:
    """Per task of ``returns [S, K, E, A]``: the mean return per active agent of each episode
    (``per_episode [S][E]``) and of each seed (``per_seed [S]``, the mean over its episodes),
    their mean and std over seeds, and the same per team (multi-team games)."""
    mask = np.asarray(jax.vmap(_agent_mask_of(env))(tasks))  # [K, A]
    team = np.asarray(_team_ids(env))
    out = []
    for k in range(returns.shape[1]):
        r = returns[:, k]  # [S, E, A]
        m = mask[k]
        per_episode = r[..., m].mean(-1)  # [S, E]
        per_seed = per_episode.mean(-1)  # [S]
        entry = {"mean": float(per_seed.mean()), "std": float(per_seed.std()),
                 "per_seed": per_seed.tolist(), "per_episode": per_episode.tolist()}
        if env.num_teams > 1:
            for t, per_ep in team_returns(r, team, m).items():  # [S, E]
                team_seed = per_ep.mean(-1)
                entry[f"team{t}"] = float(team_seed.mean())
                entry[f"team{t}_per_seed"] = team_seed.tolist()
        out.append(entry)
    return out


def _agent_mask_of(env: MultiAgentEnv) -> Callable[[Any], Array]:
    def f(task: Any) -> Array:
        _, ts = env.reset_to(jax.random.PRNGKey(0), task)
        return ts.observation.agent_mask

    return f


def _team_ids(env: MultiAgentEnv) -> Array:
    task = env.sample_task(jax.random.PRNGKey(0))
    _, ts = env.reset_to(jax.random.PRNGKey(0), task)
    return ts.observation.team


def evaluate_params(
    evaluator: Callable[..., Any], params: Any, env_steps: int, tasks: Any, env: MultiAgentEnv,
    cfg: Any, chunk: int,
) -> dict:
    """The ``results.json`` of a run at ``chunk``: ``evaluator`` (:func:`make_evaluator`) on
    the policy parameters ``params [S]`` of its ``S`` seeds, greedy and stochastic, with the
    run's evaluation key for that chunk; :func:`summarize_returns` per task, and the
    statistics of :func:`add_stats` (method name: ``cfg.name``)."""
    key = jax.random.PRNGKey(cfg.seed + 10_007 * chunk)
    out: dict = {"chunk": chunk, "env_steps": env_steps,
                 "tasks": list(cfg.eval_tasks or distinct_tasks(cfg.tasks))}
    for greedy in (True, False):
        r = to_host(evaluator(params, *host_inputs((tasks, key)), greedy))
        out["greedy" if greedy else "stochastic"] = summarize_returns(r, tasks, env)
    return add_stats(out, env, tasks, cfg.name)


def optimal_values(env: MultiAgentEnv, tasks: Any) -> list[float] | None:
    """``[K]`` the best return of each task where the env knows it (``optimal_value`` of the
    climb games, ``optimal_return`` of the multi-stage one), else None."""
    fn = getattr(env, "optimal_value", None) or getattr(env, "optimal_return", None)
    if not callable(fn):
        return None
    return np.asarray(jax.vmap(fn)(tasks), np.float64).reshape(-1).tolist()


def add_stats(results: dict, env: MultiAgentEnv, tasks: Any, label: str) -> dict:
    """``results`` (the evaluation of :func:`summarize_returns` per mode) with the env's
    ``optimal_value`` per task (where known) and the ``"stats"`` block of
    :func:`metajax.train.run_stats.train_groups` (``label``: the method's name, the run's config
    name, so that a run and its copy in another directory have the same results)."""
    opt = optimal_values(env, tasks)
    if opt is not None:
        results["optimal_value"] = opt
    results["stats"] = run_stats.stats_block(run_stats.train_groups(results, label))
    return results


def _flat_eval(results: dict) -> dict:
    flat = {}
    for mode in ("greedy", "stochastic"):
        for i, entry in enumerate(results.get(mode, [])):
            flat[f"{mode}/task{i}"] = entry["mean"]
    return flat

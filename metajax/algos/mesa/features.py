"""Joint (state, action) vectors, Eq. 6's metric, and the shapes built on them.

Joint (state, action) vectors are the padded flat observations of every agent (slices of it
optionally rescaled by ``obs_scale``) followed by every agent's action as the critic sees it
(one-hot, relaxed sample or continuous), scaled by ``action_weight`` (:func:`joint_features`);
padded agents contribute zeros. The L2 distance on them is Eq. 6's metric.

Also the small batching helpers every MESA stage uses: :func:`take`, :func:`tile`,
:func:`cycle` (task stacks) and :func:`nest` (``vmap`` over seeds, then tasks).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import MultiAgentEnv, Observation
from metajax.algos.mesa.config import MESAConfig, parse_obs_scale
from metajax.core.interfaces import ActionSpace
from metajax.core.ops import agent_mean

Array = jax.Array


def nest(fn: Callable, levels: int, in_axes: tuple) -> Callable:
    """``fn`` under ``levels`` nested ``vmap``s, each with ``in_axes`` (seeds, then tasks)."""
    for _ in range(levels):
        fn = jax.vmap(fn, in_axes=in_axes)
    return fn


def joint_features(obs: Observation, action: Array, action_weight: float = 1.0,
                   obs_scale: tuple[tuple[int, int, float], ...] = ()) -> Array:
    """The joint (state, action) vector of one game: ``[A * (d_obs + d)]`` float32.

    ``obs`` ``[A, ...]`` (every agent's padded flat view ``[A, d_obs]``), ``action`` ``[A, d]``
    (the critic's action), both zeroed for padded agents; actions scaled by
    ``action_weight``; the observation features ``start:stop`` of every agent scaled by
    ``weight`` for each slice of ``obs_scale`` (:func:`parse_obs_scale`), e.g. the stage
    one-hot of the multi-stage climb game, so that the same joint action at two stages is more
    than ``eps`` apart.
    """
    mask = obs.agent_mask[:, None].astype(jnp.float32)
    flat = obs.flat
    if obs_scale:
        if obs_scale[-1][1] > flat.shape[-1]:
            raise ValueError(f"obs_scale slice {obs_scale[-1][:2]} is beyond the "
                             f"{flat.shape[-1]} observation features")
        w = np.ones(flat.shape[-1], np.float32)
        for a, b, v in obs_scale:
            w[a:b] = v
        flat = flat * w
    a = action.reshape(action.shape[0], -1) * mask * action_weight
    return jnp.concatenate([flat.reshape(-1), a.reshape(-1)]).astype(jnp.float32)


def features(cfg: MESAConfig, obs: Observation, action: Array) -> Array:
    """:func:`joint_features` with ``cfg``'s ``action_weight`` and ``obs_scale``: the one
    metric of ``M_*``, the coverage reward, the visit counts and the diagnostics."""
    return joint_features(obs, action, cfg.action_weight, parse_obs_scale(cfg.obs_scale))


def shared_reward(reward: Array, mask: Array) -> Array:
    """The team reward of a cooperative game: mean over the game's agents (``[..., A] ->
    [...]``)."""
    return agent_mean(reward, mask)


def scan_chunk(rows: int, dim: int) -> int:
    """Rows of ``M_*`` compared at once with ``rows`` pairs of ``dim`` features: at most 256
    (so that :func:`metajax.algos.mesa.core.nearest` skips the empty part of a large capacity) and
    ``[rows, chunk, dim]`` near 64 MB at most (one chunk of the whole capacity needed 109 GB for
    the 2A6L MPE zero-shot stage)."""
    return max(1, min(256, (1 << 24) // max(1, rows * dim)))


def feature_dim(cfg: MESAConfig, env: MultiAgentEnv, task: Any) -> int:
    """``D``, the size of :func:`features` of ``env`` (one unbatched ``task``)."""
    obs = jax.eval_shape(lambda k: env.reset_to(k, task)[1].observation, jax.random.PRNGKey(0))
    act = jax.ShapeDtypeStruct((env.max_agents, ActionSpace.of(env).dim), jnp.float32)
    return int(jax.eval_shape(functools.partial(features, cfg), obs, act).shape[0])

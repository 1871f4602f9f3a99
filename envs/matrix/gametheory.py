"""Exact game theory of the one-step climb game ``G(n, k, u, U)`` (MESA paper Sec. 4, 6.2).

The reward of a joint action depends only on ``#u``, the number of *active* players choosing the
key action ``u``:

    R = 1          if #u = k,
        1 - delta  if #u = 0,
        0          otherwise.

Every function here is pure ``jax.numpy`` and jittable (and vmappable over a stack of tasks).
A ``task`` is any pytree with scalar fields ``n_agents`` (int), ``k`` (int), ``u`` (int) and
``delta`` (float), e.g. :class:`envs.matrix.climb.ClimbTask`.

Players live on a padded axis of size ``A`` (the env's ``max_agents``): slot ``i`` is active when
``i < task.n_agents``. Padded slots are ignored: their actions and policies never change any value
below, and their own value is 0.

Mixed policies are ``[A, U]`` arrays of independent per-player action distributions (rows sum to
one). Because the reward depends only on ``#u``, values are computed from the distribution of
``#u`` (a Poisson-binomial distribution, built by a dynamic program over the players in
``O(A^2)``), never by enumerating the ``U^n`` joint actions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def active_mask(task: Any, max_agents: int) -> Array:
    """``[A]`` bool: the task's players among ``max_agents`` slots."""
    return jnp.arange(max_agents) < task.n_agents


def reward_of_count(task: Any, count: Array) -> Array:
    """float32 reward for ``count`` players choosing ``u`` (any shape, broadcast)."""
    count = jnp.asarray(count)
    delta = jnp.asarray(task.delta, jnp.float32)
    return jnp.where(count == task.k, 1.0, jnp.where(count == 0, 1.0 - delta, 0.0)).astype(
        jnp.float32
    )


def reward_by_count(task: Any, max_agents: int) -> Array:
    """``[A + 1]`` float32: entry ``c`` is the reward when exactly ``c`` players choose ``u``."""
    return reward_of_count(task, jnp.arange(max_agents + 1))


def count_u(task: Any, action: Array) -> Array:
    """``[]`` int32: number of active players whose action (``[A]`` int) is ``u``."""
    active = active_mask(task, action.shape[-1])
    return jnp.sum(active & (action == task.u)).astype(jnp.int32)


def joint_reward(task: Any, action: Array) -> Array:
    """``[]`` float32 shared reward of the joint action ``[A]`` int (padded slots ignored)."""
    return reward_of_count(task, count_u(task, action))


def payoff_table(task: Any, num_actions: int, n: int) -> Array:
    """The full payoff table ``[U] * n`` float32 of the ``n`` active players.

    Entry ``[a_0, ..., a_{n-1}]`` is the shared reward of that joint action. ``n`` and
    ``num_actions`` are static (the shape depends on them); ``n`` should equal
    ``task.n_agents``. For ``n = 2`` this is the ``[U, U]`` matrix of the game.
    """
    hits = (jnp.arange(num_actions) == task.u).astype(jnp.int32)  # [U]
    count = jnp.zeros((num_actions,) * n, jnp.int32)
    for i in range(n):
        shape = [1] * n
        shape[i] = num_actions
        count = count + hits.reshape(shape)
    return reward_of_count(task, count)


def prob_u(task: Any, policies: Array) -> Array:
    """``[A]`` float32: probability that each player chooses ``u`` (0 for padded slots)."""
    active = active_mask(task, policies.shape[0])
    p = jnp.take(policies, task.u, axis=-1).astype(jnp.float32)
    return jnp.where(active, p, 0.0)


def count_distribution(p: Array) -> Array:
    """``[A + 1]`` distribution of the number of successes of independent Bernoulli(``p[i]``).

    Dynamic program over the players (``O(A^2)``); a player with ``p = 0`` changes nothing.
    """
    a = p.shape[0]
    init = jnp.zeros((a + 1,), jnp.float32).at[0].set(1.0)

    def add_player(dist: Array, pi: Array) -> tuple[Array, None]:
        shifted = jnp.concatenate([jnp.zeros((1,), dist.dtype), dist[:-1]])
        return dist * (1.0 - pi) + shifted * pi, None

    dist, _ = jax.lax.scan(add_player, init, p)
    return dist


def expected_return(task: Any, policies: Array) -> Array:
    """``[]`` float32 expected shared reward when the active players play ``policies [A, U]``."""
    dist = count_distribution(prob_u(task, policies))
    return jnp.dot(dist, reward_by_count(task, policies.shape[0]))


def deviation_values(task: Any, policies: Array, i: Array | int) -> tuple[Array, Array]:
    """Values for player ``i`` of playing ``u`` and of playing any other action.

    The others keep ``policies``. Returns ``(value_u, value_not_u)``, float32 scalars.
    """
    a = policies.shape[0]
    p = prob_u(task, policies)
    p_others = jnp.where(jnp.arange(a) == i, 0.0, p)
    dist = count_distribution(p_others)  # [A + 1], last entry is always 0 here
    r = reward_by_count(task, a)
    value_not_u = jnp.dot(dist, r)
    value_u = jnp.dot(dist[:-1], r[1:])
    return value_u, value_not_u


def best_response_value(task: Any, policies: Array, i: Array | int) -> Array:
    """``[]`` float32 value of player ``i``'s best response to the others' ``policies``.

    The best response is pure: either ``u`` or any other action (all non-``u`` actions are
    equivalent). A padded slot ``i`` has value 0.
    """
    value_u, value_not_u = deviation_values(task, policies, i)
    best = value_u if policies.shape[1] == 1 else jnp.maximum(value_u, value_not_u)
    return jnp.where(i < task.n_agents, best, 0.0)


def nash_conv(task: Any, policies: Array) -> Array:
    """``[]`` float32 NashConv: sum over active players of (best-response value - value).

    It is 0 exactly at the Nash equilibria (pure or mixed) and positive elsewhere.
    """
    a = policies.shape[0]
    idx = jnp.arange(a)
    br = jax.vmap(lambda i: best_response_value(task, policies, i))(idx)
    gap = jnp.where(idx < task.n_agents, br - expected_return(task, policies), 0.0)
    return jnp.sum(gap)


def optimal_value(task: Any, num_actions: int = 2) -> Array:
    """``[]`` float32 best achievable reward: 1 whenever ``1 <= k <= n`` (with ``U >= 2``).

    ``num_actions`` (static) only matters for the degenerate ``U = 1`` game, where every player
    must play ``u``.
    """
    if num_actions == 1:
        return reward_of_count(task, task.n_agents)
    delta = jnp.asarray(task.delta, jnp.float32)
    best_other = jnp.maximum(1.0 - delta, 0.0)
    return jnp.where(task.k <= task.n_agents, 1.0, best_other).astype(jnp.float32)


def suboptimal_value(task: Any) -> Array:
    """``[]`` float32 reward ``1 - delta`` of the sub-optimal equilibria (nobody plays ``u``)."""
    return (1.0 - jnp.asarray(task.delta, jnp.float32)).astype(jnp.float32)


def greedy_action(policies: Array) -> Array:
    """``[A]`` int32 joint action: each player's most likely action."""
    return jnp.argmax(policies, axis=-1).astype(jnp.int32)


def greedy_value(task: Any, policies: Array) -> Array:
    """``[]`` float32 reward of the joint action made of each player's argmax action."""
    return joint_reward(task, greedy_action(policies))


def is_optimal_joint_action(task: Any, action: Array, num_actions: int = 2) -> Array:
    """``[]`` bool: the joint action ``[A]`` reaches :func:`optimal_value`."""
    return joint_reward(task, action) >= optimal_value(task, num_actions)

"""The training rollout: ``steps`` env steps of ``N`` parallel games, collected as replay items.

Nothing here knows an algorithm. A learner passes in

* ``env_step(env_state [N], env_action [N, A, ...]) -> (env_state, ts)``: one step of the
  ``N`` auto-reset games (e.g. ``jax.vmap(AutoReset(env).step)``);
* ``behaviour(obs [N], carry [N, A, h], aux, key, env_steps []) -> (Acted, aux)``: its
  behaviour policy for one step of every game (``env_steps`` the run's env steps before this
  step, for schedules; ``aux`` a state the policy may carry, e.g. hooks' state, else ``None``);
* ``relabel(aux, obs [N], action [N, A, d], ts) -> (reward [N, A], aux)`` (optional): the
  reward to store in place of the env's (``ts.reward``).

:func:`rollout` scans the steps and returns the new :class:`RolloutState`, the
:class:`~metajax.core.replay.Transition` items ``[steps * N]`` (step-major) and the
:class:`RolloutStats` of the episodes that ended. Episode returns always count the env reward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from envs.core import Observation
from metajax.core.ops import agent_mean
from metajax.core.replay import Transition

Array = jax.Array


class Acted(NamedTuple):
    """What a behaviour policy did in one step of ``N`` games (``A`` agents).

    * ``env_action``: ``[N, A, ...]`` the action the env executes;
    * ``action``: ``[N, A, d]`` the action as stored (what a critic sees);
    * ``carry``: ``[N, A, h]`` the policy's recurrent state after the step (before a reset);
    * ``latent``: ``[N, A, k]`` the latent codes the policy was conditioned on (``k = 0``).
    """

    env_action: Array
    action: Array
    carry: Array
    latent: Array


@struct.dataclass
class RolloutState:
    """What a rollout carries from one step to the next (every field ``[N, ...]``).

    * ``env_state``: the auto-reset env states; ``obs``: current observations ``[N, A, ...]``;
    * ``carry``: ``[N, A, h]`` the policy's recurrent state (zeroed at episode ends when
      ``reset_carry``); ``ep_return``: ``[N, A]`` env returns of the running episodes;
    * ``aux``: the behaviour's / relabel's own state (``None`` if none).
    """

    env_state: Any
    obs: Observation
    carry: Array
    ep_return: Array
    aux: Any = None


@struct.dataclass
class RolloutStats:
    """Episodes that ended during a rollout: ``episodes`` ``[]`` int32 how many,
    ``return_sum`` ``[]`` the sum of their returns (each the mean over the game's agents)."""

    return_sum: Array
    episodes: Array

    def mean_return(self, previous: Array) -> Array:
        """Mean return of the episodes that ended; ``previous`` if none did."""
        return jnp.where(self.episodes > 0, self.return_sum / jnp.maximum(self.episodes, 1),
                         previous)


Behaviour = Callable[[Observation, Array, Any, Array, Array], tuple[Acted, Any]]
Relabel = Callable[[Any, Observation, Array, Any], tuple[Array, Any]]


def rollout(
    env_step: Callable[[Any, Array], tuple[Any, Any]],
    behaviour: Behaviour,
    state: RolloutState,
    key: Array,
    steps: int,
    *,
    env_steps: Array | int = 0,
    reward_scale: Any = 1.0,
    relabel: Relabel | None = None,
    reset_carry: bool = True,
    store_carry: bool = True,
) -> tuple[RolloutState, Transition, RolloutStats]:
    """``steps`` steps of the ``N`` games of ``state`` (``lax.scan``; one key per step, from
    ``jax.random.split(key, steps)``, handed to ``behaviour`` as it is).

    Stored items: ``reward = relabelled (or env) reward * reward_scale``, ``discount`` and the
    real final observation at episode ends (``ts.extras["final_observation"]``); ``carry`` /
    ``next_carry`` the policy carry before / after the step when ``store_carry`` (else
    ``[N, A, 0]``). ``reset_carry``: zero the carry of games whose episode ended.

    Returns ``(state, items [steps * N], stats)``.
    """
    n_games, n_agents = state.ep_return.shape

    def step(c: tuple[RolloutState, RolloutStats], inp: tuple[Array, Array]):
        s, stats = c
        k, t = inp
        acted, aux = behaviour(s.obs, s.carry, s.aux, k, env_steps + t * n_games)
        env_state, ts = env_step(s.env_state, acted.env_action)
        reward = ts.reward
        if relabel is not None:
            reward, aux = relabel(aux, s.obs, acted.action, ts)
        empty = jnp.zeros((n_games, n_agents, 0))
        item = Transition(
            obs=s.obs,
            action=acted.action,
            reward=reward * reward_scale,
            discount=ts.discount,
            next_obs=ts.extras["final_observation"],
            carry=s.carry if store_carry else empty,
            next_carry=acted.carry if store_carry else empty,
            latent=acted.latent,
        )
        ep_ret = s.ep_return + ts.reward
        mask = ts.observation.agent_mask
        per_game = agent_mean(ep_ret, mask)
        done = ts.done
        stats = RolloutStats(
            return_sum=stats.return_sum + jnp.sum(jnp.where(done, per_game, 0.0)),
            episodes=stats.episodes + jnp.sum(done),
        )
        carry = acted.carry
        if reset_carry:
            carry = jnp.where(done[:, None, None], 0.0, carry)
        s = RolloutState(env_state=env_state, obs=ts.observation, carry=carry,
                         ep_return=jnp.where(done[:, None], 0.0, ep_ret), aux=aux)
        return (s, stats), item

    stats0 = RolloutStats(return_sum=jnp.zeros(()), episodes=jnp.zeros((), jnp.int32))
    xs = (jax.random.split(key, steps), jnp.arange(steps))
    (state, stats), items = jax.lax.scan(step, (state, stats0), xs)
    items = jax.tree.map(lambda x: x.reshape((steps * n_games, *x.shape[2:])), items)
    return state, items, stats


def ends_aux(steps: int, n_games: int) -> tuple[Array, Array]:
    """The start ``aux`` of :func:`mark_ends` for ``steps`` steps of ``n_games`` games."""
    return jnp.int32(0), jnp.zeros((steps, n_games), bool)


def mark_ends(aux: tuple[Array, Array], obs: Observation, action: Array,
              ts: Any) -> tuple[Array, tuple[Array, Array]]:
    """A ``relabel`` hook that keeps the env reward and records the episode ends: ``ts.done
    [N]`` of step ``i`` into ``aux = (i, ends [T, N])`` (from :func:`ends_aux`), for learners
    that need them after the rollout (GAE, recurrent unrolls; time limits included)."""
    i, ends = aux
    return ts.reward, (i + 1, ends.at[i].set(ts.done))

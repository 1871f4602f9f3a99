"""Reference policies for the MRA games: uniform random moves and a simple script per game.

Both are :class:`metajax.core.interfaces.Learner`-compatible (only ``policy`` and ``initial_carry``
are real), so :func:`metajax.train.evaluation.make_evaluator` plays them like a trained learner;
they ignore their parameters and the ``greedy`` flag.

* ``"random"``: every agent draws a uniform random action from the env's action spec
  (discrete: one of the moves; bounded float actions: uniform in the bounds).
* ``"scripted"`` (particle worlds, one script per game, :data:`SCRIPTS`): every agent reads
  only its own row of the observation (relative positions in ``obs.agents`` / ``obs.objects``
  and their masks) and takes the move of
  :data:`envs.particle.physics.DISCRETE_DIRECTIONS` (no-op, +x, -x, +y, -y) that points most
  along a desired displacement:

  - ``resource``: to the nearest resource;
  - ``treasure``: to the nearest treasure (touching one collects it; there is no deposit);
  - ``pacman``: ghosts to the nearest live Pac-Man; a Pac-Man away from the nearest ghost
    when one is closer than :data:`FLEE_RADIUS`, else to the nearest food dot.

  The displacement is the target's relative position (momentum is ignored: braking ahead by
  the coasting distance ``velocity * dt / damping`` was tried and collected fewer treasures and
  occupied fewer resources). With nothing to go to, the agent stays (no-op).

A per-team ``kind`` (a tuple, one kind per team) mixes them, e.g. ``("random", "scripted")``
in Pac-Man: random Pac-Man against chasing ghosts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jumanji import specs

from envs.core import MultiAgentEnv, Observation
from envs.particle.physics import DISCRETE_DIRECTIONS
from metajax.core.interfaces import Learner
from metajax.train import evaluation

Array = jax.Array

KINDS = ("random", "scripted")

#: Pac-Man flee a ghost closer than this (world units; the world's side is 2).
FLEE_RADIUS = 0.5


# --- moves --------------------------------------------------------------------------------------


def move_towards(displacement: Array) -> Array:
    """``[A]`` int32: per agent, the discrete move (0 no-op, 1 +x, 2 -x, 3 +y, 4 -y) with the
    largest component along ``displacement`` ``[A, 2]``; the no-op for a zero displacement."""
    score = displacement @ DISCRETE_DIRECTIONS.T  # [A, 5]
    return jnp.argmax(score, axis=-1).astype(jnp.int32)


def _nearest(rel: Array, mask: Array) -> tuple[Array, Array, Array]:
    """Nearest entity per agent: ``rel [A, N, 2]`` relative positions, ``mask [A, N]`` ->
    ``(index [A] int32, distance [A] (inf where none), found [A] bool)``."""
    dist = jnp.where(mask, jnp.linalg.norm(rel, axis=-1), jnp.inf)
    return jnp.argmin(dist, axis=-1), jnp.min(dist, axis=-1), jnp.any(mask, axis=-1)


def _take(x: Array, idx: Array) -> Array:
    """``x [A, N, d]`` rows ``idx [A]`` -> ``[A, d]``."""
    return jnp.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]


# --- scripts (obs -> desired displacement [A, 2]) -----------------------------------------------


def _to_nearest_object(env: MultiAgentEnv, obs: Observation) -> Array:
    """``[A, 2]``: towards the nearest object (resource, treasure or food dot)."""
    rel = obs.objects[..., :2]  # [A, M, 2]
    idx, _, found = _nearest(rel, obs.objects_mask)
    return jnp.where(found[:, None], _take(rel, idx), 0.0)


def _pacman(env: MultiAgentEnv, obs: Observation, flee_radius: float = FLEE_RADIUS) -> Array:
    """``[A, 2]``: ghosts (team 1) chase the nearest live Pac-Man; Pac-Man (team 0) flee the
    nearest ghost within ``flee_radius``, else go to the nearest food."""
    rel = obs.agents[..., :2]  # [A, A, 2]
    live = obs.agents[..., 4] > 0.5
    is_pac = (obs.agents[..., 5] > 0.5) & obs.agents_mask & live  # [A, A]
    is_ghost = (obs.agents[..., 6] > 0.5) & obs.agents_mask & live

    p_idx, _, p_found = _nearest(rel, is_pac)
    chase = jnp.where(p_found[:, None], _take(rel, p_idx), 0.0)

    g_idx, g_dist, _ = _nearest(rel, is_ghost)
    flee = -_take(rel, g_idx)
    food = _to_nearest_object(env, obs)
    pac = jnp.where((g_dist < flee_radius)[:, None], flee, food)
    return jnp.where((obs.team == 1)[:, None], chase, pac)


#: The scripted policy of each game: ``script(env, obs) -> desired displacement [A, 2]``.
SCRIPTS: dict[str, Callable[[MultiAgentEnv, Observation], Array]] = {
    "resource": _to_nearest_object,
    "treasure": _to_nearest_object,
    "pacman": _pacman,
}


# --- policies -----------------------------------------------------------------------------------


def random_action(env: MultiAgentEnv, key: Array) -> Array:
    """A uniform random joint action of the env's action spec (leading axis ``A``)."""
    spec = env.action_spec
    if isinstance(spec, specs.MultiDiscreteArray | specs.DiscreteArray):
        n = jnp.broadcast_to(jnp.asarray(np.asarray(spec.num_values)), spec.shape)
        return jax.random.randint(key, spec.shape, 0, n, spec.dtype)
    if isinstance(spec, specs.BoundedArray):
        return jax.random.uniform(key, spec.shape, spec.dtype, spec.minimum, spec.maximum)
    raise ValueError(f"{env.name}: no random policy for action spec {spec!r}")


def scripted_action(env: MultiAgentEnv, obs: Observation) -> Array:
    """The joint action of :data:`SCRIPTS` ``[env.name]`` in the env's action type (discrete
    ``[A]`` int32; relaxed ``[A, 5]`` one-hot; continuous ``[A, 2]`` unit moves)."""
    if env.name not in SCRIPTS:
        raise ValueError(
            f"no scripted policy for env {env.name!r}; scripted envs: {', '.join(SCRIPTS)}")
    move = move_towards(SCRIPTS[env.name](env, obs))
    move = jnp.where(obs.agent_mask, move, 0)
    action_type = getattr(env, "action_type", "discrete")
    if action_type == "relaxed":
        return jax.nn.one_hot(move, 5, dtype=jnp.float32)
    if action_type == "continuous":
        return DISCRETE_DIRECTIONS[move]
    return move


def kind_codes(env: MultiAgentEnv, kind: str | Sequence[str]) -> Array:
    """``[num_teams]`` int32 code of the reference policy of each team (0 ``"random"``,
    1 ``"scripted"``) for ``kind``: one kind for every team, or one per team."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"unknown reference policy {kind!r}; known: {', '.join(KINDS)}")
    teams = max(env.num_teams, 1)
    if len(kinds) not in (1, teams):
        raise ValueError(f"{env.name} has {teams} team(s), got {len(kinds)} kinds")
    if "scripted" in kinds and env.name not in SCRIPTS:
        raise ValueError(
            f"no scripted policy for env {env.name!r}; scripted envs: {', '.join(SCRIPTS)}")
    codes = [KINDS.index(k) for k in kinds] * (teams if len(kinds) == 1 else 1)
    return jnp.asarray(codes, jnp.int32)


def _coded_learner(env: MultiAgentEnv) -> Learner:
    """The reference learner whose ``params`` are the :func:`kind_codes` ``[num_teams]``:
    one compiled evaluator plays every kind."""

    def policy(codes: Array, obs: Observation, carry: Array, key: Array,
               greedy: Any = True) -> tuple[Array, Array]:
        act = random_action(env, key)
        if env.name in SCRIPTS:
            scripted = scripted_action(env, obs)
            use = codes[obs.team] == KINDS.index("scripted")  # [A]
            act = jnp.where(use.reshape((-1,) + (1,) * (act.ndim - 1)), scripted, act)
        return act, carry

    def unavailable(*_: Any, **__: Any) -> Any:
        raise NotImplementedError("a reference policy does not learn")

    return Learner(
        init=unavailable,
        update=unavailable,
        policy=policy,
        policy_params=lambda state: state,
        initial_carry=lambda: jnp.zeros((env.max_agents, 0), jnp.float32),
        env_steps_per_update=0,
        tasks=None,
    )


def reference_learner(env: MultiAgentEnv, kind: str | Sequence[str]) -> Learner:
    """A :class:`~metajax.core.interfaces.Learner` whose ``policy`` is the reference policy ``kind``
    (``"random"`` or ``"scripted"``, or one kind per team, indexed by ``obs.team``).

    Only ``policy`` and ``initial_carry`` (``[A, 0]``) work; ``init``/``update`` raise and
    ``tasks`` is None. The policy ignores its ``params`` and ``greedy``.
    """
    codes = kind_codes(env, kind)
    coded = _coded_learner(env)

    def policy(params: Any, obs: Observation, carry: Array, key: Array,
               greedy: Any = True) -> tuple[Array, Array]:
        return coded.policy(codes, obs, carry, key, greedy)

    return coded._replace(policy=policy)


@functools.lru_cache(maxsize=32)
def _evaluator(env: MultiAgentEnv, episodes: int, stats: bool) -> Callable[..., Any]:
    return evaluation.make_evaluator(_coded_learner(env), env, episodes, stats=stats)


def reference_returns(
    env: MultiAgentEnv,
    tasks: Any,
    kind: str | Sequence[str],
    episodes: int,
    key: Array,
    seeds: int = 1,
    stats: bool = False,
) -> Any:
    """Play the reference policy ``kind`` on ``tasks`` ``[K]`` with
    :func:`metajax.train.evaluation.make_evaluator`: ``returns [seeds, K, episodes, A]``, or
    ``(returns, stats)`` with ``stats`` ``{name: [seeds, K, episodes]}`` when ``stats``.

    The "params" are the :func:`kind_codes` tiled to ``[seeds, num_teams]``, so every kind
    shares one compiled evaluator per ``(env, episodes, stats)`` (cached)."""
    params = jnp.tile(kind_codes(env, kind)[None], (seeds, 1))
    return _evaluator(env, int(episodes), bool(stats))(params, tasks, key, True)

"""The interfaces between the layers: what a learner offers the runner (:class:`Learner`),
the hooks of its rollout (:class:`RolloutHooks`), its action space (:class:`ActionSpace`), and
the hyperparameters a sweep may trace (:class:`Traceable`). Nothing here knows an algorithm."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jumanji import specs

from envs.core import MultiAgentEnv

Array = jax.Array


class RolloutHooks(NamedTuple):
    """Optional pure hooks into MADDPG's rollout, for algorithms built on it (MESA).

    Each hook sees and returns ``aux``, a pytree carried in :attr:`MADDPGState.aux` (so it is
    vmapped, checkpointed and resumed with the learner). Arrays have a leading ``[N]`` axis of
    parallel games (``num_envs``); ``A`` agents, ``d`` the critic's per-agent action size.

    * ``init(key, tasks [N]) -> aux``;
    * ``act(aux, obs [N], key, env_steps [], env_action [N, A, ...], critic_action [N, A, d])
      -> (env_action, critic_action, aux)``: may replace the learner's behaviour action before
      the step (e.g. another policy acts); ``None`` = the learner acts;
    * ``reward(aux, obs [N], critic_action [N, A, d], ts) -> (reward [N, A], aux)``: after the
      step (``ts`` the auto-reset timestep, ``ts.reward`` the env reward, ``ts.done`` ``[N]``),
      the reward to store in the replay (before ``reward_scale``); ``None`` = the env reward.
      ``episode_return`` always reports the env reward;
    * ``metrics(aux) -> {name: []}``: extra per-update metrics.
    """

    init: Callable[[Array, Any], Any]
    act: Callable[..., tuple[Array, Array, Any]] | None = None
    reward: Callable[..., tuple[Array, Any]] | None = None
    metrics: Callable[[Any], dict] | None = None


class Learner(NamedTuple):
    """An algorithm as pure functions, the interface the runner drives.

    * ``init(key) -> state``; ``update(state, t=None) -> (state, metrics)`` (metrics: dict of
      ``[]``; ``t`` the unbatched index of the update in the run, when the caller knows it);
    * ``policy(params, obs, carry, key, greedy) -> (env_action, carry)`` for one game
      (``obs`` ``[A, ...]``, ``carry`` ``[A, h]``);
    * ``hypers``: the config's traceable hyperparameters (e.g. :class:`Hypers`, Python floats;
      ``None`` if the learner has none). A learner built with ``traced=True`` takes a traced
      copy as ``init(key, hypers=h)``, ``update(state, t, hypers=h)`` and
      ``policy(..., hypers=h)`` (:mod:`metajax.pipelines.sweep`); without it, ``hypers`` are its
      own;
    * ``act(params, obs, carry, key, greedy) -> (env_action, critic_action [A, d], carry)``:
      the same, also returning the action as the critic sees it (``None`` if not provided);
    * ``outputs(params, obs, carry) -> (out [A, d], carry)``: the actors' raw outputs
      (logits, or pre-tanh actions) for one game (``None`` if not provided);
    * ``policy_params(state)``: the parameters ``policy`` needs;
    * ``initial_carry()``: ``[A, h]`` recurrent state at an episode start;
    * ``env_steps_per_update``: env steps one ``update`` collects (per seed);
    * ``tasks``: the ``[num_envs]`` batch of games trained on (``init(key, tasks)`` may be
      given another ``[num_envs]`` batch, e.g. under ``vmap`` over games).
    """

    init: Callable[..., Any]
    update: Callable[..., tuple[Any, dict]]
    policy: Callable[..., tuple[Array, Array]]
    policy_params: Callable[[Any], Any]
    initial_carry: Callable[[], Array]
    env_steps_per_update: int
    tasks: Any
    act: Callable[..., tuple[Array, Array, Array]] | None = None
    outputs: Callable[..., tuple[Array, Array]] | None = None
    hypers: Any = None


@dataclasses.dataclass(frozen=True)
class ActionSpace:
    """How the learner's per-agent output maps to the env's action.

    ``kind``: ``discrete`` (int actions), ``relaxed`` (float weights over discrete moves) or
    ``continuous``; ``dim``: per-agent output size; ``env_shape``: per-agent env action shape.
    """

    kind: str
    dim: int
    env_shape: tuple[int, ...]

    @classmethod
    def of(cls, env: MultiAgentEnv) -> ActionSpace:
        spec = env.action_spec
        if isinstance(spec, specs.MultiDiscreteArray | specs.DiscreteArray):
            n = np.asarray(spec.num_values).reshape(-1)
            if not np.all(n == n[0]):
                raise ValueError("agents with different numbers of discrete actions")
            return cls("discrete", int(n[0]), ())
        shape = tuple(spec.shape[1:])
        if getattr(env, "action_type", None) == "relaxed":
            return cls("relaxed", int(np.prod(shape)), shape)
        return cls("continuous", int(np.prod(shape)), shape)


@dataclasses.dataclass(frozen=True)
class Traceable:
    """The hyperparameters of an algorithm that a sweep may trace (:mod:`metajax.pipelines.sweep`):
    one compiled program trains every value, vmapped.

    * ``keys``: the dotted config keys the learner reads as numbers only (its ``Hypers``);
    * ``hypers(config) -> Hypers``: their values in ``config`` (Python floats), the pytree a
      learner built with ``traced=True`` takes as ``init(key, hypers=)`` /
      ``update(state, t, hypers=)`` / ``policy(..., hypers=)``;
    * ``structure(config) -> tuple``: what of those values still shapes the program (e.g.
      whether MRA's ``mi_coef`` is 0, which drops a step): configs that differ there are
      compiled apart.
    """

    keys: tuple[str, ...]
    hypers: Callable[[Any], Any]
    structure: Callable[[Any], tuple] = lambda cfg: ()


#: The :class:`Traceable` of a learner with no traced hyperparameters (PPO, QMIX, VDN): a sweep
#: puts every grid point in a group of its own, one compiled program per point.
NOTHING_TRACED = Traceable((), lambda cfg: ())


def ignoring_hypers(learner: Learner) -> Learner:
    """``learner`` as one built with ``traced=True`` whose :data:`NOTHING_TRACED` hyperparameters
    are the empty ``()``: ``init``, ``update`` and ``policy`` accept ``hypers=()`` and refuse
    anything else (a ``ValueError``: those values would be silently dropped)."""

    def check(hypers: Any) -> None:
        if jax.tree_util.tree_leaves(hypers):
            raise ValueError("this learner traces no hyperparameters; got hypers="
                             f"{jax.tree_util.tree_structure(hypers)}")

    def init(key: Any, *args: Any, hypers: Any = ()) -> Any:
        check(hypers)
        return learner.init(key, *args)

    def update(state: Any, t: Any = None, hypers: Any = ()) -> tuple[Any, dict]:
        check(hypers)
        return learner.update(state, t)

    def policy(params: Any, obs: Any, carry: Any, key: Any, greedy: Any = False,
               hypers: Any = ()) -> tuple[Array, Array]:
        check(hypers)
        return learner.policy(params, obs, carry, key, greedy)

    return learner._replace(init=init, update=update, policy=policy, hypers=())

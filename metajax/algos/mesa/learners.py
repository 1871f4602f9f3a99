"""The meta-test baselines that train another learner of the runner from scratch on each test
task: MESA's Table 2 rows MAPPO, MAPPO-RND and QMIX (App. B.3), and IPPO and VDN
(:data:`~metajax.algos.mesa.config.LEARNER_METHODS`).

Each is the runner's learner (:func:`metajax.algos.ppo.make_ppo`,
:func:`metajax.algos.qmix.make_qmix`, the functions behind its ``ippo``/``mappo``/``qmix``/``vdn``
factories) on one test task, with the method's section of :class:`MESAConfig` (``ppo``,
``qmix``; ``mappo_rnd``: MAPPO with the RND bonus ``rnd_coef``). :func:`method_learner` adds what
MESA's evaluation (:func:`metajax.algos.mesa.play.task_metrics`) asks of a learner and these
lack: ``init(key, tasks)`` (another task batch, for ``vmap`` over test tasks), ``act`` (the
action with its one-hot) and ``outputs`` (logits of the learner's stochastic policy, for
NashConv: PPO's actor logits; QMIX's ``eps_end``-greedy distribution around its greedy action).

On a continuous env (the Swimmer), MAPPO, IPPO and MAPPO-RND play the continuous actions with
PPO's Gaussian policy (as the paper ran MAPPO), and QMIX and VDN the env's own ``n_bins``
discretization (11 evenly spaced torques, as MESA's App. B.3 ran QMIX); :func:`method_env`
refuses QMIX/VDN on a continuous env without one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

import envs
from envs.core import MultiAgentEnv
from metajax.algos.mesa.config import LEARNER_METHODS, MESAConfig
from metajax.algos.ppo import make_ppo
from metajax.algos.qmix import make_qmix
from metajax.core.interfaces import ActionSpace, Learner

Array = jax.Array

#: Points per action dimension of the QMIX/VDN discretization of continuous control (App. B.3).
DISCRETE_BINS = 11

#: ``method -> (family, centralized value or VDN, RND)``.
_KIND = {"mappo": ("ppo", True, False), "ippo": ("ppo", False, False),
         "mappo_rnd": ("ppo", True, True), "qmix": ("qmix", False, False),
         "vdn": ("qmix", True, False)}
assert set(_KIND) == set(LEARNER_METHODS)


def method_config(cfg: MESAConfig, method: str) -> Any:
    """The learner config of ``method``: ``cfg.ppo`` (``mappo_rnd``: with ``rnd_coef``) or
    ``cfg.qmix``."""
    family, _, rnd = _KIND[method]
    if family == "qmix":
        return cfg.qmix
    return dataclasses.replace(cfg.ppo, rnd_coef=cfg.rnd_coef if rnd else 0.0)


def method_env(cfg: MESAConfig, env: MultiAgentEnv, method: str) -> MultiAgentEnv:
    """The env ``method`` trains and is evaluated on: ``env`` when its actions are discrete
    (and for PPO when they are continuous); for QMIX/VDN on a continuous env with an ``n_bins``
    discretization (the Swimmer), that env with ``action_type="discrete"`` and
    :data:`DISCRETE_BINS` points (same tasks, same reward).
    Raises a one-line ``ValueError`` when the method cannot play ``env``."""
    if method not in _KIND:
        raise ValueError(f"{method!r} is not one of {LEARNER_METHODS}")
    kind = ActionSpace.of(env).kind
    if kind == "discrete" or (kind == "continuous" and _KIND[method][0] == "ppo"):
        return env
    if _KIND[method][0] == "qmix" and hasattr(env, "n_bins"):
        return envs.make(cfg.env, **{**cfg.env_config, "action_type": "discrete",
                                     "n_bins": DISCRETE_BINS})
    hint = ("PPO takes discrete or continuous actions" if _KIND[method][0] == "ppo" else
            f"{env.name} has no n_bins discretization")
    raise ValueError(f"method {method!r} cannot play {env.name}'s {kind} actions "
                     f"({hint}; set env_config action_type='discrete' or drop the method)")


def check_methods(cfg: MESAConfig, env: MultiAgentEnv) -> None:
    """Refuse (``ValueError``, before anything trains) a learner method that cannot play
    ``env``."""
    for m in cfg.methods:
        if m in _KIND:
            method_env(cfg, env, m)


def _build(cfg: MESAConfig, env: MultiAgentEnv, method: str, tasks: Any) -> Learner:
    family, flag, _ = _KIND[method]
    lcfg = method_config(cfg, method)
    if family == "ppo":
        return make_ppo(lcfg, env, tasks, centralized=flag)
    return make_qmix(lcfg, env, tasks, vdn=flag)


def method_learner(cfg: MESAConfig, env: MultiAgentEnv, method: str, tasks: Any) -> Learner:
    """The learner of ``method`` on ``env`` (:func:`method_env`) and the ``[B]`` ``tasks``
    (cycled over its games), with ``init(key, tasks=None)``, ``act`` and ``outputs`` (module
    docstring)."""
    base = _build(cfg, env, method, tasks)
    space = ActionSpace.of(env)
    n = space.dim

    def init(key: Array, tasks: Any = None) -> Any:
        # the update does not read the learner's tasks: they live in the env state from here
        return (base if tasks is None else _build(cfg, env, method, tasks)).init(key)

    def act(params: Any, obs: Any, carry: Array, key: Array, greedy: bool | Array):
        a, carry = base.policy(params, obs, carry, key, greedy)
        if space.kind == "continuous":  # [A, *env_shape] -> the critic's [A, d]
            return a, a.reshape((*a.shape[:1], n)), carry
        return a, jax.nn.one_hot(a, n), carry

    if _KIND[method][0] == "ppo":
        outputs = base.outputs  # logits (or the Gaussian's mean): ppo.actor_outputs
    else:
        eps = cfg.qmix.eps_end

        def outputs(params: Any, obs: Any, carry: Array) -> tuple[Array, Array]:
            a, carry = base.policy(params, obs, carry, jax.random.PRNGKey(0), True)
            return jnp.log((1.0 - eps) * jax.nn.one_hot(a, n) + eps / n), carry

    return base._replace(init=init, act=act, outputs=outputs)

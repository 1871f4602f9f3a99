"""Every MADDPG variant runs end to end on a tiny config: updates change the parameters,
metrics stay finite, and parameter sharing follows the teams."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from helpers import assert_every_leaf_changed

import envs
from metajax.algos.maddpg import MADDPGConfig, make_maddpg
from metajax.core.interfaces import ActionSpace
from metajax.train.loop import ONCE

TINY = dict(batch_size=8, buffer_size=64, learning_starts=8, rollout_steps=4, num_envs=2,
            updates_per_rollout=1, hidden=(16,), num_heads=2, head_dim=4, embed_dim=8,
            critic_hidden=16, gru_hidden=8)

VARIANTS = {
    # MRA-style: relational actor, attention critic, parameters shared within each team
    "pacman-relational-attention-team": (
        "pacman", dict(max_pacman=2, max_ghosts=1, max_objects=2, episode_length=4,
                       action_type="relaxed", populations=((2, 1),)),
        dict(n_pacman=2, n_ghosts=1, n_food=2),
        dict(actor="relational", critic="attention", param_sharing="team"),
    ),
    # MAAC-style per-agent critics: each agent encoded once with its own parameters
    "treasure-relational-attention-agent": (
        "treasure", dict(max_agents=3, max_objects=2, episode_length=4, action_type="relaxed"),
        dict(n_agents=2, n_treasures=2),
        dict(actor="relational", critic="attention", param_sharing="agent"),
    ),
    # MESA-style: GRU actor on the multi-stage climb game (integer actions)
    "multistage-gru": (
        "climb_multistage", dict(max_agents=2, num_stages=2, num_actions=3),
        dict(n_agents=2, k=[1, 2], u=[0, 1]),
        dict(actor="gru"),
    ),
    # continuous actions (deterministic tanh actor + Gaussian noise)
    "treasure-continuous": (
        "treasure", dict(max_agents=2, max_objects=2, episode_length=4,
                         action_type="continuous"),
        dict(n_agents=2, n_treasures=2),
        dict(),
    ),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_updates(name):
    env_name, env_cfg, task_kw, algo_kw = VARIANTS[name]
    env = envs.make(env_name, **env_cfg)
    cfg = MADDPGConfig(**{**TINY, **algo_kw})
    learner = make_maddpg(cfg, env, env.make_task(**task_kw))
    # one-off programs: XLA's cheap optimisation level compiles them several times faster
    state0 = jax.jit(learner.init, compiler_options=ONCE)(jax.random.PRNGKey(0))
    update = jax.jit(learner.update, compiler_options=ONCE)
    state, m = update(state0)
    state, m = update(state)
    assert int(m["grad_steps"]) >= 1 and int(m["env_steps"]) == 2 * 4 * 2
    for k, v in m.items():
        assert np.isfinite(np.asarray(v)).all(), k
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state0.params.actor,
                         state.params.actor)
    assert_every_leaf_changed(state0.params.actor, state.params.actor, "actor")
    if cfg.actor == "relational":
        # the relational graph's query/key (MRA's phi) learn through the actor loss, too
        flat = traverse_util.flatten_dict(moved)
        phi = {k: v for k, v in flat.items() if any(n in ("query", "key") for n in k)}
        assert len(phi) >= 2 and all(v > 0 for v in phi.values()), phi
    n_teams = jax.tree.leaves(state.params.actor)[0].shape[0]
    expected = env.num_teams if cfg.param_sharing == "team" else env.max_agents
    assert n_teams == expected
    # the policy produces valid env actions for one game
    obs = jax.tree.map(lambda x: x[0], state.obs)
    policy = jax.jit(learner.policy, static_argnums=4, compiler_options=ONCE)  # eager is slow
    act, carry = policy(learner.policy_params(state), obs, learner.initial_carry(),
                        jax.random.PRNGKey(1), True)
    env.check_action(act)
    env.action_spec.validate(np.asarray(act))


def test_action_space_detection():
    assert ActionSpace.of(envs.make("climb", num_actions=7)) == ActionSpace("discrete", 7, ())
    assert ActionSpace.of(envs.make("treasure", action_type="relaxed")).kind == "relaxed"
    assert ActionSpace.of(envs.make("treasure", action_type="continuous")) == ActionSpace(
        "continuous", 2, (2,))

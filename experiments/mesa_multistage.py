"""MESA on the multi-stage climb game (MESA Table 2, column "Multi-stage Climb Game"; Fig. 3
right).

Task space ``T^multi_{5,10}``: 5 stages, each a 2-player ``G(2, k_t, u_t, 10)``; the agents
observe the stage and the history of joint actions. Per seed, 10 training and 3 test games are
drawn uniformly without replacement (disjoint). The return is reported per stage (as the
paper's Fig. 3), so 1 is optimal and 0.5 the sub-optimal equilibrium.

Joint (state, action) vector: both agents' observations (stage one-hot, history) and their
one-hot actions weighted by ``action_weight = 5``. Two pairs at the same stage with different
joint actions are then at least ``sqrt(2 * 25) ~ 7.1`` apart, while pairs with the same joint
action differ by at most ``sqrt(32) ~ 5.7`` through their histories, so ``eps = 6`` makes a
visit "close to M_*" when the current joint action was valuable at that stage in some training
game, whatever happened before (our choice of metric; the paper uses L2 without saying how it
scales the parts).

Table 1: 100k meta-training and 100k meta-testing steps, 4 exploration policies, batch 32
trajectories, lr 5e-3, 3000 random steps, GRU actors. The default is trimmed for a 2-core CPU;
``paper`` restores Table 1's steps and the GRU.

    metajax run experiments/mesa_multistage.py
"""

import dataclasses

from metajax.maddpg import ORIGINAL
from metajax.mesa import MESAConfig

PIPELINE = "mesa"

_LEARNER = dataclasses.replace(
    ORIGINAL,
    actor_lr=5e-3,
    critic_lr=5e-3,
    batch_size=160,  # 32 episodes of 5 steps
    buffer_size=100_000,
    num_envs=10,
    rollout_steps=5,
    updates_per_rollout=1,
    learning_starts=3_000,
)

CONFIG = MESAConfig(
    name="mesa_multistage",
    env="climb_multistage",
    env_config=dict(max_agents=2, num_stages=5, num_actions=10),
    n_train=10,
    n_test=3,
    split={},
    maddpg=_LEARNER,
    collect=dataclasses.replace(_LEARNER, buffer_size=10_000, learning_starts=1_000),
    collect_steps=5_000,
    dataset_capacity=512,
    action_weight=5.0,
    eps=6.0,
    num_clusters=48,
    num_explorers=4,
    explorer_steps=10_000,
    test_steps=30_000,
    anneal_steps=15_000,
    chunk_updates=100,
    eval_every=1,
    eval_episodes=4,
    seeds=3,
)

PRESETS = {
    "paper": {
        "collect_steps": 10_000,
        "explorer_steps": 100_000,
        "test_steps": 100_000,
        "anneal_steps": 50_000,
        "maddpg.actor": "gru",
        "collect.actor": "gru",
    },
}

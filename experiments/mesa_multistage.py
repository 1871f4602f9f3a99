"""MESA on the multi-stage climb game (MESA Table 2, column "Multi-stage Climb Game"; Fig. 3
right).

Task space ``T^multi_{5,10}``: 5 stages, each a 2-player ``G(2, k_t, u_t, 10)``; the agents
observe the stage and the history of joint actions. Per seed, 10 training and 3 test games are
drawn uniformly without replacement (disjoint). The return is reported per stage (as the
paper's Fig. 3), so 1 is optimal and 0.5 the sub-optimal equilibrium.

Protocol: the paper's (App. B.2, Table 1: 10 training and 5 test games drawn uniformly from the
task space, disjoint); ours draws 10 and 3 per seed (fewer test games to keep the default on a
2-core CPU), 8 seeds (the paper: 3).

Joint (state, action) vector, the metric of Eq. 6 (our choice of scales; the paper uses L2 on
``(s, a)`` without saying how the parts are scaled): both agents' observations with the stage
one-hot (features ``0:5``) scaled by 4, the history as is, and the one-hot actions scaled by
``action_weight = 5``; ``eps = 6``. Then the same joint action at two different stages is at
least ``sqrt(2 * 2 * 16 + 4) ~ 8.2`` apart, two joint actions at one stage at least
``sqrt(2 * 25) ~ 7.1``, while two pairs of one stage with the same joint action differ by at most
``sqrt(32) ~ 5.7`` through their histories. So a visit is "close to ``M_*``" when its joint
action was valuable *at that stage* in some training game, whatever happened before. (Before
2026-12-01 the stage was not scaled: the same joint action at two stages was 2.8-4.5 apart,
below ``eps``, and "near ``M_*``" meant "valuable at any stage of any training game".)

Table 1: 100k meta-training and 100k meta-testing steps, 4 exploration policies, batch 32
trajectories, lr 5e-3, 3000 random steps, GRU actors. The default is trimmed for a 2-core CPU;
``paper`` restores Table 1's steps and the GRU.

Table 2's other learners (``--preset learners``, a preset rather than the default methods: the
default reproduces the committed ``results/mesa_multistage.json``, and these baselines have no
meta-training to share with MESA, so they run apart with MADDPG as the paired reference on the
same seeds and test games): MAPPO, IPPO, MAPPO-RND and QMIX, VDN, each trained from scratch on
every test game for the same 30k meta-test steps. Hyperparameters (not tuned): those of
``mappo_climb.py`` with two hidden layers and 10-step rollouts (two episodes); QMIX as
``qmix_climb.py`` with one-episode windows of 8 games (one gradient step per 40 env steps, about
MADDPG's 50) and epsilon annealed over the first half of the budget like MESA's ``p_e``;
MAPPO-RND adds the RND bonus 0.1 to MAPPO.

    metajax run experiments/mesa_multistage.py
    metajax run experiments/mesa_multistage.py --preset learners --out runs/mesa_multistage_learners
"""

import dataclasses

from metajax.algos.maddpg import ORIGINAL
from metajax.algos.ppo import PPOConfig
from metajax.algos.qmix import QMixConfig
from metajax.pipelines.mesa import LEARNER_METHODS, MESAConfig

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
    obs_scale={"0:5": 4.0},
    eps=6.0,
    num_clusters=48,
    num_explorers=4,
    explorer_steps=10_000,
    test_steps=30_000,
    anneal_steps=15_000,
    chunk_updates=100,
    eval_every=1,
    eval_episodes=4,
    seeds=8,
    ppo=PPOConfig(num_envs=32, rollout_steps=10, epochs=4, minibatches=4, hidden=(64, 64),
                  lr=1e-3, ent_coef=0.01),
    qmix=QMixConfig(num_envs=8, hidden=64, batch_windows=32, buffer_windows=5000,
                    eps_anneal_steps=15_000, lr=1e-3, target_every=20),
    rnd_coef=0.1,
)

PRESETS = {
    "paper": {
        "collect_steps": 10_000,
        "explorer_steps": 100_000,
        "test_steps": 100_000,
        "anneal_steps": 50_000,
        "maddpg.actor": "gru",
        "collect.actor": "gru",
        "qmix.eps_anneal_steps": 50_000,
    },
    "learners": {
        "name": "mesa_multistage_learners",
        "methods": ("maddpg", *LEARNER_METHODS),
    },
}

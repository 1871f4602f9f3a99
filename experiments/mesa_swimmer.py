"""MESA on the two-agent Swimmer climb game (MESA Table 2, column "MA-MuJoCo Swimmer"; Fig. 4
right).

Each agent torques one hinge of the Brax/MJX swimmer; a task is a target angle ``alpha`` in
(-30 deg, 30 deg); the shared reward is 1 when both hinge angles are within 5 deg of ``alpha``,
0.5 when both are farther, 0 otherwise. Per seed, training and test angles are drawn
independently (:meth:`envs.swimmer.SwimmerClimb.split_tasks`).

Protocol: Table 1's task counts, 30 training and 6 test target angles per seed (before
2026-12-01 the default used 4 and 2, and with a 5 deg band 4 angles covered no test angle: 0 of
254 test high-reward pairs lay within eps of ``M_*``). Scaled for a 2-core CPU: 100-step
episodes (Table 1: 1000), 3k collection steps per training angle (1M), 2 x 10k explorer steps
(3M), 20k meta-test steps (2.5M), 2 seeds (3). The exploration policies play the 30 training
angles in 30 parallel games.

Joint (state, action) vector: both agents' observations (hinge angles and velocities, the
body's pose) and their continuous actions; ``eps = 0.5``. ``paper`` gives Table 1's scale
(1000-step episodes, 1M collection and 3M meta-training steps, 2.5M meta-test steps, batch 8
trajectories, lr 1e-4, 50k random steps, 2 exploration policies).

Table 2's other learners: ``--preset learners`` (a preset rather than the default methods: the
default reproduces the committed ``results/mesa_swimmer.json``, and these baselines have no
meta-training to share with MESA, so they run apart with MADDPG as the paired reference on the
same seeds and test angles): MAPPO, IPPO and MAPPO-RND on the continuous torques (PPO's
Gaussian policy, as the paper ran MAPPO; 8 games x 50 steps per update, 4 epochs of 4
minibatches, lr 3e-4, log std starting at -0.5, RND bonus 0.1) and QMIX and VDN on the env's
11-point discretization of each torque (App. B.3: "we discretize the action into 11 even points
for QMIX"), each trained from scratch on every test angle for the same 20k steps; QMIX with
25-step windows of 4 games (one gradient step per 100 env steps, as MADDPG's here) and epsilon
annealed over the first half like MESA's ``p_e``. None of these is tuned.

    metajax run experiments/mesa_swimmer.py
    metajax run experiments/mesa_swimmer.py --preset learners --out runs/mesa_swimmer_learners
"""

import dataclasses

from metajax.algos.maddpg import ORIGINAL
from metajax.algos.ppo import PPOConfig
from metajax.algos.qmix import QMixConfig
from metajax.pipelines.mesa import MESAConfig, learners_preset

PIPELINE = "mesa"

_LEARNER = dataclasses.replace(
    ORIGINAL,
    actor_lr=1e-3,
    critic_lr=1e-3,
    batch_size=256,
    buffer_size=50_000,
    num_envs=4,
    rollout_steps=25,
    updates_per_rollout=1,
    learning_starts=2_000,
    exploration_noise=0.1,
)

CONFIG = MESAConfig(
    name="mesa_swimmer",
    env="swimmer_climb",
    env_config=dict(episode_length=100, action_type="continuous"),
    n_train=30,
    n_test=6,
    split={},
    maddpg=_LEARNER,
    collect=dataclasses.replace(_LEARNER, buffer_size=10_000),
    explorer=dataclasses.replace(_LEARNER, num_envs=30, rollout_steps=5),
    collect_steps=3_000,
    dataset_capacity=512,
    eps=0.5,
    num_clusters=16,
    num_explorers=2,
    explorer_steps=10_000,
    test_steps=20_000,
    anneal_steps=10_000,
    chunk_updates=40,
    eval_every=5,
    eval_episodes=2,
    seeds=2,
    qmix=QMixConfig(num_envs=4, window=25, hidden=64, batch_windows=32, buffer_windows=2000,
                    eps_anneal_steps=10_000, lr=5e-4, target_every=20),
    ppo=PPOConfig(num_envs=8, rollout_steps=50, epochs=4, minibatches=4, hidden=(64, 64),
                  lr=3e-4, log_std_init=-0.5),
    rnd_coef=0.1,
)

PRESETS = {
    "paper": {
        "seeds": 3,
        "env_config.episode_length": 1000,
        "maddpg.actor_lr": 1e-4,
        "maddpg.critic_lr": 1e-4,
        "maddpg.batch_size": 8_000,
        "maddpg.buffer_size": 1_000_000,
        "maddpg.num_envs": 30,
        "maddpg.rollout_steps": 100,
        "maddpg.learning_starts": 50_000,
        "explorer.actor_lr": 1e-4,
        "explorer.critic_lr": 1e-4,
        "explorer.batch_size": 8_000,
        "explorer.buffer_size": 1_000_000,
        "explorer.rollout_steps": 100,
        "explorer.learning_starts": 50_000,
        "collect.num_envs": 8,
        "collect.rollout_steps": 100,
        "collect.buffer_size": 200_000,
        "collect_steps": 1_000_000,
        "explorer_steps": 3_000_000,
        "test_steps": 2_500_000,
        "anneal_steps": 1_250_000,
        "qmix.eps_anneal_steps": 1_250_000,
        "dataset_capacity": 4096,
        "chunk_updates": 100,
    },
    "learners": learners_preset(CONFIG.name),
}

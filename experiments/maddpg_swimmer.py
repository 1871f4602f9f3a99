"""MADDPG on the Swimmer climb game, continuous torques (MESA paper Sec. 6.4, Fig. 4 right).

Two agents each torque one hinge of MuJoCo's 3-link swimmer (multi-agent MuJoCo ``Swimmer 2x1``,
simulated by MJX). Both get 1 when both hinge angles are within ``eps`` (5 degrees) of the task's
target angle ``alpha``, 0.5 when neither is, and 0 when exactly one is. This is the plain MADDPG
baseline of MESA Fig. 4 (right) on one task (``alpha = 0.3`` rad, about 17 degrees): agents start
near 0 and MADDPG typically keeps the sub-optimal 0.5 per step (MESA reports a MADDPG return of
499 of an optimal 1000 over 1000-step episodes).

Learner: MADDPG with a deterministic ``tanh`` actor plus Gaussian exploration noise (0.1), one
actor and one centralized MLP critic per agent (64-64), Adam.

Default: a short CPU-scale run (episodes of 100 steps, 4 parallel games, 40k env steps per seed,
batch 256, lr 1e-3). Measured on the development machine's 2 shared CPU cores: 3 min 46 s for
one seed (about a minute of it compiling MJX); return 49.5 of 100, the sub-optimal 0.5 per step.

``--preset paper``: MESA Table 1 meta-testing scale, 2.5M env steps, 1000-step episodes, Adam
lr 1e-4, batch 8 trajectories (8000 transitions), buffer 1e6, 50k steps before learning, 3 seeds;
meant for an accelerator.

    metajax run experiments/maddpg_swimmer.py --seeds 2
    metajax render runs/maddpg_swimmer   # hinge angles vs the target band (PNG)
"""

import dataclasses

from metajax.algos.maddpg import ORIGINAL
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="maddpg_swimmer",
    env="swimmer_climb",
    env_config=dict(episode_length=100, action_type="continuous"),
    tasks=(dict(alpha=0.3),),
    algo="maddpg",
    maddpg=dataclasses.replace(
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
    ),
    total_env_steps=40_000,
    chunk_updates=40,
    eval_episodes=4,
    checkpoint_every=2,
    seeds=1,
)

PRESETS = {
    "paper": {
        "env_config.episode_length": 1000,
        "maddpg.actor_lr": 1e-4,
        "maddpg.critic_lr": 1e-4,
        "maddpg.batch_size": 8000,
        "maddpg.buffer_size": 1_000_000,
        "maddpg.num_envs": 8,
        "maddpg.rollout_steps": 100,
        "maddpg.updates_per_rollout": 8,
        "maddpg.learning_starts": 50_000,
        "total_env_steps": 2_500_000,
        "chunk_updates": 100,
        "seeds": 3,
    },
}

"""MADDPG on treasure collection with 6 collectors and 20 treasures (MRA paper, Fig. 2a setting).

Reproduces the MADDPG baseline's game of MRA Fig. 2a: 6 collectors, 20 treasures that respawn
when touched, dense reward (``+1`` per treasure touched, ``-0.1`` x distance to the nearest
treasure). The learner is the original MADDPG (Lowe et al. 2017): one actor and one centralized
MLP critic per agent (64-64), Adam lr 1e-2, gamma 0.95, tau 0.01, gradient clip 0.5, relaxed
Gumbel-softmax actions executed as in the original code (``action_type="relaxed"``).

Default: a laptop-scale run (8 parallel games, 150k env steps per seed, batch 256, buffer 50k,
two gradient steps per 200 env steps, i.e. one per 100 as in the original). Measured on the
development machine's 2 shared CPU cores: 4 min 35 s for one seed (about a minute of it
compilation); the training return rises from -1.2 to 0.2-0.7, the final evaluation gives 0.12
greedy and 0.44 stochastic per agent and episode.

``--preset paper``: MRA App. E.1 scale (12 parallel rollouts, episode length 20, batch 1024,
buffer 1e6, 80k episodes = 1.6M env steps per seed); meant for an accelerator.

    metajax run experiments/maddpg_treasure.py --seeds 4
    metajax run experiments/maddpg_treasure.py --preset paper --seeds 4
"""

import dataclasses

from metajax.algos.maddpg import ORIGINAL
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="maddpg_treasure",
    env="treasure",
    env_config=dict(max_agents=6, max_objects=20, episode_length=25, action_type="relaxed"),
    tasks=(dict(n_agents=6, n_treasures=20),),
    algo="maddpg",
    maddpg=dataclasses.replace(
        ORIGINAL,
        batch_size=256,
        buffer_size=50_000,
        num_envs=8,
        rollout_steps=25,
        updates_per_rollout=2,
        learning_starts=2_500,
    ),
    total_env_steps=150_000,
    chunk_updates=25,
    eval_episodes=10,
    checkpoint_every=4,
    seeds=1,
)

PRESETS = {
    "paper": {
        "env_config.episode_length": 20,
        "maddpg.batch_size": 1024,
        "maddpg.buffer_size": 1_000_000,
        "maddpg.num_envs": 12,
        "maddpg.rollout_steps": 20,
        "maddpg.updates_per_rollout": 2,
        "maddpg.learning_starts": 1024 * 25,
        "total_env_steps": 1_600_000,
        "chunk_updates": 100,
    },
}

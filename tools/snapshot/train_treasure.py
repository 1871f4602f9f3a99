"""Behaviour snapshot: MADDPG on two treasure populations (tools/behaviour_snapshot.py)."""

from metajax.algos.maddpg import MADDPGConfig
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="snapshot_train_treasure",
    env="treasure",
    env_config=dict(max_agents=3, max_objects=3, episode_length=5),
    tasks=(dict(n_agents=2, n_treasures=3), dict(n_agents=3, n_treasures=2)),
    maddpg=MADDPGConfig(hidden=(16,), batch_size=16, buffer_size=256, num_envs=4,
                        rollout_steps=5, learning_starts=40),
    total_env_steps=400,
    chunk_updates=4,
    eval_every=2,
    eval_episodes=4,
    checkpoint_every=0,
    seeds=2,
)

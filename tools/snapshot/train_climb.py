"""Behaviour snapshot: MADDPG on a 2-agent, 4-action climb game (tools/behaviour_snapshot.py)."""

from metajax.algos.maddpg import MADDPGConfig
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="snapshot_train_climb",
    env="climb",
    env_config=dict(max_agents=2, num_actions=4),
    tasks=(dict(k=2, u=1), dict(k=1, u=0)),
    maddpg=MADDPGConfig(hidden=(16,), batch_size=16, buffer_size=256, num_envs=4,
                        rollout_steps=1, learning_starts=16),
    total_env_steps=192,
    chunk_updates=8,
    eval_every=2,
    eval_episodes=4,
    checkpoint_every=0,
    seeds=2,
)

"""Behaviour snapshot: MESA's three stages on one-step climb games (tools/behaviour_snapshot.py)."""

import dataclasses

from metajax.algos.maddpg import ORIGINAL
from metajax.pipelines.mesa import MESAConfig

PIPELINE = "mesa"

_M = dataclasses.replace(ORIGINAL, batch_size=16, buffer_size=512, num_envs=4, rollout_steps=1,
                         learning_starts=32, hidden=(16,))

CONFIG = MESAConfig(
    name="snapshot_mesa_climb",
    env="climb",
    env_config=dict(max_agents=2, num_actions=4),
    n_train=2,
    n_test=2,
    split={"train_tasks": [dict(k=2, u=0), dict(k=2, u=1)],
           "test_tasks": [dict(k=2, u=2), dict(k=2, u=3)]},
    maddpg=_M,
    collect_steps=200,
    dataset_capacity=32,
    num_clusters=2,
    num_explorers=2,
    explorer_steps=200,
    count_episodes=2,
    test_steps=400,
    anneal_steps=200,
    chunk_updates=50,
    eval_every=0,
    eval_episodes=2,
    coverage_episodes=8,
    seeds=2,
    xla_fast=True,
)

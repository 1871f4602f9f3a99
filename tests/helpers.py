"""Helpers shared by test modules (plain functions; fixtures live in ``conftest.py``)."""

from __future__ import annotations


def tiny_climb_experiment(name: str, total_env_steps: int, **fields: int) -> str:
    """The text of an experiment file training MADDPG on a 2-agent, 4-action climb game
    (``k=2, u=1``) for ``total_env_steps`` env steps per seed, 2 seeds, 8 env steps per chunk;
    ``fields`` are further :class:`metajax.runner.TrainConfig` fields (e.g. ``eval_every=2``)."""
    more = "".join(f"    {k}={v!r},\n" for k, v in fields.items())
    return f'''"""A tiny climb game for the tests ({name})."""

from metajax.maddpg import MADDPGConfig
from metajax.runner import TrainConfig

CONFIG = TrainConfig(
    name={name!r},
    env="climb",
    env_config=dict(max_agents=2, num_actions=4),
    tasks=(dict(k=2, u=1),),
    maddpg=MADDPGConfig(hidden=(8,), batch_size=8, buffer_size=64, num_envs=4,
                        rollout_steps=1, learning_starts=12),
    total_env_steps={total_env_steps},
    chunk_updates=2,
    eval_episodes=2,
    seeds=2,
{more})
'''

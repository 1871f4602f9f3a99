"""Behaviour snapshot: MRA against Reptile on two resource games (tools/behaviour_snapshot.py)."""

from metajax.pipelines.mra import MRAConfig
from metajax.pipelines.mra_compare import TINY_TEST_LEARNER, CompareConfig

PIPELINE = "mra_compare"

CONFIG = CompareConfig(
    name="snapshot_mra_compare_resource",
    base=MRAConfig(
        env="resource",
        env_config=dict(max_agents=3, max_objects=2, episode_length=8),
        tasks=({"n_agents": 2, "n_resources": 2}, {"n_agents": 3, "n_resources": 2}),
        maddpg=TINY_TEST_LEARNER,
        total_env_steps=640,
        chunk_updates=4,
        eval_episodes=4,
        checkpoint_every=0,
    ),
    arms={"mra": {}, "reptile": {"mra.latent": "none"}},
    seeds=2,
    zero_shot=True,
    zero_shot_episodes=4,
)

"""MRA App. E.3 (Fig. 7): implementation variants of the relational graph ``phi(o, z)``.

The default option architecture (``z`` selects an attention head) against ``concat`` (``z``
concatenated to every observation entity, the same multi-head attention then makes the graph)
and ``bilinear`` (the outer product of every entity with ``z``), as in Florensa et al. (2017);
MRA otherwise unchanged. Paper: 6-resource occupation, training games {6, 9, 12}; the option
architecture learns best.

Default (2-core CPU): 3 resources, games {3, 4, 6}, 40k env steps per seed and arm, 4 seeds.
``--preset paper``: 6 resources, games {6, 9, 12}, App. E.1 learner, 1.6M env steps, 4 seeds.

    metajax run experiments/mra_e3_phi_variants.py
"""

from metajax.pipelines.mra import MRAConfig
from metajax.pipelines.mra_compare import (
    MRA_CPU,
    MRA_CPU_OPTIONS,
    MRA_PAPER_OPTIONS,
    MRA_PAPER_SCALE,
    CompareConfig,
)

PIPELINE = "mra_compare"


def _games(ns, resources):
    return [{"n_agents": n, "n_resources": resources} for n in ns]


CONFIG = CompareConfig(
    name="mra_e3_phi_variants",
    base=MRAConfig(
        env="resource",
        env_config=dict(max_agents=6, max_objects=3, episode_length=20),
        tasks=tuple(_games((3, 4, 6), 3)),
        maddpg=MRA_CPU,
        mra=MRA_CPU_OPTIONS,
        total_env_steps=40_000,
        chunk_updates=25,
        eval_episodes=20,
        checkpoint_every=0,
    ),
    arms={"option": {}, "concat": {"mra.phi": "concat"}, "bilinear": {"mra.phi": "bilinear"}},
    seeds=4,
    expected_best="option",
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=12, max_objects=6, episode_length=20),
        "base.tasks": _games((6, 9, 12), 6),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "seeds": 4,
    },
}

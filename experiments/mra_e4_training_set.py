"""MRA App. E.4 (Fig. 8): the size of the training set of games.

MRA trained on 2, 3 or 4 resource-occupation games (paper: {6, 12}, {6, 9, 12},
{6, 9, 12, 15}), each arm with the same env steps per seed, evaluated on the games of the
3-game set (paper: {6, 9, 12}). Paper: with more than 2 training games the benefit of the meta
representation is clear.

Default (2-core CPU): 3 resources, sets {3, 6}, {3, 4, 6}, {3, 4, 6, 8} (max 8 agents), evaluated
on {3, 4, 6}, 40k env steps per seed and arm, 4 seeds. ``--preset paper``: 6 resources, the
paper's sets, App. E.1 learner, 1.6M env steps, 4 seeds.

    metajax run experiments/mra_e4_training_set.py
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


def _arms(sets, resources):
    return {f"{len(s)}_games": {"tasks": _games(s, resources)} for s in sets}


SETS = ((3, 6), (3, 4, 6), (3, 4, 6, 8))
PAPER_SETS = ((6, 12), (6, 9, 12), (6, 9, 12, 15))

CONFIG = CompareConfig(
    name="mra_e4_training_set",
    base=MRAConfig(
        env="resource",
        env_config=dict(max_agents=8, max_objects=3, episode_length=20),
        tasks=tuple(_games(SETS[1], 3)),
        eval_tasks=tuple(_games(SETS[1], 3)),
        maddpg=MRA_CPU,
        mra=MRA_CPU_OPTIONS,
        total_env_steps=40_000,
        chunk_updates=25,
        eval_episodes=20,
        checkpoint_every=0,
    ),
    arms=_arms(SETS, 3),
    seeds=4,
    report_tasks=tuple(_games(SETS[1], 3)),
    expected_order=("4_games", "2_games"),
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=15, max_objects=6, episode_length=20),
        "base.tasks": _games(PAPER_SETS[1], 6),
        "base.eval_tasks": _games(PAPER_SETS[1], 6),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "arms": _arms(PAPER_SETS, 6),
        "report_tasks": _games(PAPER_SETS[1], 6),
        "seeds": 4,
    },
}

"""MRA App. E.5 (Fig. 9): training curves of ``I(g; a | o)`` and of the game-index loss.

One MRA run on four resource-occupation games; ``extra_curves.png`` shows Eq. 11's lower bound of
``I(g; a | o)`` (the ``mi`` metric: its value on the batch of the ``phi`` step, before the step)
and Eq. 13's cross-entropy of the inference network ``xi`` (``game_ce``) against env steps.
Paper: resource occupation with {3, 6, 12, 24} agents; the MI rises, the loss falls.

Default (2-core CPU): {2, 3, 4, 6} agents, 3 resources, 40k env steps, 4 seeds.
``--preset paper``: {3, 6, 12, 24} agents, 6 resources (max 24), App. E.1 learner, 1.6M env steps,
4 seeds.

    metajax run experiments/mra_e5_mi_curves.py
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
    name="mra_e5_mi_curves",
    base=MRAConfig(
        env="resource",
        env_config=dict(max_agents=6, max_objects=3, episode_length=20),
        tasks=tuple(_games((2, 3, 4, 6), 3)),
        maddpg=MRA_CPU,
        mra=MRA_CPU_OPTIONS,
        total_env_steps=40_000,
        chunk_updates=25,
        eval_episodes=20,
        checkpoint_every=0,
    ),
    arms={"mra": {}},
    seeds=4,
    curve_metrics=("mi", "game_ce", "entropy"),
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=24, max_objects=6, episode_length=20),
        "base.tasks": _games((3, 6, 12, 24), 6),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "seeds": 4,
    },
}

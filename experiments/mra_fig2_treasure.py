"""MRA Fig. 2a: benefit of game-common knowledge in treasure collection.

The target game (paper: 6 collectors, 20 treasures) is compared across MRA and Reptile trained on
several games of different populations (the target among them), the single-game baseline (MRA's
architecture trained on the target only), MADDPG with the relational actor (per-agent
parameters; MAAC-style
attention critic as in App. E.1) and MADDPG with
parameters shared by homogeneous agents; every arm spends the same env steps per seed (MRA's per
game are |M| times fewer, as in the paper).

Default (2-core CPU): target 6 collectors and 6 treasures, MRA/Reptile games {2, 4, 6}, 40k
env steps per seed and arm, 4 seeds. ``--preset paper``: target (6, 20 treasures), games
{3, 6, 12, 24} (max 24 agents), App. E.1 learner, 1.6M env steps per arm, 4 seeds.

    metajax run experiments/mra_fig2_treasure.py
"""

from metajax.pipelines.mra import MRAConfig
from metajax.pipelines.mra_compare import (
    MRA_CPU,
    MRA_CPU_OPTIONS,
    MRA_PAPER_OPTIONS,
    MRA_PAPER_SCALE,
    CompareConfig,
    baseline_arms,
)

PIPELINE = "mra_compare"


def _games(ns, treasures):
    return [{"n_agents": n, "n_treasures": treasures} for n in ns]


TARGET = {"n_agents": 6, "n_treasures": 6}
PAPER_TARGET = {"n_agents": 6, "n_treasures": 20}

CONFIG = CompareConfig(
    name="mra_fig2_treasure",
    base=MRAConfig(
        env="treasure",
        env_config=dict(max_agents=6, max_objects=6, episode_length=20),
        tasks=tuple(_games((2, 4, 6), 6)),
        maddpg=MRA_CPU,
        mra=MRA_CPU_OPTIONS,
        total_env_steps=40_000,
        chunk_updates=25,
        eval_episodes=20,
        checkpoint_every=0,
    ),
    arms={"mra": {}, "reptile": {"mra.latent": "none"}, **baseline_arms(TARGET)},
    seeds=4,
    report_tasks=(TARGET,),
    expected_best="mra",
    expected_order=("mra", "reptile"),
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=24, max_objects=20, episode_length=20),
        "base.tasks": _games((3, 6, 12, 24), 20),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "arms": {"mra": {}, "reptile": {"mra.latent": "none"},
                 **baseline_arms(PAPER_TARGET, critic="attention")},
        "report_tasks": [PAPER_TARGET],
        "seeds": 4,
    },
}

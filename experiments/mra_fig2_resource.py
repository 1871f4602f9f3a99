"""MRA Fig. 2b: benefit of game-common knowledge in resource occupation.

Target game (paper: 12 agents, 6 resources) compared across MRA and Reptile trained on several
populations, the single-game baseline, MADDPG (relational actor, per-agent parameters; MAAC-style
attention critic as in App. E.1) and MADDPG with shared parameters; same
env steps per seed for every arm.

Default (2-core CPU): target 6 agents and 3 resources (sizes 0.1, 0.2, 0.3), MRA/Reptile games
{3, 4, 6}, 40k env steps per seed and arm, 4 seeds. ``--preset paper``: target 12 agents, games
{6, 9, 12, 15}, 6 resources (max 15 agents), App. E.1 learner, 1.6M env steps, 4 seeds.

    metajax run experiments/mra_fig2_resource.py
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


def _games(ns, resources):
    return [{"n_agents": n, "n_resources": resources} for n in ns]


TARGET = {"n_agents": 6, "n_resources": 3}
PAPER_TARGET = {"n_agents": 12, "n_resources": 6}

CONFIG = CompareConfig(
    name="mra_fig2_resource",
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
    arms={"mra": {}, "reptile": {"mra.latent": "none"}, **baseline_arms(TARGET)},
    seeds=4,
    report_tasks=(TARGET,),
    expected_best="mra",
    expected_order=("mra", "reptile"),
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=15, max_objects=6, episode_length=20),
        "base.tasks": _games((6, 9, 12, 15), 6),
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

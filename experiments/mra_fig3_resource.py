"""MRA Fig. 3 (second row): per-game training curves in resource occupation.

MRA trained on several resource-occupation games that differ in the number of agents, against
uni-MRA (``z`` uniform), Reptile (unimodal relational policy, same Reptile loop) and the
single-game baseline (MRA's architecture on one game; one arm per game, each with as many env
steps as MRA spends on all games). EPC and RL^2 are not implemented. The MRA arm also logs the
curves of App. E.5 (Eq. 11's bound ``mi`` and Eq. 13's ``game_ce``; ``extra_curves.png``).

Default (2-core CPU): games with {3, 4, 6} agents and 3 resources (sizes 0.1-0.3, max 6
agents), 40k env steps per seed and arm, 4 seeds. ``--preset paper``: games {6, 9, 12, 15} with 6
resources (max 15 agents), App. E.1 learner, 1.6M env steps per arm, 4 seeds.

    metajax run experiments/mra_fig3_resource.py
"""

from metajax.pipelines.mra import MRAConfig
from metajax.pipelines.mra_compare import (
    MRA_CPU,
    MRA_CPU_OPTIONS,
    MRA_PAPER_OPTIONS,
    MRA_PAPER_SCALE,
    CompareConfig,
    single_game_arm,
)

PIPELINE = "mra_compare"


def _games(ns, resources):
    return [{"n_agents": n, "n_resources": resources} for n in ns]


def _arms(games):
    arms = {"mra": {}, "uni_mra": {"mra.latent": "uniform"}, "reptile": {"mra.latent": "none"}}
    for g in games:
        arms[f"single_{g['n_agents']}"] = single_game_arm(g)
    return arms


CONFIG = CompareConfig(
    name="mra_fig3_resource",
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
    arms=_arms(_games((3, 4, 6), 3)),
    seeds=4,
    expected_order=("mra", "reptile"),
    expected_best="mra",
    curve_metrics=("mi", "game_ce"),
    gifs=("mra",),
    gif_task={"n_agents": 6, "n_resources": 3},
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=15, max_objects=6, episode_length=20),
        "base.tasks": _games((6, 9, 12, 15), 6),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "arms": _arms(_games((6, 9, 12, 15), 6)),
        "seeds": 4,
    },
}

"""MRA Fig. 3 (first row): per-game training curves in treasure collection.

MRA trained on several treasure-collection games that differ in the number of collectors,
against uni-MRA (``z`` uniform), Reptile (a unimodal relational policy over the same games, the
same Reptile loop without a latent) and the single-game baseline (the MRA architecture trained on
one game only; one arm per game, each with as many env steps as MRA spends on all games, the
paper's protocol). EPC and RL^2 of the paper's Fig. 3 are not implemented.

Default (2-core CPU): games with {2, 4, 6} collectors (6 treasures, max 6 agents), 40k env steps
per seed and arm, 4 seeds, small networks. ``--preset paper``: the paper's games {3, 6, 12, 24}
with 20 treasures (max 24 agents), App. E.1's networks and optimizer (|Z| = 6 heads, batch 1024,
K = 10, Adam 3e-4), 12 parallel rollouts split over the games, episode length 20,
80k episodes (1.6M env steps) per arm, 4 seeds; meant for an accelerator.

    metajax run experiments/mra_fig3_treasure.py
    metajax run experiments/mra_fig3_treasure.py --preset paper
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

GAMES = (2, 4, 6)
PAPER_GAMES = (3, 6, 12, 24)


def _games(ns, treasures):
    return tuple({"n_agents": n, "n_treasures": treasures} for n in ns)


def _arms(games):
    arms = {
        "mra": {},
        "uni_mra": {"mra.latent": "uniform"},
        "reptile": {"mra.latent": "none"},
    }
    for g in games:
        arms[f"single_{g['n_agents']}"] = single_game_arm(g)
    return arms


CONFIG = CompareConfig(
    name="mra_fig3_treasure",
    base=MRAConfig(
        env="treasure",
        env_config=dict(max_agents=6, max_objects=6, episode_length=20),
        tasks=_games(GAMES, 6),
        maddpg=MRA_CPU,
        mra=MRA_CPU_OPTIONS,
        total_env_steps=40_000,
        chunk_updates=25,
        eval_episodes=20,
        checkpoint_every=0,
    ),
    arms=_arms(_games(GAMES, 6)),
    seeds=4,
    expected_order=("mra", "reptile"),
    expected_best="mra",
    curve_metrics=("mi", "game_ce"),
    gifs=("mra",),
    gif_task={"n_agents": 6, "n_treasures": 6},
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=24, max_objects=20, episode_length=20),
        "base.tasks": list(_games(PAPER_GAMES, 20)),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "arms": _arms(_games(PAPER_GAMES, 20)),
        "seeds": 4,
    },
}

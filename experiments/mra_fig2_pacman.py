"""MRA Fig. 2c and App. E.2 Tables 1-2: the Pac-Man-like world.

Fig. 2c: the target game (paper: 8 Pac-Man, 4 ghosts, 20 food) compared across MRA and Reptile
trained on several (Pac-Man, ghosts) games, the single-game baseline, MADDPG (relational actor,
per-agent parameters; MAAC-style
attention critic as in App. E.1) and MADDPG
with shared parameters. App. E.2 (cross-comparison): the
Pac-Man team of MRA or of the single-game baseline against the ghost team of either, on the
target game; each team's mean return per agent, also normalized to [0, 1] per table (the paper
normalizes its scores; its exact normalization is not given).

Default (2-core CPU): target (4 Pac-Man, 2 ghosts, 6 food), MRA/Reptile games
{(2, 1), (3, 2), (4, 2)}, 40k env steps per seed and arm, 4 seeds. ``--preset paper``: target
(8, 4, 20 food), games {(4, 2), (6, 3), (8, 4)}, App. E.1 learner, 1.6M env steps, 4 seeds.

    metajax run experiments/mra_fig2_pacman.py
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


def _games(pairs, food):
    return [{"n_pacman": p, "n_ghosts": g, "n_food": food} for p, g in pairs]


TARGET = {"n_pacman": 4, "n_ghosts": 2, "n_food": 6}
PAPER_TARGET = {"n_pacman": 8, "n_ghosts": 4, "n_food": 20}

CONFIG = CompareConfig(
    name="mra_fig2_pacman",
    base=MRAConfig(
        env="pacman",
        env_config=dict(max_pacman=4, max_ghosts=2, max_objects=6, episode_length=20),
        tasks=tuple(_games(((2, 1), (3, 2), (4, 2)), 6)),
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
    cross=("baseline", "mra"),
    episode_stats=True,
    cross_task=TARGET,
    gifs=("mra",),
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_pacman=8, max_ghosts=4, max_objects=20, episode_length=20),
        "base.tasks": _games(((4, 2), (6, 3), (8, 4)), 20),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "arms": {"mra": {}, "reptile": {"mra.latent": "none"},
                 **baseline_arms(PAPER_TARGET, critic="attention")},
        "report_tasks": [PAPER_TARGET],
        "cross_task": PAPER_TARGET,
        "seeds": 4,
    },
}

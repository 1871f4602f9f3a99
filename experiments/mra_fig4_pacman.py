"""MRA Fig. 4c: adaptation to the ghost-dominated Pac-Man game.

MRA is pre-trained on several (Pac-Man, ghosts) games with more Pac-Man than ghosts, then
adapted (Alg. 5) to a game where ghosts dominate (paper: 2 Pac-Man vs 8 ghosts), where the
random-exploration bottleneck stops learners from scratch (the Pac-Man are caught quickly and
the episodes end early). Compared with MADDPG (relational actor, per-agent parameters; MAAC-style
attention critic as in App. E.1) and the MAAC-style learner, both from
scratch on the unseen game.

Default (2-core CPU): pre-training on {(2, 1), (3, 2), (4, 2)} with 6 food (40k env steps per
seed), unseen game (1 Pac-Man, 4 ghosts), 20k env steps per arm, 4 seeds. ``--preset paper``:
pre-training on {(4, 2), (6, 3), (8, 4)} with 20 food, unseen (2, 8), App. E.1 learner, 1.6M env
steps of pre-training, 400k per arm, 4 seeds.

    metajax run experiments/mra_fig4_pacman.py
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


def _games(pairs, food):
    return [{"n_pacman": p, "n_ghosts": g, "n_food": food} for p, g in pairs]


def _arms(target, steps, critic="attention"):
    more = {"total_env_steps": steps}
    return {
        "pretrain": {},
        "mra": single_game_arm(target, **{"mra.mode": "adapt", "mra.init_from": "arm:pretrain",
                                          **more}),
        "maddpg": single_game_arm(target, algo="maddpg",
                                  **{"maddpg.param_sharing": "agent", "maddpg.critic": critic,
                                     **more}),
        "maac": single_game_arm(target, **{"mra.latent": "none", **more}),
    }


TARGET = {"n_pacman": 1, "n_ghosts": 4, "n_food": 6}
PAPER_TARGET = {"n_pacman": 2, "n_ghosts": 8, "n_food": 20}

CONFIG = CompareConfig(
    name="mra_fig4_pacman",
    base=MRAConfig(
        env="pacman",
        env_config=dict(max_pacman=4, max_ghosts=4, max_objects=6, episode_length=20),
        tasks=tuple(_games(((2, 1), (3, 2), (4, 2)), 6)),
        maddpg=MRA_CPU,
        mra=MRA_CPU_OPTIONS,
        total_env_steps=40_000,
        chunk_updates=25,
        eval_episodes=20,
        checkpoint_every=0,
    ),
    arms=_arms(TARGET, 20_000),
    seeds=4,
    episode_stats=True,
    report_tasks=(TARGET,),
    expected_order=("mra", "maac", "maddpg"),
    aux_arms=("pretrain",),
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_pacman=8, max_ghosts=8, max_objects=20, episode_length=20),
        "base.tasks": _games(((4, 2), (6, 3), (8, 4)), 20),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "arms": _arms(PAPER_TARGET, 400_000, critic="attention"),
        "report_tasks": [PAPER_TARGET],
        "seeds": 4,
    },
}

"""MRA Fig. 4a-b: adaptation to unseen treasure-collection games.

MRA is trained on several dense-reward treasure games (``pretrain``), then adapted (Alg. 5,
Eq. 10: ``theta`` and ``phi`` fine-tuned, ``psi`` fixed, each agent's ``z`` drawn once) to
(a) the sparse-reward game (no distance shaping) and (b) a game with many more agents than any
training game (paper: 48). The comparison learners start from scratch on each unseen game:
MADDPG (relational actor, per-agent parameters; MAAC-style attention critic as
in App. E.1, every agent encoded once) and a
MAAC-style learner (the
same actor-critic as MRA without latent, i.e. attention critic and soft policy gradient). EPC and
RL^2 are not implemented. Curves: training return on each unseen game against its env steps.

Default (2-core CPU): pre-training on {2, 4, 6} collectors (6 treasures, 40k env steps per
seed); unseen games: sparse with 4 collectors, and 12 collectors (max 12 agents); 20k env steps
of adaptation or training per arm; 4 seeds. ``--preset paper``: pre-training on
{3, 6, 12, 24} with 20 treasures, unseen: sparse 6-collector game and 48 collectors, App. E.1
learner, 1.6M env steps of pre-training and 400k per adaptation arm, 4 seeds.

    metajax run experiments/mra_fig4_treasure.py
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


def _games(ns, treasures):
    return [{"n_agents": n, "n_treasures": treasures} for n in ns]


def _arms(sparse, large, large_env, steps, critic="attention"):
    arms = {"pretrain": {}}
    for tag, task, env in (("sparse", sparse, None), ("large", large, large_env)):
        more = {"total_env_steps": steps}
        if env is not None:
            more["env_config"] = env
        arms[f"mra_{tag}"] = single_game_arm(
            task, **{"mra.mode": "adapt", "mra.init_from": "arm:pretrain", **more})
        arms[f"maddpg_{tag}"] = single_game_arm(
            task, algo="maddpg",
            **{"maddpg.param_sharing": "agent", "maddpg.critic": critic, **more})
        arms[f"maac_{tag}"] = single_game_arm(task, **{"mra.latent": "none", **more})
    return arms


SPARSE = {"n_agents": 4, "n_treasures": 6, "shaping": 0.0}
LARGE = {"n_agents": 12, "n_treasures": 6}
PAPER_SPARSE = {"n_agents": 6, "n_treasures": 20, "shaping": 0.0}
PAPER_LARGE = {"n_agents": 48, "n_treasures": 20}

CONFIG = CompareConfig(
    name="mra_fig4_treasure",
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
    arms=_arms(SPARSE, LARGE, dict(max_agents=12, max_objects=6, episode_length=20), 20_000),
    seeds=4,
    report_tasks=(SPARSE, LARGE),
    expected_order=("mra_sparse", "maac_sparse", "maddpg_sparse", "mra_large", "maac_large",
                    "maddpg_large"),
    aux_arms=("pretrain",),
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=24, max_objects=20, episode_length=20),
        "base.tasks": _games((3, 6, 12, 24), 20),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "arms": _arms(PAPER_SPARSE, PAPER_LARGE,
                      dict(max_agents=48, max_objects=20, episode_length=20), 400_000,
                      critic="attention"),
        "report_tasks": [PAPER_SPARSE, PAPER_LARGE],
        "seeds": 4,
    },
}

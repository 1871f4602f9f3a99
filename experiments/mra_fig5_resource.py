"""MRA Fig. 5: zero-shot transfer to unseen resource-occupation populations.

MRA, uni-MRA and Reptile (unimodal) are trained on several populations and evaluated, without
any adaptation, on the training games (Fig. 5 left) and on populations never trained on (right).
MRA's return is the expectation over the latent ``z`` (drawn from ``p_psi(z | m)`` of the unseen
game's description); the summary also gives best-of-``z`` (every agent on the best head, the
"enumerated trial-and-error" of Sec. 7.3). EPC and RL^2 are not implemented.

Default (2-core CPU): training populations {3, 4, 6} with 3 resources, unseen {2, 5, 7} (max 7
agents), 40k env steps per seed and arm, 4 seeds. ``--preset paper``: training {6, 9, 12, 15}
with 6 resources, unseen {3, 5, 18, 21} (max 21 agents), App. E.1 learner, 1.6M env steps, 4
seeds.

    metajax run experiments/mra_fig5_resource.py
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


TRAIN, UNSEEN = (3, 4, 6), (2, 5, 7)
PAPER_TRAIN, PAPER_UNSEEN = (6, 9, 12, 15), (3, 5, 18, 21)

CONFIG = CompareConfig(
    name="mra_fig5_resource",
    base=MRAConfig(
        env="resource",
        env_config=dict(max_agents=7, max_objects=3, episode_length=20),
        tasks=tuple(_games(TRAIN, 3)),
        eval_tasks=tuple(_games(TRAIN + UNSEEN, 3)),
        maddpg=MRA_CPU,
        mra=MRA_CPU_OPTIONS,
        total_env_steps=40_000,
        chunk_updates=25,
        eval_episodes=20,
        checkpoint_every=0,
    ),
    arms={"mra": {}, "uni_mra": {"mra.latent": "uniform"}, "reptile": {"mra.latent": "none"}},
    seeds=4,
    report_tasks=tuple(_games(TRAIN + UNSEEN, 3)),
    expected_best="mra",
    zero_shot=True,
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=21, max_objects=6, episode_length=20),
        "base.tasks": _games(PAPER_TRAIN, 6),
        "base.eval_tasks": _games(PAPER_TRAIN + PAPER_UNSEEN, 6),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "report_tasks": _games(PAPER_TRAIN + PAPER_UNSEEN, 6),
        "seeds": 4,
    },
}

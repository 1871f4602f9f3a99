"""MESA on the one-step climb game (MESA Table 2, column "One-step Climb Game"; Fig. 3 left).

Task space ``T^one_10``: every ``G(2, k, u, 10)`` with ``k in {1, 2}``, ``u in 0..9`` (20 games).
Per seed, 3 test games are drawn among the hard ones (``k = 2``: both players must find the same
key action; MADDPG settles on the sub-optimal equilibrium, 0.5) and 10 training games among the
other 17. MESA: MADDPG on each training game fills ``M_*`` with joint actions of reward 1; 4
exploration policies are trained on the coverage reward; on each test game MADDPG learns with
them playing whole episodes with probability ``p_e`` (annealed 1 -> 0 over the first half).
Baselines with the same budgets: MADDPG, random exploration, pretrained and goal-conditioned
policies. The joint (state, action) vector is the pair of one-hot actions (the observation is
constant), so ``eps = 0.5`` separates distinct joint actions.

Table 1 budgets: 30k collection steps (3k per training game), 50k meta-test steps; batch 32
episodes; lr 5e-3; 3000 random steps. The default trims the meta-training (2k steps per game,
4 x 5k for the explorers) and runs 3 seeds x 3 test games x 5 methods in one process; ``paper``
adds Table 1's steps and the GRU actor.

``paper_split`` keeps the default budgets but draws the 10 training games uniformly from all
20 games, independently of the 3 hard test games (``split.overlap``), so a test game may also
be a training game (probability 1/2 per test game). This is one reading of Sec. 6.2 ("ten
training tasks and three different test tasks"); App. B.1.1 instead says the test tasks are
"different from the training tasks", which the default follows. The results record, per seed
and test game, whether it was also a training game, and the found rate on each kind.

    metajax run experiments/mesa_climb.py
    metajax run experiments/mesa_climb.py --preset paper --out runs/mesa_climb_paper
    metajax run experiments/mesa_climb.py --preset paper_split --out runs/mesa_climb_paper_split
"""

import dataclasses

from metajax.maddpg import ORIGINAL
from metajax.mesa import MESAConfig

PIPELINE = "mesa"

_LEARNER = dataclasses.replace(
    ORIGINAL,
    actor_lr=5e-3,
    critic_lr=5e-3,
    batch_size=32,
    buffer_size=50_000,
    num_envs=20,
    rollout_steps=1,
    updates_per_rollout=1,
    learning_starts=3_000,
)

CONFIG = MESAConfig(
    name="mesa_climb",
    env="climb",
    env_config=dict(max_agents=2, num_actions=10),
    n_train=10,
    n_test=3,
    split={"test_filter": {"k": 2}},
    maddpg=_LEARNER,
    collect=dataclasses.replace(_LEARNER, buffer_size=5_000, learning_starts=500),
    collect_steps=2_000,
    dataset_capacity=256,
    num_clusters=16,
    num_explorers=4,
    explorer_steps=5_000,
    eps=0.5,
    test_steps=20_000,
    anneal_steps=10_000,
    chunk_updates=100,
    eval_every=1,
    eval_episodes=4,
    seeds=3,
)

PRESETS = {
    "paper": {
        "collect_steps": 3_000,
        "explorer_steps": 50_000,
        "test_steps": 50_000,
        "anneal_steps": 25_000,
        "maddpg.actor": "gru",
        "collect.actor": "gru",
        "n_test": 5,
    },
    "paper_split": {
        "name": "mesa_climb_paper_split",
        "split": {"test_filter": {"k": 2}, "overlap": True},
    },
}

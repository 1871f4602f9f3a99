"""MADDPG on the one-step climb game G(2, k=2, u=3, U=10) (MESA paper Sec. 6.2, Table 1).

Two players each pick one of 10 actions; both get 1 when both play the key action ``u = 3``,
``1 - delta = 0.5`` when neither does, and 0 when exactly one does. This is the MADDPG baseline
of MESA Fig. 3 (left) on one task: plain MADDPG typically settles on the sub-optimal equilibrium
(return 0.5 per agent, nobody on ``u``), the failure MESA's meta-exploration fixes.

MESA Table 1 settings: 50k env steps, batch 32 trajectories (an episode is one step, so one
transition), Adam lr 5e-3, 3000 steps of random exploration before learning. Each update plays
20 games in parallel (one step each) and takes one gradient step on a batch of 32. Parameters
are per agent (``param_sharing="agent"``), so the two players are distinct learners.

The default already runs the paper's 50k steps (the game is cheap): 55 s to 1.5 min for one seed
and 1.5 min for three on the development machine's 2 shared CPU cores, most of it compilation;
every seed ends at 0.5, the sub-optimal equilibrium (optimal 1.0). ``--preset paper`` adds
MESA's GRU actor (64 units) and its 3 seeds. Render the learned joint action with
``metajax render runs/maddpg_climb`` (a bar chart of each player's action distribution).

    metajax run experiments/maddpg_climb.py --seeds 3
    metajax run experiments/maddpg_climb.py --set 'tasks=[{"k": 1, "u": 7}]'
"""

import dataclasses

from metajax.algos.maddpg import ORIGINAL
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="maddpg_climb",
    env="climb",
    env_config=dict(max_agents=2, num_actions=10),
    tasks=(dict(k=2, u=3),),
    algo="maddpg",
    maddpg=dataclasses.replace(
        ORIGINAL,
        actor_lr=5e-3,
        critic_lr=5e-3,
        batch_size=32,
        buffer_size=50_000,
        num_envs=20,
        rollout_steps=1,
        updates_per_rollout=1,
        learning_starts=3_000,
    ),
    total_env_steps=50_000,
    chunk_updates=250,
    eval_episodes=20,
    checkpoint_every=2,
    seeds=1,
)

PRESETS = {
    "paper": {
        "maddpg.actor": "gru",
        "maddpg.gru_hidden": 64,
        "seeds": 3,
    },
}

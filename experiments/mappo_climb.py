"""MAPPO on the one-step climb game G(2, k=2, u=3, U=10) of ``maddpg_climb.py`` (MESA paper
Sec. 6.2; MAPPO is one of its Table 2 baselines).

Two players each pick one of 10 actions; both get 1 when both play the key action ``u = 3``,
``1 - delta = 0.5`` when neither does, and 0 when exactly one does. MESA's Table 2 reports
MAPPO at 0.50 on the climb games: it settles on the sub-optimal equilibrium. Same budget as
``maddpg_climb.py`` (50k env steps). Each update rolls 8 steps (one-step episodes) of 32 games
and takes 4 epochs of 4 minibatches; actor and value are shared by the players (one-hot slot
appended), the value reads the global state (MAPPO). ``--set algo=ippo`` gives IPPO,
``--set ppo.rnd_coef=0.1`` MAPPO-RND.

    metajax run experiments/mappo_climb.py --seeds 3
"""

from metajax.algos.ppo import PPOConfig
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="mappo_climb",
    env="climb",
    env_config=dict(max_agents=2, num_actions=10),
    tasks=(dict(k=2, u=3),),
    algo="mappo",
    ppo=PPOConfig(num_envs=32, rollout_steps=8, epochs=4, minibatches=4, hidden=(64,),
                  lr=1e-3, ent_coef=0.01),
    total_env_steps=50_000,
    chunk_updates=20,
    eval_episodes=20,
    checkpoint_every=2,
)

"""QMIX on the one-step climb game G(2, k=2, u=3, U=10) of ``maddpg_climb.py`` (MESA paper
Sec. 6.2; QMIX is one of its Table 2 baselines).

Two players each pick one of 10 actions; both get 1 when both play the key action ``u = 3``,
``1 - delta = 0.5`` when neither does, and 0 when exactly one does. MESA's Table 2 reports
QMIX at 0.50 on the climb games. Same budget as ``maddpg_climb.py`` (50k env steps): each
update rolls one step of 32 games, stores them as one-step windows and takes one gradient step
on 32 of them; epsilon falls from 1 to 0.05 over the first 20k steps. ``--set algo=vdn`` gives
VDN.

    metajax run experiments/qmix_climb.py --seeds 3
"""

from metajax.algos.qmix import QMixConfig
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="qmix_climb",
    env="climb",
    env_config=dict(max_agents=2, num_actions=10),
    tasks=(dict(k=2, u=3),),
    algo="qmix",
    qmix=QMixConfig(num_envs=32, hidden=32, batch_windows=32, buffer_windows=5000,
                    eps_anneal_steps=20_000, lr=1e-3, target_every=20),
    total_env_steps=50_000,
    chunk_updates=100,
    eval_episodes=20,
    checkpoint_every=2,
)

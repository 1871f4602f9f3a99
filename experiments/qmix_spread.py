"""QMIX on MPE simple_spread (the ``spread`` world: 3 agents, 3 landmarks, 25-step episodes),
with the hyperparameters of JaxMARL 0.2's ``baselines/QLearning/config/alg/ql_rnn_mpe.yaml``
where ours has them: 8 games, one 25-step window (an episode) per game per update, one gradient
step per update on 32 sampled windows, a replay of 5000 windows, a GRU of 64 units (agent id
appended, as JaxMARL's CTRolloutManager does), mixer embedding 32, lr 5e-3, gamma 0.9,
gradient norm 25, epsilon 1 -> 0.05 over the first 10 % of the run (the benchmark sets
``eps_anneal_steps``), target copied every 200 updates, double Q. Differences: JaxMARL's
hypernetworks have 128 hidden units (ours 64) and its mixer weights an init scale of 0.001; it
learns from 10k env steps on (ours once 32 windows are stored) with a linearly decaying lr (ours
constant); its TD target uses the sum of the agents' rewards (ours their mean, a 1/3 scale).

The side-by-side benchmark ``benchmarks/jaxmarl_algos.py`` sets ``total_env_steps``.

    metajax run experiments/qmix_spread.py --seeds 3
"""

from metajax.algos.qmix import QMixConfig
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="qmix_spread",
    env="spread",
    env_config=dict(local_ratio=0.5, integration="position_first"),
    tasks=({},),
    algo="qmix",
    qmix=QMixConfig(num_envs=8, window=25, hidden=64, mixer_embed=32, batch_windows=32,
                    buffer_windows=5000, lr=5e-3, gamma=0.9, eps_start=1.0, eps_end=0.05,
                    eps_anneal_steps=50_000, target_every=200, grad_clip=25.0, double_q=True),
    total_env_steps=500_000,
    chunk_updates=250,
    eval_episodes=100,
    checkpoint_every=0,
)

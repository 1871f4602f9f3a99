"""QMIX on MPE simple_spread (the ``spread`` world: 3 agents, 3 landmarks, 25-step episodes),
with the hyperparameters of JaxMARL 0.2's ``baselines/QLearning/config/alg/ql_rnn_mpe.yaml``:
8 games, one 25-step window (an episode) per game per update, one gradient step per update on
32 sampled windows from 10k env steps on, a replay of 5000 windows, a GRU of 64 units (agent id
appended, as JaxMARL's CTRolloutManager does), mixer embedding 32 with hypernetworks of 128
units initialized orthogonal with gain 0.001, lr 5e-3 decaying linearly to 0 over the run,
gamma 0.9, gradient norm 25, epsilon 1 -> 0.05 over the first 10 % of the run (the benchmark
sets ``eps_anneal_steps``), target copied every 200 updates, double Q, the TD target on the
sum of the agents' rewards. Differences: Adam (JaxMARL's RAdam), flax's default initializers
for the agent network (JaxMARL's orthogonal), and a time limit bootstraps from the final
observation (JaxMARL's target treats it as a termination).

These settings are not our QMIX defaults: with the defaults (mixer hypernetworks of 64 units
at flax's initialization, a constant lr, the mean team reward, learning from the first full
batch) QMIX does not learn spread (-59 at 500k steps against random -26). The ablation
``benchmarks/qmix_spread_ablation.py`` and its table in ``benchmarks/RESULTS.md`` (JaxMARL side
by side) show which setting matters.

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
                    eps_anneal_steps=50_000, target_every=200, grad_clip=25.0, double_q=True,
                    team_reward="sum", mixer_hidden=128, mixer_init_scale=0.001,
                    learning_starts=10_000, lr_decay_steps=500_000),
    total_env_steps=500_000,
    chunk_updates=250,
    eval_episodes=100,
    checkpoint_every=0,
)

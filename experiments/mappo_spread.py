"""MAPPO on MPE simple_spread (the ``spread`` world: 3 agents, 3 landmarks, 25-step episodes),
with the hyperparameters of JaxMARL 0.2's ``baselines/MAPPO/config/mappo_homogenous_rnn_mpe.yaml``
where ours has them: 16 games, rollouts of 128 steps, 4 epochs of 4 minibatches, lr 2e-3,
gamma 0.99, GAE lambda 0.95, clip 0.2 (policy and value), entropy 0.01, value 0.5, gradient
norm 0.5; actor and centralized value shared by the agents, the actor without an agent id (as
JaxMARL's). PettingZoo's reward mix (``local_ratio=0.5``) and integration order, as JaxMARL's
``MPE_simple_spread_v3``. Differences: JaxMARL's MAPPO is recurrent (Dense 128, ReLU, GRU 128,
Dense 128, ReLU, for actor and critic; minibatches of whole agent sequences), ours feed-forward
(two tanh layers of 128); our value reads the global state with the agent's one-hot slot
(JaxMARL's the concatenated observations); no learning-rate annealing; Adam eps 1e-8 (1e-5).

The side-by-side benchmark ``benchmarks/jaxmarl_algos.py`` sets ``total_env_steps``.

    metajax run experiments/mappo_spread.py --seeds 3
"""

from metajax.algos.ppo import PPOConfig
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="mappo_spread",
    env="spread",
    env_config=dict(local_ratio=0.5, integration="position_first"),
    tasks=({},),
    algo="mappo",
    ppo=PPOConfig(num_envs=16, rollout_steps=128, epochs=4, minibatches=4, hidden=(128, 128),
                  lr=2e-3, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, value_clip=0.2,
                  ent_coef=0.01, vf_coef=0.5, grad_clip=0.5, agent_id=False),
    total_env_steps=1_000_000,
    chunk_updates=50,
    eval_episodes=100,
    checkpoint_every=0,
)

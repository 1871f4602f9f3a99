"""IPPO on MPE simple_spread (the ``spread`` world: 3 agents, 3 landmarks, 25-step episodes),
with JaxMARL 0.2's ``baselines/IPPO/config/ippo_ff_mpe.yaml`` hyperparameters: 16 games,
rollouts of 128 steps, 4 epochs of 4 minibatches, lr 2.5e-4, 64-64 tanh actor and value
networks (shared by the agents, no agent id: JaxMARL's IPPO-FF appends none), gamma 0.99,
GAE lambda 0.95, clip 0.2 (policy and value), entropy 0.01, value 0.5, gradient norm 0.5.
PettingZoo's reward mix (``local_ratio=0.5``) and integration order (positions first), as
JaxMARL's ``MPE_simple_spread_v3``. Differences from JaxMARL's run: no learning-rate
annealing (ours is constant), Adam eps 1e-8 (JaxMARL 1e-5), minibatches of whole game steps
(all agents of a step together) rather than of single agent steps.

The side-by-side benchmark ``benchmarks/jaxmarl_algos.py`` sets ``total_env_steps``.

    metajax run experiments/ippo_spread.py --seeds 3
"""

from metajax.algos.ppo import PPOConfig
from metajax.pipelines.runner import TrainConfig

PIPELINE = "train"

CONFIG = TrainConfig(
    name="ippo_spread",
    env="spread",
    env_config=dict(local_ratio=0.5, integration="position_first"),
    tasks=({},),
    algo="ippo",
    ppo=PPOConfig(num_envs=16, rollout_steps=128, epochs=4, minibatches=4, hidden=(64, 64),
                  lr=2.5e-4, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, value_clip=0.2,
                  ent_coef=0.01, vf_coef=0.5, grad_clip=0.5, agent_id=False),
    total_env_steps=1_000_000,
    chunk_updates=50,
    eval_episodes=100,
    checkpoint_every=0,
)

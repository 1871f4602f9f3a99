"""MESA on the one-step climb game (MESA Table 2, column "One-step Climb Game"; Fig. 3 left).

Protocol (the paper's, App. B.2 and Table 1): task space ``T^one_10``, every ``G(2, k, u, 10)``
with ``k in {1, 2}``, ``u in 0..9`` (20 games). Per seed, 10 training and 5 test games are drawn
uniformly without replacement from the 20, so train and test are disjoint and about half of the
test games are ``k = 1`` (one player must play ``u``, the other avoid it) and half ``k = 2`` (both
must play ``u``). Ours: the same split, 8 seeds (the paper: 3).

MESA: MADDPG on each training game fills ``M_*`` with joint actions of reward 1; 4 exploration
policies are trained on the coverage reward; on each test game MADDPG learns with them playing
whole episodes with probability ``p_e`` (annealed 1 -> 0 over the first half). Baselines with the
same budgets and seeds: MADDPG, random exploration, pretrained and goal-conditioned policies.
The joint (state, action) vector is the pair of one-hot actions (the observation is constant),
so ``eps = 0.5`` separates distinct joint actions.

Table 1 budgets: 30k collection steps (3k per training game), 50k meta-training and 50k
meta-test steps; batch 32 episodes; lr 5e-3; 3000 random steps; GRU actors. The default trims
the meta-training (2k collection steps per game, 4 x 5k explorer steps) and the meta-test (20k);
``paper`` restores Table 1's steps and the GRU.

Table 2's other learners (``--preset learners``, a preset rather than the default methods: the
default reproduces the committed ``results/mesa_climb.json``, and these baselines have no
meta-training to share with MESA, so they run apart with MADDPG as the paired reference on the
same seeds and test games): MAPPO, IPPO, MAPPO-RND and QMIX, VDN, each trained from scratch on
every test game for the same 20k meta-test steps. Their hyperparameters are those of
``mappo_climb.py`` and ``qmix_climb.py`` (not tuned here), with QMIX's epsilon annealed over the
first half of the budget like MESA's ``p_e``; MAPPO-RND adds the RND bonus 0.1 to MAPPO.

Analysis presets (not the paper's protocol):

* ``k2_only``: every test game ``k = 2`` (3 per seed), training games among the other 17. A
  disjoint ``k = 2`` optimum ``(u, u)`` is rewarded by no other game of the space, so it is never
  in ``M_*`` (see RESULTS.md): this preset measures that limit.
* ``paper_split``: as ``k2_only``, but the 10 training games are drawn from all 20
  (``split.overlap``), so a ``k = 2`` test game may also be a training game.

    metajax run experiments/mesa_climb.py
    metajax run experiments/mesa_climb.py --preset paper --out runs/mesa_climb_paper
    metajax run experiments/mesa_climb.py --preset k2_only --out runs/mesa_climb_k2
    metajax run experiments/mesa_climb.py --preset learners --out runs/mesa_climb_learners
"""

import dataclasses

from metajax.algos.maddpg import ORIGINAL
from metajax.algos.ppo import PPOConfig
from metajax.algos.qmix import QMixConfig
from metajax.pipelines.mesa import LEARNER_METHODS, MESAConfig

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
    n_test=5,
    split={},
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
    seeds=8,
    ppo=PPOConfig(num_envs=32, rollout_steps=8, epochs=4, minibatches=4, hidden=(64,), lr=1e-3,
                  ent_coef=0.01),
    qmix=QMixConfig(num_envs=32, hidden=32, batch_windows=32, buffer_windows=5000,
                    eps_anneal_steps=10_000, lr=1e-3, target_every=20),
    rnd_coef=0.1,
)

PRESETS = {
    "paper": {
        "collect_steps": 3_000,
        "explorer_steps": 50_000,
        "test_steps": 50_000,
        "anneal_steps": 25_000,
        "maddpg.actor": "gru",
        "collect.actor": "gru",
        "qmix.eps_anneal_steps": 25_000,
    },
    "learners": {
        "name": "mesa_climb_learners",
        "methods": ("maddpg", *LEARNER_METHODS),
    },
    "k2_only": {
        "name": "mesa_climb_k2_only",
        "n_test": 3,
        "split": {"test_filter": {"k": 2}},
    },
    "paper_split": {
        "name": "mesa_climb_paper_split",
        "n_test": 3,
        "split": {"test_filter": {"k": 2}, "overlap": True},
    },
}

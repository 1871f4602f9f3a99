"""E2 (pre-registered demonstration): MESA on the MPE climb game with 2 agents and 3 landmarks
on one fixed landmark layout (the setting of the MESA paper's Fig. 8).

Task space: ``G~(2, 2, u, 3, L)`` (App. B.1.2) with the layout ``L`` fixed (drawn once below by
``numpy.random.default_rng(20261202)``, centers at least 2 landmark radii apart); a task is the
target landmark ``u`` and the agents' start positions. Reward 1 when both agents are on landmark
``u``, 0.5 when both are on landmarks and neither on ``u``, 0 otherwise; ``u`` is not observed.
6 training tasks (each target twice, with different starts) and 3 test tasks (each target once,
with new starts), disjoint as tasks, the same for every seed. Unlike the Table 2 MPE columns,
whose per-task layouts make the relative landmark positions in the features differ between
every task, here a test task's high-reward pairs can lie near ``M_*`` by construction.

Everything else is the CPU default of the Table 2 MPE columns (``mpe_climb_config``: 50-step
episodes, landmark radius 0.2, 2 exploration policies, action weight 0.1, ``eps = 0.5``), with
the budgets cut so that 8 seeds (vmapped) of 3 arms fit in about 20 minutes on 2 cores: 15k
collection steps per training task, 2 x 15k explorer steps, 30k meta-test steps per test task.
Arms, same seeds and budget: MESA, MADDPG, random exploration. Nothing is tuned on the tests.

**Gate (checked and reported before reading any return):** ``M_*`` is non-empty for every
target (each target's two training tasks together stored >= 1 pair, per seed), and the share of
the test tasks' high-reward pairs met by random play that lie within ``eps`` of ``M_*``
(``zero_shot_high_reward.test_pairs_in_subspace``). If the gate fails for a seed, MESA cannot
help there and the result says so.

**Prediction (written before the first run).**

* P1: MADDPG and random exploration do not learn the optimum: their mean greedy return is at
  most what both agents sitting on non-target landmarks would earn (0.5 per step once there).
* P2: zero-shot, the exploration policies produce more high-reward transitions per test episode
  than random play (paired over 8 seeds, p < 0.05).
* P3: MESA's greedy return on the test tasks is above MADDPG's, paired over the 8 seeds
  (p < 0.05) or with separated 95 % CIs.

**Falsified** if P3 does not hold. Reported in ``experiments/RESULTS.md`` either way.

Added after E2 was reported (not part of its pre-registration, which fixed the three arms
above): ``--preset learners`` runs MADDPG with MAPPO, IPPO, MAPPO-RND, QMIX and VDN (Table 2's
other learners, each from scratch on every test task, same budget and seeds; hyperparameters in
:func:`~metajax.pipelines.mesa.mpe_climb_config`).

    metajax run experiments/mesa_e2_mpe_2a3l.py --out runs/mesa_e2
    metajax run experiments/mesa_e2_mpe_2a3l.py --preset learners --out runs/mesa_e2_learners
"""

import numpy as np

from metajax.pipelines.mesa import learners_preset, mpe_climb_config

PIPELINE = "mesa"

RADIUS = 0.2


def draw_layout(seed: int = 20261202) -> dict:
    """The fixed layout (3 centers) and the agents' starts of the 6 training and 3 test
    tasks (uniform in ``[-1, 1]^2``)."""
    rng = np.random.default_rng(seed)
    while True:
        lm = rng.uniform(-0.9, 0.9, (3, 2))
        d = np.linalg.norm(lm[:, None] - lm[None], axis=-1)[np.triu_indices(3, 1)]
        if d.min() >= 2 * RADIUS:
            break
    starts = rng.uniform(-1.0, 1.0, (9, 2, 2))
    return {"landmarks": np.round(lm, 4).tolist(),
            "starts": np.round(starts, 4).tolist()}


_L = draw_layout()


def _task(u: int, start: list) -> dict:
    return dict(landmarks=_L["landmarks"], u=u, k=2, agent_start=start, fixed_start=True)


TRAIN = [_task(u, _L["starts"][2 * u + r]) for u in range(3) for r in range(2)]
TEST = [_task(u, _L["starts"][6 + u]) for u in range(3)]

CONFIG = mpe_climb_config(
    n_agents=2, n_landmarks=3, name="mesa_e2_mpe_2a3l",
    n_train=len(TRAIN), n_test=len(TEST),
    split={"train_tasks": TRAIN, "test_tasks": TEST},
    collect_steps=15_000, explorer_steps=15_000, test_steps=30_000, anneal_steps=15_000,
    methods=("mesa", "maddpg", "random"), seeds=8,
)
PRESETS: dict = {"learners": learners_preset(CONFIG.name)}

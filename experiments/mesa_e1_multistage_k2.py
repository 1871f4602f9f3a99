"""E1 (pre-registered demonstration): MESA on a multi-stage climb task space where stage optima
recur across tasks at the same stage, the condition of the MESA paper's Theorem 5.1.

Task space: a subset of the paper's ``T^multi_{S,U}`` (Sec. 6.2) restricted to ``k_t = 2``:
``S = 5`` stages, ``U = 5`` actions, 2 players; stage ``t`` is ``G(2, 2, u_t, 5)`` (1 when both
play ``u_t``, 0.5 when neither does, 0 otherwise). A task is the 5-tuple ``(u_0..u_4)``. The
10 training and 3 test tuples below are drawn once by ``numpy.random.default_rng(20261201)``,
distinct as tuples (so train and test are disjoint), and are the same for every seed. With
``U = 5`` and 10 training tuples, the optimum ``(u_t, u_t)`` of a test stage is also a training
optimum *at that stage* with probability ``1 - 0.8^10 = 0.89``; :func:`stage_recurrence` counts
it (results: ``recurrence`` in ``experiments/results/mesa_e1_multistage_k2.json``).

Metric of Eq. 6 (``experiments/mesa_multistage.py``, fixed before this file existed): both
players' observations with the stage one-hot scaled by 4, one-hot actions by 5, ``eps = 6``:
the same joint action at two stages is >= 8 apart, two joint actions at one stage >= 7.07 apart,
two histories of one stage with one joint action <= 5.66 apart. So "near ``M_*``" means "this
joint action was valuable at this stage in some training task".

Arms, same seeds (8, vmapped) and the same env-step budget per learner: MESA with 4 exploration
policies, MADDPG, random exploration (uniformly random joint actions play the episodes MESA's
explorers would); ``--preset two_explorers``: MESA with 2 exploration policies (the first two
of the 4-policy run: same keys, same ``M_*``). Hyperparameters are those of
``mesa_multistage.py`` (chosen before any E1 run; nothing is tuned on the test tuples).

**Prediction (written before the first run).**

* P1: MADDPG and random exploration stay near the sub-optimal 0.5 per stage: the upper end of
  the 95 % CI of their mean greedy per-stage return is below 0.6.
* P2: zero-shot, the exploration policies meet the test tasks' optima more often than uniform
  random play: high-reward (``r >= 1``) transitions per test episode, MESA's explorers (mean
  over the 4) above random, paired over the 8 seeds (sign-flip test, p < 0.05).
* P3: MESA's (4 explorers) greedy per-stage return on the test tasks is above MADDPG's, paired
  over the 8 seeds (p < 0.05) or with separated 95 % CIs. MESA with 2 explorers: reported, no
  prediction about its rank against 4.

**Falsified** if P3 does not hold (MESA not above MADDPG at this budget), whatever P1 and P2
say; P2 failing alone says the explorers do not transfer zero-shot. The outcome is reported in
``experiments/RESULTS.md`` either way, and the task space is not changed after seeing it.

    metajax run experiments/mesa_e1_multistage_k2.py --out runs/mesa_e1
    metajax run experiments/mesa_e1_multistage_k2.py --preset two_explorers --out runs/mesa_e1_2
"""

import dataclasses
from pathlib import Path

import numpy as np

from metajax.pipelines.experiment import load_experiment

PIPELINE = "mesa"

S, U = 5, 5


def draw_tuples(seed: int = 20261201, n: int = 13) -> list[list[int]]:
    """``n`` distinct ``u`` 5-tuples from ``{0..U-1}^S``: the first 10 train, the last 3 test."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    while len(out) < n:
        t = rng.integers(0, U, S).tolist()
        if t not in out:
            out.append(t)
    return out


_TUPLES = draw_tuples()
TRAIN, TEST = _TUPLES[:10], _TUPLES[10:]


def stage_recurrence(train: list[list[int]] = TRAIN, test: list[list[int]] = TEST) -> dict:
    """How many of the ``3 x 5`` test stage optima are training optima at the same stage."""
    per = [[any(tr[t] == te[t] for tr in train) for t in range(S)] for te in test]
    return {"per_test_stage": per, "recurring": int(np.sum(per)), "of": len(test) * S}


_BASE = load_experiment(Path(__file__).with_name("mesa_multistage.py")).config

CONFIG = dataclasses.replace(
    _BASE,
    name="mesa_e1_multistage_k2",
    env_config=dict(max_agents=2, num_stages=S, num_actions=U),
    n_train=len(TRAIN),
    n_test=len(TEST),
    split={"train_tasks": [dict(k=2, u=u) for u in TRAIN],
           "test_tasks": [dict(k=2, u=u) for u in TEST]},
    methods=("mesa", "maddpg", "random"),
    eval_every=2,
)

PRESETS = {
    "two_explorers": {
        "name": "mesa_e1_multistage_k2_two_explorers",
        "num_explorers": 2,
        "methods": ("mesa",),
    },
}

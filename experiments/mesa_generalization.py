"""MESA's generalization study (MESA Sec. 6.5, Fig. 7): exploration policies meta-trained on
easier tasks help MADDPG on harder, unseen 3-agent MPE climb games, without fine-tuning.

Test games: 3 agents, 5 landmarks, ``k = 2``, high difficulty (mean agent-start/landmark
distance >= 1.1, the top quarter of the task distribution). Training games, two settings:

* default (setting 1): 2 agents, the same difficulty range;
* ``--preset easy_three_agent`` (setting 2): 3 agents, lower difficulty (< 0.9).

Protocol: the paper's two settings of Sec. 6.5 with its hard-test definition taken from the
difficulty of App. B (mean agent-start/landmark distance), 6 training and 3 test tasks per seed
(Table 1: 30 and 15), 2 seeds (the paper: 3).

Actors and critics use attention over the other agents and the landmarks with parameters shared
by all agents (``actor="relational"``, ``critic="attention"``, ``param_sharing="team"``), so one
network serves 2 and 3 agents; the learner is warmed up by behaviour cloning on the first
(mostly exploration) episodes (``bc_steps``). ``results.json`` holds Fig. 7 (left): the
zero-shot number of high-reward transitions per test episode of each exploration policy next to
a random policy; ``curves.png`` Fig. 7 (right).

    metajax run experiments/mesa_generalization.py
    metajax run experiments/mesa_generalization.py --preset easy_three_agent --out runs/gen_easy
"""

import dataclasses

from metajax.pipelines.mesa import MPE_PAPER_PRESET, mpe_climb_config

PIPELINE = "mesa"

_HARD = {"n_agents": 3, "n_landmarks": 5, "k": 2, "difficulty": [1.1, None]}
_base = mpe_climb_config(n_agents=3, n_landmarks=5, name="mesa_generalization")

# Attention critics vmapped over every (seed, training task) learner are memory hungry: smaller
# batches than the MPE columns (a batch of 512 took over 20 GB in the collection stage).
_small = dict(batch_size=128, buffer_size=20_000)

CONFIG = dataclasses.replace(
    _base,
    seeds=2,
    split={"train": {"n_agents": 2, "n_landmarks": 5, "k": 2, "difficulty": [1.1, None]},
           "test": _HARD},
    maddpg=dataclasses.replace(_base.maddpg, actor="relational", critic="attention",
                               param_sharing="team", num_heads=2, head_dim=16, embed_dim=32,
                               critic_hidden=64, **_small),
    collect=dataclasses.replace(_base.collect, actor="relational", critic="attention",
                                param_sharing="team", num_heads=2, head_dim=16, embed_dim=32,
                                critic_hidden=64, **_small),
    methods=("mesa", "maddpg", "random"),
    bc_steps=200,
)

PRESETS = {
    "easy_three_agent": {
        "split": {"train": {"n_agents": 3, "n_landmarks": 5, "k": 2,
                            "difficulty": [None, 0.9]},
                  "test": _HARD},
    },
    "paper": MPE_PAPER_PRESET,
}

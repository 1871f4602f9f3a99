"""MESA on the 3-agent, 5-landmark MPE climb game (MESA Table 2, column "3A5L MPE"; Fig. 4).

3 agents, 5 landmarks placed per task, reward 1 when every agent is on a landmark and exactly
k = 2 of them on the (unobserved) target landmark, 0.5 when all are on landmarks and none on the
target. Protocol: the paper's task distribution (each task its own landmark layout and target,
App. B.1.2), with 6 training and 3 test tasks per seed against Table 1's 30 and 15/18 (5x and
5-6x fewer), 3 seeds (the paper: 3). See :func:`metajax.pipelines.mesa.mpe_climb_config` for the CPU
default and
``MPE_PAPER_PRESET`` (``--preset paper``) for Table 1's scale.

Table 2's other learners: ``--preset learners`` (a preset rather than the default methods: the
default reproduces the committed ``results/mesa_mpe_3a5l.json``, and these baselines have no
meta-training to share with MESA, so they run apart with MADDPG as the paired reference on the
same seeds and test tasks): MAPPO, IPPO, MAPPO-RND, QMIX and VDN on the discrete MPE actions,
each trained from scratch on every test task for the same meta-test steps (hyperparameters in
:func:`~metajax.pipelines.mesa.mpe_climb_config`).

    metajax run experiments/mesa_mpe_3a5l.py
    metajax run experiments/mesa_mpe_3a5l.py --preset learners --out runs/mesa_mpe_3a5l_learners
"""

from metajax.pipelines.mesa import MPE_PAPER_PRESET, learners_preset, mpe_climb_config

PIPELINE = "mesa"
CONFIG = mpe_climb_config(n_agents=3, n_landmarks=5)
PRESETS = {"paper": MPE_PAPER_PRESET, "learners": learners_preset(CONFIG.name)}

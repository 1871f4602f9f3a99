"""MESA on the 2-agent, 6-landmark MPE climb game (MESA Table 2, column "2A6L MPE"; Fig. 4).

2 agents, 6 landmarks placed per task, reward 1 when every agent is on a landmark and exactly
k = 2 of them on the (unobserved) target landmark, 0.5 when all are on landmarks and none on the
target. Protocol: the paper's task distribution (each task its own landmark layout and target,
App. B.1.2), with 6 training and 3 test tasks per seed against Table 1's 30 and 15/18 (5x and
5-6x fewer), 3 seeds (the paper: 3). See :func:`metajax.pipelines.mesa.mpe_climb_config` for the CPU
default and
``MPE_PAPER_PRESET`` (``--preset paper``) for Table 1's scale.

    metajax run experiments/mesa_mpe_2a6l.py
"""

from metajax.pipelines.mesa import MPE_PAPER_PRESET, mpe_climb_config

PIPELINE = "mesa"
CONFIG = mpe_climb_config(n_agents=2, n_landmarks=6)
PRESETS = {"paper": MPE_PAPER_PRESET}

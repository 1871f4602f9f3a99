"""MRA App. E.2, Tables 1-2: cross-comparison of MRA and single-game agents in the Pac-Man world.

MRA (trained on several (Pac-Man, ghosts) games) and the single-game baseline (MRA's
architecture trained on the target game only) meet on the target game in the four pairings of
their Pac-Man team (team 0) and ghost team (team 1). Table 1 is the Pac-Man score, Table 2 the
ghost score: mean return per agent of each team, and the same normalized to [0, 1] within each
table (the paper's scores are "summed in each episode, averaged across homogeneous agents on 40
runs, and normalized"; the normalization is not specified). Same runs as the Fig. 2c
experiment (``mra_fig2_pacman.py``, which also reports this table): the two arms only.

Default (2-core CPU): target (4 Pac-Man, 2 ghosts, 6 food), MRA games {(2, 1), (3, 2), (4, 2)},
40k env steps per seed and arm, 4 seeds, 40 evaluation episodes per pairing and seed.
``--preset paper``: target (8, 4, 20 food), games {(4, 2), (6, 3), (8, 4)}, App. E.1 learner,
1.6M env steps, 4 seeds.

    metajax run experiments/mra_table_e2_pacman.py
"""

import dataclasses
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "mra_fig2_pacman_for_e2", Path(__file__).with_name("mra_fig2_pacman.py"))
_fig2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fig2)

PIPELINE = "mra_compare"

CONFIG = dataclasses.replace(
    _fig2.CONFIG,
    name="mra_table_e2_pacman",
    arms={k: v for k, v in _fig2.CONFIG.arms.items() if k in ("mra", "baseline")},
    expected_best="",
    gifs=(),
)

PRESETS = {
    "paper": {k: v for k, v in _fig2.PRESETS["paper"].items() if k != "arms"} | {
        "arms": {k: v for k, v in _fig2.PRESETS["paper"]["arms"].items()
                 if k in ("mra", "baseline")}},
}

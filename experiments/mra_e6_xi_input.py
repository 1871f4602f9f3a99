"""What the inference network ``xi`` of Eq. 13 may see: ``graph`` against ``pooled``.

Eq. 13 trains ``psi`` (the latent prior) and ``xi`` with ``-log p(x = game | o, phi(o, z); xi)``,
and Eq. 12 gets there from ``I(m; g | o) = E log p(m | o, g) + log |M|``, which takes
``H(m | o) = log |M|``: the observation alone must not give the game away. ``xi_input="graph"``
(the default) lets ``xi`` see ``o`` only as embedded along the agent's graph ``g``
(``[s_i, sum_j g_j V(o_j)]``, a convex combination that does not count entities);
``xi_input="pooled"`` adds a sum-pool of the entities, from which ``xi`` can read the population,
hence the game, whatever ``g`` is, so Eq. 13 gives ``psi`` little to learn. This file measures
both on resource occupation: the game-index loss, the prior's separation between games
(``prior_tv``: mean pairwise total-variation distance) and the return.

Default (2-core CPU): games {2, 3, 4, 6} agents, 3 resources, 40k env steps per seed and arm,
4 seeds. ``--preset paper``: {3, 6, 12, 24} agents, 6 resources, App. E.1 learner, 1.6M env
steps, 4 seeds.

    metajax run experiments/mra_e6_xi_input.py
"""

import dataclasses
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "mra_e5_for_e6", Path(__file__).with_name("mra_e5_mi_curves.py"))
_e5 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e5)

PIPELINE = "mra_compare"

# the games, learner and budgets of App. E.5's file (mra_e5_mi_curves.py), two arms
CONFIG = dataclasses.replace(
    _e5.CONFIG,
    name="mra_e6_xi_input",
    arms={"xi_graph": {}, "xi_pooled": {"mra.xi_input": "pooled"}},
    expected_best="xi_graph",
    curve_metrics=("game_ce", "prior_tv", "mi"),
)

PRESETS = _e5.PRESETS

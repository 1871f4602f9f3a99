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

from metajax.mra import MRAConfig
from metajax.mra_experiments import (
    MRA_CPU,
    MRA_CPU_OPTIONS,
    MRA_PAPER_OPTIONS,
    MRA_PAPER_SCALE,
    CompareConfig,
)

PIPELINE = "mra_compare"


def _games(ns, resources):
    return [{"n_agents": n, "n_resources": resources} for n in ns]


CONFIG = CompareConfig(
    name="mra_e6_xi_input",
    base=MRAConfig(
        env="resource",
        env_config=dict(max_agents=6, max_objects=3, episode_length=20),
        tasks=tuple(_games((2, 3, 4, 6), 3)),
        maddpg=MRA_CPU,
        mra=MRA_CPU_OPTIONS,
        total_env_steps=40_000,
        chunk_updates=25,
        eval_episodes=20,
        checkpoint_every=0,
    ),
    arms={"xi_graph": {}, "xi_pooled": {"mra.xi_input": "pooled"}},
    seeds=4,
    expected_best="xi_graph",
    curve_metrics=("game_ce", "prior_tv", "mi"),
)

PRESETS = {
    "paper": {
        "base.env_config": dict(max_agents=24, max_objects=6, episode_length=20),
        "base.tasks": _games((3, 6, 12, 24), 6),
        "base.maddpg": MRA_PAPER_SCALE,
        "base.mra": MRA_PAPER_OPTIONS,
        "base.total_env_steps": 1_600_000,
        "base.chunk_updates": 100,
        "seeds": 4,
    },
}

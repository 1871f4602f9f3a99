"""MRA experiment configs: every experiment file loads (defaults and ``paper`` preset), arms are
resolved from the base config, and bad comparisons are refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from metajax import experiment as xp
from metajax import mra
from metajax.mra_experiments import CompareConfig, summary_markdown

FILES = sorted(Path(__file__).parents[1].glob("experiments/mra_*.py"))


def test_there_are_mra_experiment_files():
    names = {f.stem for f in FILES}
    for want in ("mra_fig2_treasure", "mra_fig2_resource", "mra_fig2_pacman",
                 "mra_fig3_treasure", "mra_fig3_resource", "mra_fig4_treasure",
                 "mra_fig4_pacman", "mra_fig5_resource", "mra_table_e2_pacman",
                 "mra_e3_phi_variants", "mra_e4_training_set", "mra_e5_mi_curves"):
        assert want in names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_experiment_file_configs(path):
    exp = xp.load_experiment(path)
    assert exp.pipeline == "mra_compare" and exp.doc
    for presets in ((), ("paper",)):
        cfg = xp.configure(exp, presets)
        for name in cfg.arms:
            arm = cfg.arm_config(name, Path("/tmp/run"))
            assert isinstance(arm, mra.MRAConfig)
            assert arm.seeds == cfg.seeds and arm.tasks
            if arm.mra.mode == "adapt":
                assert arm.mra.init_from.startswith("/tmp/run/")
    paper = xp.configure(exp, ("paper",))
    assert paper.seeds == 4
    assert paper.base.maddpg.batch_size == 1024 and paper.base.maddpg.updates_per_rollout == 10


def test_compare_config_errors():
    base = mra.MRAConfig()
    with pytest.raises(ValueError, match="at least one arm"):
        CompareConfig(base=base, arms={})
    with pytest.raises(ValueError, match="unknown arm"):
        CompareConfig(base=base, arms={"a": {}}, expected_best="b")
    with pytest.raises(ValueError, match="not an earlier arm"):
        CompareConfig(base=base, arms={"a": {"mra.mode": "adapt", "mra.init_from": "arm:b"},
                                       "b": {}})
    cfg = CompareConfig(base=base, arms={"pre": {}, "ad": {"mra.mode": "adapt",
                                                         "mra.init_from": "arm:pre"}})
    assert cfg.arm_config("ad", Path("/x")).mra.init_from == "/x/pre"


def test_summary_markdown_reports_order_and_cross():
    cfg = CompareConfig(arms={"mra": {}, "reptile": {}}, expected_best="mra")
    task = {"n_agents": 3}
    ev = {"n_agents=3": {"greedy": {"mean": 0.1, "std": 0.0}, "stochastic": {"mean": 0.5,
                                                                            "std": 0.1}}}
    summary = {
        "report_tasks": [task],
        "arms": {n: {"algo": "mra", "latent": "prior", "games": [task], "env_steps": 10,
                     "seeds": 1, "wall_clock_s": 3.0, "eval": ev} for n in cfg.arms},
        "order": {"n_agents=3": {"expected": [], "best": "mra", "best_holds": True,
                                 "holds": True, "observed": ["mra", "reptile"]}},
        "cross": {"team0=a team1=b": {"team0": 1.0, "team1": 2.0, "team0_normalized": 1.0,
                                      "team1_normalized": 0.0}},
    }
    md = summary_markdown(cfg, summary)
    assert "0.500 ± 0.100 (0.100)" in md
    assert "| n_agents=3 | mra best | mra > reptile | yes |" in md
    assert "team0=a team1=b" in md

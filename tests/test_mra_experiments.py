"""MRA experiment configs: every experiment file loads (defaults and ``paper`` preset), arms are
resolved from the base config, and bad comparisons are refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metajax import stats
from metajax.pipelines import experiment as xp
from metajax.pipelines import mra as mra_pipeline
from metajax.pipelines.mra_compare import CompareConfig, comparisons, summary_markdown

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
            assert isinstance(arm, mra_pipeline.MRAConfig)
            assert arm.seeds == cfg.seeds and arm.tasks
            if arm.mra.mode == "adapt":
                assert arm.mra.init_from.startswith("/tmp/run/")
    paper = xp.configure(exp, ("paper",))
    assert paper.seeds == 4
    assert paper.base.maddpg.batch_size == 1024 and paper.base.maddpg.updates_per_rollout == 10


def test_compare_config_errors():
    base = mra_pipeline.MRAConfig()
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


def _summary(cfg, per_seed: dict, scripted: list) -> dict:
    task = {"n_agents": 3}
    key = "n_agents=3"

    def ev(ps):
        return {key: {"greedy": {"mean": 0.1, "std": 0.0, "per_seed": [0.1] * len(ps)},
                      "stochastic": {"mean": float(np.mean(ps)), "std": float(np.std(ps)),
                                     "per_seed": ps}}}

    return {
        "report_tasks": [task],
        "arms": {n: {"algo": "mra", "latent": "prior", "games": [task], "env_steps": 10,
                     "seeds": len(ps), "wall_clock_s": 3.0, "eval": ev(ps)}
                 for n, ps in per_seed.items()},
        "reference": {"scripted": {key: {"stochastic": {
            "mean": float(np.mean(scripted)), "std": 0.0, "per_seed": scripted}}}},
        "order": {key: {"expected": [], "best": "mra", "best_holds": True,
                        "holds": True, "observed": list(per_seed)}},
        "cross": {"team0=a team1=b": {"team0": 1.0, "team1": 2.0, "team0_normalized": 1.0,
                                      "team1_normalized": 0.0}},
    }


def test_comparisons_pair_by_seed_and_flag_arms_below_the_scripted_reference():
    """mra (10..13) against reptile (0..3) over 4 shared seeds: the CIs separate, so the claim
    holds; the exact sign-flip p cannot go below 2/16 with 4 seeds. Scripted scores 5: mra
    learned the game, reptile did not."""
    cfg = CompareConfig(arms={"mra": {}, "reptile": {}}, expected_best="mra")
    summary = _summary(cfg, {"mra": [10.0, 11.0, 12.0, 13.0], "reptile": [0.0, 1.0, 2.0, 3.0]},
                       [5.0] * 4)
    for e in summary["arms"].values():
        for m in e["eval"].values():
            m["stochastic"]["ci"] = stats.interval(m["stochastic"]["per_seed"])
    comp = comparisons(cfg, summary, summary["report_tasks"])["n_agents=3"]
    pair = comp["pairs"]["mra - reptile"]
    assert pair["diff"]["point"] == pytest.approx(10.0)
    assert pair["p_value"] == pytest.approx(0.125)
    assert pair["verdict"] == "holds"
    assert comp["learned"] == {"mra": True, "reptile": False}
    # the same differences with overlapping intervals: not established
    close = _summary(cfg, {"mra": [1.0, 2.0, 3.0, 4.0], "reptile": [0.0, 1.0, 2.0, 3.0]},
                     [0.0] * 4)
    for e in close["arms"].values():
        for m in e["eval"].values():
            m["stochastic"]["ci"] = stats.interval(m["stochastic"]["per_seed"])
    pair = comparisons(cfg, close, close["report_tasks"])["n_agents=3"]["pairs"]["mra - reptile"]
    assert pair["verdict"] == "not established"
    summary["comparisons"] = {"n_agents=3": comp}
    md = summary_markdown(cfg, summary)
    assert "| mra - reptile | 10.000 [10.000, 10.000] | 0.125 |" in md
    assert "| n_agents=3 | mra | reptile |" in md
    assert "| *scripted policy* (reference) |" in md
    assert "| n_agents=3 | mra best | mra > reptile | yes |" in md
    assert "team0=a team1=b" in md


@pytest.mark.slow
def test_compare_run_reports_references_episode_stats_and_prior(tmp_path):
    """A tiny two-team comparison end to end (Pac-Man, one MRA arm, 2 seeds): the summary has
    the random and scripted reference rows on the same seeds, per-team episode statistics
    (returns, catches, food, length) for the arm and the references, the prior's separation,
    and best-of-z scored on other episodes than those that chose the head."""
    import json

    from metajax.pipelines.mra_compare import TINY_TEST_LEARNER, run_compare

    games = ({"n_pacman": 1, "n_ghosts": 1, "n_food": 2}, {"n_pacman": 2, "n_ghosts": 1,
                                                           "n_food": 2})
    cfg = CompareConfig(
        name="tiny", seeds=2, zero_shot=True, zero_shot_episodes=4, episode_stats=True,
        base=mra_pipeline.MRAConfig(env="pacman", env_config=dict(max_pacman=2, max_ghosts=1,
                                                         max_objects=2, episode_length=8),
                           tasks=games, maddpg=TINY_TEST_LEARNER, total_env_steps=640,
                           chunk_updates=4, eval_episodes=4, checkpoint_every=0),
        arms={"mra": {}})
    summary = run_compare(cfg, tmp_path, log=lambda *a: None, progress=False).summary
    assert json.loads((tmp_path / "summary.json").read_text())["arms"]["mra"]
    for kind in ("random", "scripted"):
        rows = summary["reference"][kind]
        assert set(rows) == {" ".join(f"{k}={v}" for k, v in sorted(g.items())) for g in games}
        for row in rows.values():
            assert len(row["stochastic"]["per_seed"]) == 2
            st = row["episode_stats"]
            assert {"team0", "team1", "caught", "eaten", "length"} <= set(st)
            assert all(0 < x <= 8 for x in st["length"])
    arm = summary["arms"]["mra"]
    for st in arm["episode_stats"].values():
        assert {"team0", "team1", "caught", "eaten", "length"} <= set(st)
    assert arm["prior"]["seeds"] == 2 and len(arm["prior"]["tv"]) == 2
    for z in arm["zero_shot"].values():
        per, best = np.asarray(z["per_head"]), np.asarray(z["best_head"])
        np.testing.assert_allclose(z["best_of_z"], np.take_along_axis(
            per, best[..., None], -1)[..., 0])
    md = (tmp_path / "summary.md").read_text()
    assert "*scripted policy*" in md and "caught" in md and "separates" in md
    # the statistics: the arm and both references, per team too
    st = summary["stats"]
    assert {"stochastic", "stochastic_team0", "stochastic_team1"} <= set(st)
    assert list(st["stochastic"]["methods"]) == ["mra", "ref:random", "ref:scripted"]
    assert len(arm["eval"][next(iter(arm["eval"]))]["stochastic"]["per_episode"][0]) == 4


def test_cross_play_splices_teams_and_normalizes_by_hand():
    """Team 0 (Pac-Man) of one run with team 1 (ghosts) of another: ``[S, T, ...]`` team
    stacks; each team's column normalized to [0, 1] over the pairings."""
    import jax.numpy as jnp

    from metajax.pipelines.mra_compare import normalize_cross, splice_teams

    p0 = {"w": jnp.array([[[1.0], [2.0]], [[3.0], [4.0]]])}  # [S=2, T=2, 1]
    p1 = {"w": jnp.array([[[10.0], [20.0]], [[30.0], [40.0]]])}
    got = splice_teams(p0, p1)["w"]
    np.testing.assert_array_equal(got[:, 0, 0], [1.0, 3.0])  # team 0 from p0
    np.testing.assert_array_equal(got[:, 1, 0], [20.0, 40.0])  # team 1 from p1
    table = normalize_cross({"a": {"team0": 1.0, "team1": -2.0}, "b": {"team0": 3.0, "team1": -2.0},
                             "c": {"team0": 2.0, "team1": -2.0}})
    assert [table[k]["team0_normalized"] for k in "abc"] == [0.0, 1.0, 0.5]
    assert all(table[k]["team1_normalized"] == 1.0 for k in "abc")  # all equal


def test_exported_results_rederive_the_tables(tmp_path):
    """``export_summary`` + ``markdown_from_export``: the committed JSON alone gives the same
    tables as the run's own summary."""
    import json

    from metajax.config import to_dict
    from metajax.pipelines.mra_compare import export_summary, markdown_from_export

    cfg = CompareConfig(name="x", arms={"mra": {}, "reptile": {}}, expected_best="mra")
    summary = _summary(cfg, {"mra": [10.0, 11.0, 12.0, 13.0], "reptile": [0.0, 1.0, 2.0, 3.0]},
                       [5.0] * 4)
    summary["comparisons"] = comparisons(cfg, summary, summary["report_tasks"])
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "config.json").write_text(json.dumps({"algo_config": to_dict(cfg)}))
    export_summary(tmp_path, tmp_path / "out.json", "metajax run x.py")
    assert json.loads((tmp_path / "out.json").read_text())["meta"]["command"] == "metajax run x.py"
    assert markdown_from_export(tmp_path / "out.json") == summary_markdown(cfg, summary)


def test_exported_curves_keep_every_seed_and_chunk(tmp_path):
    """The ``curve_metrics`` go into the export as ``[seeds][chunks]`` and its table reads them
    at a quarter, half, three quarters and the end."""
    import json

    from metajax.config import to_dict
    from metajax.pipelines.mra_compare import export_summary, markdown_from_export

    cfg = CompareConfig(name="x", arms={"mra": {}, "reptile": {}}, expected_best="mra",
                        curve_metrics=("mi",))
    summary = _summary(cfg, {"mra": [10.0, 11.0, 12.0, 13.0], "reptile": [0.0, 1.0, 2.0, 3.0]},
                       [5.0] * 4)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "config.json").write_text(json.dumps({"algo_config": to_dict(cfg)}))
    for arm, scale in (("mra", 1.0), ("reptile", 0.0)):  # reptile logs mi = 0: left out
        (tmp_path / arm).mkdir()
        rows = [{"chunk": c, "env_steps": [100 * c] * 4,
                 "mi": [scale * (c + s) for s in range(4)]} for c in range(1, 9)]
        (tmp_path / arm / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)))
    out = export_summary(tmp_path, tmp_path / "out.json")
    assert set(out["curves"]) == {"mra"}
    c = out["curves"]["mra"]["mi"]
    assert c["env_steps"] == [100.0 * i for i in range(1, 9)]
    assert np.asarray(c["per_seed"]).shape == (4, 8) and c["per_seed"][3][0] == 4.0
    text = markdown_from_export(tmp_path / "out.json")
    row = next(x for x in text.splitlines() if x.startswith("| mra | mi |"))
    # chunk 2 of 8 at 25 %: seeds 2, 3, 4, 5 -> mean 3.5; the end, chunk 8: mean 9.5
    assert "3.50" in row.split("|")[3] and "(200 steps)" in row
    assert "9.50" in row.split("|")[6] and "(800 steps)" in row


def test_reference_rows_play_each_task_in_the_env_of_the_arm_that_evaluated_it(tmp_path):
    """Fig. 4's large game has more agents than the base env holds: its reference rows are
    played in the env of the arm that evaluated it (the first arm's env refuses the task), and
    equal the reference policy played there directly with that arm's evaluation key. The arms'
    final evaluations are written by hand (what the rows read of a trained arm is its
    ``results.json``: the tasks it played and the chunk that keys the episodes)."""
    from envs.core import EnvError
    from metajax.algos import reference
    from metajax.core import taskspec
    from metajax.pipelines import runner
    from metajax.pipelines.mra_compare import _eval_key, reference_rows, single_game_arm
    from metajax.train import evaluation

    small, large = {"n_agents": 2, "n_treasures": 2}, {"n_agents": 3, "n_treasures": 2}
    cfg = CompareConfig(
        name="tiny_large", seeds=2, references=("random", "scripted"),
        base=mra_pipeline.MRAConfig(env="treasure", env_config=dict(
            max_agents=2, max_objects=2, episode_length=6), tasks=(small,), eval_episodes=3),
        arms={"small": single_game_arm(small, algo="maddpg"),
              "large": single_game_arm(large, algo="maddpg", env_config=dict(
                  max_agents=3, max_objects=2, episode_length=6))},
        report_tasks=(small, large))
    for name, spec, chunk in (("small", small, 3), ("large", large, 5)):
        arm_dir = cfg.arm_dir(name, tmp_path)
        arm_dir.mkdir(parents=True)
        (arm_dir / "results.json").write_text(json.dumps({"tasks": [spec], "chunk": chunk}))
    with pytest.raises(EnvError, match="exceeds the maximum"):
        taskspec.build_tasks(runner.build_env(cfg.arm_config("small", tmp_path)), (large,))
    rows = reference_rows(cfg, tmp_path, [small, large])
    for kind in ("random", "scripted"):
        assert list(rows[kind]) == ["n_agents=2 n_treasures=2", "n_agents=3 n_treasures=2"]
        for name, spec, chunk in (("small", small, 3), ("large", large, 5)):
            arm_cfg = cfg.arm_config(name, tmp_path)
            env = runner.build_env(arm_cfg)
            tasks = taskspec.build_tasks(env, (spec,))
            key = _eval_key(arm_cfg, {"chunk": chunk})
            r = np.asarray(reference.reference_returns(env, tasks, kind, 3, key, seeds=2))
            want = evaluation.summarize_returns(r, tasks, env)[0]["per_seed"]
            got = rows[kind][" ".join(f"{k}={v}" for k, v in sorted(spec.items()))]
            np.testing.assert_allclose(got["stochastic"]["per_seed"], want)

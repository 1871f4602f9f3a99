"""The statistics of every pipeline's run directory (:mod:`metajax.train.run_stats`) and the CLI on
them: ``compare``, ``plot --stats`` and ``export --marl-eval``, on small run directories
written here in each pipeline's layout (the train pipeline's real run is in ``test_cli``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import is_finite_float
from PIL import Image

from metajax import stats
from metajax.cli import main
from metajax.pipelines import mesa
from metajax.train import run_stats

RNG = np.random.default_rng(0)


def _train_results(per_seed: list[list[float]], episodes: int = 3,
                   optimal: list[float] | None = None) -> dict:
    """A ``train`` results.json: ``per_seed`` ``[K][S]``; each seed's episodes spread around
    its mean."""
    specs = [{"n_agents": 2 + k} for k in range(len(per_seed))]
    entries = {}
    for mode, shift in (("greedy", 0.1), ("stochastic", 0.0)):
        entries[mode] = []
        for ps in per_seed:
            ps = np.asarray(ps) + shift
            ep = ps[:, None] + np.linspace(-0.1, 0.1, episodes)[None]
            entries[mode].append({"mean": float(ps.mean()), "std": float(ps.std()),
                                  "per_seed": ps.tolist(), "per_episode": ep.tolist()})
    out = {"chunk": 2, "env_steps": 40, "tasks": specs, **entries}
    if optimal is not None:
        out["optimal_value"] = optimal
    return out


def _write_run(d: Path, pipeline: str, cfg: dict, name: str, results: dict) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"algo_config": cfg, "pipeline": pipeline}))
    (d / name).write_text(json.dumps(results))
    return d


def _mesa_results() -> dict:
    """``results.json`` of a MESA run with three methods, 4 seeds x 2 test tasks."""
    methods = {}
    for name, level in (("mesa", 0.9), ("maddpg", 0.5), ("random", 0.45)):
        g = np.clip(level + 0.1 * RNG.normal(size=(4, 2)), 0, 1)
        methods[name] = mesa.summarize({
            "greedy_return": g, "stochastic_return": g - 0.05,
            "optimal_value": np.ones((4, 2)), "optimal_found": (g > 0.8).astype(float)})
    res = {"name": "m", "env": "climb", "seeds": 4, "n_test": 2,
           "budgets": {"test_steps": 600}, "methods": methods}
    res["stats"] = run_stats.stats_block(run_stats.mesa_groups(res))
    return res


def _compare_summary() -> dict:
    """An ``mra_compare`` ``summary.json``: arms ``mra`` and ``reptile`` on two report tasks,
    ``single_3`` on the first alone, and the random / scripted references."""
    tasks = [{"n_agents": 3}, {"n_agents": 6}]
    keys = [run_stats.task_key(t) for t in tasks]

    def entry(ps):
        ps = np.asarray(ps, float)
        return {"mean": float(ps.mean()), "std": float(ps.std()), "per_seed": ps.tolist(),
                "per_episode": np.repeat(ps[:, None], 2, 1).tolist()}

    arms = {
        "mra": {k: [10.0 + i, 11.0 + i, 12.0 + i] for i, k in enumerate(keys)},
        "reptile": {k: [5.0 + i, 6.0 + i, 8.0 + i] for i, k in enumerate(keys)},
        "single_3": {keys[0]: [7.0, 8.0, 9.0]},
    }
    summary = {"report_tasks": tasks, "arms": {
        n: {"algo": "mra", "env_steps": 100, "seeds": 3,
            "eval": {k: {"greedy": entry(v), "stochastic": entry(v)} for k, v in per.items()}}
        for n, per in arms.items()}}
    summary["reference"] = {
        "random": {k: {"stochastic": entry([1.0 + i] * 3)} for i, k in enumerate(keys)},
        "scripted": {k: {"stochastic": entry([11.0 + i] * 3)} for i, k in enumerate(keys)}}
    summary["stats"] = run_stats.stats_block(run_stats.compare_groups(summary))
    return summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp_path = tmp_path_factory.mktemp("runs")
    climb = _train_results([[0.2, 0.5, 0.9, 1.0]], optimal=[1.0])
    treasure_a = _train_results([[1.0, 2.0, 3.0], [0.5, 0.7, 0.6]])
    treasure_b = _train_results([[3.0, 4.0, 5.0], [0.9, 1.1, 1.0]])
    for r, label in ((climb, "climb"), (treasure_a, "a"), (treasure_b, "b")):
        r["stats"] = run_stats.stats_block(run_stats.train_groups(r, label))
    return {
        "climb": _write_run(tmp_path / "climb", "train", {"name": "climb", "env": "climb"},
                            "results.json", climb),
        "a": _write_run(tmp_path / "a", "train", {"name": "a", "env": "treasure"},
                        "results.json", treasure_a),
        "b": _write_run(tmp_path / "b", "mra", {"name": "b", "env": "treasure"},
                        "results.json", treasure_b),
        "mesa": _write_run(tmp_path / "mesa", "mesa", {"name": "m", "env": "climb"},
                           "results.json", _mesa_results()),
        "compare": _write_run(tmp_path / "cmp", "mra_compare",
                              {"name": "cmp", "base": {"env": "resource"}, "aux_arms": []},
                              "summary.json", _compare_summary()),
    }


def test_groups_of_each_pipeline(runs):
    climb = run_stats.load_run(runs["climb"])
    assert [g.name for g in climb.groups] == ["greedy", "greedy_normalized", "stochastic",
                                              "stochastic_normalized"]
    norm = {g.name: g for g in climb.groups}["stochastic_normalized"]
    assert norm.threshold == 1.0 and norm.methods["climb"].shape == (4, 1)

    m = run_stats.load_run(runs["mesa"])
    assert [g.name for g in m.groups] == ["greedy_return", "stochastic_return",
                                          "greedy_normalized", "optimal_found"]
    g = m.groups[0]
    assert list(g.methods) == ["mesa", "maddpg", "random"] and g.tasks == ["test task 0",
                                                                          "test task 1"]
    np.testing.assert_array_equal(g.methods["mesa"],
                                  m.results["methods"]["mesa"]["greedy_return"]["per_task"])

    c = run_stats.load_run(runs["compare"])
    by = {g.name: g for g in c.groups}
    assert list(by) == ["stochastic", "stochastic_normalized", "stochastic @ n_agents=3",
                        "stochastic_normalized @ n_agents=3"]
    assert list(by["stochastic"].methods) == ["mra", "reptile", "ref:random", "ref:scripted"]
    assert "single_3" in by["stochastic @ n_agents=3"].methods
    # random -> 0 and scripted -> 1 on each task: mra's 10, 11, 12 on n_agents=3 (random 1,
    # scripted 11) are 0.9, 1.0, 1.1
    n = by["stochastic_normalized"]
    np.testing.assert_allclose(n.methods["mra"][:, 0], [0.9, 1.0, 1.1])
    np.testing.assert_allclose(n.methods["ref:scripted"], 1.0)
    np.testing.assert_allclose(n.methods["ref:random"], 0.0)
    assert n.threshold == 1.0 and by["stochastic"].threshold is None


def test_the_stored_stats_block_is_what_load_run_recomputes(runs):
    for d in runs.values():
        run = run_stats.load_run(d)
        stored = run.results["stats"]
        assert list(stored) == [g.name for g in run.groups]
        for g in run.groups:
            assert stored[g.name] == json.loads(json.dumps(run_stats.group_stats(g)))
    # the figures themselves: mesa beats random on every test task of every seed here
    s = run_stats.load_run(runs["mesa"]).results["stats"]
    pi = s["greedy_return"]["prob_improvement"]
    assert list(pi) == ["mesa > maddpg", "mesa > random", "maddpg > random"]
    assert pi["mesa > random"]["point"] > 0.9
    agg = s["optimal_found"]["methods"]["mesa"]["aggregate"]
    assert agg["optimality_gap"]["point"] == pytest.approx(1 - agg["mean"]["point"])


def test_one_seed_or_nan_is_skipped_not_fatal():
    res = _train_results([[0.5]])
    block = run_stats.stats_block(run_stats.train_groups(res, "x"))
    assert block["greedy"] == {"skipped": "a confidence interval over seeds needs >= 2 seeds, "
                                          "got 1 (scores of x)"}
    res = _train_results([[0.5, float("nan")]])
    assert "NaN" in run_stats.stats_block(run_stats.train_groups(res, "x"))["stochastic"][
        "skipped"]


def test_compare_prints_the_table_and_the_probability_of_improvement(runs, capsys):
    assert main(["compare", str(runs["mesa"]), "--group", "greedy_normalized"]) == 0
    out = capsys.readouterr().out
    assert "== greedy_normalized" in out and "opt. gap @ 1" in out
    s = run_stats.load_run(runs["mesa"]).results["stats"]["greedy_normalized"]
    iqm = s["methods"]["mesa"]["aggregate"]["iqm"]
    row = next(ln for ln in out.splitlines() if ln.startswith("mesa "))
    assert row.split()[1] == "4" and stats.fmt(iqm) in row  # seeds, IQM [CI]
    assert f"P(mesa > maddpg) = {stats.fmt(s['prob_improvement']['mesa > maddpg'], 2)}" in out

    # two runs: compared across runs, per task too; raw returns have no gap unless asked
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--per-task",
                 "--group", "stochastic"]) == 0
    out = capsys.readouterr().out
    assert "P(a > b) = " in out and "opt. gap" not in out
    assert "n_agents=2" in out and "n_agents=3" in out
    pi = stats.probability_of_improvement(
        run_stats.load_run(runs["a"]).groups[1].methods["a"],
        run_stats.load_run(runs["b"]).groups[1].methods["b"])
    assert f"P(a > b) = {stats.fmt(pi, 2)}" in out
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--threshold", "2"]) == 0
    assert "opt. gap @ 2" in capsys.readouterr().out

    # an mra_compare run compares its arms and references
    assert main(["compare", str(runs["compare"]), "--group", "stochastic_normalized"]) == 0
    out = capsys.readouterr().out
    assert "ref:scripted" in out and "P(mra > reptile)" in out


def test_compare_refuses_what_is_not_a_finished_run(runs, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"algo_config": {}, "pipeline": "mesa"}))
    for d, msg in ((tmp_path / "nothing", "is not a directory"),
                   (tmp_path, "not a run directory (no config.json)"),
                   (unfinished, "is not a finished run (no results.json)")):
        assert main(["compare", str(d)]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert main(["compare", str(runs["a"]), "--group", "nope"]) == 2
    assert "no score group 'nope'; available: greedy, stochastic" in capsys.readouterr().err
    # runs with no group in common (a train run and a MESA run)
    assert main(["compare", str(runs["a"]), str(runs["mesa"])]) == 2
    assert "no score group common" in capsys.readouterr().err


def test_plot_stats_writes_intervals_and_profiles(runs, tmp_path, capsys):
    assert main(["plot", str(runs["compare"]), "--stats"]) == 0
    out = capsys.readouterr().out
    names = ["stochastic", "stochastic_normalized", "stochastic_at_n_agents=3",
             "stochastic_normalized_at_n_agents=3"]
    for n in names:
        for kind in ("stats", "profile"):
            path = runs["compare"] / f"{kind}_{n}.png"
            assert f"wrote {path}" in out
            with Image.open(path) as im:
                assert im.format == "PNG" and im.size[0] > 300
    # another directory, one group
    assert main(["plot", str(runs["mesa"]), "--stats", "--group", "optimal_found",
                 "--out", str(tmp_path / "figs")]) == 0
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "profile_optimal_found.png", "stats_optimal_found.png"]
    assert main(["plot", str(runs["mesa"]), "--group", "x"]) == 2
    assert "--stats" in capsys.readouterr().err


def test_plot_figures_draw_every_method_and_interval():
    rng = np.random.default_rng(3)
    s = stats.summary({"a": rng.normal(size=(4, 2)), "b": rng.normal(size=(5, 2)) + 1},
                      ["t0", "t1"], threshold=1.0, reps=100)
    from metajax import plots

    fig = plots.aggregate_intervals(s, "x")
    assert len(fig.axes) == 4  # IQM, mean, median, optimality gap
    ax = fig.axes[1]  # mean
    bars = [p for p in ax.patches if p.get_gid() == "ci"]
    assert len(bars) == 2
    lo = s["methods"]["a"]["aggregate"]["mean"]["lo"]
    assert min(b.get_x() for b in bars) <= lo
    fig = plots.performance_profile(s)
    lines = [ln for ln in fig.axes[0].lines if ln.get_gid() == "profile"]
    assert [ln.get_label() for ln in lines] == ["a", "b"]
    np.testing.assert_allclose(lines[1].get_ydata(), s["profile"]["methods"]["b"]["point"])


def _check_marl_eval_layout(data: dict) -> None:
    """What marl-eval's ``data_process_pipeline`` / ``create_matrices_for_rliable`` rely on:
    lower-case env and task names; per run ``step_*`` entries with an int ``step_count`` and
    ``absolute_metrics`` last; every metric a list of numbers, the same metrics in every step;
    and, per env, the same algorithms, runs and steps on every task."""
    for env, tasks in data.items():
        assert env == env.lower()
        shapes = set()
        for task, algos in tasks.items():
            assert task == task.lower()
            for runs_ in algos.values():
                for steps in runs_.values():
                    keys = list(steps)
                    assert keys[-1] == "absolute_metrics" and keys[:-1] == ["step_0"]
                    metrics = set(steps["absolute_metrics"])
                    for k in keys:
                        m = dict(steps[k])
                        if k != "absolute_metrics":
                            assert isinstance(m.pop("step_count"), int)
                        assert set(m) == metrics
                        assert all(isinstance(v, list) and v and all(
                            is_finite_float(x) for x in v) for v in m.values())
            shapes.add(tuple((a, tuple(r)) for a, r in algos.items()))
        assert len(shapes) == 1, f"{env}: tasks differ in algorithms or runs"


def test_export_marl_eval_layout(runs, tmp_path, capsys):
    out = tmp_path / "exp" / "marl.json"
    assert main(["export", str(runs["a"]), str(runs["b"]), "--marl-eval", str(out)]) == 0
    assert "algorithms a, b" in capsys.readouterr().out
    data = json.loads(out.read_text())
    _check_marl_eval_layout(data)
    assert list(data) == ["treasure"] and list(data["treasure"]) == ["n_agents=2", "n_agents=3"]
    seed1 = data["treasure"]["n_agents=2"]["b"]["seed_1"]
    res = json.loads((runs["b"] / "results.json").read_text())
    assert seed1["step_0"]["step_count"] == 40
    assert seed1["absolute_metrics"]["stochastic_return"] == res["stochastic"][0]["per_episode"][1]
    assert seed1["step_0"]["greedy_return"] == res["greedy"][0]["per_episode"][1]
    assert len(data["treasure"]["n_agents=2"]["a"]) == 3  # seeds

    assert main(["export", str(runs["mesa"]), "--marl-eval", str(out)]) == 0
    data = json.loads(out.read_text())
    _check_marl_eval_layout(data)
    node = data["climb"]["test task 1"]
    assert list(node) == ["mesa", "maddpg", "random"] and len(node["mesa"]) == 4
    mesa_res = json.loads((runs["mesa"] / "results.json").read_text())["methods"]["mesa"]
    assert node["mesa"]["seed_2"]["absolute_metrics"]["greedy_return"] == [
        mesa_res["greedy_return"]["per_task"][2][1]]
    assert node["mesa"]["seed_2"]["step_0"]["step_count"] == 600

    # mra_compare: every arm and reference on the tasks it was evaluated on
    assert main(["export", str(runs["compare"]), "--marl-eval", str(out)]) == 0
    data = json.loads(out.read_text())["resource"]
    assert set(data["n_agents=3"]) == {"mra", "reptile", "single_3", "ref:random",
                                       "ref:scripted"}
    assert set(data["n_agents=6"]) == {"mra", "reptile", "ref:random", "ref:scripted"}
    assert data["n_agents=6"]["mra"]["seed_0"]["absolute_metrics"]["stochastic_return"] == [
        11.0, 11.0]
    assert main(["export", str(tmp_path), "--marl-eval", str(out)]) == 2


def test_the_runner_records_the_optimum_of_envs_that_know_it():
    import envs
    from metajax.core import taskspec
    from metajax.train import evaluation

    climb = envs.make("climb", max_agents=2, num_actions=4)
    tasks = taskspec.build_tasks(climb, ({"k": 2, "u": 1}, {"k": 1, "u": 0}))
    assert evaluation.optimal_values(climb, tasks) == [1.0, 1.0]
    multi = envs.make("climb_multistage", max_agents=2, num_stages=3, num_actions=4)
    assert evaluation.optimal_values(multi, taskspec.build_tasks(multi, ({},))) == [3.0]
    treasure = envs.make("treasure", max_agents=3, max_objects=3, episode_length=5)
    tasks = taskspec.build_tasks(treasure, ({"n_agents": 2, "n_treasures": 2},))
    assert evaluation.optimal_values(treasure, tasks) is None

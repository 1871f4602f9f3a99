"""Raw per-seed results of a MESA run, as the small JSON committed under
``experiments/results/``, and the tables of ``experiments/RESULTS.md`` computed from it.

    python -m metajax.pipelines.mesa_report runs/mesa_climb --out
    experiments/results/mesa_climb.json \\
        --command "metajax run experiments/mesa_climb.py --out runs/mesa_climb"

prints the markdown (every interval a 95 % stratified bootstrap CI over seeds from
:mod:`metajax.stats`; every comparison paired by seed). :func:`report` re-derives the same
tables from a committed JSON alone: ``python -m metajax.pipelines.mesa_report --from
experiments/results/mesa_climb.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from metajax import stats
from metajax.algos.mesa.config import MESAConfig
from metajax.algos.mesa.features import feature_dim, scan_chunk
from metajax.algos.mesa.play import make_player
from metajax.algos.mesa.report import results_table, summarize
from metajax.algos.mesa.stages import StageStore
from metajax.algos.mesa.subspace import subspace_like
from metajax.core.ops import take, tile
from metajax.pipelines.mesa import seed_task_sets

#: Per-task arrays kept from ``results.json``'s ``zero_shot_high_reward``.
_ZERO_SHOT = ("explorers_per_task", "random_per_task", "test_pairs_inside_per_task",
              "test_pairs_seen_per_task", "explorers_return_per_task", "random_return_per_task")


def uniform_policy_return(data: dict) -> tuple[np.ndarray, str] | None:
    """``([S, K] return of a uniformly random policy on each test task, how it was obtained)``:
    measured on ``eval_episodes`` episodes in the zero-shot stage when the run has it, else the
    exact expected return of independent uniform players (matrix games), else None."""
    z = data.get("zero_shot", {})
    if "random_return_per_task" in z:
        return np.asarray(z["random_return_per_task"], np.float64), "measured"
    if data["env"] not in ("climb", "climb_multistage"):
        return None
    import jax
    import jax.numpy as jnp

    import envs

    env = envs.make(data["env"], **data["env_config"])
    like = env.sample_task(jax.random.PRNGKey(0))
    test = type(like)(**{k: jnp.asarray(v) for k, v in data["tasks"]["test"].items()})
    shape = (env.max_agents, env.num_actions)
    if data["env"] == "climb_multistage":
        shape = (env.num_stages, *shape)
    pol = jnp.full(shape, 1.0 / env.num_actions)
    ret = jax.vmap(jax.vmap(lambda t: env.expected_return(t, pol)))(test)
    return np.asarray(ret, np.float64), "exact expectation"


def export(run_dir: str | Path, command: str = "") -> dict:
    """The committed form of a finished run: config, tasks, and per (seed, test task) values of
    every metric of every method; no curves, checkpoints or buffers."""
    run_dir = Path(run_dir)
    if not (run_dir / "results.json").is_file() or not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} is not a finished MESA run (no results.json / config.json)")
    res = json.loads((run_dir / "results.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())["algo_config"]
    out = {
        "name": res["name"], "command": command, "env": res["env"],
        "env_config": cfg.get("env_config", {}), "seeds": res["seeds"],
        "n_train": res["n_train"], "n_test": res["n_test"],
        "budgets": {k: cfg[k] for k in ("collect_steps", "explorer_steps", "test_steps",
                                        "num_explorers", "eps", "action_weight")
                    if k in cfg},
        "tasks": res["tasks"], "test_in_train": res.get("test_in_train", []),
        "methods": {m: {k: v["per_task"] for k, v in r.items()
                        if isinstance(v, dict) and "per_task" in v}
                    for m, r in res["methods"].items()},
        "timing": res.get("timing", {}),
    }
    steps = {m: r["env_steps"] for m, r in res["methods"].items() if "env_steps" in r}
    if steps:
        out["test_env_steps"] = steps  # per test task, test_steps rounded up to whole updates
    for k in ("dataset_size", "dataset_size_per_task", "global_counts", "eps_per_seed"):
        if k in res:
            out[k] = res[k]
    z = res.get("zero_shot_high_reward")
    if z:
        out["zero_shot"] = {k: z[k] for k in _ZERO_SHOT if k in z}
    return out


def _per_stage(data: dict) -> float:
    """Divisor that turns an episode return into a per-stage return (multi-stage climb)."""
    return float(data["env_config"].get("num_stages", 1)) if data["env"] == (
        "climb_multistage") else 1.0


def report(data: dict) -> str:
    """Markdown tables of an :func:`export` dict: each method's metrics with CIs, paired
    comparisons against MADDPG, and the zero-shot coverage with explorers against random."""
    scale = _per_stage(data)
    methods = {}
    for m, per in data["methods"].items():
        vals = dict(per)
        if scale != 1.0:
            vals = {k: (np.asarray(v) / scale).tolist() if k.endswith("_return") else v
                    for k, v in vals.items()}
        methods[m] = summarize(vals)
    results = {"name": data["name"], "seeds": data["seeds"], "n_test": data["n_test"],
               "methods": methods, "test_in_train": data.get("test_in_train", []),
               "tasks": data["tasks"]}
    lines = [results_table(results).split("\n\nPer seed and test task")[0].rstrip()]
    ref = uniform_policy_return(data)
    if ref is not None and ref[0].shape[0] >= 2:
        lines.append(f"\nReference: a uniformly random policy ({ref[1]}) returns "
                     f"{stats.fmt(stats.interval(ref[0] / scale))} on the same test tasks.")
    if scale != 1.0:
        lines.append(f"\nReturns are per stage (episode return / {scale:g}).")
    z = data.get("zero_shot")
    if z and "explorers_per_task" in z:
        ex = np.asarray(z["explorers_per_task"], np.float64).mean(1)  # [S, K]
        rnd = np.asarray(z["random_per_task"], np.float64)
        inside = np.asarray(z["test_pairs_inside_per_task"]).sum()
        seen = np.asarray(z["test_pairs_seen_per_task"]).sum()
        lines += ["", "Zero-shot on the test tasks (high-reward transitions per episode):", "",
                  "| player | mean [95 % CI] |", "|---|---|"]
        if ex.shape[0] >= 2:
            lines += [f"| explorers (mean over {len(z['explorers_per_task'][0])}) | "
                      f"{stats.fmt(stats.interval(ex))} |",
                      f"| uniformly random | {stats.fmt(stats.interval(rnd))} |"]
            p = stats.paired(ex, rnd)
            lines.append(f"\nExplorers - random: {stats.fmt(p['diff'])}, p = "
                         f"{p['p_value']:.3f}, verdict: {stats.verdict(ex, rnd)}.")
        lines.append(f"Of the {int(seen)} high-reward pairs random play met on the test tasks, "
                     f"{int(inside)} ({inside / max(seen, 1):.0%}) lie within eps of M_*.")
    if "dataset_size" in data:
        lines.append(f"\nM_* pairs per seed: {data['dataset_size']}.")
    dd = data.get("distances")
    if dd and dd.get("quantiles"):
        q = dd["quantiles"]
        lines.append(f"Distance of the {dd['pairs']} high-reward test pairs met by random play "
                     f"to the nearest pair of M_*: 10 / 50 / 90 % quantiles {q['0.1']:.2f} / "
                     f"{q['0.5']:.2f} / {q['0.9']:.2f} (eps = {dd['eps']:.3g}, mean over seeds; "
                     f"{dd['within_eps']} within).")
    if data.get("test_env_steps"):
        lines.append("\nMeta-test env steps per test task: " + ", ".join(
            f"{m} {v:,}" for m, v in data["test_env_steps"].items()) + ".")
    t = data.get("timing", {})
    if t:
        lines.append("Wall-clock (s): " + ", ".join(f"{k} {v}" for k, v in t.items()) + ".")
    return "\n".join(lines) + "\n"


def subspace_distances(run_dir: str | Path, episodes: int = 64, seed: int = 0) -> dict:
    """How far the test tasks' high-reward pairs are from ``M_*``, in Eq. 6's metric: random
    play (``episodes`` per seed and test task) on the run's test tasks, the distance of every
    pair with reward ``>= R*`` to its nearest stored pair of that seed's ``M_*`` (the run's
    ``stages/subspace`` checkpoint), and how many lie within that seed's radius. Returns
    ``{"eps" (mean over seeds), "pairs", "within_eps", "quantiles":
    {q: distance}}`` (quantiles 0.1, 0.5, 0.9 over all seeds' pairs)."""
    import jax

    import envs
    from metajax.algos.maddpg import make_maddpg
    from metajax.algos.mesa import core as mc
    from metajax.config import from_dict

    run_dir = Path(run_dir)
    cfg = from_dict(MESAConfig,
                    json.loads((run_dir / "config.json").read_text())["algo_config"])
    env = envs.make(cfg.env, **cfg.env_config)
    train, test = seed_task_sets(env, cfg)
    first = take(take(train, 0), 0)
    n_envs = cfg.explorer_config.num_envs
    learner = make_maddpg(cfg.explorer_config, env, tile(first, n_envs))
    play = make_player(env, learner, cfg, random_policy=True)
    like = subspace_like(cfg, feature_dim(cfg, env, first))
    sub, _ = StageStore(run_dir, json.loads((run_dir / "config.json").read_text())).load(
        "subspace", like)

    @jax.jit
    def dists(ds: Any, task: Any, key: Any) -> tuple[Any, Any]:
        st = jax.vmap(play, (None, None, 0, None))(None, task, jax.random.split(key, episodes),
                                                   False)
        sa = st.sa.reshape(-1, st.sa.shape[-1])
        high = ((st.reward >= cfg.threshold) & st.alive).reshape(-1)
        return mc.min_distance(ds, sa, scan_chunk(*sa.shape)), high

    res = json.loads((run_dir / "results.json").read_text())
    eps = res.get("eps_per_seed", [cfg.eps] * cfg.seeds)
    out, inside = [], 0
    key = jax.random.PRNGKey(seed)
    for s in range(cfg.seeds):
        ds = jax.tree.map(lambda x, s=s: x[s], sub["ds"])
        for j in range(cfg.n_test):
            key, k = jax.random.split(key)
            d, high = dists(ds, take(take(test, s), j), k)
            out.append(np.asarray(d)[np.asarray(high)])
            inside += int((out[-1] < eps[s]).sum())
    d = np.concatenate(out) if out else np.zeros(0)
    d = d[np.isfinite(d)]
    return {"eps": float(np.mean(eps)), "pairs": int(d.size), "within_eps": inside,
            "quantiles": {str(q): float(np.quantile(d, q)) for q in (0.1, 0.5, 0.9)}
            if d.size else {}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", nargs="?", help="a finished MESA run directory")
    ap.add_argument("--out", help="write the export JSON here")
    ap.add_argument("--command", default="", help="the command that produced the run")
    ap.add_argument("--from", dest="src", help="report a committed export JSON instead")
    ap.add_argument("--distances", action="store_true",
                    help="also measure how far the test tasks' high-reward pairs are from M_* "
                         "(needs the run directory; stored in the export as 'distances')")
    a = ap.parse_args(argv)
    if a.src:
        data = json.loads(Path(a.src).read_text())
    elif a.run_dir:
        try:
            data = export(a.run_dir, a.command)
        except ValueError as e:
            ap.error(str(e))
        if a.distances:
            data["distances"] = subspace_distances(a.run_dir)
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(data, indent=1) + "\n")
    else:
        ap.error("give a run directory or --from")
    print(report(data))


if __name__ == "__main__":
    main()

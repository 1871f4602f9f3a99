"""MRA paper experiments: several learners ("arms") on the same games, then one summary.

The ``"mra_compare"`` pipeline runs a :class:`CompareConfig`: every arm is an
:class:`metajax.pipelines.mra.MRAConfig` (``base`` with the arm's dotted overrides), trained by the
runner into ``RUN_DIR/<arm>/`` (an ordinary ``"mra"`` run directory: ``metajax eval|render|plot``
work on it), one after the other. An arm may start from an earlier arm's result
(``"mra.init_from": "arm:<name>"``, the adaptation of Fig. 4). Then, in ``RUN_DIR``:

* ``summary.json`` / ``summary.md``: per arm its wall-clock, env steps per seed and final
  evaluation on every task (greedy and stochastic, mean and per seed), the expectation-over-``z``
  and best-of-``z`` returns (``zero_shot``), whether ``expected_order`` holds on each report
  task, the cross-play table of two arms' teams (``cross``, MRA App. E.2), and ``stats``: the
  arms' and references' IQM, mean, median, optimality gap, performance profiles and
  probabilities of improvement with 95 % stratified bootstrap CIs
  (:func:`metajax.train.run_stats.compare_groups`);
* ``curves.png``: per training game, each arm's training return (mean +- std over seeds)
  against env steps per seed; ``extra_curves.png`` for ``curve_metrics`` (e.g. Eq. 11's bound
  and Eq. 13's loss, App. E.5);
* ``<arm>.gif`` for the arms in ``gifs``: an episode of the first report task with each agent's
  relational graph drawn as edges (App. E.6).

Resuming (``--resume``) skips finished arms (those with a ``results.json``) and continues the
others from their checkpoints.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metajax import stats
from metajax.algos import mra, reference
from metajax.config import override, to_dict
from metajax.core import taskspec
from metajax.pipelines import experiment as xp
from metajax.pipelines import mra as mra_pipeline
from metajax.pipelines import runner
from metajax.train import evaluation, run_stats

ARM_PREFIX = "arm:"

#: CPU-scale learner settings of the experiment files' defaults: MRA_SMALL's networks, batch 64,
#: K = 4 gradient steps per update, Adam 3e-3, rewards scaled by 10 (the entropy bonus is
#: relative to it; the authors scale by 30, MAAC by 100).
MRA_CPU = dataclasses.replace(
    mra.MRA_SMALL, batch_size=64, updates_per_rollout=4, actor_lr=3e-3, critic_lr=3e-3,
    reward_scale=10.0)

#: CPU-scale MRA options: the Eq. 11 (``phi``) and Eq. 13 (``psi``, ``xi``) steps at MRA_CPU's
#: learning rate, 3e-3, as App. E.1 uses one learning rate (3e-4) for every network. At 3e-4
#: the prior had not moved after our 40k-step budgets (MRA was uni-MRA by construction); on the
#: learning test's treasure config, 400 updates at 3e-3 took the game-index loss from log 2 to
#: 0.47 and the prior's mean total-variation distance between the two games to 0.27.
MRA_CPU_OPTIONS = mra.MRAOptions(phi_lr=3e-3, prior_lr=3e-3)

#: A learner small enough for end-to-end tests of the comparison pipeline (not for results).
TINY_TEST_LEARNER = dataclasses.replace(
    mra.MRA_SMALL, batch_size=16, buffer_size=1000, learning_starts=32, rollout_steps=8,
    num_envs=2, updates_per_rollout=1, hidden=(16,), num_heads=2, head_dim=4, embed_dim=8,
    critic_hidden=16)

#: Paper-scale MRA options (App. E.1: learning rate 3e-4).
MRA_PAPER_OPTIONS = mra.MRAOptions()

#: Paper-scale learner settings (App. E.1): MRA_PAPER with the rewards scaled by 30 as in the
#: authors' code.
MRA_PAPER_SCALE = dataclasses.replace(mra.MRA_PAPER, reward_scale=30.0)


def single_game_arm(task: dict, **more: Any) -> dict:
    """Overrides of an arm trained and evaluated on ``task`` alone."""
    return {"tasks": [dict(task)], "eval_tasks": [dict(task)], **more}


def baseline_arms(target: dict, critic: str = "attention") -> dict:
    """MRA Fig. 2's baselines on the ``target`` game: the single-game baseline (MRA's
    architecture), MADDPG with the relational actor (one set of parameters per agent) and the
    same MADDPG with parameters shared by homogeneous agents. ``critic``: MADDPG's centralized
    critic, ``attention`` (MAAC-style, App. E.1: "the critic also adopts a self-attention
    network in a similar way with MAAC"; every agent encoded once,
    :class:`metajax.core.networks.AttentionCritic`) or ``mlp`` (the original MADDPG's)."""
    c = {"maddpg.critic": critic}
    return {
        "baseline": single_game_arm(target),
        "maddpg": single_game_arm(target, algo="maddpg",
                                  **{"maddpg.param_sharing": "agent", **c}),
        "maddpg_shared": single_game_arm(target, algo="maddpg", **c),
    }


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Arms compared on the same games (see module docstring).

    * ``base``: the config every arm starts from; ``arms``: ``{name: {dotted.key: value}}`` in
      run order (a ``"mra.init_from"`` of ``"arm:<name>"`` names an earlier arm's run);
    * ``seeds``: seeds of every arm (vmapped); ``report_tasks``: task specs of the summary table
      (default: each arm's evaluation tasks); ``expected_order``: arm names, best first, and
      ``expected_best``: the arm that should beat every other (the paper's claims, checked on
      every report task with the stochastic evaluation, among the arms evaluated on it);
    * ``zero_shot``: expectation-over-``z`` and best-of-``z`` returns of the latent arms on
      their evaluation tasks (``zero_shot_episodes`` each);
    * ``cross``: two arm names whose teams are crossed (team 0 of one with team 1 of the other)
      on ``cross_task`` (App. E.2);
    * ``curve_metrics``: metrics drawn in ``extra_curves.png``; ``gifs``: arms rendered with
      their attention edges, on ``gif_task`` (default: the first report task); ``aux_arms``:
      arms run only for another arm's sake (kept out of the summary table, e.g. the
      pre-training of an adaptation);
    * ``reuse``: ``{arm: run directory}`` arms already trained elsewhere with the same config
      (e.g. by another experiment that shares them); they are read, not trained, after a check
      that their ``config.json`` matches the arm's config up to its name;
    * ``references``: reference policies (:mod:`metajax.algos.reference`: ``random``, ``scripted``)
      played on every report task with the same evaluator, seeds and episodes as the arms;
      an arm whose stochastic return does not beat the scripted row on a task is reported as
      not having learned that game;
    * ``episode_stats``: per arm (and reference) and task, each team's return, the step
      extras summed over the episode (Pac-Man: ``caught``, ``eaten``) and the episode length,
      per seed (:func:`episode_stats`; multi-team games such as Pac-Man).
    """

    name: str = "mra_compare"
    base: mra_pipeline.MRAConfig = dataclasses.field(default_factory=mra_pipeline.MRAConfig)
    arms: dict = dataclasses.field(default_factory=dict)
    seeds: int = 1
    report_tasks: tuple[dict, ...] = ()
    expected_order: tuple[str, ...] = ()
    expected_best: str = ""
    zero_shot: bool = False
    zero_shot_episodes: int = 20
    cross: tuple[str, ...] = ()
    cross_task: dict = dataclasses.field(default_factory=dict)
    cross_episodes: int = 40
    curve_metrics: tuple[str, ...] = ()
    gifs: tuple[str, ...] = ()
    gif_task: dict = dataclasses.field(default_factory=dict)
    aux_arms: tuple[str, ...] = ()
    reuse: dict = dataclasses.field(default_factory=dict)
    references: tuple[str, ...] = ("random", "scripted")
    episode_stats: bool = False

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("arms must name at least one arm")
        names = list(self.arms)
        best = (self.expected_best,) if self.expected_best else ()
        for n in (*self.expected_order, *best, *self.cross, *self.gifs, *self.aux_arms,
                  *self.reuse):
            if n not in names:
                raise ValueError(f"unknown arm {n!r}; arms: {', '.join(names)}")
        if self.cross and len(self.cross) != 2:
            raise ValueError(f"cross names two arms, got {self.cross}")
        for name, ov in self.arms.items():
            if not isinstance(ov, dict):
                raise ValueError(f"arm {name!r}: overrides must be a dict, got {ov!r}")
            src = ov.get("mra.init_from", "")
            if isinstance(src, str) and src.startswith(ARM_PREFIX):
                ref = src[len(ARM_PREFIX):]
                if ref not in names or names.index(ref) >= names.index(name):
                    raise ValueError(f"arm {name!r} starts from {ref!r}, which is not an "
                                     "earlier arm")

    def arm_dir(self, name: str, run_dir: Path) -> Path:
        """Where arm ``name``'s run lives (its reused directory, else ``run_dir/name``)."""
        return Path(self.reuse[name]) if name in self.reuse else Path(run_dir) / name

    def arm_config(self, name: str, run_dir: Path | None = None) -> mra_pipeline.MRAConfig:
        """The full config of arm ``name`` (``arm:`` references resolved under ``run_dir``)."""
        ov = dict(self.arms[name])
        src = ov.get("mra.init_from", "")
        if isinstance(src, str) and src.startswith(ARM_PREFIX):
            root = Path(run_dir) if run_dir is not None else Path("runs") / self.name
            ov["mra.init_from"] = str(root / src[len(ARM_PREFIX):])
        cfg = dataclasses.replace(self.base, seeds=self.seeds, name=f"{self.name}/{name}")
        # the source of an adaptation first: mode="adapt" is validated against it
        ov = dict(sorted(ov.items(), key=lambda kv: not kv[0].endswith("init_from")))
        return override(cfg, ov)


@dataclasses.dataclass
class CompareResult:
    """What :func:`run_compare` returns (``results`` stays empty: the CLI prints no runner
    table; the summary is printed and written instead)."""

    summary: dict
    run_dir: Path
    results: dict = dataclasses.field(default_factory=dict)


def run_compare(
    cfg: CompareConfig, run_dir: str | Path, *, resume: bool = False,
    wandb_mode: str = "offline", progress: bool | None = None, log=print,
) -> CompareResult:
    """Run every arm, then write the summary, curves and GIFs (module docstring)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not jax.config.jax_compilation_cache_dir:
        # arms that differ only in their games share the learner's programs: compile them once
        jax.config.update("jax_compilation_cache_dir", str(run_dir / ".jax_cache"))
    (run_dir / "config.json").write_text(json.dumps(
        {"algo_config": to_dict(cfg), "pipeline": "mra_compare"}, indent=1))
    timing_path = run_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if resume and timing_path.exists() else {}
    for name in cfg.arms:
        arm_cfg = cfg.arm_config(name, run_dir)
        arm_dir = cfg.arm_dir(name, run_dir)
        if name in cfg.reuse:
            _check_reused(arm_dir, arm_cfg)
            log(f"[{cfg.name}] arm {name}: reused from {arm_dir}")
            continue
        if resume and (arm_dir / "results.json").exists():
            log(f"[{cfg.name}] arm {name}: finished earlier, skipped")
            continue
        log(f"[{cfg.name}] arm {name}: {arm_cfg.algo}, {len(arm_cfg.tasks)} game(s), "
            f"{arm_cfg.total_env_steps:,} env steps per seed, {arm_cfg.seeds} seed(s)")
        t0 = time.perf_counter()
        mra_pipeline.run_mra(arm_cfg, arm_dir, resume=resume, wandb_mode=wandb_mode,
                             progress=progress, log=log)
        timing[name] = timing.get(name, 0.0) + time.perf_counter() - t0
        timing_path.write_text(json.dumps(timing, indent=1))
    summary = summarize(cfg, run_dir, timing, log=log)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (run_dir / "summary.md").write_text(summary_markdown(cfg, summary))
    log(summary_markdown(cfg, summary))
    return CompareResult(summary, run_dir)


def _wall_clock(name: str, arm_dir: Path, timing: dict) -> float:
    """Seconds arm ``name`` took to train (for a reused arm: from its experiment's timing)."""
    if name in timing:
        return float(timing[name])
    other = arm_dir.parent / "timing.json"
    if other.exists():
        return float(json.loads(other.read_text()).get(arm_dir.name, float("nan")))
    return float("nan")


def _check_reused(arm_dir: Path, arm_cfg: mra_pipeline.MRAConfig) -> None:
    """A reused arm must be a finished run of the same config (names aside)."""
    if not (arm_dir / "results.json").exists():
        raise xp.ExperimentError(f"reused arm {arm_dir} has no results.json (not finished?)")
    saved, _ = xp.read_run_config(arm_dir)
    a, b = to_dict(saved), to_dict(arm_cfg)
    a.pop("name"), b.pop("name")
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise xp.ExperimentError(f"reused arm {arm_dir} was trained with another config "
                                 f"(differs in {', '.join(diff)})")


def _spec_key(spec: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(spec.items())) or "(default)"


def summarize(cfg: CompareConfig, run_dir: Path, timing: dict, log=print) -> dict:
    """Collect every arm's results (and the zero-shot / cross-play evaluations)."""
    out: dict[str, Any] = {"arms": {}, "order": {}}
    report = [dict(s) for s in cfg.report_tasks]
    for name in cfg.arms:
        arm_dir = cfg.arm_dir(name, run_dir)
        res = json.loads((arm_dir / "results.json").read_text())
        arm_cfg = cfg.arm_config(name, run_dir)
        entry: dict[str, Any] = {
            "algo": arm_cfg.algo,
            "latent": arm_cfg.mra.latent if arm_cfg.algo == "mra" else "-",
            "games": [dict(t) for t in taskspec.distinct_tasks(arm_cfg.tasks)],
            "env_steps": res["env_steps"],
            "seeds": arm_cfg.seeds,
            "wall_clock_s": round(_wall_clock(name, arm_dir, timing), 1),
            "eval": {},
        }
        for i, spec in enumerate(res["tasks"]):
            entry["eval"][_spec_key(spec)] = {
                m: {"mean": res[m][i]["mean"], "std": res[m][i]["std"],
                    "ci": stats.interval(res[m][i]["per_seed"]),
                    "per_seed": res[m][i]["per_seed"],
                    **{k: v for k, v in res[m][i].items()
                       if k.startswith("team") or k == "per_episode"}}
                for m in ("greedy", "stochastic")}
        if cfg.zero_shot and arm_cfg.algo == "mra":
            entry["zero_shot"] = zero_shot(arm_dir, res["tasks"], cfg.zero_shot_episodes)
        prior = prior_summary(arm_dir)
        if prior:
            entry["prior"] = prior
        if cfg.episode_stats:
            run = xp.load_run(arm_dir)
            entry["episode_stats"] = episode_stats(
                run.learner, run.env, run.params(), res["tasks"], arm_cfg.eval_episodes,
                _eval_key(arm_cfg, res))
        out["arms"][name] = entry
        if not report:
            report.extend(s for s in res["tasks"] if s not in report)
    out["report_tasks"] = report
    if cfg.references:
        out["reference"] = reference_rows(cfg, run_dir, report)
    out["comparisons"] = comparisons(cfg, out, report)
    out["stats"] = run_stats.stats_block(run_stats.compare_groups(out, cfg.aux_arms))
    for spec in report:
        key = _spec_key(spec)
        vals = {n: e["eval"][key]["stochastic"]["mean"] for n, e in out["arms"].items()
                if key in e["eval"] and n not in cfg.aux_arms}
        checks = {}
        ranked = [n for n in cfg.expected_order if n in vals]
        if len(ranked) > 1:
            checks["order_holds"] = all(vals[a] >= vals[b] for a, b in itertools.pairwise(ranked))
        if cfg.expected_best in vals and len(vals) > 1:
            checks["best_holds"] = all(vals[cfg.expected_best] >= v for v in vals.values())
        if checks:
            out["order"][key] = {"expected": ranked, "best": cfg.expected_best, "values": vals,
                                 "observed": sorted(vals, key=vals.get, reverse=True),
                                 "holds": all(checks.values()), **checks}
    if cfg.cross:
        out["cross"] = cross_play(cfg, run_dir)
    for name in cfg.gifs:
        try:
            spec = dict(cfg.gif_task) or (report[0] if report else None)
            path = render_attention_gif(cfg.arm_dir(name, run_dir), spec, run_dir / f"{name}.gif")
            out.setdefault("gifs", {})[name] = str(path)
        except Exception as e:  # a picture must not lose the numbers
            log(f"[{cfg.name}] gif of {name} failed: {type(e).__name__}: {e}")
    try:
        plot_curves(cfg, run_dir, run_dir / "curves.png")
        if cfg.curve_metrics:
            plot_metrics(cfg, run_dir, cfg.curve_metrics, run_dir / "extra_curves.png")
    except Exception as e:
        log(f"[{cfg.name}] curves failed: {type(e).__name__}: {e}")
    return out


# --- zero-shot and cross-play ------------------------------------------------------------------


def zero_shot(arm_dir: Path, specs: list[dict], episodes: int) -> dict:
    """Expectation-over-``z`` and best-of-``z`` returns (stochastic actions) of a trained MRA
    run on ``specs``: ``{task: {"expectation": [S], "best_of_z": [S], "per_head": [S, H]}}``."""
    run = xp.load_run(arm_dir)
    tasks = taskspec.build_tasks(run.env, tuple(specs))
    res = mra.latent_returns(run.learner, run.env, run.params(), tasks,
                             jax.random.PRNGKey(2024), episodes)
    out = {}
    for i, spec in enumerate(specs):
        out[_spec_key(spec)] = {k: np.asarray(v)[:, i].tolist() for k, v in res.items()}
    return out


def _eval_key(arm_cfg: mra_pipeline.MRAConfig, res: dict) -> jax.Array:
    """The key of the runner's final evaluation of a run (so references and statistics are
    played on the same episodes' starts)."""
    return jax.random.PRNGKey(arm_cfg.seed + 10_007 * int(res.get("chunk", 0)))


def episode_stats(learner: Any, env: Any, params: Any, specs: list[dict], episodes: int,
                  key: jax.Array) -> dict:
    """Per task: each team's mean per-agent return ``team<t>`` ``[S]``, the per-episode sum of
    every scalar step extra (e.g. ``caught``, ``eaten``) and ``length`` ``[S]`` (means over
    episodes), stochastic actions, from :func:`metajax.train.evaluation.make_evaluator` with
    ``stats=True``. ``params`` ``[S, ...]``."""
    tasks = taskspec.build_tasks(env, tuple(specs))
    ret, st = evaluation.make_evaluator(learner, env, episodes, stats=True)(params, tasks, key,
                                                                         False)
    summ = evaluation.summarize_returns(np.asarray(ret), tasks, env)
    out = {}
    for i, spec in enumerate(specs):
        e = {k: v for k, v in summ[i].items() if k.startswith("team") and k.endswith("per_seed")}
        e = {k[: -len("_per_seed")]: v for k, v in e.items()}
        e.update({k: np.asarray(v)[:, i].mean(-1).tolist() for k, v in st.items()})
        out[_spec_key(spec)] = e
    return out


def reference_rows(cfg: CompareConfig, run_dir: Path, report: list[dict]) -> dict:
    """The reference policies of ``cfg.references`` on the report tasks, with the arms'
    evaluator: ``{kind: {task: {"stochastic": {mean, std, ci, per_seed, team...},
    "episode_stats"?}}}`` (``cfg.seeds`` x ``base.eval_episodes`` episodes).

    Each task is played in the env (and with the key of the final evaluation) of the first arm
    that evaluated it, so a report task with more agents than the training games (Fig. 4's
    large game) gets that arm's larger env; tasks of one arm are played in one call.
    """
    arms = [n for n in cfg.arms if n not in cfg.aux_arms]
    owner: dict[str, list[dict]] = {}
    for spec in report:
        name = next((n for n in arms if spec in _evaluated_tasks(cfg, n, run_dir)), arms[0])
        owner.setdefault(name, []).append(spec)
    out: dict[str, dict] = {kind: {} for kind in cfg.references}
    for name, specs in owner.items():
        arm_dir = cfg.arm_dir(name, run_dir)
        res = json.loads((arm_dir / "results.json").read_text())
        arm_cfg = cfg.arm_config(name, run_dir)
        env = runner.build_env(arm_cfg)
        tasks = taskspec.build_tasks(env, tuple(specs))
        key = _eval_key(arm_cfg, res)
        for kind in cfg.references:
            r = np.asarray(reference.reference_returns(env, tasks, kind, arm_cfg.eval_episodes,
                                                       key, seeds=cfg.seeds))
            summ = evaluation.summarize_returns(r, tasks, env)
            rows = out[kind]
            for i, spec in enumerate(specs):
                rows[_spec_key(spec)] = {"stochastic": {
                    **summ[i], "ci": stats.interval(summ[i]["per_seed"])}}
            if cfg.episode_stats:
                per = episode_stats(reference.reference_learner(env, kind), env,
                                    jnp.tile(reference.kind_codes(env, kind)[None],
                                             (cfg.seeds, 1)), specs, arm_cfg.eval_episodes, key)
                for k, v in per.items():
                    rows[k]["episode_stats"] = v
    return {kind: {_spec_key(s): out[kind][_spec_key(s)] for s in report} for kind in out}


def _evaluated_tasks(cfg: CompareConfig, name: str, run_dir: Path) -> list[dict]:
    """The task specs arm ``name``'s final evaluation played (its ``results.json``)."""
    res = json.loads((cfg.arm_dir(name, run_dir) / "results.json").read_text())
    return [dict(t) for t in res["tasks"]]


def comparisons(cfg: CompareConfig, summary: dict, report: list[dict]) -> dict:
    """Paired-by-seed comparisons (stochastic returns, every arm on the same seeds) on each
    report task: ``expected_best`` against every other arm (:func:`metajax.stats.paired` and
    :func:`metajax.stats.verdict`), and, per arm, whether it beats the scripted reference
    (the lower end of its CI above the scripted mean): ``learned``."""
    out: dict[str, dict] = {}
    ref = summary.get("reference", {}).get("scripted", {})
    for spec in report:
        key = _spec_key(spec)
        arms = {n: e["eval"][key]["stochastic"] for n, e in summary["arms"].items()
                if key in e["eval"] and n not in cfg.aux_arms}
        task: dict[str, Any] = {"pairs": {}, "learned": {}}
        best = cfg.expected_best
        if best in arms:
            for n, v in arms.items():
                if n == best or len(v["per_seed"]) != len(arms[best]["per_seed"]):
                    continue
                a, b = arms[best]["per_seed"], v["per_seed"]
                task["pairs"][f"{best} - {n}"] = {**stats.paired(a, b),
                                                   "verdict": stats.verdict(a, b)}
        if key in ref:
            bar = ref[key]["stochastic"]["mean"]
            task["learned"] = {n: bool((v.get("ci") or stats.interval(v["per_seed"]))["lo"] > bar)
                               for n, v in arms.items()}
        out[key] = task
    return out


def prior_summary(arm_dir: Path) -> dict:
    """The latent prior at the end of a run, from the last chunk of ``metrics.jsonl``, per
    seed: ``tv``, ``js``, ``argmax_differs``, ``entropy`` ``{game: [S]}`` and, as a verdict,
    ``separates``: the number of seeds whose mean pairwise total-variation distance between
    the games' priors is >= 0.1. Empty for arms without a learned prior."""
    path = Path(arm_dir) / "metrics.jsonl"
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    if not rows or "prior_tv" not in rows[-1]:
        return {}
    last = rows[-1]
    tv = np.asarray(last["prior_tv"], np.float64).reshape(-1)
    out = {"tv": tv.tolist(),
           "js": np.asarray(last["prior_js"]).reshape(-1).tolist(),
           "argmax_differs": np.asarray(last["prior_argmax_differs"]).reshape(-1).tolist(),
           "entropy": {k[len("prior_entropy_"):]: np.asarray(v).reshape(-1).tolist()
                       for k, v in last.items() if k.startswith("prior_entropy_")},
           "separates": int(np.sum(tv >= 0.1)), "seeds": int(tv.size)}
    if "game_ce" in last:
        out["game_ce"] = np.asarray(last["game_ce"]).reshape(-1).tolist()
    return out


def splice_teams(p0: Any, p1: Any) -> Any:
    """Team-stacked parameters ``[S, T, ...]``: team 0 from ``p0``, the other teams from
    ``p1``."""
    return jax.tree.map(lambda a, b: b.at[:, 0].set(a[:, 0]), p0, p1)


def cross_play(cfg: CompareConfig, run_dir: Path) -> dict:
    """App. E.2: every pairing of the two arms' team 0 (Pac-Man) and team 1 (ghosts) on
    ``cross_task``; mean per-agent return of each team (over seeds, episodes and the team's
    agents), also normalized by the largest entry of each team's table."""
    a, b = cfg.cross
    runs = {n: xp.load_run(cfg.arm_dir(n, run_dir)) for n in (a, b)}
    env = runs[b].env
    learner = runs[b].learner
    tasks = taskspec.build_tasks(env, (dict(cfg.cross_task),))
    evaluate = evaluation.make_evaluator(learner, env, cfg.cross_episodes)
    team = np.asarray(evaluation._team_ids(env))
    mask = np.asarray(env.reset_to(jax.random.PRNGKey(0), _first(tasks))[1].observation
                      .agent_mask)
    table: dict[str, dict] = {}
    for t0 in (a, b):
        for t1 in (a, b):
            params = splice_teams(runs[t0].params(), runs[t1].params())
            r = np.asarray(evaluate(params, tasks, jax.random.PRNGKey(7), False))[:, 0]
            per = evaluation.team_returns(r, team, mask)  # {k: [S, E]}
            table[f"team0={t0} team1={t1}"] = {
                **{f"team{k}": float(per[k].mean()) for k in (0, 1)},
                **{f"team{k}_per_seed": per[k].mean(-1).tolist() for k in (0, 1)}}
    return normalize_cross(table)


def normalize_cross(table: dict) -> dict:
    """Add ``team<k>_normalized`` to every pairing of a cross-play table: ``(x - min) /
    (max - min)`` over the table's entries of team ``k`` (1.0 when they are all equal), as
    App. E.2's Tables 1-2 normalize each team's column."""
    for k in (0, 1):
        vals = [v[f"team{k}"] for v in table.values()]
        lo, hi = min(vals), max(vals)
        for v in table.values():
            v[f"team{k}_normalized"] = (v[f"team{k}"] - lo) / (hi - lo) if hi > lo else 1.0
    return table


def _first(tree: Any) -> Any:
    return jax.tree.map(lambda x: x[0], tree)


# --- pictures ----------------------------------------------------------------------------------


def render_attention_gif(
    arm_dir: Path, spec: dict | None, out: Path, seed_index: int = 0, fps: int = 4,
    dpi: int = 60, focus: int | None = 0,
) -> Path:
    """An episode of a trained MRA run with agent ``focus``'s relational graph (all agents'
    if ``None``) drawn as edges (weights >= 0.1, App. E.6)."""
    from envs import render

    run = xp.load_run(arm_dir)
    if getattr(run.config, "algo", "") != "mra":
        raise ValueError(f"{arm_dir} is not an MRA run (no relational graph to draw)")
    task = taskspec.make_task(run.env, spec or run.eval_specs[0])
    params = run.params(seed_index)
    states, att, rewards = mra.attention_episode(run.config, run.learner, run.env, params, task,
                                                 jax.random.PRNGKey(11))
    render.save_gif(run.env, states, str(out), fps=fps, dpi=dpi, attention=att, focus=focus)
    return out


def _curve(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not rows or key not in rows[0]:
        return None
    x = np.asarray([r["env_steps"] for r in rows], np.float64).mean(1)
    y = np.asarray([r[key] for r in rows], np.float64)  # [chunks, seeds]
    return x, y


def _game_curves(cfg: CompareConfig, run_dir: Path) -> dict[str, dict[str, tuple]]:
    """``{task: {arm: (x, y [chunks, seeds])}}`` of training returns per game."""
    out: dict[str, dict[str, tuple]] = {}
    for name in cfg.arms:
        if name in cfg.aux_arms:
            continue
        rows = [json.loads(ln) for ln in (cfg.arm_dir(name, run_dir) / "metrics.jsonl")
                .read_text().splitlines() if ln.strip()]
        arm_cfg = cfg.arm_config(name, run_dir)
        games = taskspec.distinct_tasks(arm_cfg.tasks)
        for g, spec in enumerate(games):
            key = f"return_g{g}" if f"return_g{g}" in (rows[0] if rows else {}) else (
                "episode_return" if len(games) == 1 else None)
            c = _curve(rows, key) if key else None
            if c is not None:
                out.setdefault(_spec_key(spec), {})[name] = c
    return out


COLORS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown",
          "tab:gray", "tab:olive")


def _smooth(y: np.ndarray, k: int = 5) -> np.ndarray:
    if len(y) < k:
        return y
    kern = np.ones(k) / k
    pad = np.concatenate([np.repeat(y[:1], k - 1, 0), y])
    return np.stack([np.convolve(pad[:, s], kern, "valid") for s in range(y.shape[1])], 1)


def plot_curves(cfg: CompareConfig, run_dir: Path, out: Path) -> Path:
    """One panel per training game: every arm's training return (mean +- std over seeds,
    moving average over 5 chunks) against env steps per seed."""
    curves = _game_curves(cfg, run_dir)
    keys = list(curves)
    fig = Figure(figsize=(3.4 * max(len(keys), 1), 2.8))
    FigureCanvasAgg(fig)
    arms = [n for n in cfg.arms if n not in cfg.aux_arms]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for j, name in enumerate(arms):
            if name not in curves[key]:
                continue
            x, y = curves[key][name]
            y = _smooth(y)
            m, s = y.mean(1), y.std(1)
            c = COLORS[j % len(COLORS)]
            ax.plot(x, m, color=c, label=name, linewidth=1.5)
            ax.fill_between(x, m - s, m + s, color=c, alpha=0.15, linewidth=0)
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("env steps per seed", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5, loc="upper left")
        if i == 0:
            ax.set_ylabel("training return per agent", fontsize=7)
    fig.suptitle(cfg.name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    return out


def plot_metrics(cfg: CompareConfig, run_dir: Path, metrics: tuple[str, ...], out: Path) -> Path:
    """One panel per metric, every arm that logs it (mean +- std over seeds)."""
    fig = Figure(figsize=(3.6 * len(metrics), 2.8))
    FigureCanvasAgg(fig)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for j, name in enumerate(n for n in cfg.arms if n not in cfg.aux_arms):
            rows = [json.loads(ln) for ln in (cfg.arm_dir(name, run_dir) / "metrics.jsonl")
                    .read_text().splitlines() if ln.strip()]
            c = _curve(rows, metric)
            if c is None or not np.any(c[1]):
                continue  # not logged, or off for this arm (no latent, a single game)
            x, y = c
            m, s = y.mean(1), y.std(1)
            ax.plot(x, m, color=COLORS[j % len(COLORS)], label=name)
            ax.fill_between(x, m - s, m + s, color=COLORS[j % len(COLORS)], alpha=0.15)
        ax.set_title(metric, fontsize=8)
        ax.set_xlabel("env steps per seed", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    return out


# --- the summary table ---------------------------------------------------------------------------


def _cell(v: dict) -> str:
    ci = v.get("ci") or stats.interval(v["per_seed"])
    return stats.fmt(ci)


def summary_markdown(cfg: CompareConfig, summary: dict) -> str:
    """Markdown tables (re-derivable from ``summary.json`` alone): per arm and report task the
    stochastic-policy return with its 95 % bootstrap CI over seeds (greedy mean in
    parentheses), the reference rows, which arms beat the scripted reference, the paired
    comparisons, the prior's separation, zero-shot, episode statistics and cross-play."""
    lines = _md_returns(cfg, summary)
    lines += _md_comparisons(summary)
    lines += _md_priors(summary)
    lines += _md_zero_shot(summary)
    lines += _md_episode_stats(summary)
    lines += _md_order(summary)
    lines += _md_cross(summary)
    return "\n".join(lines) + "\n"


def _md_returns(cfg: CompareConfig, summary: dict) -> list[str]:
    """The returns table: arms and reference rows per report task."""
    report = summary.get("report_tasks", [])
    keys = [_spec_key(s) for s in report]
    lines = [f"### {cfg.name}", "",
             "| arm | algo | latent | games | env steps/seed | seeds | wall-clock | "
             + " | ".join(keys) + " |",
             "|" + " --- |" * (7 + len(report))]
    for name, e in summary["arms"].items():
        if name in cfg.aux_arms:
            continue
        cells = []
        for k in keys:
            ev = e["eval"].get(k)
            cells.append("-" if ev is None else
                         f"{_cell(ev['stochastic'])} ({ev['greedy']['mean']:.3f})")
        games = "; ".join(_spec_key(g) for g in e["games"])
        lines.append(f"| {name} | {e['algo']} | {e['latent']} | {games} | {e['env_steps']:,} | "
                     f"{e['seeds']} | {e['wall_clock_s']:.0f} s | " + " | ".join(cells) + " |")
    for kind, rows in summary.get("reference", {}).items():
        cells = [_cell(rows[k]["stochastic"]) if k in rows else "-" for k in keys]
        lines.append(f"| *{kind} policy* (reference) | - | - | - | - | {cfg.seeds} | - | "
                     + " | ".join(cells) + " |")
    lines += ["", "Cells: stochastic-policy return per agent, mean [95 % stratified bootstrap "
              "CI] over seeds (greedy mean in parentheses); reference rows played with the "
              "same evaluator, seeds and episodes."]
    return lines


def _md_comparisons(summary: dict) -> list[str]:
    """Which arms beat the scripted row; the paired comparisons."""
    lines: list[str] = []
    comp = summary.get("comparisons", {})
    learned = {k: v["learned"] for k, v in comp.items() if v.get("learned")}
    if learned:
        lines += ["", "| task | arms above the scripted reference (CI lower end > its mean) | "
                  "arms not shown to have learned the game |", "| --- | --- | --- |"]
        for k, v in learned.items():
            yes = [n for n, b in v.items() if b]
            no = [n for n, b in v.items() if not b]
            lines.append(f"| {k} | {', '.join(yes) or '-'} | {', '.join(no) or '-'} |")
    pairs = [(k, n, p) for k, v in comp.items() for n, p in v.get("pairs", {}).items()]
    if pairs:
        lines += ["", "| task | paired by seed | difference [95 % CI] | sign-flip p | "
                  "P(better) | verdict |", "| --- | --- | --- | --- | --- | --- |"]
        for k, n, p in pairs:
            lines.append(f"| {k} | {n} | {stats.fmt(p['diff'])} | {p['p_value']:.3f} | "
                         f"{p['prob_improvement']:.2f} | {p['verdict']} |")
    return lines


def _md_priors(summary: dict) -> list[str]:
    """The prior's separation of the games per arm."""
    lines: list[str] = []
    priors = {n: e["prior"] for n, e in summary["arms"].items() if "prior" in e}
    if priors:
        lines += ["", "| arm | prior TV between games (per seed) | JS (nats) | entropy per game "
                  "(mean over seeds) | game-index loss | separates (TV >= 0.1) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for n, p in priors.items():
            ent = ", ".join(f"{g} {np.mean(v):.2f}" for g, v in p["entropy"].items())
            ce = f"{np.mean(p['game_ce']):.3f}" if "game_ce" in p else "-"
            lines.append(f"| {n} | {', '.join(f'{x:.3f}' for x in p['tv'])} | "
                         f"{np.mean(p['js']):.4f} | {ent} | {ce} | "
                         f"{p['separates']} of {p['seeds']} seeds |")
    return lines


def _md_zero_shot(summary: dict) -> list[str]:
    """Zero-shot returns: expectation over z and best-of-z."""
    lines: list[str] = []
    zs = {n: e["zero_shot"] for n, e in summary["arms"].items() if "zero_shot" in e}
    if zs:
        lines += ["", "| arm | task | expectation over z | best-of-z (head chosen on separate "
                  "episodes) |", "| --- | --- | --- | --- |"]
        for n, per in zs.items():
            for task, v in per.items():
                best = stats.fmt(stats.interval(v["best_of_z"])) if "best_of_z" in v else "-"
                lines.append(f"| {n} | {task} | {stats.fmt(stats.interval(v['expectation']))} "
                             f"| {best} |")
        lines += ["", "z protocol (Alg. 5): each agent's z is drawn from p_psi(z | m) of the "
                  "game (expectation) or set to one head for every agent (best-of-z) at the "
                  "episode start and kept for the episode; the best head is picked on other "
                  "episodes than those that score it."]
    return lines


def _md_episode_stats(summary: dict) -> list[str]:
    """Per-episode statistics of the arms and the references."""
    lines: list[str] = []
    st = {n: e["episode_stats"] for n, e in summary["arms"].items() if "episode_stats" in e}
    for kind, rows in summary.get("reference", {}).items():
        ref_st = {k: v["episode_stats"] for k, v in rows.items() if "episode_stats" in v}
        if ref_st:
            st[f"*{kind} policy*"] = ref_st
    if st:
        names = sorted({f for per in st.values() for v in per.values() for f in v})
        lines += ["", "| arm | task | " + " | ".join(names) + " |",
                  "|" + " --- |" * (2 + len(names))]
        for n, per in st.items():
            for task, v in per.items():
                lines.append(f"| {n} | {task} | " + " | ".join(
                    f"{np.mean(v[f]):.2f}" if f in v else "-" for f in names) + " |")
        lines += ["", "Per episode, mean over seeds and episodes (stochastic actions): team<t> "
                  "the mean per-agent return of team t, the step extras summed over the "
                  "episode, length in steps."]
    return lines


def _md_order(summary: dict) -> list[str]:
    """The paper's claimed order against the observed means."""
    lines: list[str] = []
    if summary.get("order"):
        lines += ["", "| report task | paper's claim | observed (best first) | means order |",
                  "| --- | --- | --- | --- |"]
        for task, o in summary["order"].items():
            claim = []
            if "order_holds" in o:
                claim.append(" > ".join(o["expected"]))
            if "best_holds" in o:
                claim.append(f"{o['best']} best")
            lines.append(f"| {task} | {'; '.join(claim)} | {' > '.join(o['observed'])} | "
                         f"{'yes' if o['holds'] else 'no'} |")
        lines += ["", "'means order' compares means only; a claim holds where the paired "
                  "comparison above says so."]
    return lines


def _md_cross(summary: dict) -> list[str]:
    """Cross-play pairings."""
    lines: list[str] = []
    if summary.get("cross"):
        lines += ["", "| pairing | team 0 return (norm.) | team 1 return (norm.) |",
                  "| --- | --- | --- |"]
        for k, v in summary["cross"].items():
            lines.append(f"| {k} | {v['team0']:.3f} ({v['team0_normalized']:.2f}) | "
                         f"{v['team1']:.3f} ({v['team1_normalized']:.2f}) |")
    return lines


def _load_compare(run_dir: Path, cfg: CompareConfig, step: int | None = None):
    raise xp.ExperimentError(
        f"{run_dir} holds several runs (one per arm: {', '.join(cfg.arms)}); evaluate, render "
        f"or plot one of them, e.g. {Path(run_dir) / next(iter(cfg.arms))}")


#: The ``"mra_compare"`` pipeline (:data:`metajax.pipelines.registry.PIPELINES`).
PIPELINE = xp.Pipeline(run_compare, CompareConfig, _load_compare)


# --- committed raw results -----------------------------------------------------------------------


def export_summary(run_dir: str | Path, out: str | Path, command: str = "") -> dict:
    """Write ``run_dir/summary.json`` (every arm's per-seed results) to ``out`` with what
    :func:`summary_markdown` needs to re-derive the tables from that file alone: the
    experiment's name, arm order, ``aux_arms``, ``expected_best``, seeds, and the command."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    saved = json.loads((run_dir / "config.json").read_text())["algo_config"]
    summary["meta"] = {"name": saved["name"], "arms": list(saved["arms"]),
                       "aux_arms": list(saved.get("aux_arms", ())),
                       "expected_best": saved.get("expected_best", ""),
                       "seeds": saved["seeds"], "command": command}
    curves = export_curves(run_dir, saved)
    if curves:
        summary["curves"] = curves
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(summary, indent=1))
    return summary


def export_curves(run_dir: Path, saved: dict) -> dict:
    """``{arm: {metric: {"env_steps": [chunks], "per_seed": [seeds][chunks]}}}`` of the
    experiment's ``curve_metrics`` (as logged per chunk in each arm's ``metrics.jsonl``) for
    the arms that log them; ``{}`` when it names none."""
    metrics = tuple(saved.get("curve_metrics", ()))
    out: dict = {}
    for name in saved["arms"]:
        path = run_dir / name / "metrics.jsonl"
        if not metrics or name in saved.get("aux_arms", ()) or not path.exists():
            continue
        rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        for metric in metrics:
            c = _curve(rows, metric)
            if c is not None and np.any(c[1]):
                out.setdefault(name, {})[metric] = {"env_steps": c[0].tolist(),
                                                    "per_seed": c[1].T.tolist()}
    return out


def curves_markdown(curves: dict) -> str:
    """A table of each exported curve (:func:`export_curves`) at a quarter, half, three
    quarters and the end of training: mean over seeds [95 % CI]."""
    lines = ["| arm | metric | 25 % | 50 % | 75 % | end |", "| --- | --- | --- | --- | --- | --- |"]
    for arm, per in curves.items():
        for metric, c in per.items():
            y = np.asarray(c["per_seed"], np.float64)  # [seeds, chunks]
            n = y.shape[1]
            cells = []
            for q in (0.25, 0.5, 0.75, 1.0):
                i = max(0, math.ceil(q * n) - 1)
                cells.append(f"{stats.fmt(stats.interval(y[:, i]))} "
                             f"({c['env_steps'][i]:,.0f} steps)")
            lines.append(f"| {arm} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_from_export(path: str | Path) -> str:
    """The tables of :func:`summary_markdown` from a file :func:`export_summary` wrote (and
    of its curves, :func:`curves_markdown`)."""
    summary = json.loads(Path(path).read_text())
    meta = summary["meta"]
    cfg = CompareConfig(name=meta["name"], arms={n: {} for n in meta["arms"]},
                        aux_arms=tuple(meta["aux_arms"]), expected_best=meta["expected_best"],
                        seeds=meta["seeds"])
    text = summary_markdown(cfg, summary)
    if summary.get("curves"):
        text += "\n\nCurves (per chunk, logged while training):\n\n" + curves_markdown(
            summary["curves"])
    return text


def main(argv: list[str] | None = None) -> None:
    """``python -m metajax.pipelines.mra_compare RUN --out X.json [--command "..."]`` exports a
    comparison's raw results; ``python -m metajax.pipelines.mra_compare --from X.json`` prints its
    tables from the exported file."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m metajax.pipelines.mra_compare",
                                description=main.__doc__)
    p.add_argument("run", nargs="?", help="an mra_compare run directory")
    p.add_argument("--out", help="where to write the raw results (JSON)")
    p.add_argument("--command", default="", help="the command that produced the run")
    p.add_argument("--from", dest="src", help="print the tables of an exported file")
    a = p.parse_args(argv)
    if a.src:
        print(markdown_from_export(a.src))
        return
    if not a.run or not a.out:
        p.error("give RUN and --out, or --from FILE")
    export_summary(a.run, a.out, a.command)
    print(markdown_from_export(a.out))


if __name__ == "__main__":
    main()

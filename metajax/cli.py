"""The ``metajax`` command line.

``metajax run EXPERIMENT.py [--preset NAME] [--seeds N] [--set key=value ...] [--out DIR]
[--resume] [--wandb offline|online|disabled]``: train an experiment file (see
:mod:`metajax.pipelines.experiment`) into a run directory (default ``runs/<name>``).
``metajax sweep EXPERIMENT.py --grid key=v1,v2,... [--grid ...] [--seeds N] [--set ...] [--out
DIR] [--resume]``: a hyperparameter grid x seeds in one compiled program per group (see
:mod:`metajax.pipelines.sweep`), with a results table (IQM and 95 % CI per point) and the best
point. ``metajax eval RUN_DIR [--task key=value ...] [--episodes N]``: evaluate the latest
checkpoint, greedy and stochastic; print a table and write ``RUN_DIR/eval.json``.
``metajax render RUN_DIR [--out FILE] [--task ...] [--seed-index i]``: the trained agents in
their env (particle worlds: GIF; swimmer: hinge-angle plot; matrix games: action distribution).
``metajax plot RUN_DIR [--out FILE] [--metric NAME ...]``: learning curves per seed and
mean +- std.
``metajax plot RUN_DIR --stats [--group NAME ...] [--threshold X]``: aggregate intervals and
performance profiles of the run's evaluation (any pipeline), PNGs in the run directory.
``metajax compare RUN_DIR [RUN_DIR ...] [--per-task] [--group NAME ...] [--threshold X]``: IQM,
mean, median, optimality gap with 95 % CIs and the probability of improvement of each pair
(:mod:`metajax.train.run_stats`).
``metajax export RUN_DIR [RUN_DIR ...] --marl-eval OUT.json``: evaluation returns in
marl-eval's JSON layout.
``metajax envs``: list the registered environments and their static maxima.
``metajax rollout ENV``: roll out uniformly random joint actions in a batch of games (one per
population, vmapped, one compilation), print per-game returns and throughput, and save a GIF
(particle worlds) of the first game.

Errors a user can fix (missing files, unknown config keys or task fields, invalid configs,
an unwritable ``--out``, missing or incompatible checkpoints) print one ``error:`` line and exit
with status 2, before anything is compiled; a run that diverged (a NaN or an infinity in a
metric or in the parameters, see :func:`metajax.pipelines.runner.train`) prints one ``error:`` line
and exits with status 3, keeping its last finite checkpoint; an interrupted run exits with 130 and
leaves a directory that ``--resume`` continues. ``--resume --set total_env_steps=<larger>``
extends a finished or interrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

import envs
from envs.core import EnvError
from envs.wrappers import AutoReset, random_actions, stack_tasks
from metajax import plots, stats
from metajax.config import ConfigError, diff_lines, parse_overrides, to_dict
from metajax.core import taskspec
from metajax.pipelines import experiment as xp
from metajax.pipelines import runner
from metajax.train import distributed, evaluation, loop, run_stats
from metajax.train.checkpoint import CheckpointError

#: Exceptions that are the user's to fix: one ``error:`` line, exit status 2.
USER_ERRORS = (EnvError, ConfigError, xp.ExperimentError, CheckpointError, plots.PlotError,
               run_stats.RunError)

#: Exit status of a run stopped by a NaN or an infinity (:class:`loop.NonFiniteError`).
DIVERGED = 3


def cmd_envs(_: argparse.Namespace) -> int:
    for name in sorted(envs.REGISTRY):
        env = envs.make(name)
        print(f"{name:18s} {env!r}")
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    env = envs.make(args.env, **parse_overrides(args.env_config))
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.games + 1)
    if args.task:
        tasks = stack_tasks([taskspec.make_task(env, parse_overrides(args.task))] * args.games)
    else:
        tasks = stack_tasks([env.sample_task(k) for k in keys[1:]])
    auto = AutoReset(env)
    steps = args.steps or env.episode_length

    @jax.jit
    def rollout(key, tasks):
        k_reset, k_act = jax.random.split(key)
        state, _ = jax.vmap(auto.reset_to)(jax.random.split(k_reset, args.games), tasks)

        def body(state, k):
            acts = jax.vmap(lambda kk: random_actions(env, kk))(jax.random.split(k, args.games))
            state, ts = jax.vmap(auto.step)(state, acts)
            return state, (state, ts.reward, ts.observation.agent_mask)

        _, (states, rewards, mask) = jax.lax.scan(body, state, jax.random.split(k_act, steps))
        return states, rewards, mask

    t0 = time.perf_counter()
    states, rewards, mask = jax.block_until_ready(rollout(keys[0], tasks))
    t1 = time.perf_counter()
    jax.block_until_ready(rollout(keys[0], tasks))
    t2 = time.perf_counter()
    rewards, mask = np.asarray(rewards), np.asarray(mask)
    per_agent = rewards.sum(0) / np.maximum(mask.sum(0) / steps, 1)
    print(f"{env!r}: {args.games} games x {steps} steps, random actions")
    for g in range(args.games):
        n = int(mask[0, g].sum())
        ret = per_agent[g][mask[0, g]].mean() if n else 0.0
        print(f"  game {g}: {n} agents, mean return per agent {ret:8.3f}")
    print(f"compile {t1 - t0:.2f}s, {args.games * steps / (t2 - t1):,.0f} env-steps/s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from envs import render

        first = jax.tree.map(lambda x: x[:, 0], states)
        try:
            path = render.save_gif(env, first, out / f"{args.env}.gif")
            print(f"wrote {path}")
        except (TypeError, AttributeError, EnvError) as e:
            print(f"no GIF for {args.env}: {e}")
        (out / "returns.json").write_text(json.dumps({"returns": per_agent.tolist()}))
    return 0


# --- run ------------------------------------------------------------------------------------------


def _writable_dir(path: Path, flag: str = "--out") -> None:
    """Create ``path`` (and its parents) and make sure a file can be written in it.

    Raises:
      ConfigError: one line naming ``flag``, the path and the reason.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"{flag} {path} is not a writable directory: {reason}"
                          + (f" ({e.filename})" if e.filename and e.filename != str(path)
                             else "")) from None


def _wandb_mode(arg: str | None) -> str:
    return arg or os.environ.get("WANDB_MODE") or "offline"


def _copy_experiment(exp: xp.Experiment, out: Path, resume: bool) -> None:
    """Copy the experiment file into ``out`` (kept on ``resume``), through a rename: a killed
    run keeps it whole."""
    copy = out / xp.EXPERIMENT_COPY
    if not (resume and copy.exists()):
        tmp = copy.with_name(f".{copy.name}.tmp")
        shutil.copyfile(exp.path, tmp)
        os.replace(tmp, copy)


def _interrupted(args: argparse.Namespace, out: Path, kept: str) -> int:
    """After Ctrl-C: say what ``out`` keeps and the command that continues it; exit 130."""
    again = [a for a in args.argv if a != "--resume"]
    if "--out" not in again:
        again += ["--out", str(out)]
    print(f"\ninterrupted: {out} keeps {kept}; continue with\n"
          f"  metajax {' '.join(again)} --resume", file=sys.stderr)
    return 130


#: Pipelines ``--distributed`` runs: those whose training is :func:`loop.run_chunks`.
DISTRIBUTED_PIPELINES = ("train", "mra")


def _join(args: argparse.Namespace) -> Callable[..., None]:
    """``--distributed``: join the multi-process run (before anything touches a device); the
    ``print`` of this process (a no-op except on process 0)."""
    if not args.distributed:
        if args.coordinator or args.num_processes is not None or args.process_id is not None:
            raise ConfigError("--coordinator, --num-processes and --process-id need "
                              "--distributed")
        return print
    if not distributed.joined():  # metajax.launch joins first; a direct cli.main cannot
        raise ConfigError("--distributed must join before the environments are imported: run "
                          "it through the metajax command or python -m metajax")
    index, count = jax.process_index(), jax.process_count()
    if index == 0:
        print(f"distributed: {count} process(es), {jax.device_count()} device(s) "
              f"({jax.local_device_count()} on this one)")
    return print if index == 0 else (lambda *a, **k: None)


def _check_distributed(args: argparse.Namespace, pipeline: str) -> None:
    if args.distributed and pipeline not in DISTRIBUTED_PIPELINES:
        raise xp.ExperimentError(
            f"--distributed trains the {' and '.join(DISTRIBUTED_PIPELINES)} pipelines (one "
            f"runner program over every process); {pipeline!r} runs several programs of its "
            "own: run it without --distributed")


def cmd_run(args: argparse.Namespace) -> int:
    say = _join(args)
    exp = xp.load_experiment(args.experiment)
    _check_distributed(args, exp.pipeline)
    overrides = parse_overrides(args.set)
    if args.allow_nonfinite:
        if not hasattr(exp.config, "allow_nonfinite"):
            raise ConfigError(f"--allow-nonfinite: the {exp.pipeline!r} pipeline has no check "
                              "for non-finite values to turn off")
        overrides["allow_nonfinite"] = True
    cfg = xp.configure(exp, args.preset, overrides, args.seeds)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    if xp.has_checkpoint(out):
        if not args.resume:
            raise CheckpointError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out")
        saved, _ = xp.read_run_config(out)
        if isinstance(cfg, runner.TrainConfig):  # may grow total_env_steps, see runner.train
            diff = loop.resume_conflicts(to_dict(saved), cfg)
            if diff:
                raise CheckpointError(loop.resume_refusal(out, diff))
        else:
            diff = diff_lines(to_dict(saved), to_dict(cfg))
            if diff:
                raise CheckpointError(
                    f"{out} was trained with a different config; refusing to resume "
                    f"(differences: {'; '.join(diff)})")
    _writable_dir(out)
    if distributed.is_primary():
        _copy_experiment(exp, out, args.resume)
    say(f"{exp.path} -> {out} (pipeline {exp.pipeline}, {cfg.seeds} seed(s))")
    try:
        result = xp.get_pipeline(exp.pipeline).run(
            cfg, out, resume=args.resume, wandb_mode=_wandb_mode(args.wandb),
            progress=args.progress)
    except KeyboardInterrupt:
        return _interrupted(args, out, "its latest checkpoint")
    results = getattr(result, "results", None) or {}
    if "greedy" in results and distributed.is_primary():  # other pipelines print theirs
        _print_eval_table(results)
    say(f"run directory: {out}")
    return 0


# --- sweep ----------------------------------------------------------------------------------------


def cmd_sweep(args: argparse.Namespace) -> int:
    from metajax.pipelines import sweep

    say = _join(args)
    exp = xp.load_experiment(args.experiment)
    if exp.pipeline not in sweep.PIPELINES:
        raise xp.ExperimentError(
            f"{exp.path}: metajax sweep trains experiments of the {' and '.join(sweep.PIPELINES)}"
            f" pipelines (one runner program per group); {exp.pipeline!r} is a multi-stage "
            "pipeline it cannot batch: sweep it with one metajax run per point")
    overrides = parse_overrides(args.set)
    if args.allow_nonfinite:
        overrides["allow_nonfinite"] = True
    grid = sweep.parse_grid(args.grid)
    both = sorted(set(grid) & set(overrides))
    if both:
        raise ConfigError(f"{', '.join(both)}: both --set and --grid; keep one")
    cfg = xp.configure(exp, args.preset, overrides)
    seeds = args.seeds if args.seeds is not None else cfg.seeds
    plan = sweep.plan_sweep(cfg, grid, seeds)  # config errors: one line, before any output
    out = Path(args.out) if args.out else Path("runs") / f"{plan.base.name}_sweep"
    _writable_dir(out)
    if distributed.is_primary():
        _copy_experiment(exp, out, args.resume)
    say(f"{exp.path} -> {out} (sweep of pipeline {exp.pipeline})")
    try:
        result = sweep.run_sweep(cfg, grid, seeds, out, resume=args.resume,
                                 wandb_mode=_wandb_mode(args.wandb), progress=args.progress,
                                 pipeline=exp.pipeline)
    except KeyboardInterrupt:
        return _interrupted(args, out, "every group's latest checkpoint")
    if result.summary and distributed.is_primary():
        print(sweep.results_table(result.summary))
        best = result.summary["best"]
        if best is not None:
            stat = result.summary["stat"]
            fig = stats.fmt(best["iqm"]) if best["iqm"] else f"{best['mean']:.3f}"
            ties = result.summary["best_ties"]
            tied = f"; tied with {len(ties)} other point(s)" if ties else ""
            print(f"best by {stat}: {sweep.point_label(best['values'])} ({fig}{tied})")
    say(f"sweep directory: {out}")
    return 0


# --- eval -----------------------------------------------------------------------------------------


def _spec_text(spec: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in spec.items()) or "(default task)"


def _task_specs(groups: list[list[str]] | None) -> tuple[dict, ...] | None:
    if groups is None:
        return None
    return tuple(parse_overrides(g) for g in groups)


def _print_eval_table(results: dict) -> None:
    specs = results.get("tasks", [])
    width = max([len(_spec_text(s)) for s in specs] + [4])
    modes = [m for m in ("greedy", "stochastic") if m in results]
    print(f"{'task':<{width}}  " + "  ".join(f"{m:>20}" for m in modes))
    for i, spec in enumerate(specs):
        cells = []
        for m in modes:
            e = results[m][i]
            cells.append(f"{e['mean']:.3f} ± {e['std']:.3f}".rjust(20))
        line = f"{_spec_text(spec):<{width}}  " + "  ".join(cells)
        teams = sorted(k for k in results[modes[0]][i] if k.startswith("team"))
        if teams:
            line += "   " + " ".join(
                f"{t}: " + "/".join(f"{results[m][i][t]:.3f}" for m in modes) for t in teams)
        print(line)


def cmd_eval(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None:
        _writable_dir(out.parent)
    run = xp.load_run(args.run_dir, args.step)
    specs = _task_specs(args.task) or run.eval_specs
    tasks = taskspec.build_tasks(run.env, specs)  # unknown task fields: one error line
    evaluator = evaluation.make_evaluator(run.learner, run.env, args.episodes)
    params = run.params()
    key = jax.random.PRNGKey(args.seed)
    results: dict = {
        "checkpoint": run.step,
        "env_steps": int(np.asarray(run.state.env_steps)[0]),
        "seeds": run.config.seeds,
        "episodes": args.episodes,
        "tasks": list(specs),
    }
    for greedy in (True, False):
        r = np.asarray(evaluator(params, tasks, key, greedy))
        results["greedy" if greedy else "stochastic"] = evaluation.summarize_returns(
            r, tasks, run.env)
    evaluation.add_stats(results, run.env, tasks, run.config.name)
    print(f"{run.run_dir}: checkpoint {run.step}, {results['env_steps']:,} env steps per seed, "
          f"{run.config.seeds} seed(s), {args.episodes} episodes per task; "
          "mean return per agent, mean ± std over seeds")
    _print_eval_table(results)
    out = out or run.run_dir / "eval.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


# --- render ---------------------------------------------------------------------------------------


def _png_path(out: Path) -> Path:
    return out if out.suffix.lower() == ".png" else out.with_suffix(".png")


def _render_particle(run: xp.TrainedRun, task: Any, args: argparse.Namespace, out: Path) -> Path:
    from envs import render

    ep = xp.play(run, task, jax.random.PRNGKey(args.seed), args.seed_index,
                 not args.stochastic, args.steps)
    ret = np.asarray(ep.rewards).sum(0)[np.asarray(ep.agent_mask)].mean()
    print(f"episode return (mean per agent): {ret:.3f}")
    return Path(render.save_gif(run.env, ep.states, str(out), fps=args.fps))


def _render_swimmer(run: xp.TrainedRun, task: Any, args: argparse.Namespace, out: Path) -> Path:
    from envs import render

    ep = xp.play(run, task, jax.random.PRNGKey(args.seed), args.seed_index,
                 not args.stochastic, args.steps)
    angles = np.asarray(run.env.hinge_angles(ep.states))
    ret = float(np.asarray(ep.rewards)[:, 0].sum())
    print(f"episode return: {ret:.3f} over {len(angles) - 1} steps")
    dt = getattr(getattr(run.env, "physics", None), "dt", None)
    out = _png_path(out)
    render.plot_swimmer_angles(angles, float(task.alpha), float(task.eps), str(out),
                               dt=None if dt is None else float(dt))
    return out


def _render_actions(run: xp.TrainedRun, task: Any, args: argparse.Namespace, out: Path) -> Path:
    """Games without a picture (matrix games): greedy joint action and the distribution of the
    stochastic policy's actions over ``--episodes`` episodes."""
    env = run.env
    key = jax.random.PRNGKey(args.seed)
    greedy = xp.play(run, task, key, args.seed_index, True, args.steps)
    many = xp.play(run, task, key, args.seed_index, False, args.steps, episodes=args.episodes)
    mask = np.asarray(greedy.agent_mask)
    g_act = np.asarray(greedy.actions)[:, mask]  # [T, n]
    ret = float(np.asarray(greedy.rewards)[:, mask].sum(0).mean())
    print(f"greedy joint action{'s per step' if len(g_act) > 1 else ''}: "
          f"{g_act.tolist() if len(g_act) > 1 else g_act[0].tolist()}, return {ret:.3f}")
    best = getattr(env, "optimal_value", None)
    if callable(best):
        print(f"optimal value {float(best(task)):.3f}")
    acts = np.asarray(many.actions)[..., mask].reshape(-1, int(mask.sum()))  # [E*T, n]
    n_actions = int(np.asarray(env.action_spec.num_values).reshape(-1)[0])
    counts = np.stack([np.bincount(acts[:, i], minlength=n_actions) for i in range(acts.shape[1])])
    out = _png_path(out)
    fig = plots.action_distribution(
        counts, g_act[0], title=f"{run.config.name}: {_spec_text(args.task_spec)}, "
        f"{args.episodes} stochastic episodes")
    fig.savefig(out, dpi=100)
    return out


def _is_particle(env: Any) -> bool:
    return callable(getattr(env, "bodies", None))


def _is_swimmer(env: Any) -> bool:
    return callable(getattr(env, "hinge_angles", None))


def _is_discrete(env: Any) -> bool:
    return hasattr(env.action_spec, "num_values")


#: Renderers tried in order: (what, applies to env?, render(run, task, args, out) -> path).
RENDERERS: tuple[tuple[str, Callable[[Any], bool], Callable[..., Path]], ...] = (
    ("particle world", _is_particle, _render_particle),
    ("swimmer", _is_swimmer, _render_swimmer),
    ("discrete-action game", _is_discrete, _render_actions),
)


def cmd_render(args: argparse.Namespace) -> int:
    run = xp.load_run(args.run_dir, args.step)
    args.task_spec = parse_overrides(args.task) if args.task is not None else run.eval_specs[0]
    task = taskspec.make_task(run.env, args.task_spec)
    run.params(args.seed_index)  # validates the seed index before compiling anything
    out = Path(args.out) if args.out else run.run_dir / "render.gif"
    out.parent.mkdir(parents=True, exist_ok=True)
    for what, applies, render_fn in RENDERERS:
        if applies(run.env):
            path = render_fn(run, task, args, out)
            print(f"wrote {path} ({what}, seed index {args.seed_index}, "
                  f"{_spec_text(args.task_spec)})")
            return 0
    raise xp.ExperimentError(f"no renderer for environment {run.config.env!r}")


# --- plot -----------------------------------------------------------------------------------------


def cmd_plot(args: argparse.Namespace) -> int:
    if args.stats:
        return _plot_stats(args)
    if args.group or args.threshold is not None:
        raise ConfigError("--group and --threshold go with --stats")
    path = plots.plot_run(args.run_dir, args.out, args.metric or ["episode_return"], args.x)
    print(f"wrote {path}")
    return 0


def _plot_stats(args: argparse.Namespace) -> int:
    """``plot --stats``: aggregate intervals and performance profile of each score group."""
    run = run_stats.load_run(args.run_dir)
    out = Path(args.out) if args.out else run.run_dir
    _writable_dir(out)
    summaries = {}
    for g in run_stats.select_groups(run.groups, args.group):
        try:
            summaries[g.name] = run_stats.group_stats(g, args.threshold)
        except ValueError as e:
            print(f"{g.name}: skipped: {e}")
    if not summaries:
        raise run_stats.RunError(f"{run.run_dir}: no score group to plot")
    for path in plots.plot_stats(summaries, out, run.name):
        print(f"wrote {path}")
    return 0


# --- compare and export ---------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    runs = [run_stats.load_run(d) for d in args.runs]
    groups, notes = run_stats.merge_runs(runs)
    groups = run_stats.select_groups(groups, args.group)
    if not groups:
        raise run_stats.RunError("no score group common to these runs"
                                 + (f" ({'; '.join(notes)})" if notes else ""))
    names = ", ".join(f"{r.run_dir} ({r.pipeline})" for r in runs)
    print(f"{names}: {len(groups)} score group(s)")
    print()
    print(run_stats.compare_table(groups, args.threshold, args.per_task))
    for n in notes:
        print(f"left out: {n}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    runs = [run_stats.load_run(d) for d in args.runs]
    out = Path(args.marl_eval)
    _writable_dir(out.parent, "--marl-eval")
    data = run_stats.marl_eval_export(runs)
    out.write_text(json.dumps(data, indent=1))
    algos = sorted({a for env in data.values() for task in env.values() for a in task})
    tasks = sum(len(env) for env in data.values())
    print(f"wrote {out}: marl-eval layout, {len(data)} env(s), {tasks} task(s), "
          f"algorithms {', '.join(algos)}")
    return 0


def _training_options(s: argparse.ArgumentParser, seeds: str, sets: str, out: str,
                      resume: str) -> None:
    """The options ``run`` and ``sweep`` share (their help texts differ where given)."""
    s.add_argument("--preset", action="append", default=[], metavar="NAME",
                   help="apply the file's PRESETS[NAME] (e.g. paper); repeatable, in order")
    s.add_argument("--seeds", type=int, default=None, help=seeds)
    s.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help=sets)
    s.add_argument("--out", default="", help=out)
    s.add_argument("--resume", action="store_true", help=resume)
    s.add_argument("--wandb", choices=("offline", "online", "disabled"), default=None,
                   help="wandb mode (default: $WANDB_MODE, else offline)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal, else progress lines)")
    s.add_argument("--allow-nonfinite", action="store_true",
                   help="keep training after a NaN or an infinity in a metric or in the "
                   "parameters (same as --set allow_nonfinite=true; default: stop with an "
                   f"error, exit status {DIVERGED}, keeping the last finite checkpoint)")
    d = s.add_argument_group("multi-process runs (README: Scaling out)")
    d.add_argument("--distributed", action="store_true",
                   help="one run over every device of several processes (hosts): "
                   "jax.distributed.initialize from --coordinator/--num-processes/--process-id, "
                   f"else $JAX_COORDINATOR_ADDRESS, ${distributed.NUM_PROCESSES_ENV}, "
                   f"${distributed.PROCESS_ID_ENV}, else SLURM/MPI detection; --out must be on "
                   "a filesystem every process sees")
    d.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordinator")
    d.add_argument("--num-processes", type=int, default=None, metavar="N")
    d.add_argument("--process-id", type=int, default=None, metavar="I")


def build_parser() -> argparse.ArgumentParser:
    """The ``metajax`` argument parser: one sub-command per ``_add_<command>``."""
    p = argparse.ArgumentParser(prog="metajax", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    _add_envs(sub)
    _add_rollout(sub)
    _add_run(sub)
    _add_sweep(sub)
    _add_eval(sub)
    _add_render(sub)
    _add_plot(sub)
    _add_compare(sub)
    _add_export(sub)
    return p


def _add_envs(sub: Any) -> None:
    s = sub.add_parser("envs", help="list environments")
    s.set_defaults(fn=cmd_envs)


def _add_rollout(sub: Any) -> None:
    s = sub.add_parser("rollout", help="random-action rollout of an environment")
    s.add_argument("env", help=f"one of: {', '.join(sorted(envs.REGISTRY))}")
    s.add_argument("--games", type=int, default=4, help="games rolled out in parallel")
    s.add_argument("--steps", type=int, default=0, help="steps (default: one episode)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--env-config", nargs="*", default=[], metavar="KEY=VALUE",
                   help="static env config, e.g. max_agents=24")
    s.add_argument("--task", nargs="*", default=[], metavar="KEY=VALUE",
                   help="play this task in every game, e.g. n_agents=6")
    s.add_argument("--out", default="", help="directory for the GIF and returns.json")
    s.set_defaults(fn=cmd_rollout)


def _add_run(sub: Any) -> None:
    s = sub.add_parser("run", help="train an experiment file",
                       description="Train EXPERIMENT.py (a file defining CONFIG, and optionally "
                       "PRESETS and PIPELINE) into a run directory.")
    s.add_argument("experiment", help="experiment file, e.g. experiments/maddpg_treasure.py")
    _training_options(s, seeds="seeds trained in parallel",
                      sets="override config fields, e.g. total_env_steps=20000 "
                      "maddpg.actor_lr=1e-3",
                      out="run directory (default runs/<config name>)",
                      resume="continue the run in --out from its latest checkpoint")
    s.set_defaults(fn=cmd_run)


def _add_sweep(sub: Any) -> None:
    s = sub.add_parser("sweep", help="train a hyperparameter grid in one compiled program",
                       description="Train every point of a grid over EXPERIMENT.py (a train or "
                       "mra pipeline) x --seeds seeds: hyperparameters read as numbers "
                       "(learning rates, gamma, tau, noise, temperatures, loss coefficients) "
                       "are traced and vmapped, one compiled program; other keys (shapes, "
                       "control flow) split the grid into groups, listed before training.")
    s.add_argument("experiment", help="experiment file, e.g. experiments/maddpg_climb.py")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a swept config key and its values, e.g. maddpg.actor_lr=1e-3,1e-2; "
                   "repeat for a grid (their product)")
    _training_options(s, seeds="seeds per grid point (default: the config's)",
                      sets="override config fields of every point",
                      out="sweep directory (default runs/<name>_sweep)",
                      resume="continue the sweep in --out from every group's latest checkpoint")
    s.set_defaults(fn=cmd_sweep)


def _add_eval(sub: Any) -> None:
    s = sub.add_parser("eval", help="evaluate a trained run's latest checkpoint")
    s.add_argument("run_dir", help="run directory (from metajax run)")
    s.add_argument("--task", nargs="*", action="append", default=None, metavar="KEY=VALUE",
                   help="a make_task spec, e.g. --task n_agents=3; repeat for several tasks "
                   "(default: the run's eval tasks)")
    s.add_argument("--episodes", type=int, default=10, help="episodes per task and seed")
    s.add_argument("--seed", type=int, default=0, help="PRNG seed of the evaluation")
    s.add_argument("--step", type=int, default=None, help="checkpoint (default: the latest)")
    s.add_argument("--out", default="", help="results file (default RUN_DIR/eval.json)")
    s.set_defaults(fn=cmd_eval)


def _add_render(sub: Any) -> None:
    s = sub.add_parser("render", help="trained agents in their env (GIF or PNG)")
    s.add_argument("run_dir", help="run directory (from metajax run)")
    s.add_argument("--out", default="",
                   help="output file (default RUN_DIR/render.gif; a .png for non-particle envs)")
    s.add_argument("--task", nargs="*", default=None, metavar="KEY=VALUE",
                   help="make_task spec (default: the run's first eval task)")
    s.add_argument("--seed-index", type=int, default=0, help="which trained seed")
    s.add_argument("--steps", type=int, default=None, help="steps (default: one episode)")
    s.add_argument("--stochastic", action="store_true",
                   help="sample actions (default: greedy)")
    s.add_argument("--episodes", type=int, default=200,
                   help="stochastic episodes for the action distribution (matrix games)")
    s.add_argument("--seed", type=int, default=0, help="PRNG seed of the episode")
    s.add_argument("--fps", type=int, default=5)
    s.add_argument("--step", type=int, default=None, help="checkpoint (default: the latest)")
    s.set_defaults(fn=cmd_render)


def _add_plot(sub: Any) -> None:
    s = sub.add_parser("plot", help="learning curves of a run (PNG)")
    s.add_argument("run_dir", help="run directory (from metajax run)")
    s.add_argument("--out", default="", help="PNG file (default RUN_DIR/<metric>.png)")
    s.add_argument("--metric", action="append", default=None, metavar="NAME",
                   help="metric of metrics.jsonl (default episode_return); repeat for panels")
    s.add_argument("--x", default="env_steps", help="x axis: env_steps, grad_steps or chunk")
    s.add_argument("--stats", action="store_true",
                   help="instead of learning curves: the aggregate intervals (IQM, mean, "
                   "median, optimality gap; 95%% bootstrap CIs) and performance profile of each "
                   "score group, RUN_DIR/stats_<group>.png and profile_<group>.png (--out: "
                   "another directory); any pipeline's run")
    _stats_args(s)
    s.set_defaults(fn=cmd_plot)


def _add_compare(sub: Any) -> None:
    s = sub.add_parser("compare", help="statistics table of runs' evaluations",
                       description="IQM, mean, median and optimality gap with 95 % stratified "
                       "bootstrap CIs over seeds, and the probability of improvement of each "
                       "pair, per score group. One run with several methods (mesa, "
                       "mra_compare) compares its methods; several runs compare across runs.")
    s.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    s.add_argument("--per-task", action="store_true", help="a row per task too")
    _stats_args(s)
    s.set_defaults(fn=cmd_compare)


def _add_export(sub: Any) -> None:
    s = sub.add_parser("export", help="write runs' evaluation returns for other tools")
    s.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    s.add_argument("--marl-eval", required=True, metavar="OUT.json",
                   help="write marl-eval's raw-data JSON ({env: {task: {algorithm: "
                   "{seed_i: {step_0, absolute_metrics}}}}})")
    s.set_defaults(fn=cmd_export)


def _stats_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--group", action="append", default=None, metavar="NAME",
                   help="score group (e.g. stochastic, greedy_normalized); repeatable "
                   "(default: all)")
    s.add_argument("--threshold", type=float, default=None,
                   help="optimality-gap threshold for every group (default: 1 for normalised "
                   "groups, no gap for raw returns)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.fn(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except loop.NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        return DIVERGED


if __name__ == "__main__":
    raise SystemExit(main())


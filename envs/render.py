"""Matplotlib pictures of particle worlds (frames, PNGs, GIFs) and of swimmer hinge angles.

Works for any :class:`envs.particle.base.ParticleEnv` (or a wrapper that forwards its methods),
keyed only on what every particle world has:

* ``state.pos`` / ``state.alive`` / ``state.obj_pos`` / ``state.step`` / ``state.task``;
* ``env.agent_mask(task)`` (the game's slots), ``env.bodies(state).size`` (agent radii) and
  ``env.observe(state).team`` (team ids, used for colours);
* objects: ``env.object_mask(task) -> [M] bool`` and ``env.object_sizes(state) -> [M]`` (part of
  the :class:`~envs.particle.base.ParticleEnv` contract).

Agents are drawn to scale as discs coloured by team; agents removed mid-episode (``alive`` False,
e.g. a caught Pac-Man) as hollow dashed circles; padding is not drawn. Objects are grey discs
to scale. Optional attention weights ``[A, A]`` (row ``i`` = how much agent ``i`` attends to
``j``) are drawn as edges whose width and opacity grow with the weight; weights below
``threshold`` (0.1, as in MRA App. E.6 Fig. 11) are not shown.

Matplotlib is used through :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``: no global figure registry, nothing to close, safe in headless runs.

Artists carry a ``gid`` (``"agent"``, ``"agent-removed"``, ``"object"``, ``"attention"``,
``"band"``, ``"in-band"``) so that tests and callers can find them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from envs.wrappers import random_actions

Array = jax.Array

#: Colour of each team id (cycled for more teams).
TEAM_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown")
#: Colour of objects (landmarks, treasures, food, resources).
OBJECT_COLOR = "0.55"
class Scene(NamedTuple):
    """What is drawn of one state (arrays; a leading time axis when batched).

    ``pos [A, 2]``, ``size [A]``, ``team [A]`` int, ``in_game [A]`` bool, ``alive [A]`` bool,
    ``obj_pos [M, 2]``, ``obj_size [M]``, ``obj_mask [M]`` bool, ``step []`` int.
    """

    pos: Any
    size: Any
    team: Any
    in_game: Any
    alive: Any
    obj_pos: Any
    obj_size: Any
    obj_mask: Any
    step: Any


def scene(env: Any, state: Any) -> Scene:
    """The drawable content of one state (pure jax; jit/vmap it over a stack of states)."""
    return Scene(
        pos=state.pos,
        size=jnp.asarray(env.bodies(state).size, jnp.float32),
        team=env.observe(state).team,
        in_game=env.agent_mask(state.task),
        alive=state.alive,
        obj_pos=state.obj_pos,
        obj_size=jnp.asarray(env.object_sizes(state), jnp.float32),
        obj_mask=jnp.asarray(env.object_mask(state.task), bool),
        step=state.step,
    )


# One compiled program per (env, state structure): cheaper than dispatching ops one by one.
_scene_jit = jax.jit(scene, static_argnums=0)


def _auto_lim(sc: Scene) -> float:
    """Half-width of a square view holding every drawn entity (at least ``[-1, 1]^2``)."""
    agents = np.abs(sc.pos) + sc.size[..., None]
    objects = np.abs(sc.obj_pos) + sc.obj_size[..., None]
    ext = max(
        np.max(np.where(sc.in_game[..., None], agents, 0.0), initial=0.0),
        np.max(np.where(sc.obj_mask[..., None], objects, 0.0), initial=0.0),
    )
    return 1.05 * max(1.0, float(ext))


def draw_scene(
    sc: Scene,
    ax: Axes,
    attention: Any = None,
    focus: int | None = None,
    title: str | None = None,
    lim: float | None = None,
    team_colors: Sequence[str] = TEAM_COLORS,
    threshold: float = 0.1,
) -> None:
    """Draw one :class:`Scene` (numpy arrays, no time axis) into ``ax``.

    See :func:`render_frame` for the arguments.
    """
    lim = _auto_lim(sc) if lim is None else float(lim)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t = {int(sc.step)}" if title is None else title, fontsize=9)

    for m in np.flatnonzero(sc.obj_mask):
        ax.add_patch(
            Circle(
                tuple(sc.obj_pos[m]),
                float(sc.obj_size[m]),
                facecolor=OBJECT_COLOR,
                edgecolor="none",
                alpha=0.7,
                zorder=1,
                gid="object",
            )
        )

    shown = np.asarray(sc.in_game, bool)
    if attention is not None:
        w = np.asarray(attention, np.float64)
        a = shown.shape[0]
        if w.shape != (a, a):
            raise ValueError(f"attention must have shape {(a, a)}, got {w.shape}")
        rows = np.zeros(a, bool)
        if focus is None:
            rows[:] = True
        else:
            rows[int(focus)] = True
        live = shown & np.asarray(sc.alive, bool)
        pairs = rows[:, None] & live[:, None] & live[None, :] & ~np.eye(a, dtype=bool)
        pairs &= w >= threshold
        i, j = np.nonzero(pairs)
        if i.size:
            wij = np.clip(w[i, j], 0.0, 1.0)
            segments = np.stack([sc.pos[i], sc.pos[j]], axis=1)
            colors = np.array([to_rgba("black", 0.25 + 0.75 * x) for x in wij])
            ax.add_collection(
                LineCollection(
                    segments, colors=colors, linewidths=0.5 + 3.0 * wij, zorder=2, gid="attention"
                )
            )

    for k in np.flatnonzero(shown):
        color = team_colors[int(sc.team[k]) % len(team_colors)]
        edge = "black" if focus is not None and k == int(focus) else color
        if sc.alive[k]:
            patch = Circle(
                tuple(sc.pos[k]),
                float(sc.size[k]),
                facecolor=color,
                edgecolor=edge,
                linewidth=1.5,
                zorder=3,
                gid="agent",
            )
        else:
            patch = Circle(
                tuple(sc.pos[k]),
                float(sc.size[k]),
                facecolor="none",
                edgecolor=color,
                linestyle="--",
                linewidth=1.0,
                zorder=3,
                gid="agent-removed",
            )
        ax.add_patch(patch)


def _new_figure(size: float = 4.0) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    return fig, ax


def render_frame(
    env: Any,
    state: Any,
    ax: Axes | None = None,
    attention: Any = None,
    focus: int | None = None,
    title: str | None = None,
    lim: float | None = None,
    team_colors: Sequence[str] = TEAM_COLORS,
    threshold: float = 0.1,
) -> Figure:
    """Draw one particle-world state; returns the figure (a new one unless ``ax`` is given).

    Args:
      env: a particle env (see module docstring for what it must provide).
      state: one (unbatched) state.
      ax: axes to draw into; default a new 4x4 inch figure.
      attention: optional ``[A, A]`` weights, row ``i`` = agent ``i``'s attention over agents;
        edges below ``threshold`` and to padded/removed agents are not drawn.
      focus: if given, draw only that agent's attention row and outline it in black.
      title: axes title (default ``"t = <step>"``).
      lim: half-width of the square view (default: fit every entity, at least 1).
      team_colors: colour of each team id.
    """
    sc = jax.device_get(_scene_jit(env, state))
    if ax is None:
        fig, ax = _new_figure()
    else:
        fig = ax.figure
    draw_scene(sc, ax, attention, focus, title, lim, team_colors, threshold)
    return fig


def save_png(env: Any, state: Any, path: str, dpi: int = 100, **kwargs: Any) -> str:
    """Render ``state`` with :func:`render_frame` (``kwargs`` forwarded) to a PNG; returns path."""
    fig = render_frame(env, state, **kwargs)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def rollout_states(
    env: Any,
    key: Array,
    task: Any,
    policy_fn: Callable[[Array, Any], Array] | None = None,
    steps: int | None = None,
) -> Any:
    """Play ``steps`` steps of ``task`` under jit (``lax.scan``); return the ``steps + 1`` states.

    Args:
      env: a particle env (not auto-reset: the world keeps running after the episode ends).
      key: PRNG key (reset and policy noise).
      task: the game to play (``env.make_task(...)``).
      policy_fn: ``(key, observation) -> joint action`` (jittable); default uniformly random.
      steps: number of steps (default ``env.episode_length``).

    Returns:
      the states stacked along a leading axis ``[steps + 1]``, the reset state first.
    """
    steps = env.episode_length if steps is None else int(steps)
    if policy_fn is None:
        policy_fn = lambda k, obs: random_actions(env, k)  # noqa: E731

    def run(key: Array) -> Any:
        k_reset, k_loop = jax.random.split(key)
        state, ts = env.reset_to(k_reset, task)

        def body(carry, k):
            state, obs = carry
            state, ts = env.step(state, policy_fn(k, obs))
            return (state, ts.observation), state

        _, states = jax.lax.scan(body, (state, ts.observation), jax.random.split(k_loop, steps))
        return jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s]), state, states)

    return jax.jit(run)(key)


def save_gif(
    env: Any,
    states: Any,
    path: str,
    fps: int = 5,
    dpi: int = 80,
    attention: Any = None,
    lim: float | None = None,
    **kwargs: Any,
) -> str:
    """Write a GIF with one frame per state of a stacked ``[T]`` state (e.g. from
    :func:`rollout_states`); returns ``path``.

    Args:
      attention: optional ``[T, A, A]`` weights, one matrix per frame.
      lim: half-width of the view (default: fit every entity of every frame, so the view is
        fixed across frames).
      kwargs: forwarded to :func:`draw_scene` (``focus``, ``team_colors``, ``threshold``).
    """
    scenes = jax.device_get(jax.jit(jax.vmap(functools.partial(scene, env)))(states))
    n = scenes.pos.shape[0]
    if attention is not None and np.shape(attention)[0] != n:
        raise ValueError(f"attention has {np.shape(attention)[0]} frames, states have {n}")
    lim = _auto_lim(scenes) if lim is None else lim
    fig, ax = _new_figure()
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, path, dpi):
        for t in range(n):
            ax.clear()
            sc = jax.tree.map(lambda x, t=t: x[t], scenes)
            att = None if attention is None else np.asarray(attention)[t]
            draw_scene(sc, ax, attention=att, lim=lim, **kwargs)
            writer.grab_frame()
    return path


def plot_swimmer_angles(
    angles: Any,
    target: float,
    eps: float,
    path: str | None = None,
    dt: float | None = None,
    degrees: bool = True,
) -> Figure:
    """Plot the two hinge angles of a swimmer episode against the target band.

    Args:
      angles: ``[T, 2]`` hinge angles in radians (agent 0's hinge, agent 1's hinge).
      target: target angle alpha (radians).
      eps: half-width of the band (radians); a step with both angles inside it is shaded
        (the climb game's reward-1 region).
      path: if given, the figure is saved there (format from the extension).
      dt: seconds per step for the x axis (default: steps).
      degrees: plot in degrees (inputs are always radians).

    Returns:
      the figure.
    """
    a = np.asarray(angles, np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"angles must have shape [T, 2], got {a.shape}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    conv = np.degrees if degrees else (lambda x: x)
    y, lo, hi, mid = conv(a), conv(target - eps), conv(target + eps), conv(target)
    x = np.arange(a.shape[0]) * (1.0 if dt is None else float(dt))

    fig = Figure(figsize=(6.0, 3.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.axhspan(lo, hi, color="tab:green", alpha=0.15, label="target ± eps", gid="band")
    ax.axhline(mid, color="tab:green", linestyle="--", linewidth=1.0)
    both = np.all(np.abs(a - target) <= eps, axis=1)
    if both.any():
        ax.fill_between(
            x,
            0,
            1,
            where=both,
            step="mid",
            color="tab:green",
            alpha=0.25,
            transform=ax.get_xaxis_transform(),
            label="both in band",
            gid="in-band",
        )
    ax.plot(x, y[:, 0], color="tab:blue", label="hinge 0 (agent 0)")
    ax.plot(x, y[:, 1], color="tab:red", label="hinge 1 (agent 1)")
    ax.set_xlabel("step" if dt is None else "time (s)")
    ax.set_ylabel("angle (deg)" if degrees else "angle (rad)")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig

"""Tests of the particle-world renderer (envs/render.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from envs import render
from envs.particle.pacman import PacMan
from envs.particle.treasure import Treasure

STEPS = 3


def _at(states, t):
    return jax.tree.map(lambda x: x[t], states)


@pytest.fixture(scope="module")
def worlds():
    """Per env name: (env, task, stacked states of a short random rollout)."""
    treasure = Treasure(max_agents=4, max_objects=3)
    pacman = PacMan(max_pacman=3, max_ghosts=2, max_objects=3)
    out = {}
    for name, env, task in (
        ("treasure", treasure, treasure.make_task(3, 2)),
        ("pacman", pacman, pacman.make_task(2, 1, 2)),
    ):
        states = render.rollout_states(env, jax.random.key(0), task, steps=STEPS)
        out[name] = (env, task, states)
    return out


def _patches(fig, gid):
    return [p for p in fig.axes[0].patches if p.get_gid() == gid]


def test_rollout_states(worlds):
    env, task, states = worlds["pacman"]
    assert states.pos.shape == (STEPS + 1, env.max_agents, 2)
    np.testing.assert_array_equal(states.step, np.arange(STEPS + 1))
    np.testing.assert_array_equal(states.alive[0], env.agent_mask(task))  # the reset state
    np.testing.assert_array_equal(states.vel[0], np.zeros((env.max_agents, 2)))
    assert np.any(np.asarray(states.pos[1:]) != np.asarray(states.pos[:1]))  # it moved


@pytest.mark.parametrize("name", ["treasure", "pacman"])
def test_save_png(worlds, name, tmp_path):
    env, _, states = worlds[name]
    path = render.save_png(env, _at(states, STEPS), str(tmp_path / f"{name}.png"))
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
        pixels = np.asarray(img.convert("RGB"))
    # Something besides white background and black frame/title was drawn (team colours).
    colourful = np.ptp(pixels.astype(int), axis=-1) > 60
    assert colourful.sum() > 50


@pytest.mark.parametrize("name", ["treasure", "pacman"])
def test_save_gif_frames(worlds, name, tmp_path):
    env, _, states = worlds[name]
    path = render.save_gif(env, states, str(tmp_path / f"{name}.gif"), fps=4)
    with Image.open(path) as img:
        assert img.format == "GIF"
        assert img.n_frames == STEPS + 1


def test_scene_pacman_removed_and_padding(worlds):
    env, task, states = worlds["pacman"]
    state = _at(states, 0)
    state = state.replace(alive=state.alive.at[0].set(False))  # P0 caught
    fig = render.render_frame(env, state)
    live = _patches(fig, "agent")
    removed = _patches(fig, "agent-removed")
    food = _patches(fig, "object")
    assert len(live) == 2 and len(removed) == 1  # P1 and the ghost; padding not drawn
    assert removed[0].get_facecolor()[3] == 0.0  # hollow
    np.testing.assert_allclose(removed[0].center, state.pos[0])
    assert sorted(p.radius for p in live) == pytest.approx([env.pacman_size, env.ghost_size])
    assert len(food) == 2 and all(p.radius == pytest.approx(env.food_size) for p in food)
    colours = {p.get_facecolor() for p in live}
    assert len(colours) == 2  # one per team


def test_scene_treasure_objects(worlds):
    env, task, states = worlds["treasure"]
    fig = render.render_frame(env, _at(states, 1))
    assert len(_patches(fig, "agent")) == 3
    treasures = _patches(fig, "object")
    assert len(treasures) == 2  # treasure_mask, not all 3 slots
    assert all(p.radius == pytest.approx(env.treasure_size) for p in treasures)


def test_attention_edges(worlds):
    env, _, states = worlds["pacman"]
    state = _at(states, 0)
    a = env.max_agents  # slots P0 P1 P2(pad) G3 G4(pad)
    w = np.zeros((a, a))
    w[0, 1] = 0.7  # drawn
    w[0, 3] = 0.05  # below threshold
    w[1, 3] = 0.5  # drawn unless focus=0
    w[3, 2] = 0.9  # to padding: never drawn
    w[3, 0] = 0.4  # drawn
    fig = render.render_frame(env, state, attention=w)
    (edges,) = [c for c in fig.axes[0].collections if c.get_gid() == "attention"]
    assert len(edges.get_segments()) == 3
    fig = render.render_frame(env, state, attention=w, focus=0)
    (edges,) = [c for c in fig.axes[0].collections if c.get_gid() == "attention"]
    (seg,) = edges.get_segments()
    np.testing.assert_allclose(seg, np.asarray(state.pos)[[0, 1]])
    with pytest.raises(ValueError):
        render.render_frame(env, state, attention=np.zeros((a, a - 1)))


def test_gif_with_attention(worlds, tmp_path):
    env, _, states = worlds["treasure"]
    att = np.random.default_rng(0).dirichlet(np.ones(4), size=(STEPS + 1, 4))  # [T, A, A]
    path = render.save_gif(env, states, str(tmp_path / "att.gif"), attention=att, focus=0)
    with Image.open(path) as img:
        assert img.n_frames == STEPS + 1
    with pytest.raises(ValueError):
        render.save_gif(env, states, str(tmp_path / "bad.gif"), attention=att[:2])


def test_plot_swimmer_angles(tmp_path):
    t = np.arange(40)
    angles = np.stack([0.3 * np.sin(t / 4), 0.3 * np.sin(t / 4 + 0.2)], axis=1)
    path = tmp_path / "swim.png"
    fig = render.plot_swimmer_angles(angles, target=0.2, eps=0.05, path=str(path))
    assert path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
    ax = fig.axes[0]
    (band,) = [p for p in ax.patches if p.get_gid() == "band"]
    ylo, yhi = band.get_path().get_extents(band.get_patch_transform()).intervaly
    np.testing.assert_allclose([ylo, yhi], np.degrees([0.15, 0.25]), rtol=1e-6)
    assert [c for c in ax.collections if c.get_gid() == "in-band"]
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("hinge")]
    np.testing.assert_allclose(lines[0].get_ydata(), np.degrees(angles[:, 0]))
    # Never in the band: no shading.
    fig = render.plot_swimmer_angles(np.zeros((5, 2)), target=0.4, eps=0.1)
    assert not [c for c in fig.axes[0].collections if c.get_gid() == "in-band"]
    with pytest.raises(ValueError):
        render.plot_swimmer_angles(jnp.zeros((5, 3)), target=0.0, eps=0.1)

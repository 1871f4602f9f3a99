"""QMIX and VDN as learners of the runner, and the recurrent unroll of a stored window."""

from __future__ import annotations

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from metajax.algos import qmix
from metajax.core.ops import take, tile
from metajax.core.taskspec import build_tasks
from metajax.pipelines.runner import TrainConfig, train

SMALL = qmix.QMixConfig(num_envs=16, hidden=16, batch_windows=32, buffer_windows=500,
                        eps_anneal_steps=1500, lr=3e-3, target_every=10)


# VDN is the same learner with the sum mixer (qmix.vdn_mix, unit-tested in
# test_ppo_qmix_losses.py); its learning run is a slow check
@pytest.mark.parametrize("algo", ["qmix", pytest.param("vdn", marks=pytest.mark.slow)])
def test_learns_the_safe_equilibrium_of_the_climb_game(algo, tmp_path):
    """Both players on a safe action pay 0.5 each; uniformly random play 0.34 (the paper's
    Table 2 has QMIX at 0.50 on the climb games)."""
    cfg = TrainConfig(name=algo, env="climb", env_config=dict(max_agents=2, num_actions=4),
                      tasks=({"k": 2, "u": 1},), algo=algo, qmix=SMALL,
                      total_env_steps=16 * 125, chunk_updates=25, seeds=2, eval_episodes=50)
    r = train(cfg, tmp_path / algo, wandb_mode="disabled", progress=False, log=lambda s: None)
    res = json.loads((tmp_path / algo / "results.json").read_text())
    assert np.asarray(res["greedy"][0]["per_seed"]).min() >= 0.5
    assert np.asarray(res["stochastic"][0]["per_seed"]).min() > 0.45
    first, last = np.asarray(r.metrics[0]["td_loss"]), np.asarray(r.metrics[-1]["td_loss"])
    assert (last < 0.1 * first).all(), (first, last)
    assert r.metrics[-1]["epsilon"] == pytest.approx([SMALL.eps_end] * 2)


def test_the_unroll_restarts_the_recurrent_state_after_an_episode_end():
    env = envs.make("climb_multistage", max_agents=2, num_stages=3, num_actions=4)
    tasks = build_tasks(env, ({"k": [2, 2, 2], "u": [2, 2, 0]},))
    cfg = qmix.QMixConfig(num_envs=2, hidden=8, batch_windows=2, buffer_windows=4)
    learner = qmix.make_qmix(cfg, env, tasks)
    state = jax.jit(learner.init)(jax.random.PRNGKey(0))
    parts = qmix.QMixParts(
        cfg=cfg, env=None, tasks=None, n_agents=2, n_actions=4, window=3, vdn=False,
        qnet=qmix.AgentQ(4, 8), mixer=qmix.QMixer(2, cfg.mixer_embed), opt=None, replay=None)
    obs = take(state.obs, 0)
    w = {"obs": tile(obs, 3), "next_obs": tile(obs, 3),
         "ends": jnp.array([False, True, False]),
         "carry0": jax.random.normal(jax.random.PRNGKey(1), (2, 8))}
    q, _ = qmix._unroll(parts, state.params["q"], w)
    fresh, _ = qmix._unroll(parts, state.params["q"], {**w, "carry0": jnp.zeros((2, 8))})
    # step 2 starts a new episode: its values are those of a fresh start, whatever came before
    np.testing.assert_allclose(q[2], fresh[0], rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(q[1] - fresh[1])).max() > 1e-4  # within an episode, memory counts


def test_learning_starts_and_the_linear_lr_decay(tmp_path):
    """No gradient step before ``learning_starts`` env steps; with ``lr_decay_steps`` the
    parameters stop moving once the learning rate has decayed to 0."""
    env = envs.make("climb", max_agents=2, num_actions=4)
    tasks = build_tasks(env, ({"k": 2, "u": 1},))
    cfg = qmix.QMixConfig(num_envs=4, hidden=8, batch_windows=4, buffer_windows=64,
                          learning_starts=40, lr_decay_steps=80, lr=1e-2)
    learner = qmix.make_qmix(cfg, env, tasks)
    state = jax.jit(learner.init)(jax.random.PRNGKey(0))
    step = jax.jit(learner.update)
    grads, params = [], []
    for _ in range(40):  # 4 env steps per update (one-step games, 4 of them)
        state, m = step(state)
        grads.append(int(m["grad_steps"]))
        params.append(state.params)
    # a batch of 4 windows is stored after 1 update, but learning waits for 40 env steps
    assert grads[8] == 0 and grads[9] == 1 and grads[-1] == 31
    leaves = lambda p: np.concatenate([np.ravel(x) for x in jax.tree.leaves(p)])  # noqa: E731
    moved = [np.abs(leaves(b) - leaves(a)).max() for a, b in itertools.pairwise(params)]
    assert min(moved[9:20]) > 0  # learning (lr > 0 for 80 / 4 = 20 gradient steps)
    # decayed to 0 after 20 gradient steps (XLA's fused arithmetic leaves ~1e-10 of rounding)
    assert max(moved[30:]) < 1e-6 * min(moved[9:20])

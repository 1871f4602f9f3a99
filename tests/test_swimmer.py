"""Swimmer climb game: reward bands, MuJoCo parity, torque mapping, bad input, jit + vmap.

Compiling the MJX swimmer step is the expensive part (~10 s on a free CPU core), so one
module-scoped fixture compiles ``jit(vmap(reset_to))`` and ``jit(vmap(step))`` once for a batch
of ``B`` tasks and every fast test reuses them with arrays of the same shapes. Checks that need
another compilation are marked ``slow``.
"""

from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import envs
from envs.core import EnvError
from envs.swimmer import ALPHA_MAX, SwimmerClimb, SwimmerTask, swimmer_xml_path
from envs.wrappers import stack_tasks

B = 4
ALPHAS = (0.2, -0.3, 0.0, 0.45)


@pytest.fixture(scope="module")
def sw():
    env = SwimmerClimb()
    tasks = stack_tasks([env.make_task(a) for a in ALPHAS])
    keys = jax.random.split(jax.random.key(0), B)
    reset = jax.jit(jax.vmap(env.reset_to))
    step = jax.jit(jax.vmap(env.step))
    states, ts = reset(keys, tasks)
    return types.SimpleNamespace(env=env, tasks=tasks, reset=reset, step=step, states=states, ts=ts)


def set_joints(states, qpos, qvel):
    """Batched states with the given ``[B, 5]`` qpos / qvel (brax keeps both q and qpos)."""
    qpos = jnp.asarray(qpos, jnp.float32)
    qvel = jnp.asarray(qvel, jnp.float32)
    ps = states.pipeline_state.replace(qpos=qpos, q=qpos, qvel=qvel, qd=qvel)
    return states.replace(pipeline_state=ps)


def hinge_qpos(angles):
    """``[B, 5]`` qpos with the body at the origin and the given ``[B, 2]`` hinge angles."""
    angles = np.asarray(angles, np.float32)
    return np.concatenate([np.zeros((angles.shape[0], 3), np.float32), angles], axis=1)


# --- reset, specs ---------------------------------------------------------------------------
def test_reset_and_specs(sw):
    env, ts, states = sw.env, sw.ts, sw.states
    spec = env.observation_spec
    for name in ("self", "agents", "agents_mask", "objects", "objects_mask", "team", "agent_mask"):
        leaf = getattr(ts.observation, name)
        want = getattr(spec, name)
        assert leaf.shape == (B, *want.shape), name
        assert leaf.dtype == want.dtype, name
    assert ts.observation.self.shape == (B, 2, 8)
    assert env.action_spec.shape == (2, 1)
    assert env.max_agents == 2 and env.episode_length == 1000
    np.testing.assert_array_equal(ts.reward, 0.0)
    np.testing.assert_array_equal(ts.discount, 1.0)
    assert bool(jnp.all(ts.first())) and not bool(jnp.any(ts.done))
    assert not bool(jnp.any(ts.extras["high_reward"]))
    # Reset noise U(+-0.1) on qpos (qpos0 = 0) and qvel, different per key.
    qpos, qvel = np.asarray(states.pipeline_state.qpos), np.asarray(states.pipeline_state.qvel)
    assert qpos.shape == (B, 5) and qvel.shape == (B, 5)
    assert np.abs(qpos).max() <= 0.1 and np.abs(qvel).max() <= 0.1
    assert np.abs(qpos[0] - qpos[1]).max() > 0
    angles = env.hinge_angles(states)
    np.testing.assert_array_equal(angles, qpos[:, 3:5])
    np.testing.assert_array_equal(ts.extras["angles"], angles)
    # Global view: [qpos[2:], qvel] for both agents; agents block: the other's (angle, velocity).
    obs = ts.observation
    full = np.concatenate([qpos[:, 2:], qvel], axis=1)
    np.testing.assert_array_equal(obs.self[:, 0], full)
    np.testing.assert_array_equal(obs.self[:, 1], full)
    np.testing.assert_array_equal(obs.agents[:, 0, 1], np.stack([qpos[:, 4], qvel[:, 4]], -1))
    np.testing.assert_array_equal(obs.agents[:, 1, 0], np.stack([qpos[:, 3], qvel[:, 3]], -1))
    np.testing.assert_array_equal(obs.agents_mask[0], [[False, True], [True, False]])
    assert not np.any(obs.objects_mask) and np.all(obs.agent_mask)
    assert obs.flat.shape == (B, 2, 8 + 2 * 3 + 1 * 2)


def test_physics_constants(sw):
    env = sw.env
    sys = env.physics.sys
    assert float(sys.opt.timestep) == pytest.approx(0.01)
    assert float(env.physics.dt) == pytest.approx(0.04)
    np.testing.assert_allclose(np.asarray(sys.actuator_gear)[:, 0], [150.0, 150.0])
    np.testing.assert_allclose(np.asarray(sys.jnt_range)[3:], np.radians([[-100, 100]] * 2))
    assert env.hinge_qpos == (3, 4) and env.hinge_qvel == (3, 4)
    # The single-agent brax view of the same physics: MuJoCo's swimmer observation.
    brax_state = jax.jit(env.physics.reset)(jax.random.key(0))
    assert brax_state.obs.shape == (8,) and float(jnp.abs(brax_state.obs).max()) <= 0.1


# --- reward ---------------------------------------------------------------------------------
def test_reward_bands_on_hand_set_angles(sw):
    env = sw.env
    a = np.asarray(ALPHAS, np.float32)
    e = env.eps
    # Per slot: both within eps -> 1; both outside -> 1 - delta; only one within -> 0 (twice).
    angles = np.stack(
        [
            [a[0] + 0.5 * e, a[0] - 0.8 * e],
            [a[1] + 3 * e, a[1] - 1.5 * e],
            [a[2], a[2] + 2 * e],
            [a[3] - 4 * e, a[3] + 0.2 * e],
        ]
    )
    states = set_joints(sw.states, hinge_qpos(angles), np.zeros((B, 5)))
    states, ts = sw.step(states, jnp.zeros((B, 2, 1), jnp.float32))
    # At rest with zero torque nothing moves: the reward is that of the hand-set angles.
    np.testing.assert_allclose(ts.extras["angles"], angles, atol=1e-6)
    np.testing.assert_array_equal(ts.reward, [[1, 1], [0.5, 0.5], [0, 0], [0, 0]])
    np.testing.assert_array_equal(ts.extras["high_reward"], [True, False, False, False])
    # The reward function itself, with a different delta.
    t = env.make_task(0.1, eps=0.05, delta=0.3)
    r = lambda x, y: np.asarray(env.reward(t, jnp.array([x, y], jnp.float32)))  # noqa: E731
    np.testing.assert_allclose(r(0.12, 0.08), [1.0, 1.0])
    np.testing.assert_allclose(r(0.2, -0.1), [0.7, 0.7])
    np.testing.assert_allclose(r(0.1, 0.2), [0.0, 0.0])
    np.testing.assert_allclose(r(-0.5, 0.1), [0.0, 0.0])


# --- physics ----------------------------------------------------------------------------------
def mujoco_rollout(qpos0, qvel0, ctrls, n_frames=4):
    """Plain MuJoCo (float64) rollout of the swimmer; returns ``[T, 5]`` qpos and qvel."""
    model = mujoco.MjModel.from_xml_path(str(swimmer_xml_path()))
    data = mujoco.MjData(model)
    data.qpos[:] = qpos0
    data.qvel[:] = qvel0
    qs, vs = [], []
    for c in ctrls:
        data.ctrl[:] = c
        for _ in range(n_frames):
            mujoco.mj_step(model, data)
        qs.append(data.qpos.copy())
        vs.append(data.qvel.copy())
    return np.array(qs), np.array(vs)


def test_mujoco_parity(sw):
    """MJX (float32) tracks mujoco.mj_step for the same actions over 50 steps (~2e-6)."""
    n = 50
    actions = jax.random.uniform(jax.random.key(1), (n, B, 2, 1), jnp.float32, -1.0, 1.0)
    states = sw.states
    q0 = np.asarray(states.pipeline_state.qpos, np.float64)
    v0 = np.asarray(states.pipeline_state.qvel, np.float64)
    qs, vs = [], []
    for t in range(n):
        states, _ = sw.step(states, actions[t])
        qs.append(np.asarray(states.pipeline_state.qpos))
        vs.append(np.asarray(states.pipeline_state.qvel))
    qs, vs = np.stack(qs, 1), np.stack(vs, 1)  # [B, T, 5]
    acts = np.asarray(actions)[..., 0]
    hit_limit = False
    for b in range(B):
        ref_q, ref_v = mujoco_rollout(q0[b], v0[b], acts[:, b])
        np.testing.assert_allclose(qs[b], ref_q, atol=5e-5, rtol=0)
        np.testing.assert_allclose(vs[b], ref_v, atol=5e-4, rtol=0)
        hit_limit |= bool(np.abs(ref_q[:, 3:]).max() > math.radians(99))
    assert hit_limit  # the check covers the joint-limit constraint, not only free swimming


def test_action_torque_mapping(sw):
    """Agent i's action drives actuator i (hinge i + 1) only, with gear 150; clipped to [-1, 1]."""
    actions = jnp.array(
        [[[1.0], [0.0]], [[0.0], [1.0]], [[-0.5], [0.0]], [[3.0], [-7.0]]], jnp.float32
    )
    states = set_joints(sw.states, np.zeros((B, 5)), np.zeros((B, 5)))
    states, _ = sw.step(states, actions)
    ps = states.pipeline_state
    want = np.array([[1, 0], [0, 1], [-0.5, 0], [1, -1]], np.float32)
    np.testing.assert_allclose(ps.ctrl, want)
    np.testing.assert_allclose(ps.actuator_force, want)  # actuator space (gain 1), before gear
    qfrc = np.zeros((B, 5), np.float32)
    qfrc[:, 3:] = 150.0 * want
    np.testing.assert_allclose(ps.qfrc_actuator, qfrc, rtol=1e-6, atol=1e-6)
    # The hinge that is torqued turns the way it is pushed.
    assert float(ps.qpos[0, 3]) > 0 and float(ps.qpos[1, 4]) > 0 and float(ps.qpos[2, 3]) < 0
    np.testing.assert_array_equal(sw.env.ctrl(actions[3]), [1.0, -1.0])


def test_jit_vmap_batch_rollout_and_truncation(sw):
    env = sw.env
    states = sw.states
    keys = jax.random.split(jax.random.key(2), 5)
    for k in keys:
        states, ts = sw.step(states, jax.random.uniform(k, (B, 2, 1), jnp.float32, -1, 1))
        assert set(np.unique(np.asarray(ts.reward))) <= {0.0, 0.5, 1.0}
        np.testing.assert_array_equal(ts.reward[:, 0], ts.reward[:, 1])
        assert not bool(jnp.any(ts.first())) and not bool(jnp.any(ts.terminated))
        assert bool(jnp.all(jnp.isfinite(ts.observation.self)))
    np.testing.assert_array_equal(states.step, 5)
    np.testing.assert_array_equal(states.task.alpha, np.float32(ALPHAS))
    assert not bool(jnp.any(ts.truncated))
    # Time limit: truncation only, discount stays 1.
    states = states.replace(step=jnp.full((B,), env.episode_length - 1, jnp.int32))
    _, ts = sw.step(states, jnp.zeros((B, 2, 1), jnp.float32))
    assert bool(jnp.all(ts.truncated)) and not bool(jnp.any(ts.terminated))
    np.testing.assert_array_equal(ts.discount, 1.0)
    # Same task, different keys: different noisy starts; same key: same start.
    tasks = stack_tasks([env.make_task(0.1)] * B)
    keys = jnp.stack([jax.random.key(7)] * 2 + [jax.random.key(8)] * 2)
    s, _ = sw.reset(keys, tasks)
    q = s.pipeline_state.qpos
    np.testing.assert_array_equal(q[0], q[1])
    assert float(jnp.abs(q[0] - q[2]).max()) > 0


# --- observations ---------------------------------------------------------------------------
@pytest.mark.parametrize("locality", [0, 1])
def test_local_views(sw, locality):
    env = SwimmerClimb(locality=locality)
    state = jax.tree.map(lambda x: x[0], sw.states)
    obs = jax.jit(env.observe)(state)
    q = np.asarray(state.pipeline_state.qpos)[3:]
    w = np.asarray(state.pipeline_state.qvel)[3:]
    spec = env.observation_spec
    assert obs.self.shape == spec.self.shape == (2, 2 + locality)
    assert obs.agents.shape == spec.agents.shape == (2, 2, 2)
    np.testing.assert_array_equal(obs.self[:, 0], q)
    np.testing.assert_array_equal(obs.self[:, 1], w)
    if locality == 0:
        assert not bool(jnp.any(obs.agents_mask))
        np.testing.assert_array_equal(obs.agents, 0.0)
    else:
        np.testing.assert_array_equal(obs.self[:, 2], q[::-1])
        np.testing.assert_array_equal(obs.agents_mask, [[False, True], [True, False]])
        np.testing.assert_array_equal(obs.agents[0, 1], [q[1], 0.0])
        np.testing.assert_array_equal(obs.agents[1, 0], [q[0], 0.0])
    assert obs.flat.shape == (2, 2 + locality + 2 * 3 + 2)


# --- tasks ----------------------------------------------------------------------------------
def test_sample_and_split_tasks(sw):
    env = sw.env
    tasks = jax.jit(jax.vmap(env.sample_task))(jax.random.split(jax.random.key(3), 2000))
    alpha = np.asarray(tasks.alpha)
    assert alpha.min() > -ALPHA_MAX and alpha.max() < ALPHA_MAX
    assert alpha.min() < -0.9 * ALPHA_MAX and alpha.max() > 0.9 * ALPHA_MAX
    np.testing.assert_allclose(tasks.eps, math.radians(5))
    np.testing.assert_allclose(tasks.delta, 0.5)
    env.validate_task(tasks)
    train, test = jax.jit(env.split_tasks, static_argnums=(1, 2))(jax.random.key(4), 30, 6)
    assert train.alpha.shape == (30,) and test.alpha.shape == (6,)
    assert len(set(np.asarray(train.alpha)) | set(np.asarray(test.alpha))) == 36
    again, _ = env.split_tasks(jax.random.key(4))  # eager, default sizes 30 and 6
    np.testing.assert_array_equal(again.alpha, train.alpha)
    desc = jax.vmap(env.task_description)(train)
    assert desc.shape == (30, 1) and float(jnp.abs(desc).max()) < 1.0
    assert isinstance(envs.make("swimmer_climb", eps=0.1), SwimmerClimb)


# --- bad input ------------------------------------------------------------------------------
def test_bad_tasks_and_config(sw):
    env = sw.env
    for alpha in (math.radians(30), -math.radians(30), 0.6, -1.0):
        with pytest.raises(EnvError, match="alpha"):
            env.make_task(alpha)
    with pytest.raises(EnvError, match="eps"):
        env.make_task(0.1, eps=0.0)
    with pytest.raises(EnvError, match="delta"):
        env.make_task(0.1, delta=1.5)
    bad = SwimmerTask(alpha=jnp.float32(0.7), eps=jnp.float32(0.1), delta=jnp.float32(0.5))
    with pytest.raises(EnvError, match="alpha"):
        env.reset_to(jax.random.key(0), bad)
    with pytest.raises(EnvError, match="alpha"):
        env.validate_task(stack_tasks([env.make_task(0.1), bad]))
    with pytest.raises(EnvError, match="max_agents"):
        envs.make("swimmer_climb", max_agents=3)
    with pytest.raises(EnvError, match="action_type"):
        SwimmerClimb(action_type="relaxed")
    with pytest.raises(EnvError, match="locality"):
        SwimmerClimb(locality=2)
    with pytest.raises(EnvError, match="eps"):
        SwimmerClimb(eps=-0.1)


def test_bad_actions(sw):
    env = sw.env
    state = jax.tree.map(lambda x: x[0], sw.states)
    # Raised at trace time, before any physics runs (eagerly and under jit).
    for bad in (
        jnp.zeros((2,), jnp.float32),
        jnp.zeros((2, 2), jnp.float32),
        jnp.zeros((3, 1), jnp.float32),
        jnp.zeros((2, 1), jnp.int32),
    ):
        with pytest.raises(EnvError, match="action"):
            env.step(state, bad)
        with pytest.raises(EnvError, match="action"):
            jax.jit(env.step)(state, bad)


def test_discrete_actions():
    env = SwimmerClimb(action_type="discrete")
    spec = env.action_spec
    assert spec.shape == (2,) and spec.dtype == jnp.int32
    np.testing.assert_array_equal(spec.num_values, [11, 11])
    levels = jax.vmap(lambda b: env.ctrl(jnp.stack([b, 10 - b])))(jnp.arange(11, dtype=jnp.int32))
    np.testing.assert_allclose(levels[:, 0], np.linspace(-1, 1, 11), atol=1e-6)
    np.testing.assert_allclose(levels[:, 1], np.linspace(1, -1, 11), atol=1e-6)
    np.testing.assert_allclose(env.ctrl(jnp.array([5, 0], jnp.int32)), [0.0, -1.0], atol=1e-7)
    for bad in (jnp.zeros((2,), jnp.float32), jnp.zeros((2, 1), jnp.int32)):
        with pytest.raises(EnvError, match="action"):
            env.ctrl(bad)
    with pytest.raises(EnvError, match="outside"):
        env.ctrl(jnp.array([0, 11], jnp.int32))
    # Traced out-of-range values are clipped.
    np.testing.assert_allclose(jax.jit(env.ctrl)(jnp.array([-3, 99], jnp.int32)), [-1.0, 1.0])
    env5 = SwimmerClimb(action_type="discrete", n_bins=5)
    np.testing.assert_allclose(env5.ctrl(jnp.array([1, 3], jnp.int32)), [-0.5, 0.5])


# --- slow: extra compilations ---------------------------------------------------------------
@pytest.mark.slow
def test_discrete_step_and_autoreset():
    env = envs.AutoReset(SwimmerClimb(action_type="discrete", episode_length=3))
    state, ts = jax.jit(env.reset_to)(jax.random.key(0), env.make_task(alpha=0.2))
    step = jax.jit(env.step)
    action = jnp.array([10, 0], jnp.int32)
    for _ in range(2):
        state, ts = step(state, action)
        np.testing.assert_allclose(state.pipeline_state.ctrl, [1.0, -1.0])
    state, ts = step(state, action)
    assert bool(ts.truncated) and int(state.step) == 0
    assert "final_observation" in ts.extras


@pytest.mark.slow
def test_mujoco_parity_200_steps_and_light_init(sw):
    """200 steps of smooth half-scale torques stay within ~1e-5 of MuJoCo; ``light_init``
    gives exactly the trajectory of brax's ``pipeline_init``."""
    env = sw.env
    n = 200
    t = np.arange(n)[:, None]
    acts = 0.5 * np.concatenate([np.sin(0.1 * t), np.cos(0.13 * t)], axis=1).astype(np.float32)
    state = jax.tree.map(lambda x: x[0], sw.states)
    q0 = np.asarray(state.pipeline_state.qpos, np.float64)
    v0 = np.asarray(state.pipeline_state.qvel, np.float64)
    step = jax.jit(env.step)
    qs = []
    for a in acts:
        state, _ = step(state, jnp.asarray(a)[:, None])
        qs.append(np.asarray(state.pipeline_state.qpos))
    ref_q, _ = mujoco_rollout(q0, v0, acts)
    np.testing.assert_allclose(np.array(qs), ref_q, atol=5e-5, rtol=0)

    phys = env.physics
    q, qd = jnp.asarray(q0, jnp.float32), jnp.asarray(v0, jnp.float32)
    ctrl = jnp.array([0.7, -0.4], jnp.float32)
    pstep = jax.jit(phys.pipeline_step)
    full = jax.jit(phys.pipeline_init)(q, qd)
    a = pstep(jax.jit(phys.light_init)(q, qd), ctrl)
    b = pstep(full, ctrl)
    np.testing.assert_array_equal(a.qpos, b.qpos)
    np.testing.assert_array_equal(a.qvel, b.qvel)
    # With kinematics=True the link poses and velocities of the reset state are filled in too.
    kin = jax.jit(lambda q, qd: phys.light_init(q, qd, kinematics=True))(q, qd)
    np.testing.assert_allclose(kin.x.pos, full.x.pos, atol=1e-6)
    np.testing.assert_allclose(kin.xd.vel, full.xd.vel, atol=1e-6)
    np.testing.assert_allclose(kin.xd.ang, full.xd.ang, atol=1e-6)

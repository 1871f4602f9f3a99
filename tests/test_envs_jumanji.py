"""jumanji 1.x conformance of every registered environment.

Each env (its small config from ``conftest.SMALL_CONFIGS``) is checked against jumanji's own
contract and run, a few steps, through jumanji's own wrappers:

* the four specs are cached properties (``env.action_spec``, never ``env.action_spec()``),
  readable inside ``jit``;
* ``jumanji.wrappers.AutoResetWrapper``: ``step_type`` / ``last()`` drive the reset, the state
  restarts on every ``LAST`` step and the final observation is kept in ``extras["next_obs"]``;
* ``jumanji.wrappers.VmapAutoResetWrapper``: the same over a batch of ``B`` games;
* ``jumanji.wrappers.JumanjiToGymWrapper``: non-empty gym spaces that match the specs; the
  gym API has one scalar reward per step, so it steps the env through jumanji's
  ``MultiToSingleWrapper`` (sum of rewards, max of discounts).

Each wrapper runs in one program per env (a scan of steps, compiled with the runner's cheap
``ONCE`` options; jumanji's gym wrapper jits its own reset and step). The MJX swimmer's step
takes 10-15 s to compile (its three stepping tests about 30 s together), which is under the
minute that would put them behind the ``slow`` marker, so every env runs every test.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SMALL_CONFIGS
from jumanji import specs
from jumanji import types as jumanji_types
from jumanji.env import Environment
from jumanji.wrappers import (
    AutoResetWrapper,
    JumanjiToGymWrapper,
    MultiToSingleWrapper,
    VmapAutoResetWrapper,
)

import envs
from envs.core import (
    SPEC_NAMES,
    MultiAgentEnv,
    Observation,
    TimeStep,
    is_concrete,
    spec_property,
)
from envs.wrappers import AutoReset, random_actions
from metajax.train.loop import ONCE

NAMES = sorted(envs.REGISTRY)
#: The wrappers are env-agnostic code over jumanji's Environment interface: CI steps them on
#: every env but the Swimmer (a Brax program, the slowest to compile; its own contract test in
#: tests/test_api.py steps it through our API); ``-m slow`` steps the Swimmer too.
STEPPED = [pytest.param(n, marks=pytest.mark.slow) if n == "swimmer_climb" else n
           for n in NAMES]
B = 3  # games in the VmapAutoResetWrapper batch


@functools.cache
def _env(name: str) -> MultiAgentEnv:
    """The env ``name`` with its small test config (built once per session)."""
    return envs.make(name, **SMALL_CONFIGS[name])


def _steps(env: MultiAgentEnv) -> int:
    """Enough steps for every episode to end once: ``episode_length + 1``."""
    return env.episode_length + 1


def _leaves_equal(a: Any, b: Any) -> list[bool]:
    """Per-leaf exact equality of two pytrees of the same structure."""
    return [bool(np.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                       strict=True)]


def _primitive_specs(spec: specs.Spec) -> list[specs.Spec]:
    """The array specs (``Array``, ``BoundedArray``, ...) of a possibly nested spec."""
    if isinstance(spec, specs.Array):
        return [spec]
    return [leaf for sub in spec._specs.values() for leaf in _primitive_specs(sub)]


def _check_shapes(env: MultiAgentEnv, ts: TimeStep, batch: tuple[int, ...]) -> None:
    """``ts`` is our jumanji TimeStep with the env's spec shapes under leading ``batch``."""
    assert isinstance(ts, TimeStep) and isinstance(ts, jumanji_types.TimeStep)
    assert isinstance(ts.observation, Observation)
    a = env.max_agents
    assert ts.step_type.shape == batch and ts.step_type.dtype == jnp.int8
    assert ts.reward.shape == (*batch, *env.reward_spec.shape) == (*batch, a)
    assert ts.discount.shape == (*batch, *env.discount_spec.shape) == (*batch, a)
    for name, sub in env.observation_spec._specs.items():
        arr = getattr(ts.observation, name)
        assert arr.shape == batch + tuple(sub.shape) and arr.dtype == sub.dtype, name


# --- specs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_specs_are_cached_properties(name: str) -> None:
    env = _env(name)
    assert isinstance(env, Environment)
    for spec_name in SPEC_NAMES:
        attr = inspect.getattr_static(type(env), spec_name)
        assert isinstance(attr, functools.cached_property), spec_name
        spec = getattr(env, spec_name)
        assert isinstance(spec, specs.Spec), spec_name
        assert getattr(env, spec_name) is spec, f"{spec_name} is not cached"
    a = env.max_agents
    assert env.reward_spec.shape == (a,) and env.discount_spec.shape == (a,)
    assert env.action_spec.shape[0] == a
    # built at compile time: specs first read inside jit are concrete (jumanji checks values)
    fresh = copy.copy(env)
    for spec_name in SPEC_NAMES:
        vars(fresh).pop(spec_name, None)

    def inside(key: jax.Array) -> jax.Array:
        for spec_name in SPEC_NAMES:
            getattr(fresh, spec_name)
        return random_actions(fresh, key)

    act = jax.jit(inside, compiler_options=ONCE)(jax.random.PRNGKey(0))
    env.action_spec.validate(np.asarray(act))
    for spec_name in SPEC_NAMES:
        built = vars(fresh)[spec_name]
        assert built is not getattr(env, spec_name)  # rebuilt under the trace
        for leaf in _primitive_specs(built):
            for field in ("minimum", "maximum", "num_values"):
                assert is_concrete(getattr(leaf, field, None)), (spec_name, leaf.name, field)
    # wrappers pass the specs through
    auto = AutoReset(env)
    for spec_name in SPEC_NAMES:
        assert getattr(auto, spec_name) is getattr(env, spec_name)
    assert auto.unwrapped is env
    assert AutoResetWrapper(env).observation_spec is env.observation_spec


def test_spec_written_as_a_method_is_refused() -> None:
    with pytest.raises(TypeError, match=r"action_spec must be a property.*cached_property"):
        class Bad(envs.MultiAgentEnv):
            def action_spec(self) -> specs.Spec:
                return specs.Array((1,), jnp.int32)


def test_property_specs_become_cached_spec_properties() -> None:
    class Probe(envs.MultiAgentEnv):
        max_agents, max_objects, episode_length = 2, 0, 1

        @property
        def observation_spec(self) -> specs.Spec:
            return specs.Array((2,), jnp.float32, "obs")

        @functools.cached_property
        def action_spec(self) -> specs.Spec:
            return specs.BoundedArray((2,), jnp.int32, 0, 3, "action")

        def make_task(self, **fields: Any) -> Any:
            raise NotImplementedError

        def sample_task(self, key: jax.Array) -> Any:
            raise NotImplementedError

        def reset_to(self, key: jax.Array, task: Any) -> tuple[Any, TimeStep]:
            raise NotImplementedError

        def step(self, state: Any, action: jax.Array) -> tuple[Any, TimeStep]:
            raise NotImplementedError

    for spec_name in ("observation_spec", "action_spec"):
        assert isinstance(Probe.__dict__[spec_name], spec_property), spec_name
    probe = Probe()  # jumanji's __init__ builds the four specs
    assert set(SPEC_NAMES) <= set(vars(probe))
    assert probe.observation_spec is probe.observation_spec


# --- TimeStep ---------------------------------------------------------------------------------
def test_timestep_is_jumanjis() -> None:
    env = _env("climb")  # one-step game: FIRST then LAST (termination)

    def run(key: jax.Array) -> tuple[TimeStep, TimeStep]:
        k0, k1 = jax.random.split(key)
        state, ts0 = env.reset(k0)
        return ts0, env.step(state, random_actions(env, k1))[1]

    ts0, ts1 = jax.device_get(jax.jit(run, compiler_options=ONCE)(jax.random.PRNGKey(0)))
    assert [f.name for f in dataclasses.fields(jumanji_types.TimeStep)] == [
        f.name for f in dataclasses.fields(TimeStep)][:5]
    assert bool(ts0.first()) and not bool(ts0.mid()) and not bool(ts0.last())
    assert ts0.step_type == jumanji_types.StepType.FIRST
    assert bool(ts1.last()) and bool(ts1.terminated) and bool(ts1.done)
    assert ts1.step_type == jumanji_types.StepType.LAST
    np.testing.assert_array_equal(ts1.discount, 0.0)  # termination: discount 0 for everyone
    for ts in (ts0, ts1):
        env.reward_spec.validate(ts.reward)
        env.discount_spec.validate(ts.discount)
        env.observation_spec.validate(ts.observation)


# --- jumanji's wrappers -------------------------------------------------------------------------
@pytest.mark.parametrize("name", STEPPED)
def test_jumanji_auto_reset_wrapper(name: str) -> None:
    env = _env(name)
    wrapped = AutoResetWrapper(env, next_obs_in_extras=True)
    steps = _steps(env)

    def run(key: jax.Array) -> tuple[TimeStep, TimeStep, jax.Array]:
        """Reset, then ``steps`` random steps: ``ts0``, ``tss`` [T, ...], ``counters`` [T]."""
        k0, k1 = jax.random.split(key)
        state, ts0 = wrapped.reset(k0)

        def body(state: Any, k: jax.Array) -> tuple[Any, tuple[TimeStep, jax.Array]]:
            state, ts = wrapped.step(state, random_actions(env, k))
            return state, (ts, state.step)

        _, (tss, counters) = jax.lax.scan(body, state, jax.random.split(k1, steps))
        return ts0, tss, counters

    out = jax.jit(run, compiler_options=ONCE)(jax.random.PRNGKey(0))
    ts0, tss, counters = jax.device_get(out)  # numpy from here: no eager jax ops to compile
    _check_shapes(env, ts0, ())
    _check_shapes(env, tss, (steps,))
    assert bool(ts0.first())
    assert all(_leaves_equal(ts0.extras["next_obs"], ts0.observation))
    last = np.asarray(tss.last())
    assert last.any(), "no episode ended within episode_length + 1 steps"
    np.testing.assert_array_equal(last, tss.terminated | tss.truncated)
    np.testing.assert_array_equal(np.asarray(tss.mid()), ~last)  # a step is never FIRST
    # the state restarts exactly on LAST steps; elsewhere the step counter goes on
    expected = np.zeros(steps, np.int64)
    for t in range(steps):
        expected[t] = 0 if last[t] else (expected[t - 1] if t else 0) + 1
    np.testing.assert_array_equal(counters, expected)
    # off LAST steps the kept observation is the observation itself
    for t in np.flatnonzero(~last):
        step_t = jax.tree.map(lambda x, t=t: x[t], tss)
        assert all(_leaves_equal(step_t.extras["next_obs"], step_t.observation))
    assert np.isfinite(np.asarray(tss.reward)).all()


#: The vmapped wrapper is the stepped one under ``jax.vmap``: CI runs it on three envs (a matrix
#: game, a particle world, the Pac-Man world; each compile costs about 2 s on the 2-core box),
#: ``-m slow`` on every env (the Brax Swimmer's alone takes ~20 s).
VMAPPED = [n if n in ("climb", "spread", "pacman") else pytest.param(n, marks=pytest.mark.slow)
           for n in NAMES]


@pytest.mark.parametrize("name", VMAPPED)
def test_jumanji_vmap_auto_reset_wrapper(name: str) -> None:
    env = _env(name)
    wrapped = VmapAutoResetWrapper(env)
    steps = _steps(env)

    def run(key: jax.Array) -> tuple[TimeStep, TimeStep, jax.Array]:
        """Reset ``B`` games, then ``steps`` batched random steps."""
        k0, k1 = jax.random.split(key)
        state, ts0 = wrapped.reset(jax.random.split(k0, B))

        def body(state: Any, k: jax.Array) -> tuple[Any, tuple[TimeStep, jax.Array]]:
            action = jax.vmap(lambda kk: random_actions(env, kk))(jax.random.split(k, B))
            state, ts = wrapped.step(state, action)
            return state, (ts, state.step)

        _, (tss, counters) = jax.lax.scan(body, state, jax.random.split(k1, steps))
        return ts0, tss, counters

    out = jax.jit(run, compiler_options=ONCE)(jax.random.PRNGKey(0))
    ts0, tss, counters = jax.device_get(out)  # numpy from here: no eager jax ops to compile
    _check_shapes(env, ts0, (B,))
    _check_shapes(env, tss, (steps, B))
    assert np.asarray(ts0.first()).all()
    last = np.asarray(tss.last())
    assert last.any(axis=0).all(), "a game did not end within episode_length + 1 steps"
    np.testing.assert_array_equal(last, tss.terminated | tss.truncated)
    np.testing.assert_array_equal(counters[last], 0)
    assert (counters[~last] > 0).all()
    assert wrapped.action_spec is env.action_spec  # unbatched specs, as jumanji documents
    assert np.isfinite(np.asarray(tss.reward)).all()


def _check_gym_spaces(env: MultiAgentEnv, gym_env: JumanjiToGymWrapper) -> None:
    """The gym spaces are non-empty and match the env's specs."""
    act = gym_env.action_space
    spec = env.action_spec
    assert act.shape == tuple(spec.shape) and np.prod(act.shape) > 0
    if isinstance(spec, specs.MultiDiscreteArray):
        assert isinstance(act, gym.spaces.MultiDiscrete)
        np.testing.assert_array_equal(act.nvec, spec.num_values)
    else:
        assert isinstance(act, gym.spaces.Box)
        np.testing.assert_array_equal(act.low, np.broadcast_to(spec.minimum, spec.shape))
        np.testing.assert_array_equal(act.high, np.broadcast_to(spec.maximum, spec.shape))
    obs = gym_env.observation_space
    assert isinstance(obs, gym.spaces.Dict)
    fields = {f.name for f in dataclasses.fields(Observation)}
    assert set(obs.spaces) == fields
    for name, sub in env.observation_spec._specs.items():
        assert obs[name].shape == tuple(sub.shape) and obs[name].dtype == sub.dtype, name


@pytest.mark.parametrize("name", NAMES)
def test_jumanji_to_gym_wrapper_spaces_and_reset(name: str) -> None:
    env = _env(name)
    gym_env = JumanjiToGymWrapper(env, seed=0)
    _check_gym_spaces(env, gym_env)
    obs, info = gym_env.reset()
    assert gym_env.observation_space.contains(obs)
    assert isinstance(info, dict)
    assert gym_env.unwrapped is env


@pytest.mark.parametrize("name", STEPPED)
def test_jumanji_to_gym_wrapper_steps(name: str) -> None:
    env = _env(name)
    gym_env = JumanjiToGymWrapper(MultiToSingleWrapper(env), seed=0)
    _check_gym_spaces(env, gym_env)
    gym_env.action_space.seed(0)
    obs, _ = gym_env.reset()
    ended = 0
    for _ in range(_steps(env)):
        action = gym_env.action_space.sample()
        assert gym_env.action_space.contains(action)
        obs, reward, term, trunc, info = gym_env.step(action)
        assert type(reward) is float and np.isfinite(reward)
        assert type(term) is bool and type(trunc) is bool
        assert gym_env.observation_space.contains(obs)
        assert isinstance(info, dict)
        if term or trunc:
            ended += 1
            obs, _ = gym_env.reset()
            assert gym_env.observation_space.contains(obs)
    assert ended >= 1, "no episode ended within episode_length + 1 gym steps"

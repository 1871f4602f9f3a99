"""The environment contract, checked on every registered environment.

One jitted program per env does reset and step of one game, then a vmapped batch of three
different tasks reset and stepped through the auto-reset wrapper; it is traced once and reused
for a second batch of tasks, which is how "one compilation serves every population" is checked
across the whole registry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SMALL_CONFIGS
from jumanji import specs
from jumanji import types as jumanji_types

import envs
from envs.core import EnvError, MultiAgentEnv, Observation, TimeStep
from envs.wrappers import AutoReset, random_actions, stack_tasks
from metajax.train.loop import ONCE

NAMES = sorted(envs.REGISTRY)


def test_every_env_has_a_small_config():
    assert set(NAMES) == set(SMALL_CONFIGS)


class _Harness:
    """Jitted reset/step/batch/auto-reset program for one env, counting its traces."""

    def __init__(self, env: MultiAgentEnv):
        self.env = env
        self.auto = AutoReset(env)
        self.traces = 0
        self.program = jax.jit(self._program, compiler_options=ONCE)

    def _program(self, key, tasks):
        self.traces += 1
        env, auto = self.env, self.auto
        k0, k1, k2, k3 = jax.random.split(key, 4)
        task0 = jax.tree.map(lambda x: x[0], tasks)
        s, ts0 = env.reset_to(k0, task0)
        _, ts1 = env.step(s, random_actions(env, k1))
        # the batch: vmapped reset and steps (through the auto-reset wrapper, whose first
        # steps are plain env steps) of different tasks; one copy of the env's step in the
        # program besides the single-game one (the step dominates compile time)
        b = jax.tree.leaves(tasks)[0].shape[0]

        def body(carry, k):
            st = carry
            st, ts = jax.vmap(auto.step)(st, jax.vmap(lambda kk: random_actions(env, kk))(
                jax.random.split(k, b)))
            return st, ts

        st, bts0 = jax.vmap(auto.reset_to)(jax.random.split(k2, b), tasks)
        horizon = env.episode_length + 2
        _, auto_ts = jax.lax.scan(body, st, jax.random.split(k3, horizon))
        return ts0, ts1, bts0, auto_ts


@pytest.fixture(scope="module", params=NAMES)
def harness(request):
    env = envs.make(request.param, **SMALL_CONFIGS[request.param])
    return _Harness(env)


def _tasks(env, seed, n=3):
    return stack_tasks([env.sample_task(k) for k in jax.random.split(jax.random.PRNGKey(seed), n)])


def _check_timestep(env: MultiAgentEnv, ts: TimeStep, batch: tuple[int, ...] = ()):
    assert isinstance(ts, TimeStep) and isinstance(ts, jumanji_types.TimeStep)
    assert isinstance(ts.observation, Observation)
    # jumanji's step type: exactly one of first/mid/last; last = terminated | truncated
    assert ts.step_type.shape == batch and ts.step_type.dtype == jnp.int8
    first, mid, last = (np.asarray(f()) for f in (ts.first, ts.mid, ts.last))
    np.testing.assert_array_equal(first.astype(int) + mid + last, 1)
    np.testing.assert_array_equal(last, np.asarray(ts.terminated | ts.truncated))
    np.testing.assert_array_equal(np.asarray(ts.done), last)
    # termination zeroes every agent's discount (jumanji's ``termination``)
    assert not np.any(np.asarray(ts.discount)[np.asarray(ts.terminated)])
    spec = env.observation_spec
    for name, sub in spec._specs.items():
        arr = getattr(ts.observation, name)
        assert arr.shape == batch + tuple(sub.shape), (name, arr.shape, sub.shape)
        assert arr.dtype == sub.dtype, (name, arr.dtype, sub.dtype)
    a = env.max_agents
    assert ts.reward.shape == (*batch, a) and ts.reward.dtype == jnp.float32
    assert ts.discount.shape == (*batch, a) and ts.discount.dtype == jnp.float32
    assert ts.reward.shape[len(batch):] == env.reward_spec.shape
    assert ts.discount.shape[len(batch):] == env.discount_spec.shape
    assert ts.terminated.shape == batch and ts.terminated.dtype == jnp.bool_
    assert ts.truncated.shape == batch and ts.truncated.dtype == jnp.bool_
    flat = ts.observation.flat
    assert flat.shape[:-1] == (*batch, a)
    for leaf in jax.tree.leaves(ts):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert np.all(np.isfinite(np.asarray(leaf))), "non-finite values in a timestep"
    mask = np.asarray(ts.observation.agent_mask)
    assert np.all(np.asarray(ts.reward)[~mask] == 0), "padded agents got reward"
    assert np.all(np.asarray(ts.discount)[~mask] == 0), "padded agents have nonzero discount"
    assert not np.any(np.asarray(ts.observation.agents_mask)[~mask]), "padding observes others"
    am = np.asarray(ts.observation.agents_mask)
    # a padded agent never appears in another agent's observation
    assert not np.any(am.swapaxes(-1, -2)[~mask]), "a padded agent is visible to others"


def test_contract(harness):
    env = harness.env
    assert isinstance(env, MultiAgentEnv)
    # specs are jumanji specs (cached properties) and generate conforming values
    assert isinstance(env.observation_spec, specs.Spec)
    spec_obs = env.observation_spec.generate_value()
    assert isinstance(spec_obs, Observation)
    act_spec = env.action_spec
    assert act_spec.shape[0] == env.max_agents
    act_spec.validate(np.asarray(random_actions(env, jax.random.PRNGKey(0))))

    ts0, ts1, bts0, auto_ts = harness.program(jax.random.PRNGKey(0), _tasks(env, 0))
    _check_timestep(env, ts0)
    env.observation_spec.validate(ts0.observation)
    env.reward_spec.validate(ts1.reward)
    env.discount_spec.validate(ts1.discount)
    assert bool(ts0.first()) and not bool(ts1.first())
    _check_timestep(env, ts1)
    _check_timestep(env, bts0, (3,))
    assert np.asarray(bts0.first()).all()
    horizon = env.episode_length + 2
    _check_timestep(env, auto_ts, (horizon, 3))
    assert not np.asarray(auto_ts.first()[0]).any()  # the first batched step is a plain step

    # auto-reset: every episode ends within episode_length steps and restarts; the final
    # observation is kept in extras.
    done = np.asarray(auto_ts.done)
    assert done.any(axis=0).all(), "no episode ended within episode_length + 2 steps"
    final = auto_ts.extras["final_observation"]
    assert jax.tree.structure(final) == jax.tree.structure(auto_ts.observation)
    assert not np.any(np.asarray(auto_ts.terminated) & np.asarray(auto_ts.truncated))

    # same program, other tasks (other populations where the env has them): no retrace
    harness.program(jax.random.PRNGKey(1), _tasks(env, 1))
    assert harness.traces == 1


def test_bad_action_shape_and_dtype(harness):
    env = harness.env
    # the check happens at trace time: abstract values show it without running the env
    key = jax.random.PRNGKey(0)
    state, _ = jax.eval_shape(lambda k: env.reset_to(k, env.sample_task(k)), key)
    good = jax.eval_shape(lambda k: random_actions(env, k), key)
    jax.eval_shape(env.step, state, good)
    with pytest.raises(EnvError, match="shape"):
        jax.eval_shape(env.step, state,
                       jax.ShapeDtypeStruct((2 * good.shape[0], *good.shape[1:]), good.dtype))
    wrong = jax.ShapeDtypeStruct(good.shape, jnp.float32 if jnp.issubdtype(
        good.dtype, jnp.integer) else jnp.int32)
    with pytest.raises(EnvError, match="dtype"):
        jax.eval_shape(env.step, state, wrong)


def test_unknown_env_name():
    with pytest.raises(EnvError, match=r"unknown environment 'nope'.*treasure"):
        envs.make("nope")


def test_bad_static_config():
    with pytest.raises(EnvError, match="treasure"):
        envs.make("treasure", max_agent=3)  # typo'd keyword


def test_register_rejects_duplicates():
    with pytest.raises(EnvError, match="already registered"):
        envs.register("treasure", envs.REGISTRY["treasure"])

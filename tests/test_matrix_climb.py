"""One-step and multi-stage climb games (MESA): rewards, padding, exact game theory, errors."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import AutoReset, EnvError, make
from envs.matrix import gametheory as gt
from envs.matrix.climb import Climb
from envs.matrix.multistage import MultiStageClimb
from envs.wrappers import stack_tasks


# --- direct Python references --------------------------------------------------------------------
def rule(actions, k, u, delta=0.5):
    """The climb reward of a joint action of the active players, straight from the definition."""
    c = sum(1 for a in actions if a == u)
    if c == k:
        return 1.0
    if c == 0:
        return 1.0 - delta
    return 0.0


def brute_value(pol, k, u, delta=0.5, fixed=None):
    """Expected reward of independent mixed policies ``pol [n, U]`` by enumeration;
    ``fixed = (i, a)`` replaces player i's policy by the pure action a."""
    n, n_act = pol.shape
    total = 0.0
    for joint in itertools.product(range(n_act), repeat=n):
        p = 1.0
        for i, a in enumerate(joint):
            if fixed is not None and fixed[0] == i:
                p *= float(a == fixed[1])
            else:
                p *= pol[i, a]
        total += p * rule(joint, k, u, delta)
    return total


def brute_br(pol, i, k, u, delta=0.5):
    return max(brute_value(pol, k, u, delta, fixed=(i, a)) for a in range(pol.shape[1]))


def brute_nash_conv(pol, k, u, delta=0.5):
    v = brute_value(pol, k, u, delta)
    return sum(brute_br(pol, i, k, u, delta) - v for i in range(pol.shape[0]))


def pure(actions, n_act, max_agents):
    """One-hot mixed policies ``[A, U]`` of a pure joint action (padding rows uniform)."""
    pol = np.full((max_agents, n_act), 1.0 / n_act, np.float32)
    for i, a in enumerate(actions):
        pol[i] = np.eye(n_act, dtype=np.float32)[a]
    return jnp.asarray(pol)


def random_policies(rng, max_agents, n_act):
    return rng.dirichlet(np.ones(n_act) * 0.7, size=max_agents).astype(np.float32)


# --- fixtures: envs and jitted programs -----------------------------------------------------------
def _player(env):
    """jit(vmap over joint actions of one task): reset_to + step."""

    def play(task, actions):
        def one(a):
            state, _ = env.reset_to(jax.random.key(0), task)
            _, ts = env.step(state, a)
            return ts

        return jax.vmap(one)(actions)

    return jax.jit(play)


def _all_joint(n_act, n):
    return jnp.asarray(list(itertools.product(range(n_act), repeat=n)), jnp.int32)


@pytest.fixture(scope="module")
def climb2():
    env = Climb(max_agents=2, num_actions=10)
    return env, _player(env)


@pytest.fixture(scope="module")
def climb3():
    env = Climb(max_agents=3, num_actions=4)
    return env, _player(env)


@pytest.fixture(scope="module")
def climb4():
    env = Climb(max_agents=4, num_actions=3)
    gtf = {
        "value": jax.jit(env.expected_return),
        "br": jax.jit(env.best_response_value),
        "nash_conv": jax.jit(env.nash_conv),
        "greedy": jax.jit(env.greedy_value),
    }
    return env, _player(env), gtf


@pytest.fixture(scope="module")
def multi():
    env = MultiStageClimb(max_agents=3, num_stages=3, num_actions=4)

    def rollout(task, actions):
        state, ts0 = env.reset_to(jax.random.key(0), task)

        def body(state, a):
            state, ts = env.step(state, a)
            return state, ts

        _, tss = jax.lax.scan(body, state, actions)
        return ts0, tss

    return env, jax.jit(rollout)


# --- one-step game: rewards ----------------------------------------------------------------------
@pytest.mark.parametrize("k,u", [(1, 0), (2, 0), (1, 7), (2, 9), (2, 4)])
def test_reward_table_two_players(climb2, k, u):
    env, play = climb2
    task = env.make_task(n_agents=2, k=k, u=u)
    joint = _all_joint(10, 2)
    ts = play(task, joint)
    want = np.array([rule(j, k, u) for j in np.asarray(joint)], np.float32)
    np.testing.assert_array_equal(np.asarray(ts.reward[:, 0]), want)
    np.testing.assert_array_equal(np.asarray(ts.reward[:, 1]), want)
    assert bool(jnp.all(ts.terminated)) and not bool(jnp.any(ts.truncated))
    assert bool(jnp.all(ts.discount == 0.0))
    optimal = (want == 1.0).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(ts.extras["optimal"]), optimal)
    # the payoff matrix agrees with the env
    table = env.payoff_table(task)
    assert table.shape == (10, 10)
    np.testing.assert_array_equal(np.asarray(table).reshape(-1), want)


@pytest.mark.parametrize("u", [0, 3])
def test_reward_three_players_all_64(climb3, u):
    env, play = climb3
    task = env.make_task(n_agents=3, k=2, u=u)
    joint = _all_joint(4, 3)
    assert joint.shape == (64, 3)
    ts = play(task, joint)
    want = np.array([rule(j, 2, u) for j in np.asarray(joint)], np.float32)
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(ts.reward[:, i]), want)
    np.testing.assert_array_equal(np.asarray(env.payoff_table(task)).reshape(-1), want)
    assert sorted(set(want.tolist())) == [0.0, 0.5, 1.0]


def test_padded_players_never_change_reward(climb4):
    env, play, _ = climb4
    joint = _all_joint(3, 4)  # 81 joint actions, slots 2 and 3 are padding
    for k, u in [(1, 0), (2, 2)]:
        task = env.make_task(n_agents=2, k=k, u=u)
        ts = play(task, joint)
        want = np.array([rule(j[:2], k, u) for j in np.asarray(joint)], np.float32)
        np.testing.assert_array_equal(np.asarray(ts.reward[:, :2]), np.stack([want, want], 1))
        assert bool(jnp.all(ts.reward[:, 2:] == 0.0))
        assert bool(jnp.all(ts.discount[:, 2:] == 0.0))
        obs = ts.observation
        assert obs.agent_mask[0].tolist() == [True, True, False, False]
        assert obs.agents_mask[0].tolist() == [
            [False, True, False, False],
            [True, False, False, False],
            [False] * 4,
            [False] * 4,
        ]
        assert obs.self[0, :, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
        assert not bool(jnp.any(obs.objects_mask))


def test_observation_matches_spec():
    for env in (Climb(max_agents=3, num_actions=4), Climb(max_agents=3, agent_id=True)):
        _, ts = env.reset_to(jax.random.key(0), env.make_task(n_agents=2, k=1, u=1))
        env.observation_spec.validate(ts.observation)
        env.action_spec.validate(jnp.zeros((3,), jnp.int32))
        state, _ = env.reset(jax.random.key(1))
        _, ts1 = env.step(state, jnp.zeros((3,), jnp.int32))
        assert ts.extras.keys() == ts1.extras.keys()
        env.observation_spec.validate(ts1.observation)
    obs = ts.observation.self
    np.testing.assert_array_equal(np.asarray(obs[:, 1:]), np.diag([1.0, 1.0, 0.0]))


# --- one-step game: exact game theory -------------------------------------------------------------
@pytest.mark.parametrize("n,k,u", [(2, 1, 0), (2, 2, 1), (3, 1, 2), (3, 2, 0), (3, 3, 1)])
def test_expected_return_and_best_response_vs_brute_force(climb4, n, k, u):
    env, _, f = climb4
    rng = np.random.default_rng(10 * n + k + u)
    task = env.make_task(n_agents=n, k=k, u=u)
    for _ in range(3):
        pol = random_policies(rng, 4, 3)  # padded rows are random and must not matter
        v = float(f["value"](task, jnp.asarray(pol)))
        assert v == pytest.approx(brute_value(pol[:n], k, u), abs=1e-5)
        for i in range(n):
            br = float(f["br"](task, jnp.asarray(pol), i))
            assert br == pytest.approx(brute_br(pol[:n], i, k, u), abs=1e-5)
        assert float(f["br"](task, jnp.asarray(pol), 3)) == 0.0  # a padded slot
        nc = float(f["nash_conv"](task, jnp.asarray(pol)))
        assert nc == pytest.approx(brute_nash_conv(pol[:n], k, u), abs=1e-5)
        assert nc > 1e-4  # random interior mixed policies are not equilibria here


def test_expected_return_two_players_large_u(climb2):
    env, _ = climb2
    rng = np.random.default_rng(0)
    task = env.make_task(n_agents=2, k=1, u=6)
    pol = random_policies(rng, 2, 10)
    want = float(np.sum(np.outer(pol[0], pol[1]) * np.asarray(env.payoff_table(task))))
    assert float(jax.jit(env.expected_return)(task, jnp.asarray(pol))) == pytest.approx(want, 1e-5)


@pytest.mark.parametrize(
    "n,k,u,actions,value,nash_conv",
    [
        (2, 2, 1, (1, 1), 1.0, 0.0),  # Pareto-optimal NE
        (2, 2, 1, (0, 2), 0.5, 0.0),  # sub-optimal NE: deviating to u alone gives 0
        (2, 2, 1, (1, 0), 0.0, 1.5),  # p0 gains 0.5 by leaving u, p1 gains 1 by joining
        (2, 1, 0, (0, 0), 0.0, 2.0),  # both gain 1 by leaving u
        (2, 1, 0, (1, 2), 0.5, 1.0),  # both gain 0.5 by joining u
        (2, 1, 0, (0, 2), 1.0, 0.0),  # optimum with k = 1
        (4, 4, 0, (0, 0, 1, 2), 0.0, 0.0),  # zero-reward NE: any deviation keeps 1 < #u < 4
        (4, 4, 0, (0, 0, 0, 2), 0.0, 1.0),  # the one outside gains 1 by joining
        (3, 2, 1, (1, 1, 0), 1.0, 0.0),
    ],
)
def test_nash_conv_pure_profiles(climb4, n, k, u, actions, value, nash_conv):
    env, _, f = climb4
    task = env.make_task(n_agents=n, k=k, u=u)
    pol = pure(actions, 3, 4)
    assert float(f["value"](task, pol)) == pytest.approx(value, abs=1e-6)
    assert float(f["nash_conv"](task, pol)) == pytest.approx(nash_conv, abs=1e-6)
    assert brute_nash_conv(np.asarray(pol)[:n], k, u) == pytest.approx(nash_conv, abs=1e-9)
    assert float(f["greedy"](task, pol)) == pytest.approx(value)
    act = jnp.asarray(list(actions) + [0] * (4 - n), jnp.int32)
    assert bool(env.is_optimal_joint_action(task, act)) == (value == 1.0)
    assert float(env.optimal_value(task)) == 1.0
    assert float(env.suboptimal_value(task)) == 0.5


def test_greedy_value_and_policy_shape(climb4):
    env, _, f = climb4
    task = env.make_task(n_agents=3, k=2, u=2)
    pol = np.full((4, 3), 0.1, np.float32)
    pol[0, 2] = pol[1, 2] = pol[2, 0] = 0.8
    pol[3, 2] = 0.8  # padding: ignored
    assert float(f["greedy"](task, jnp.asarray(pol))) == 1.0
    pol[2, 2], pol[2, 0] = 0.8, 0.1
    assert float(f["greedy"](task, jnp.asarray(pol))) == 0.0
    with pytest.raises(EnvError, match="policies"):
        env.expected_return(task, jnp.ones((3, 3)) / 3)


def test_task_space_sample_and_split():
    env = Climb(max_agents=2, num_actions=10)
    space = env.task_space()
    pairs = set(zip(np.asarray(space.k).tolist(), np.asarray(space.u).tolist(), strict=True))
    assert len(pairs) == 20 and pairs == {(k, u) for k in (1, 2) for u in range(10)}
    env.validate_task(space)
    samples = jax.jit(jax.vmap(env.sample_task))(jax.random.split(jax.random.key(0), 500))
    got = set(zip(np.asarray(samples.k).tolist(), np.asarray(samples.u).tolist(), strict=True))
    assert got == pairs
    assert bool(jnp.all(samples.n_agents == 2)) and bool(jnp.all(samples.delta == 0.5))
    train, test = env.split_tasks(jax.random.key(3), 10, 5)
    tr = set(zip(np.asarray(train.k).tolist(), np.asarray(train.u).tolist(), strict=True))
    te = set(zip(np.asarray(test.k).tolist(), np.asarray(test.u).tolist(), strict=True))
    assert len(tr) == 10 and len(te) == 5 and not tr & te
    again, _ = env.split_tasks(jax.random.key(3), 10, 5)
    np.testing.assert_array_equal(np.asarray(again.u), np.asarray(train.u))
    other, _ = env.split_tasks(jax.random.key(4), 10, 5)
    assert not np.array_equal(np.asarray(other.u), np.asarray(train.u))
    jitted = jax.jit(env.split_tasks, static_argnums=(1, 2))(jax.random.key(3), 10, 5)
    np.testing.assert_array_equal(np.asarray(jitted[0].k), np.asarray(train.k))
    with pytest.raises(EnvError, match="n_train"):
        env.split_tasks(jax.random.key(0), 15, 6)


# --- multi-stage game -----------------------------------------------------------------------------
def expected_self(history, t, n, a_max, s, n_act):
    """Reference observation ``self`` row of an active player after ``t`` stages."""
    row = np.zeros(s + s * a_max * n_act, np.float32)
    if t < s:
        row[t] = 1.0
    for st in range(t):
        for j in range(n):
            row[s + (st * a_max + j) * n_act + history[st][j]] = 1.0
    return row


@pytest.mark.parametrize("n", [2, 3])
def test_multistage_history_reward_termination(multi, n):
    env, rollout = multi
    s, a_max, n_act = 3, 3, 4
    k = [1, 2, n]
    u = [0, 3, 2]
    task = env.make_task(n_agents=n, k=k, u=u)
    rng = np.random.default_rng(n)
    for _ in range(4):
        actions = rng.integers(0, n_act, (s, a_max))
        actions[rng.integers(s), :n] = u[0]  # make some stages hit the key action
        ts0, tss = rollout(task, jnp.asarray(actions, jnp.int32))
        assert ts0.observation.self.shape == (a_max, s + s * a_max * n_act)
        env.observation_spec.validate(ts0.observation)
        np.testing.assert_array_equal(
            np.asarray(ts0.observation.self[0]), expected_self([], 0, n, a_max, s, n_act)
        )
        assert bool(ts0.first()) and not bool(tss.first().any())
        for t in range(s):
            want_obs = expected_self(actions[:, :n].tolist(), t + 1, n, a_max, s, n_act)
            for i in range(a_max):
                want = want_obs if i < n else np.zeros_like(want_obs)
                np.testing.assert_array_equal(np.asarray(tss.observation.self[t, i]), want)
            r = rule(actions[t, :n].tolist(), k[t], u[t])
            assert np.asarray(tss.reward[t]).tolist() == [r] * n + [0.0] * (a_max - n)
            assert bool(tss.terminated[t]) == (t == s - 1)
            assert not bool(tss.truncated[t])
            assert float(tss.discount[t, 0]) == (0.0 if t == s - 1 else 1.0)
            assert int(tss.extras["stage"][t]) == t
        want_rewards = [rule(actions[t, :n].tolist(), k[t], u[t]) for t in range(s)]
        np.testing.assert_array_equal(
            np.asarray(env.stage_rewards(task, jnp.asarray(actions))), want_rewards
        )


def test_multistage_returns_and_past_end(multi):
    env, rollout = multi
    task = env.make_task(n_agents=2, k=[2, 1, 2], u=[1, 1, 3], delta=0.25)
    assert float(jax.jit(env.optimal_return)(task)) == 3.0
    assert float(jax.jit(env.suboptimal_return)(task)) == pytest.approx(3 * 0.75)
    best = jnp.asarray([[1, 1, 0], [1, 0, 0], [3, 3, 0]], jnp.int32)
    _, tss = rollout(task, best)
    assert float(tss.reward[:, 0].sum()) == 3.0
    assert np.asarray(tss.extras["optimal"]).tolist() == [1.0, 1.0, 1.0]
    sub = jnp.asarray([[0, 2, 0], [0, 0, 1], [2, 0, 1]], jnp.int32)
    _, tss = rollout(task, sub)
    assert float(tss.reward[:, 0].sum()) == pytest.approx(3 * 0.75)
    # open-loop mixed policies: sum of the stage games' values
    rng = np.random.default_rng(0)
    pol = np.stack([random_policies(rng, 3, 4) for _ in range(3)])
    want = sum(brute_value(pol[t, :2], [2, 1, 2][t], [1, 1, 3][t], 0.25) for t in range(3))
    assert float(env.expected_return(task, jnp.asarray(pol))) == pytest.approx(want, abs=1e-5)
    # stepping past the end: reward 0, still terminated
    state, _ = env.reset_to(jax.random.key(0), task)
    for t in range(4):
        state, ts = env.step(state, best[min(t, 2)])
    assert float(ts.reward[0]) == 0.0 and bool(ts.terminated)


def test_multistage_sample_and_split():
    env = MultiStageClimb()  # paper: 2 players, S = 5, U = 10
    assert env.observation_spec.self.shape == (2, 5 + 5 * 2 * 10)
    task = env.sample_task(jax.random.key(0))
    env.validate_task(task)
    train, test = env.split_tasks(jax.random.key(1), 10, 3)
    rows = [
        tuple(np.concatenate([k, u]).tolist())
        for k, u in zip(
            np.asarray(jnp.concatenate([train.k, test.k])),
            np.asarray(jnp.concatenate([train.u, test.u])),
            strict=True,
        )
    ]
    assert len(set(rows)) == 13 and train.k.shape == (10, 5) and test.u.shape == (3, 5)
    env.validate_task(train)
    small = MultiStageClimb(num_stages=2, num_actions=2)  # (2 * 2)^2 = 16 games
    tr, te = small.split_tasks(jax.random.key(0), 10, 6)
    rows = {
        tuple(np.concatenate([k, u]).tolist())
        for k, u in zip(
            np.asarray(jnp.concatenate([tr.k, te.k])),
            np.asarray(jnp.concatenate([tr.u, te.u])),
            strict=True,
        )
    }
    assert len(rows) == 16
    with pytest.raises(EnvError, match="n_train"):
        small.split_tasks(jax.random.key(0), 10, 7)


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields,name",
    [
        ({"n_agents": 2, "k": 3, "u": 0}, "k="),
        ({"n_agents": 3, "k": 0, "u": 0}, "k="),
        ({"n_agents": 2, "k": 1, "u": 4}, "u="),
        ({"n_agents": 2, "k": 1, "u": -1}, "u="),
        ({"n_agents": 4, "k": 1, "u": 0}, "n_agents="),
        ({"n_agents": 2, "k": 1, "u": 0, "delta": 1.5}, "delta="),
    ],
)
def test_bad_task_raises_naming_field(fields, name):
    env = Climb(max_agents=3, num_actions=4)
    with pytest.raises(EnvError, match=name):
        env.make_task(**fields)
    menv = MultiStageClimb(max_agents=3, num_stages=3, num_actions=4)
    mfields = dict(fields)
    mfields["k"] = [1, fields["k"], 1] if fields["k"] != 1 else 1
    mfields["u"] = [0, 0, fields["u"]]
    with pytest.raises(EnvError, match=name):
        menv.make_task(**mfields)


def test_bad_config_and_shapes():
    with pytest.raises(EnvError, match="num_actions"):
        Climb(num_actions=1)
    with pytest.raises(EnvError, match="n_agents"):
        Climb(max_agents=2, n_agents=3)
    with pytest.raises(EnvError):
        make("climb", episode_length=3)
    menv = MultiStageClimb(max_agents=2, num_stages=3, num_actions=4)
    with pytest.raises(EnvError, match="k has shape"):
        menv.make_task(k=[1, 2])


@pytest.mark.parametrize("env_name", ["climb", "climb_multistage"])
def test_bad_action_raises(env_name):
    env = make(env_name, max_agents=3, num_actions=4)
    state, _ = env.reset_to(jax.random.key(0), env.make_task(n_agents=2, k=1))
    with pytest.raises(EnvError, match="shape"):
        env.step(state, jnp.zeros((2,), jnp.int32))
    with pytest.raises(EnvError, match="dtype"):
        env.step(state, jnp.zeros((3,), jnp.float32))
    with pytest.raises(EnvError, match="action="):
        env.step(state, jnp.asarray([0, 4, 0], jnp.int32))
    with pytest.raises(EnvError, match="shape"):
        jax.jit(env.step)(state, jnp.zeros((4,), jnp.int32))
    # under a trace out-of-range values are clipped, never NaN
    _, ts = jax.jit(env.step)(state, jnp.asarray([7, -2, 0], jnp.int32))
    assert bool(jnp.all(jnp.isfinite(ts.reward)))


# --- batching -------------------------------------------------------------------------------------
def test_jit_vmap_over_mixed_populations():
    env = Climb(max_agents=3, num_actions=4)
    specs = [(2, 1, 0), (3, 2, 1), (2, 2, 3), (3, 3, 0), (3, 1, 2)]
    tasks = stack_tasks([env.make_task(n_agents=n, k=k, u=u) for n, k, u in specs])
    actions = jnp.asarray([[0, 1, 0], [1, 1, 3], [3, 3, 3], [0, 0, 0], [2, 0, 1]], jnp.int32)

    @jax.jit
    def run(keys, tasks, actions):
        states, ts0 = jax.vmap(env.reset_to)(keys, tasks)
        _, ts = jax.vmap(env.step)(states, actions)
        values = jax.vmap(env.expected_return)(tasks, jax.nn.one_hot(actions, 4))
        return ts0, ts, values

    ts0, ts, values = run(jax.random.split(jax.random.key(0), 5), tasks, actions)
    for b, (n, k, u) in enumerate(specs):
        r = rule(np.asarray(actions[b, :n]).tolist(), k, u)
        assert np.asarray(ts.reward[b]).tolist() == [r] * n + [0.0] * (3 - n)
        assert np.asarray(ts0.observation.agent_mask[b]).tolist() == [True] * n + [False] * (3 - n)
        assert float(values[b]) == pytest.approx(r)
    assert bool(jnp.all(ts.terminated))

    menv = MultiStageClimb(max_agents=3, num_stages=2, num_actions=4)
    mt = stack_tasks(
        [
            menv.make_task(n_agents=2, k=[1, 2], u=[0, 1]),
            menv.make_task(n_agents=3, k=[3, 1], u=[2, 2]),
        ]
    )
    acts = jnp.asarray([[[0, 2, 2], [1, 1, 0]], [[2, 2, 2], [2, 0, 0]]], jnp.int32)  # [B, S, A]

    @jax.jit
    def mrun(keys, tasks, acts):
        states, _ = jax.vmap(menv.reset_to)(keys, tasks)
        rewards, done = [], []
        for t in range(2):
            states, ts = jax.vmap(menv.step)(states, acts[:, t])
            rewards.append(ts.reward)
            done.append(ts.terminated)
        return jnp.stack(rewards, 1), jnp.stack(done, 1)

    rewards, done = mrun(jax.random.split(jax.random.key(1), 2), mt, acts)
    assert np.asarray(rewards).tolist() == [
        [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]],
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
    ]
    assert np.asarray(done).tolist() == [[False, True], [False, True]]


def test_registry_and_autoreset():
    env = make("climb")
    assert isinstance(env, Climb) and env.num_actions == 10 and env.max_agents == 2
    assert isinstance(make("climb_multistage"), MultiStageClimb)
    wrapped = AutoReset(Climb(max_agents=2, num_actions=4))
    state, _ = wrapped.reset_to(jax.random.key(0), wrapped.make_task(k=2, u=1))
    state, ts = wrapped.step(state, jnp.asarray([1, 1], jnp.int32))
    assert bool(ts.terminated) and float(ts.reward[0]) == 1.0
    assert int(state.step) == 0  # a fresh episode of the same game
    assert int(state.task.u) == 1
    # game theory on a stack of tasks (vmapped module functions)
    space = Climb(max_agents=2, num_actions=4).task_space()
    v = jax.vmap(gt.optimal_value)(space)
    assert bool(jnp.all(v == 1.0))

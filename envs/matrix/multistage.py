"""Multi-stage climb game (MESA paper Sec. 6.2, App. B.1.1 (ii)).

``S`` stages played in sequence; stage ``t`` is the one-step climb game ``G(n, k_t, u_t, U)``
(see :mod:`envs.matrix.climb`): every player gets 1 if exactly ``k_t`` players choose ``u_t``,
``1 - delta`` if nobody does, 0 otherwise. Players observe the stage index and the history of
joint actions. The paper's task space ``T^multi_{S,U}`` is 2 players, every ``(k_t, u_t)`` with
``1 <= k_t <= n``, ``0 <= u_t < U``; experiments use ``S = 5``, ``U = 10``. The optimal return is
``S`` (1 per stage), the sub-optimal equilibrium returns ``S (1 - delta)``.

Task (:class:`MultiStageTask`, a pytree; build with ``env.make_task``):

* ``n_agents``: ``[]`` int32 in ``1..max_agents`` (2 in the paper);
* ``k``: ``[S]`` int32, each in ``1..n_agents``;
* ``u``: ``[S]`` int32, each in ``0..U-1`` (``U = num_actions``, static);
* ``delta``: ``[]`` float32 in ``[0, 1]`` (0.5).

Observation (``A = max_agents``), the same for every player (``O_i^t = [t, h_{t-1}]``):

* ``self``: ``[A, S + S * A * U]`` float32 (zeros for padding), laid out as

  - ``[0, S)``: one-hot of the current stage ``t`` (all zeros once the ``S`` stages are over);
  - ``S + (s * A + j) * U + a`` for stage ``s``, player slot ``j``, action ``a``: 1 if player
    ``j`` played ``a`` at stage ``s``. Only stages ``s < t`` are filled; later stages and padded
    slots are zeros. Players are in absolute slot order (not relative to the observer).

  With ``agent_id=True`` the one-hot of the agent's own slot (``[A]``) is appended.
* ``agents``: ``[A, A, 1]`` float32 zeros; ``agents_mask``: ``[A, A]`` bool, the other players;
* ``objects``: ``[A, 1, 1]`` float32 zeros; ``objects_mask``: ``[A, 1]`` bool, all False;
* ``team``: ``[A]`` int32 zeros; ``agent_mask``: ``[A]`` bool, the game's players.

Action: ``[A]`` int32 in ``0..U-1`` (``MultiDiscreteArray``); padded slots are ignored; concrete
out-of-range values raise :class:`~envs.core.EnvError`, traced ones are clipped.

Reward: ``[A]`` float32, the current stage's shared climb reward; 0 for padding.

Episode: ``S`` steps (``episode_length = S``). The step that plays the last stage *terminates*
the episode (``terminated=True``, ``truncated=False``, ``discount=0``): the game has no further
state. Stepping past the end gives reward 0 and stays terminated.

Extras (same keys on ``reset`` and ``step``): ``stage`` ``[]`` int32, the stage just played
(0 on reset); ``optimal`` ``[]`` float32, 1 when that stage's joint action was optimal.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jumanji import specs

from envs.core import EnvError, MultiAgentEnv, Observation, TimeStep, make_timestep
from envs.matrix import gametheory as gt
from envs.matrix.climb import ClimbTask, check_field, check_static, matrix_observation

Array = jax.Array


@struct.dataclass
class MultiStageTask:
    """A multi-stage climb game (see module docstring)."""

    n_agents: Array
    k: Array
    u: Array
    delta: Array


@struct.dataclass
class MultiStageState:
    """State: ``key``, ``step`` (``[]`` int32 stages played), ``task``, and ``history``
    ``[S, A]`` int32, the action of each slot at each stage (-1: not played, or padding)."""

    key: Array
    step: Array
    task: MultiStageTask
    history: Array


def stage_task(task: MultiStageTask, t: Array | int) -> ClimbTask:
    """The one-step game ``G(n, k_t, u_t, U)`` of stage ``t``."""
    return ClimbTask(n_agents=task.n_agents, k=task.k[t], u=task.u[t], delta=task.delta)


def stage_tasks(task: MultiStageTask) -> ClimbTask:
    """All stages as a ``[S]``-stacked :class:`ClimbTask` (for vmapped game theory)."""
    s = task.k.shape[-1]
    return ClimbTask(
        n_agents=jnp.broadcast_to(task.n_agents, (s,)),
        k=task.k,
        u=task.u,
        delta=jnp.broadcast_to(task.delta, (s,)),
    )


class MultiStageClimb(MultiAgentEnv[MultiStageState, MultiStageTask]):
    """Multi-stage climb game; see the module docstring for every field.

    Args:
      max_agents: player slots ``A`` (default 2, the paper's game).
      num_stages: stages ``S`` (default 5), static.
      num_actions: actions per player ``U`` (default 10), static, ``>= 2``.
      delta: penalty of sampled tasks and default of :meth:`make_task` (0.5).
      n_agents: players of the sampled tasks (default ``max_agents``).
      agent_id: append the one-hot slot id to ``obs.self``.
    """

    name = "climb_multistage"

    def __init__(
        self,
        max_agents: int = 2,
        num_stages: int = 5,
        num_actions: int = 10,
        delta: float = 0.5,
        n_agents: int | None = None,
        agent_id: bool = False,
    ):
        self.max_agents = check_static(self.name, "max_agents", max_agents, 1)
        self.num_stages = check_static(self.name, "num_stages", num_stages, 1)
        self.num_actions = check_static(self.name, "num_actions", num_actions, 2)
        self.max_objects = 1
        self.episode_length = self.num_stages
        self.n_agents = check_static(
            self.name,
            "n_agents",
            self.max_agents if n_agents is None else n_agents,
            1,
            self.max_agents,
        )
        if not 0.0 <= float(delta) <= 1.0:
            raise EnvError(f"{self.name}: delta={delta} is invalid; it must be in [0, 1]")
        self.delta = float(delta)
        self.agent_id = bool(agent_id)
        super().__init__()

    # --- tasks -----------------------------------------------------------------------------
    def make_task(
        self,
        n_agents: int | None = None,
        k: Any = None,
        u: Any = 0,
        delta: float | None = None,
    ) -> MultiStageTask:
        """A game with ``k``, ``u`` per stage (``[S]``; a scalar is used at every stage).
        Defaults: the env's ``n_agents``, ``k = n_agents``, ``u = 0``, the env's ``delta``."""
        n_agents = self.n_agents if n_agents is None else n_agents
        k = n_agents if k is None else k

        def per_stage(x: Any) -> Array:
            x = jnp.asarray(x, jnp.int32)
            return jnp.full((self.num_stages,), x, jnp.int32) if x.ndim == 0 else x

        task = MultiStageTask(
            n_agents=jnp.asarray(n_agents, jnp.int32),
            k=per_stage(k),
            u=per_stage(u),
            delta=jnp.asarray(self.delta if delta is None else delta, jnp.float32),
        )
        return self.validate_task(task)

    def validate_task(self, task: MultiStageTask) -> MultiStageTask:
        """Check shapes (always) and concrete values (possibly stacked); raises
        :class:`EnvError` naming the field."""
        name, a, s, u_max = self.name, self.max_agents, self.num_stages, self.num_actions - 1
        lead = tuple(jnp.shape(task.n_agents))
        for field in ("k", "u"):
            shape = tuple(jnp.shape(getattr(task, field)))
            if shape != (*lead, s):
                raise EnvError(
                    f"{name}: {field} has shape {shape}, expected {(*lead, s)} "
                    f"(one entry per stage, num_stages={s})"
                )
        check_field(name, "n_agents", task.n_agents, 1, a, f"1..max_agents={a}")
        n = jnp.expand_dims(task.n_agents, -1)  # per-task bound on each stage's k
        check_field(name, "k", task.k, 1, n, "1..n_agents at every stage")
        check_field(name, "u", task.u, 0, u_max, f"0..num_actions-1={u_max} at every stage")
        check_field(name, "delta", task.delta, 0.0, 1.0, "[0, 1]")
        return task

    def sample_task(self, key: chex.PRNGKey) -> MultiStageTask:
        """Uniform over ``T^multi_{S,U}`` for ``n = n_agents`` players: every ``k_t`` uniform in
        ``1..n`` and ``u_t`` uniform in ``0..U-1``, independently; ``delta`` of the env."""
        k_k, k_u = jax.random.split(key)
        s = self.num_stages
        return MultiStageTask(
            n_agents=jnp.asarray(self.n_agents, jnp.int32),
            k=jax.random.randint(k_k, (s,), 1, self.n_agents + 1, jnp.int32),
            u=jax.random.randint(k_u, (s,), 0, self.num_actions, jnp.int32),
            delta=jnp.asarray(self.delta, jnp.float32),
        )

    def task_space_size(self, n_agents: int | None = None) -> int:
        """``(n U)^S``, the number of games with ``n`` players (a Python int)."""
        n = self.n_agents if n_agents is None else int(n_agents)
        return (n * self.num_actions) ** self.num_stages

    def split_tasks(
        self, key: chex.PRNGKey, n_train: int, n_test: int, n_agents: int | None = None
    ) -> tuple[MultiStageTask, MultiStageTask]:
        """Disjoint ``([n_train], [n_test])`` stacks of distinct games, drawn uniformly without
        replacement (which ones: chosen by ``key``). Runs on the host (not jittable)."""
        n = self.n_agents if n_agents is None else n_agents
        n = check_static(self.name, "n_agents", n, 1, self.max_agents)
        size = self.task_space_size(n)
        m = int(n_train) + int(n_test)
        if n_train < 0 or n_test < 0 or m > size:
            raise EnvError(
                f"{self.name}: n_train + n_test = {m} must be in 0..{size} "
                f"(the size of the task space)"
            )
        seed = np.asarray(jax.random.bits(key, (4,), jnp.uint32)).tolist()
        rng = np.random.default_rng(seed)
        base, s = n * self.num_actions, self.num_stages
        if size <= 1 << 20:  # small space: a random permutation of its indices
            idx = rng.permutation(size)[:m]
            digits = (idx[:, None] // base ** np.arange(s)[None, :]) % base
        else:  # huge space: rejection of repeats (rare)
            seen: dict[tuple[int, ...], None] = {}
            while len(seen) < m:
                for row in rng.integers(0, base, (2 * m + 8, s)).tolist():
                    seen.setdefault(tuple(row), None)
            digits = np.asarray(list(seen)[:m], np.int64).reshape(m, s)
        k = digits // self.num_actions + 1
        u = digits % self.num_actions
        tasks = MultiStageTask(
            n_agents=jnp.full((m,), n, jnp.int32),
            k=jnp.asarray(k, jnp.int32),
            u=jnp.asarray(u, jnp.int32),
            delta=jnp.full((m,), self.delta, jnp.float32),
        )
        train = jax.tree.map(lambda x: x[:n_train], tasks)
        test = jax.tree.map(lambda x: x[n_train:], tasks)
        return train, test

    def task_description(self, task: MultiStageTask) -> Array:
        """``[S * (U + A)]`` float32: per stage, one-hot ``u_t`` then one-hot ``k_t - 1``."""
        d = jnp.concatenate(
            [
                jax.nn.one_hot(task.u, self.num_actions, dtype=jnp.float32),
                jax.nn.one_hot(task.k - 1, self.max_agents, dtype=jnp.float32),
            ],
            axis=-1,
        )
        return d.reshape(-1)

    # --- dynamics --------------------------------------------------------------------------
    def agent_mask(self, task: MultiStageTask) -> Array:
        """``[A]`` bool: the task's players."""
        return gt.active_mask(task, self.max_agents)

    def observe(self, state: MultiStageState) -> Observation:
        active = self.agent_mask(state.task)
        stage = jax.nn.one_hot(state.step, self.num_stages, dtype=jnp.float32)
        hist = jax.nn.one_hot(state.history, self.num_actions, dtype=jnp.float32)  # [S, A, U]
        hist = hist * active[None, :, None]
        features = jnp.concatenate([stage, hist.reshape(-1)])
        return matrix_observation(active, features, self.agent_id)

    def reset_to(self, key: chex.PRNGKey, task: MultiStageTask) -> tuple[MultiStageState, TimeStep]:
        self.validate_task(task)
        a, s = self.max_agents, self.num_stages
        state = MultiStageState(
            key=key,
            step=jnp.zeros((), jnp.int32),
            task=task,
            history=jnp.full((s, a), -1, jnp.int32),
        )
        ts = make_timestep(
            self.observe(state),
            reward=jnp.zeros((a,), jnp.float32),
            discount=jnp.ones((a,), jnp.float32),
            terminated=False,
            truncated=False,
            first=True,
            extras={"stage": jnp.zeros((), jnp.int32), "optimal": jnp.zeros((), jnp.float32)},
        )
        return state, ts

    def prepare_action(self, action: Array) -> Array:
        """Check shape/dtype (and concrete values), then clip into ``0..U-1`` as int32."""
        self.check_action(action)
        check_field(
            self.name, "action", action, 0, self.num_actions - 1, f"0..{self.num_actions - 1}"
        )
        return jnp.clip(action, 0, self.num_actions - 1).astype(jnp.int32)

    def step(self, state: MultiStageState, action: Array) -> tuple[MultiStageState, TimeStep]:
        action = self.prepare_action(action)
        task, t, s = state.task, state.step, self.num_stages
        active = self.agent_mask(task)
        in_game = t < s
        game = stage_task(task, jnp.clip(t, 0, s - 1))
        r = jnp.where(in_game, gt.joint_reward(game, action), 0.0)
        optimal = in_game & gt.is_optimal_joint_action(game, action, self.num_actions)
        history = state.history.at[t].set(jnp.where(active, action, -1), mode="drop")
        state = state.replace(step=t + 1, history=history)
        terminated = t + 1 >= s
        a = self.max_agents
        ts = make_timestep(
            self.observe(state),
            reward=jnp.full((a,), r, jnp.float32),
            discount=jnp.where(terminated, 0.0, 1.0) * jnp.ones((a,), jnp.float32),
            terminated=terminated,
            truncated=False,
            extras={"stage": t.astype(jnp.int32), "optimal": optimal.astype(jnp.float32)},
        )
        return state, ts

    # --- specs -----------------------------------------------------------------------------
    @property
    def obs_size(self) -> int:
        """``d_self = S + S * A * U`` (``+ A`` with ``agent_id``)."""
        a, s, u = self.max_agents, self.num_stages, self.num_actions
        return s + s * a * u + (a if self.agent_id else 0)

    @cached_property
    def observation_spec(self) -> specs.Spec[Observation]:
        return self.observation_spec_from(d_self=self.obs_size, d_agent=1, d_obj=1)

    @cached_property
    def action_spec(self) -> specs.MultiDiscreteArray:
        return specs.MultiDiscreteArray(
            np.full((self.max_agents,), self.num_actions, np.int32), jnp.int32, "action"
        )

    # --- values ----------------------------------------------------------------------------
    def stage_rewards(self, task: MultiStageTask, actions: Array) -> Array:
        """``[S]`` float32 shared reward of each stage for joint actions ``[S, A]``."""
        return jax.vmap(gt.joint_reward)(stage_tasks(task), actions)

    def optimal_return(self, task: MultiStageTask) -> Array:
        """``[]`` float32 best undiscounted return: ``S`` (1 per stage, since ``k_t <= n``)."""
        values = jax.vmap(lambda g: gt.optimal_value(g, self.num_actions))(stage_tasks(task))
        return jnp.sum(values)

    def suboptimal_return(self, task: MultiStageTask) -> Array:
        """``[]`` float32 return ``S (1 - delta)`` of the sub-optimal equilibrium."""
        return (self.num_stages * (1.0 - jnp.asarray(task.delta, jnp.float32))).astype(jnp.float32)

    def expected_return(self, task: MultiStageTask, policies: Array) -> Array:
        """``[]`` float32 expected return of open-loop (history-independent) mixed policies
        ``[S, A, U]``: the stage games are independent, so it is the sum of stage values."""
        want = (self.num_stages, self.max_agents, self.num_actions)
        if tuple(jnp.shape(policies)) != want:
            raise EnvError(
                f"{self.name}: policies have shape {tuple(jnp.shape(policies))}, expected {want}"
            )
        return jnp.sum(jax.vmap(gt.expected_return)(stage_tasks(task), policies))

"""One-step climb game ``G(n, k, u, U)`` (MESA paper Sec. 4 and 6.2, App. B.1.1).

``n`` players each pick one of ``U`` actions. With ``#u`` the number of players choosing the key
action ``u``, every player receives the shared reward

    1          if #u = k,
    1 - delta  if #u = 0          (delta = 1/2 in the paper),
    0          otherwise.

Its equilibria (MESA Sec. 4): the Pareto-optimal ones (exactly ``k`` players on ``u``), the
sub-optimal ones (nobody on ``u``, value ``1 - delta``) and, for ``n >= 4``, zero-reward ones. The
paper's task space ``T^one_U`` is every ``(k, u)`` with ``1 <= k <= n`` and ``0 <= u < U`` for
``n = 2``, ``U = 10`` (20 tasks; 10 for training and 3 or 5 for testing, disjoint).

Task (:class:`ClimbTask`, a pytree; build with ``env.make_task``):

* ``n_agents``: ``[]`` int32 in ``1..max_agents``, the players ``n``;
* ``k``: ``[]`` int32 in ``1..n_agents``, how many must play ``u``;
* ``u``: ``[]`` int32 in ``0..U-1``, the key action (``U = num_actions``, static);
* ``delta``: ``[]`` float32 in ``[0, 1]``, penalty of the sub-optimal equilibrium (0.5).

Observation (``A = max_agents``; the game is stateless, so it is trivial but well formed):

* ``self``: ``[A, 1]`` float32, 1 for players and 0 for padding; with ``agent_id=True``
  ``[A, 1 + A]``, followed by the one-hot of the agent's slot (for parameter-shared learners,
  whose identical observations could not break the symmetry when ``k < n``);
* ``agents``: ``[A, A, 1]`` float32 zeros; ``agents_mask``: ``[A, A]`` bool, the other players;
* ``objects``: ``[A, 1, 1]`` float32 zeros; ``objects_mask``: ``[A, 1]`` bool, all False (one
  dummy slot: a zero-size axis would break attention softmaxes);
* ``team``: ``[A]`` int32 zeros; ``agent_mask``: ``[A]`` bool, the game's players.

Action: ``[A]`` int32 in ``0..U-1`` (a ``jumanji.specs.MultiDiscreteArray``). Padded slots' actions
are ignored. Values outside the range raise :class:`~envs.core.EnvError` when concrete; under a
trace they are clipped into range.

Reward: ``[A]`` float32, the shared reward above for every player; 0 for padding.

Episode: one step. The step *terminates* the episode (the game is over: ``terminated=True``,
``truncated=False``, ``discount=0``); ``episode_length = 1``. Stepping a finished episode plays
the game again and terminates again.

Extras (``reset`` and ``step`` carry the same keys): ``optimal`` ``[]`` float32, 1 when the joint
action reached the optimal value (0 on reset).

Exact game theory (payoff table, expected return of mixed policies, best responses, NashConv,
optimal and greedy values) is in :mod:`envs.matrix.gametheory`; the env exposes it as methods
that know ``U`` and ``A``.
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

from envs.core import (
    EnvError,
    MultiAgentEnv,
    Observation,
    TimeStep,
    is_concrete,
    make_timestep,
    other_agents_mask,
)
from envs.matrix import gametheory as gt

Array = jax.Array


@struct.dataclass
class ClimbTask:
    """A one-step climb game ``G(n_agents, k, u, U)`` (see module docstring)."""

    n_agents: Array
    k: Array
    u: Array
    delta: Array


@struct.dataclass
class ClimbState:
    """State of a climb game: ``key``, ``step`` (``[]`` int32 steps taken) and ``task``."""

    key: Array
    step: Array
    task: ClimbTask


# --- validation helpers (shared with the multi-stage game) ---------------------------------------
def check_field(env_name: str, field: str, value: Any, low: Any, high: Any, bounds: str) -> None:
    """Raise :class:`EnvError` naming ``field`` if a concrete value lies outside ``[low, high]``.

    ``low``/``high`` broadcast against ``value`` (per-task bounds of a stacked task);
    ``bounds`` describes the allowed range in the message. Tracers are skipped.
    """
    if not (is_concrete(value) and is_concrete(low) and is_concrete(high)):
        return
    v = np.asarray(value)
    lo, hi = np.asarray(low), np.asarray(high)
    if v.size and np.any((v < lo) | (v > hi)):
        raise EnvError(f"{env_name}: {field}={v.tolist()} is invalid; it must be in {bounds}")


def check_static(env_name: str, field: str, value: int, low: int, high: int | None = None) -> int:
    """Validate a static integer setting of an env constructor; returns it as ``int``."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise EnvError(f"{env_name}: {field} must be an integer, got {value!r}") from None
    if v < low or (high is not None and v > high):
        rng = f"{low}..{high}" if high is not None else f">= {low}"
        raise EnvError(f"{env_name}: {field}={v} is invalid; it must be {rng}")
    return v


def matrix_observation(active: Array, features: Array, agent_id: bool) -> Observation:
    """Observation of a matrix game: ``features [d]`` shared by every player, empty entities.

    ``self`` is ``[features | one-hot slot (if agent_id)]`` for players, zeros for padding;
    ``agents`` ``[A, A, 1]`` zeros with the other players' mask; ``objects`` ``[A, 1, 1]``
    zeros with an all-False mask (one dummy slot).
    """
    a = active.shape[0]
    parts = [jnp.broadcast_to(features.astype(jnp.float32), (a, features.shape[-1]))]
    if agent_id:
        parts.append(jnp.eye(a, dtype=jnp.float32))
    self_f = jnp.concatenate(parts, axis=-1) * active[:, None]
    return Observation(
        self=self_f,
        agents=jnp.zeros((a, a, 1), jnp.float32),
        agents_mask=other_agents_mask(active),
        objects=jnp.zeros((a, 1, 1), jnp.float32),
        objects_mask=jnp.zeros((a, 1), bool),
        team=jnp.zeros((a,), jnp.int32),
        agent_mask=active,
    )


def task_space(n: int, num_actions: int, delta: float = 0.5) -> ClimbTask:
    """Every game ``G(n, k, u, U)`` with ``1 <= k <= n``, ``0 <= u < U``, stacked: ``[n * U]``.

    Ordered by ``k``, then ``u`` (task ``i`` has ``k = i // U + 1``, ``u = i % U``).
    """
    n, num_actions = int(n), int(num_actions)
    k, u = np.meshgrid(np.arange(1, n + 1), np.arange(num_actions), indexing="ij")
    size = n * num_actions
    return ClimbTask(
        n_agents=jnp.full((size,), n, jnp.int32),
        k=jnp.asarray(k.reshape(-1), jnp.int32),
        u=jnp.asarray(u.reshape(-1), jnp.int32),
        delta=jnp.full((size,), delta, jnp.float32),
    )


def take_tasks(tasks: Any, idx: Array) -> Any:
    """Select tasks ``idx`` from a stacked task."""
    return jax.tree.map(lambda x: x[idx], tasks)


class Climb(MultiAgentEnv[ClimbState, ClimbTask]):
    """One-step climb game; see the module docstring for every field.

    Args:
      max_agents: player slots ``A`` (default 2, the paper's game).
      num_actions: actions per player ``U`` (default 10), static, ``>= 2``.
      delta: penalty of the tasks built by :meth:`sample_task` and the default of
        :meth:`make_task` (0.5).
      n_agents: players of the sampled tasks (default ``max_agents``).
      agent_id: append the one-hot slot id to ``obs.self``.
    """

    name = "climb"

    def __init__(
        self,
        max_agents: int = 2,
        num_actions: int = 10,
        delta: float = 0.5,
        n_agents: int | None = None,
        agent_id: bool = False,
    ):
        self.max_agents = check_static(self.name, "max_agents", max_agents, 1)
        self.num_actions = check_static(self.name, "num_actions", num_actions, 2)
        self.max_objects = 1
        self.episode_length = 1
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
        k: int | None = None,
        u: int = 0,
        delta: float | None = None,
    ) -> ClimbTask:
        """``G(n_agents, k, u, U)``; defaults: ``n_agents`` of the env, ``k = n_agents``
        (the classic climb game), ``delta`` of the env."""
        n_agents = self.n_agents if n_agents is None else n_agents
        task = ClimbTask(
            n_agents=jnp.asarray(n_agents, jnp.int32),
            k=jnp.asarray(n_agents if k is None else k, jnp.int32),
            u=jnp.asarray(u, jnp.int32),
            delta=jnp.asarray(self.delta if delta is None else delta, jnp.float32),
        )
        return self.validate_task(task)

    def validate_task(self, task: ClimbTask) -> ClimbTask:
        """Check a concrete (possibly stacked) task; raises :class:`EnvError` naming the field."""
        name, a, u_max = self.name, self.max_agents, self.num_actions - 1
        check_field(name, "n_agents", task.n_agents, 1, a, f"1..max_agents={a}")
        check_field(name, "k", task.k, 1, task.n_agents, "1..n_agents")
        check_field(name, "u", task.u, 0, u_max, f"0..num_actions-1={u_max}")
        check_field(name, "delta", task.delta, 0.0, 1.0, "[0, 1]")
        return task

    def sample_task(self, key: chex.PRNGKey) -> ClimbTask:
        """Uniform over ``T^one_U`` for ``n = n_agents`` (default ``max_agents``) players:
        ``k`` uniform in ``1..n``, ``u`` uniform in ``0..U-1``, ``delta`` of the env."""
        k_k, k_u = jax.random.split(key)
        return ClimbTask(
            n_agents=jnp.asarray(self.n_agents, jnp.int32),
            k=jax.random.randint(k_k, (), 1, self.n_agents + 1, jnp.int32),
            u=jax.random.randint(k_u, (), 0, self.num_actions, jnp.int32),
            delta=jnp.asarray(self.delta, jnp.float32),
        )

    def task_space(self, n_agents: int | None = None) -> ClimbTask:
        """All ``n * U`` games for ``n = n_agents`` (default: the env's), stacked; see
        :func:`task_space`."""
        n = self.n_agents if n_agents is None else n_agents
        check_static(self.name, "n_agents", n, 1, self.max_agents)
        return task_space(n, self.num_actions, self.delta)

    def split_tasks(
        self, key: chex.PRNGKey, n_train: int, n_test: int, n_agents: int | None = None
    ) -> tuple[ClimbTask, ClimbTask]:
        """Disjoint ``([n_train], [n_test])`` stacks drawn without replacement from
        :meth:`task_space` (which tasks: chosen by ``key``; jittable with static sizes)."""
        space = self.task_space(n_agents)
        size = int(space.k.shape[0])
        if n_train < 0 or n_test < 0 or n_train + n_test > size:
            raise EnvError(
                f"{self.name}: n_train + n_test = {n_train + n_test} must be in 0..{size} "
                f"(the size of the task space)"
            )
        perm = jax.random.permutation(key, size)
        train, test = perm[:n_train], perm[n_train : n_train + n_test]
        return take_tasks(space, train), take_tasks(space, test)

    def task_description(self, task: ClimbTask) -> Array:
        """``[U + A]`` float32 goal descriptor: one-hot ``u``, then one-hot ``k - 1`` (for
        goal-conditioned baselines and latent priors)."""
        return jnp.concatenate(
            [
                jax.nn.one_hot(task.u, self.num_actions, dtype=jnp.float32),
                jax.nn.one_hot(task.k - 1, self.max_agents, dtype=jnp.float32),
            ]
        )

    # --- dynamics --------------------------------------------------------------------------
    def agent_mask(self, task: ClimbTask) -> Array:
        """``[A]`` bool: the task's players."""
        return gt.active_mask(task, self.max_agents)

    def observe(self, task: ClimbTask) -> Observation:
        return matrix_observation(self.agent_mask(task), jnp.ones((1,), jnp.float32), self.agent_id)

    def reset_to(self, key: chex.PRNGKey, task: ClimbTask) -> tuple[ClimbState, TimeStep]:
        self.validate_task(task)
        state = ClimbState(key=key, step=jnp.zeros((), jnp.int32), task=task)
        a = self.max_agents
        ts = make_timestep(
            self.observe(task),
            reward=jnp.zeros((a,), jnp.float32),
            discount=jnp.ones((a,), jnp.float32),
            terminated=False,
            truncated=False,
            first=True,
            extras={"optimal": jnp.zeros((), jnp.float32)},
        )
        return state, ts

    def prepare_action(self, action: Array) -> Array:
        """Check shape/dtype (and concrete values), then clip into ``0..U-1`` as int32."""
        self.check_action(action)
        check_field(
            self.name, "action", action, 0, self.num_actions - 1, f"0..{self.num_actions - 1}"
        )
        return jnp.clip(action, 0, self.num_actions - 1).astype(jnp.int32)

    def step(self, state: ClimbState, action: Array) -> tuple[ClimbState, TimeStep]:
        action = self.prepare_action(action)
        task = state.task
        r = gt.joint_reward(task, action)
        optimal = gt.is_optimal_joint_action(task, action, self.num_actions)
        a = self.max_agents
        state = state.replace(step=state.step + 1)
        ts = make_timestep(
            self.observe(task),
            reward=jnp.full((a,), r, jnp.float32),
            discount=jnp.zeros((a,), jnp.float32),
            terminated=True,
            truncated=False,
            extras={"optimal": optimal.astype(jnp.float32)},
        )
        return state, ts

    # --- specs -----------------------------------------------------------------------------
    @cached_property
    def observation_spec(self) -> specs.Spec[Observation]:
        d_self = 1 + (self.max_agents if self.agent_id else 0)
        return self.observation_spec_from(d_self=d_self, d_agent=1, d_obj=1)

    @cached_property
    def action_spec(self) -> specs.MultiDiscreteArray:
        return specs.MultiDiscreteArray(
            np.full((self.max_agents,), self.num_actions, np.int32), jnp.int32, "action"
        )

    # --- exact game theory (see envs.matrix.gametheory) ------------------------------------
    def check_policies(self, policies: Array) -> None:
        """Raise :class:`EnvError` unless ``policies`` has shape ``[A, U]``."""
        want = (self.max_agents, self.num_actions)
        if tuple(getattr(policies, "shape", ())) != want:
            raise EnvError(
                f"{self.name}: policies have shape {tuple(jnp.shape(policies))}, expected "
                f"{want} = (max_agents, num_actions)"
            )

    def joint_reward(self, task: ClimbTask, action: Array) -> Array:
        """``[]`` float32 shared reward of the joint action ``[A]``."""
        return gt.joint_reward(task, action)

    def payoff_table(self, task: ClimbTask, n: int | None = None) -> Array:
        """``[U] * n`` float32 payoff table of the ``n = task.n_agents`` players.

        ``n`` must be static: pass it under ``jit``; by default it is read from a concrete task.
        """
        if n is None:
            if not is_concrete(task.n_agents):
                raise EnvError(f"{self.name}: payoff_table under jit needs a static n")
            n = int(task.n_agents)
        return gt.payoff_table(task, self.num_actions, int(n))

    def expected_return(self, task: ClimbTask, policies: Array) -> Array:
        """``[]`` float32 expected reward of independent mixed ``policies [A, U]``."""
        self.check_policies(policies)
        return gt.expected_return(task, policies)

    def best_response_value(self, task: ClimbTask, policies: Array, i: int | Array) -> Array:
        """``[]`` float32 value of player ``i``'s best response to the others' policies."""
        self.check_policies(policies)
        return gt.best_response_value(task, policies, i)

    def nash_conv(self, task: ClimbTask, policies: Array) -> Array:
        """``[]`` float32 sum over players of best-response value minus value."""
        self.check_policies(policies)
        return gt.nash_conv(task, policies)

    def optimal_value(self, task: ClimbTask) -> Array:
        """``[]`` float32 optimal reward (1 whenever ``k <= n``)."""
        return gt.optimal_value(task, self.num_actions)

    def suboptimal_value(self, task: ClimbTask) -> Array:
        """``[]`` float32 ``1 - delta``, the value of the sub-optimal equilibria."""
        return gt.suboptimal_value(task)

    def greedy_value(self, task: ClimbTask, policies: Array) -> Array:
        """``[]`` float32 reward of the joint argmax action of ``policies [A, U]``."""
        self.check_policies(policies)
        return gt.greedy_value(task, policies)

    def is_optimal_joint_action(self, task: ClimbTask, action: Array) -> Array:
        """``[]`` bool: the joint action ``[A]`` attains :meth:`optimal_value`."""
        return gt.is_optimal_joint_action(task, action, self.num_actions)
